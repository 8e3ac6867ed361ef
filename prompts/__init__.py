"""Prompt templates, one file per role and step, rendered strictly: a missing variable fails."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined

PROMPT_DIR = Path(__file__).parent


@cache
def _environment() -> Environment:
    return Environment(
        loader=FileSystemLoader(PROMPT_DIR),
        undefined=StrictUndefined,
        keep_trailing_newline=False,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )


def render(name: str, **variables) -> str:
    """Render `prompts/<name>.md` with `variables`; raises on any undefined variable."""
    return _environment().get_template(f"{name}.md").render(**variables).strip()

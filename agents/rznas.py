"""RZ-NAS (`mode="rznas"`): the LLM as the mutation operator of an evolution scored by a
zero-cost proxy, and a reflection step whose lessons later prompts carry.

One structured call writes a whole generation: each child names its parent (by number) and the
one to three dimensions it changes, with values the schema allows. A second, plain-text call
reads how the last generation's children scored against their parents and writes one short
lesson; the last `KEPT_LESSONS` of them go into every later prompt.
"""

from __future__ import annotations

import json
import operator
from functools import cache, reduce
from typing import Any, Literal

from collm_nas.agents.briefing import cost_text
from collm_nas.agents.calls import (
    ask_structured,
    clean_text,
    server_url,
    split_reasoning,
    timed_invoke,
    usage_record,
)
from collm_nas.agents.llm import make_chat_model
from collm_nas.prompts import render
from collm_nas.spaces import IllegalArchitecture, SearchSpace, get_space
from collm_nas.spaces.evaluation import score
from langchain_core.messages import HumanMessage, SystemMessage
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

SOURCE = "rznas"  # a child the LLM wrote
MAX_CHANGES = 3  # dimensions one child may change
KEPT_LESSONS = 5  # lessons carried into the prompts (the newest)
LESSON_CHARS = 300  # one lesson, at most
LESSON_TOKENS = 120  # the reflection reply's token cap


@cache
def children_schema(space: SearchSpace, parents: int, size: int) -> type[BaseModel]:
    """`{"children": [{"parent": i, "changes": [{<dimension>: <value>}, ...]}] x size}`: one
    single-key object per changed dimension, so the schema allows only legal values."""
    changes = [
        create_model(f"Set_{name}", __config__=ConfigDict(extra="forbid"),
                     **{name: (Literal[tuple(values)], ...)})
        for name, values in space.dimensions.items()
    ]
    child = create_model(
        "Child",
        parent=(int, Field(ge=1, le=parents, description="the number of the parent it mutates")),
        changes=(list[reduce(operator.or_, changes)], Field(min_length=1, max_length=MAX_CHANGES,
                                               description="the dimensions it changes, each to a new value")),
    )
    return create_model(
        "Generation", children=(list[child], Field(min_length=size, max_length=size)),
    )


def llm_children(
    state: dict[str, Any], settings, parents: list[dict[str, Any]], proxy: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """One call for the generation: (children, the calls' records). A child is `{"arch",
    "parent"}`, or `{"arch": <raw>, "unreadable": reason}` for an item that could not
    be read (the Coordinator records it as illegal)."""
    space = get_space(settings.space)
    schema = children_schema(space, len(parents), settings.candidates)
    request = HumanMessage(content=render(
        "rznas_user", lessons=state.get("lessons", []), proxy=proxy, children=settings.candidates,
        max_changes=MAX_CHANGES, cost_text=cost_text(settings),
        parents=[{"genes": _genes_json(space, p), "score": f"{score(p, settings.objective):.3f}"}
                 for p in parents],
    ))
    reply = ask_structured(
        make_chat_model(settings.generator_llm, settings.seed), settings.generator_llm, schema,
        [_system(space, proxy), request], role="rznas", retries=settings.generator_retries,
        size=settings.candidates, iteration=state.get("iteration", 0) + 1, retry_prompt="rznas_retry",
        items_field="children", earlier_calls=state.get("llm_calls", []),
        give_up_rounds=settings.llm_give_up_rounds,
    )
    child_model = schema.model_fields["children"].annotation.__args__[0]
    return [_apply(space, parents, item, child_model) for item in reply.items], reply.calls


def reflect(state: dict[str, Any], settings, proxy: str) -> dict[str, Any]:
    """The lesson of the last generation (how its children's scores moved from their parents'),
    added to the kept lessons; nothing before the first LLM generation."""
    generation = state.get("generation") or {}
    children = [c for c in generation.get("children", []) if c.get("source") == SOURCE]
    if not children:
        return {}
    space = get_space(settings.space)
    known = {r["key"]: r for r in state.get("archive", [])}
    verdicts = {r["key"]: r["verdict"] for r in state.get("round_results", [])
                if r.get("iteration") == state.get("iteration") and r.get("key")}
    rows = []
    for child in children:
        parent = score(known[child["parent"]], settings.objective)
        record = known.get(child["key"])
        if record is None:
            outcome = verdicts.get(child["key"]) or "not evaluated"
        else:
            value = score(record, settings.objective)
            repeat = "" if verdicts.get(child["key"]) == "evaluated" else ", a repeat of a known architecture"
            outcome = f"{value:.3f} ({value - parent:+.3f}{repeat})"
        rows.append({"parent": f"{parent:.3f}", "change": child["change"], "outcome": outcome})
    # Earlier lessons stay out of this prompt: a small model copies them instead of reading the rows.
    request = HumanMessage(content=render("rznas_reflect", rows=rows, proxy=proxy, chars=LESSON_CHARS))
    llm = settings.navigator_llm
    llm = llm.model_copy(update={"max_tokens": min(LESSON_TOKENS, llm.max_tokens)})
    reply, seconds = timed_invoke(make_chat_model(llm, settings.seed), [_system(space, proxy), request],
                                  server=server_url(llm))
    lesson = clean_text(split_reasoning(reply)[0], LESSON_CHARS)
    call = usage_record("reflection", reply, seconds, iteration=state.get("iteration", 0) + 1, ok=bool(lesson))
    lessons = [*state.get("lessons", []), lesson][-KEPT_LESSONS:] if lesson else state.get("lessons", [])
    return {"lessons": lessons, "llm_calls": [call]}


def _system(space: SearchSpace, proxy: str) -> SystemMessage:
    return SystemMessage(content=render("rznas_system", space_description=space.describe(), proxy=proxy))


def _genes_json(space: SearchSpace, record: dict[str, Any]) -> str:
    arch = space.parse(record["arch"])
    return json.dumps(dict(zip(space.dimensions, space.genes(arch), strict=True)))


def _apply(space: SearchSpace, parents: list[dict[str, Any]], item: Any,
           child_model: type[BaseModel]) -> dict[str, Any]:
    """A child as the state holds it (`{"arch", "parent"}`): the parent's genes with the
    changes applied."""
    try:
        child = item if isinstance(item, BaseModel) else child_model.model_validate(item)
        parent = parents[child.parent - 1]
        genes = dict(zip(space.dimensions, space.genes(space.parse(parent["arch"])), strict=True))
        genes.update(next(iter(change.model_dump().items())) for change in child.changes)
        arch = space.from_genes(list(genes.values()))
    except (ValidationError, IllegalArchitecture) as err:
        reason = err.reason if isinstance(err, IllegalArchitecture) else "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'child'}: {e['msg']}" for e in err.errors()[:3])
        return {"arch": item, "unreadable": clean_text(f"the child could not be made: {reason}", 300)}
    return {"arch": arch.model_dump(), "parent": parent["key"]}

"""The ranking probe (the paper's proof of concept): can the LLM tell good cells from bad ones?

Each trial draws 10 random NAS-Bench-201 cells and asks the model, blind (no accuracies shown),
either to rank them best to worst, or to predict each one's accuracy (then sorted). Reported:
Kendall tau against the table's ranking, how often the true best is ranked first, and how often
the answer is just the order the cells were listed in; beside them, three references: that
listing order, chance (many random permutations per trial) and a "more parameters first" rule.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from collm_nas.agents.calls import ask_structured
from collm_nas.agents.llm import LLMSettings, make_chat_model
from collm_nas.evals.tables import ci_text
from collm_nas.prompts import render
from collm_nas.spaces import get_space
from collm_nas.tools.cost import shared_cost_counter
from collm_nas.tools.evaluators import make_evaluator
from langchain_core.messages import HumanMessage, SystemMessage
from pydantic import BaseModel, Field, create_model, model_validator
from scipy.stats import kendalltau

CELLS_PER_TRIAL = 10
VARIANTS = ("rank", "predict")
RANDOM_PERMUTATIONS = 1000  # per trial, for the chance reference


class _Permutation(BaseModel):
    ranking: list[int]

    @model_validator(mode="after")
    def _is_permutation(self):
        if sorted(self.ranking) != list(range(1, len(self.ranking) + 1)):
            raise ValueError(
                f"ranking must list each cell number 1..{len(self.ranking)} exactly once, "
                f"got {self.ranking}"
            )
        return self


def ranking_schema(size: int) -> type[BaseModel]:
    return create_model(
        "Ranking", __base__=_Permutation,
        ranking=(list[int], Field(min_length=size, max_length=size,
                                  description="cell numbers, best first")),
    )


def prediction_schema(size: int) -> type[BaseModel]:
    return create_model(
        "Predictions",
        accuracies=(list[float], Field(min_length=size, max_length=size,
                                       description="predicted accuracy (%) of cell 1, 2, ...")),
    )


@dataclass
class Trial:
    variant: str
    trial: int
    cells: list[str]
    true_scores: list[float]
    order: list[int] | None  # the model's order (0-based cell indices, best first); None: failed
    tau: float | None
    best_first: bool | None
    prompt_tokens: int
    completion_tokens: int
    seconds: float


def _tau_and_top(order: list[int], scores: list[float]) -> tuple[float, bool]:
    """Kendall tau between a best-first order and the true scores; is the true best first?"""
    position = {cell: rank for rank, cell in enumerate(order)}
    predicted = [-position[i] for i in range(len(scores))]  # higher = ranked better
    tau = kendalltau(predicted, scores).statistic
    return float(tau), order[0] == int(np.argmax(scores))


def run_probe(
    dataset: str, trials: int, llm: LLMSettings, seed: int = 0, variants=VARIANTS,
    data_path: str | None = None,
) -> list[Trial]:
    space = get_space("nb201")
    evaluator = make_evaluator("nb201", dataset, data_path=data_path)
    model = make_chat_model(llm, seed)
    results = []
    for trial in range(trials):
        rng = np.random.default_rng([seed, trial])
        cells = []
        while len(cells) < CELLS_PER_TRIAL:
            key = space.key(space.sample(rng))
            if key not in cells:
                cells.append(key)
        scores = [evaluator.evaluate(space.parse(c)).valid_acc for c in cells]
        listing = "\n".join(f"{i + 1}. {c}" for i, c in enumerate(cells))
        for variant in variants:
            schema = (ranking_schema if variant == "rank" else prediction_schema)(len(cells))
            messages = [
                SystemMessage(content=render("probe_system", space_description=space.describe())),
                HumanMessage(content=render(f"probe_{variant}", dataset=dataset, cells=listing,
                                            size=len(cells))),
            ]
            reply = ask_structured(model, llm, schema, messages, role="probe", retries=1,
                                   size=len(cells), iteration=trial, retry_prompt="probe_retry",
                                   items_field=None)
            order = None
            if reply.parsed is not None:
                if variant == "rank":
                    order = [i - 1 for i in reply.parsed.ranking]
                else:
                    order = sorted(range(len(cells)), key=lambda i: -reply.parsed.accuracies[i])
            tau, best_first = _tau_and_top(order, scores) if order else (None, None)
            results.append(Trial(
                variant, trial, cells, scores, order, tau, best_first,
                sum(c["prompt_tokens"] for c in reply.calls),
                sum(c["completion_tokens"] for c in reply.calls),
                round(sum(c["seconds"] for c in reply.calls), 2),
            ))
    return results


def reference_rankings(dataset: str, trials: list[Trial]) -> dict[str, dict[str, float]]:
    """What the listing order, chance and the "more parameters first" rule score on the same cells."""
    space = get_space("nb201")
    counter = shared_cost_counter("nb201", dataset)
    rng = np.random.default_rng(0)
    scored: dict[str, list[tuple[float, bool]]] = {
        "order shown": [], "random order": [], "more parameters first": []}
    seen = set()
    for t in trials:
        if t.trial in seen:
            continue
        seen.add(t.trial)
        n = len(t.cells)
        params = [counter(space.parse(c)).params_m for c in t.cells]
        scored["order shown"].append(_tau_and_top(list(range(n)), t.true_scores))
        scored["random order"] += [_tau_and_top([int(i) for i in rng.permutation(n)], t.true_scores)
                                   for _ in range(RANDOM_PERMUTATIONS)]
        scored["more parameters first"].append(
            _tau_and_top(sorted(range(n), key=lambda i: -params[i]), t.true_scores))
    return {name: {"tau": float(np.nanmean([tau for tau, _ in pairs])),
                   "best_first": float(np.mean([top for _, top in pairs]))}
            for name, pairs in scored.items()}


def probe_table(dataset: str, trials: list[Trial], llm_name: str) -> str:
    lines = [
        "| ranker | trials answered | Kendall tau (mean ± 95% CI) | true best ranked first |"
        " answer = order shown | s per call |",
        "|---|---|---|---|---|---|",
    ]
    for variant in dict.fromkeys(t.variant for t in trials):
        runs = [t for t in trials if t.variant == variant]
        ok = [t for t in runs if t.tau is not None and not np.isnan(t.tau)]
        top = sum(bool(t.best_first) for t in ok)
        echoed = sum(t.order == list(range(len(t.cells))) for t in runs)
        secs = statistics.mean(t.seconds for t in runs)
        lines.append(f"| {llm_name}, {variant} | {len(ok)}/{len(runs)} | {ci_text([t.tau for t in ok], 3)}"
                     f" | {top}/{len(runs)} | {echoed}/{len(runs)} | {secs:.1f} |")
    for name, ref in reference_rankings(dataset, trials).items():
        lines.append(f"| {name} | — | {ref['tau']:+.3f} | {ref['best_first']:.0%} | — | — |")
    return "\n".join(lines)


def write_probe(dataset: str, trials: list[Trial], llm_name: str, out: Path, command: str) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    text = (
        f"# Ranking probe: {dataset}, {CELLS_PER_TRIAL} random NAS-Bench-201 cells per trial\n\n"
        f"Command: `{command}`\n\nDate: {time.strftime('%Y-%m-%d')}. The model sees the cells only "
        "(no accuracies); truth is the table's valid accuracy. `rank`: the model orders the cells "
        "best first; `predict`: it predicts each cell's accuracy and the cells are sorted by it.\n\n"
        + probe_table(dataset, trials, llm_name) + "\n"
    )
    out.write_text(text)
    out.with_suffix(".json").write_text(json.dumps([asdict(t) for t in trials], indent=1))
    return out


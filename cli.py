"""`collm-nas`: the command line, and the composition root of the project."""

from __future__ import annotations

import os

# llama.cpp's OpenMP threads busy-wait by default and starve each other when another process
# holds a core; it must be set before torch or llama_cpp is first imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import json  # noqa: E402
import time
import traceback
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from collm_nas.agents.llm import DEFAULT_LOCAL_MODEL, LLMSettings
from collm_nas.errors import CollmNasError
from collm_nas.evals.bench import RunSpec, is_llm_free, method, run_bench, write_outputs
from collm_nas.evals.progress import SearchProgress
from collm_nas.evals.report import write_report
from collm_nas.graph.provenance import command_line, provenance
from collm_nas.spaces import get_space
from collm_nas.tools.cost import CostLimit
from pydantic import ValidationError
from rich.console import Console

app = typer.Typer(help="LLM-guided neural architecture search (CoLLM-NAS).", no_args_is_help=True)
data_app = typer.Typer(help="Prepare benchmark data files.", no_args_is_help=True)
app.add_typer(data_app, name="data")
supernet_app = typer.Typer(help="Stage one: train weight-sharing supernets and judge them.",
                           no_args_is_help=True)
app.add_typer(supernet_app, name="supernet")
console = Console(stderr=True)


class UserError(CollmNasError):
    """A problem with the user's input or environment: printed as one line, exit code 2."""


_options = {"debug": False}  # the global options of this invocation, set by `main`


@app.callback()
def main(
    debug: Annotated[bool, typer.Option("--debug", envvar="COLLM_NAS_DEBUG",
                                        help="show the full traceback of every error")] = False,
):
    """LLM-guided neural architecture search (CoLLM-NAS)."""
    _options["debug"] = debug


def _fail(message: str) -> None:
    if _options["debug"]:
        traceback.print_exc()
    console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def validation_line(error: ValidationError) -> str:
    """A pydantic validation error as one line: `invalid Model: field: problem (got x); ...`,
    naming the environment variable a bad value may have come from."""
    from collm_nas.graph.context import ENV_PREFIX

    problems = []
    for item in error.errors(include_url=False):
        message = item["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
        if not item["loc"]:  # a whole-model check: its message says it all
            problems.append(message)
            continue
        where = ".".join(str(part) for part in item["loc"])
        variable = ENV_PREFIX + "__".join(str(part) for part in item["loc"]).upper()
        if variable in os.environ:
            where += f" (${variable})"
        problems.append(f"{where}: {message} (got {item['input']!r})")
    return f"invalid {error.title}: " + "; ".join(problems)


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def cost_limit(
    max_flops: float | None, max_params: float | None, max_latency: float | None = None
) -> CostLimit | None:
    given = {name: value for name, value in (
        ("flops", max_flops), ("params", max_params), ("latency", max_latency)) if value is not None}
    if len(given) > 1:
        raise UserError("give one of --max-flops, --max-params, --max-latency, not several")
    if not given:
        return None
    [(kind, value)] = given.items()
    if value <= 0:
        unit = "milliseconds" if kind == "latency" else "millions"
        raise UserError(f"--max-{kind} must be positive ({unit}), got {value:g}")
    return CostLimit(kind, value)


def _load_benches(runs: list[Path]) -> list:
    """Bench runs from JSON files: all must exist and share one objective."""
    from collm_nas.evals.tables import load_runs

    missing = [str(p) for p in runs if not p.exists()]
    if missing:
        raise UserError(f"no such bench file: {', '.join(missing)}")
    loaded = load_runs(runs)
    if len({r.objective for r in loaded}) > 1:
        raise UserError("these runs mix objectives (valid and test); use one objective per file")
    return loaded


def _guarded(run):
    """Run a command body: our errors and invalid settings print one line (exit 2); anything
    else is a bug and prints its full traceback (exit 1)."""
    try:
        return run()
    except CollmNasError as err:
        _fail(str(err))
    except ValidationError as err:
        _fail(validation_line(err))
    except (typer.Exit, typer.Abort):
        raise
    except Exception:
        traceback.print_exc()
        raise typer.Exit(1) from None


@app.command()
def bench(
    ctx: typer.Context,
    space: Annotated[str, typer.Option(help="search space")] = "nb201",
    methods: Annotated[str, typer.Option(help="comma-separated methods")] = "rs,rl,ea,rea",
    datasets: Annotated[str | None, typer.Option(help="comma-separated datasets (default: every dataset of the space)")] = None,
    runs: Annotated[int, typer.Option(help="seeds per method and dataset")] = 10,
    seed: Annotated[int, typer.Option(help="first seed")] = 0,
    budget: Annotated[int, typer.Option(help="distinct architectures evaluated per run")] = 100,
    objective: Annotated[str, typer.Option(help="valid | test: the accuracy the search maximises")] = "valid",
    max_flops: Annotated[float | None, typer.Option(help="FLOPs limit, millions")] = None,
    max_params: Annotated[float | None, typer.Option(help="params limit, millions")] = None,
    max_latency: Annotated[float | None, typer.Option(help="latency limit, ms on a Samsung Note10 (OFA's tables; mobilenet)")] = None,
    data: Annotated[Path | None, typer.Option(help="data file or folder (else $COLLM_NAS_DATA)")] = None,
    evaluator: Annotated[str | None, typer.Option(help="evaluator kind (the space's default if none; see `collm-nas spaces`)")] = None,
    evaluator_option: Annotated[list[str] | None, typer.Option(help="KEY=VALUE for the evaluator, repeatable (e.g. device=cuda)")] = None,
    llm: Annotated[str, typer.Option(help="LLM methods: backend[:model][@url], both roles")] = "local",
    iterations: Annotated[int | None, typer.Option(help="LLM methods: rounds at most (default: enough for the budget)")] = None,
    population: Annotated[int, typer.Option(help="rznas methods: population size")] = 20,
    executor: Annotated[str, typer.Option(help="LLM methods: local (threads) | ray (a Ray cluster; pip install 'collm-nas[ray]')")] = "local",
    ray_address: Annotated[str, typer.Option(help="LLM methods, --executor ray: '' starts a local cluster; auto; ray://host:port")] = "",
    eval_workers: Annotated[int, typer.Option(help="LLM methods, --executor ray: workers, each with its own evaluator")] = 2,
    gpus_per_eval: Annotated[float, typer.Option(help="LLM methods, --executor ray: GPUs per worker")] = 0.0,
    cpus_per_eval: Annotated[float, typer.Option(help="LLM methods, --executor ray: CPUs per worker")] = 1.0,
    llm_timeout: Annotated[float | None, typer.Option(help="seconds an LLM server may send nothing before a request is given up (replies that keep streaming are not cut off; default 90)")] = None,
    llm_retries: Annotated[int | None, typer.Option(help="retries per LLM request after a timeout, lost connection or HTTP 408/409/429/5xx (default 2)")] = None,
    out: Annotated[Path, typer.Option(help="markdown table; .json and .png are written beside it")] = Path("results/bench.md"),
):
    """Run search methods x datasets x seeds and write a table, every run as JSON, and a plot."""

    def body():
        if objective not in ("valid", "test"):
            raise UserError(f"--objective must be 'valid' or 'test', got {objective!r}")
        if budget < 1:
            raise UserError(f"--budget must be at least 1, got {budget}")
        if runs < 1:
            raise UserError(f"--runs must be at least 1, got {runs}")
        limit = cost_limit(max_flops, max_params, max_latency)
        method_names = _split(methods)
        dataset_names = _split(datasets) if datasets else list(get_space(space).datasets)
        for name in method_names:
            method(name)  # an unknown name fails here, before any run
        model = llm_spec(llm, LLMSettings(**_transport(llm_timeout, llm_retries)))
        options = {"navigator_llm": model, "generator_llm": model, **_typed(ctx, {
            **_executor_fields(executor, ray_address, eval_workers, gpus_per_eval, cpus_per_eval),
            "evaluator": ("evaluator", evaluator),
            "evaluator_options": ("evaluator_option", key_values(evaluator_option or [])),
            "population": ("population", population),
        })}
        if iterations is not None:
            if iterations < 1:
                raise UserError(f"--iterations must be at least 1, got {iterations}")
            options["iterations"] = iterations
        specs = [
            RunSpec(m, space, d, objective, s, budget, limit, str(data) if data else None, options)
            for d in dataset_names for m in method_names for s in range(seed, seed + runs)
        ]
        done = []

        def report(result):
            done.append(result)
            console.print(
                f"[{len(done)}/{len(specs)}] {result.method} {result.dataset} seed {result.seed}: "
                f"test {result.test_acc:.2f} valid {result.valid_acc:.2f} "
                f"({result.evaluations} evals, {result.wall_seconds:.2f} s)",
                highlight=False,
            )
            if not is_llm_free(result.method):  # slow runs: keep each one even if the bench dies
                partial.write_text(json.dumps([asdict(r) for r in done], indent=1))

        partial = out.with_suffix(".partial.json")
        command = command_line()
        llms = {"both roles": model} if any(not is_llm_free(m) for m in method_names) else None
        started = provenance(command, llms)  # the commit that ran, should the tree move meanwhile
        results = run_bench(specs, on_result=report)
        paths = write_outputs(results, out, command, llms=llms, made_by=started)
        partial.unlink(missing_ok=True)
        print(paths["table"].read_text())
        console.print(f"wrote {', '.join(str(p) for p in paths.values())}")

    _guarded(body)


@data_app.command("nb201")
def data_nb201(
    source: Annotated[Path, typer.Option("--from", help="NAS-Bench-201 .pth or NATS-Bench tss file/folder")],
    out: Annotated[Path | None, typer.Option(help="output CSV (default: the user data dir)")] = None,
):
    """Convert an official NAS-Bench-201 / NATS-Bench topology file into the project's table."""
    from collm_nas.tools.data import user_data_dir
    from collm_nas.tools.nb201_convert import convert_nb201

    def body():
        target = out or user_data_dir() / "nb201.csv"
        rows = convert_nb201(source, target)
        console.print(f"wrote {rows} cells to {target}")

    _guarded(body)


def _transport(timeout: float | None, retries: int | None) -> dict:
    """The LLM transport settings that were given (--llm-timeout, --llm-retries)."""
    given = {"timeout": timeout, "max_retries": retries}
    return {name: value for name, value in given.items() if value is not None}


def llm_spec(spec: str | None, defaults: LLMSettings) -> LLMSettings:
    """`backend[:model][@base_url]`, e.g. `vllm:Qwen/Qwen3-30B-A3B@http://127.0.0.1:8000/v1`."""
    return LLMSettings.model_validate({**defaults.model_dump(), **llm_changes(spec, defaults.backend)})


def llm_changes(spec: str | None, default_backend: str) -> dict:
    """The LLM fields a `backend[:model][@base_url]` spec sets; a backend other than the default
    without a model gets the embedded model (a served model must be named)."""
    if not spec:
        return {}
    head, _, url = spec.partition("@")
    backend, _, model = head.partition(":")
    changes = {"backend": backend}
    if model:
        changes["model"] = model
    elif backend != default_backend:
        if backend in ("openai", "vllm"):
            raise UserError(f"{spec!r}: name the served model, e.g. {backend}:MODEL@URL")
        changes["model"] = DEFAULT_LOCAL_MODEL
    if url:
        changes["base_url"] = url
    return changes


def _typed(context: typer.Context, fields: dict[str, tuple[str, object]]) -> dict:
    """`{field: value}` for the fields (`field: (option, value)`) whose option the user typed."""
    typed = {name for name in context.params
             if context.get_parameter_source(name).name not in ("DEFAULT", "DEFAULT_MAP")}
    return {field: value for field, (option, value) in fields.items() if option in typed and value is not None}


def key_values(items: list[str]) -> dict[str, object]:
    """`KEY=VALUE` options as a dict; a value that reads as JSON (a number, true/false) is taken
    as that, anything else as text."""
    values: dict[str, object] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"evaluator options are KEY=VALUE, got {item!r}")
        try:
            values[key.strip()] = json.loads(text)
        except ValueError:
            values[key.strip()] = text
    return values


def _executor_fields(executor: str, address: str, workers: int, gpus: float, cpus: float) -> dict[str, tuple[str, object]]:
    """The executor settings, each with the option it comes from (for `_typed`)."""
    return {"executor": ("executor", executor), "ray_address": ("ray_address", address),
            "eval_workers": ("eval_workers", workers), "gpus_per_eval": ("gpus_per_eval", gpus),
            "cpus_per_eval": ("cpus_per_eval", cpus)}


@app.command()
def search(
    ctx: typer.Context,
    space: Annotated[str, typer.Option(help="search space")] = "nb201",
    dataset: Annotated[str | None, typer.Option(help="dataset (default: the space's first; see `collm-nas spaces`)")] = None,
    objective: Annotated[str, typer.Option(help="valid | test")] = "valid",
    evaluator: Annotated[str | None, typer.Option(help="evaluator kind (the space's default if none; see `collm-nas spaces`)")] = None,
    evaluator_option: Annotated[list[str] | None, typer.Option(help="KEY=VALUE for the evaluator, repeatable (e.g. device=cuda)")] = None,
    llm: Annotated[str, typer.Option(help="local | openai | vllm (both roles) | none (no LLM)")] = "local",
    mode: Annotated[str, typer.Option(help="collm (statistics-steered) | collm-nollm (no LLM, as --llm none) | paper (Algorithm 1) | sillm (as --single-llm) | rznas (RZ-NAS: LLM mutation on a zero-cost proxy) | rznas-nollm (as rznas with --llm none)")] = "collm",
    sources: Annotated[str | None, typer.Option(help="code candidate sources, comma-separated")] = None,
    navigator_llm: Annotated[str | None, typer.Option(help="backend[:model][@url] for the Navigator")] = None,
    generator_llm: Annotated[str | None, typer.Option(help="backend[:model][@url] for the Generator")] = None,
    base_url: Annotated[str | None, typer.Option(help="OpenAI-compatible endpoint")] = None,
    model: Annotated[str | None, typer.Option(help="model name (or GGUF path for local)")] = None,
    structured_method: Annotated[str | None, typer.Option(help="json_schema | function_calling | json_mode")] = None,
    reasoning: Annotated[bool | None, typer.Option("--reasoning/--no-reasoning", help="Qwen3 thinking on vLLM")] = None,
    llm_timeout: Annotated[float | None, typer.Option(help="seconds an LLM server may send nothing before a request is given up (replies that keep streaming are not cut off; default 90)")] = None,
    llm_retries: Annotated[int | None, typer.Option(help="retries per LLM request after a timeout, lost connection or HTTP 408/409/429/5xx (default 2)")] = None,
    temperature: Annotated[float, typer.Option(help="sampling temperature, both roles")] = 0.6,
    budget: Annotated[int, typer.Option(help="distinct architectures evaluated at most")] = 100,
    iterations: Annotated[int, typer.Option(help="Navigator-Generator rounds at most")] = 20,
    candidates: Annotated[int, typer.Option(help="architectures per Generator call")] = 10,
    population: Annotated[int, typer.Option(help="rznas modes: population size")] = 20,
    prescreen: Annotated[str | None, typer.Option(help="collm modes: rank a 5x larger pool of code candidates by this zero-cost proxy (e.g. synflow), evaluate the best")] = None,
    target: Annotated[float | None, typer.Option(help="stop at this accuracy")] = None,
    max_flops: Annotated[float | None, typer.Option(help="FLOPs limit, millions")] = None,
    max_params: Annotated[float | None, typer.Option(help="params limit, millions")] = None,
    max_latency: Annotated[float | None, typer.Option(help="latency limit, ms on a Samsung Note10 (OFA's tables; mobilenet)")] = None,
    seed: Annotated[int, typer.Option()] = 0,
    navigator_memory: Annotated[bool, typer.Option("--navigator-memory/--no-navigator-memory")] = True,
    generator_memory: Annotated[bool, typer.Option("--generator-memory/--no-generator-memory")] = False,
    single_llm: Annotated[bool, typer.Option("--single-llm", help="SiLLM-NAS variant (as --mode sillm)")] = False,
    executor: Annotated[str, typer.Option(help="local (threads) | ray (a Ray cluster; pip install 'collm-nas[ray]')")] = "local",
    ray_address: Annotated[str, typer.Option(help="with --executor ray: '' starts a local cluster; auto; ray://host:port")] = "",
    eval_workers: Annotated[int, typer.Option(help="with --executor ray: workers, each with its own evaluator")] = 2,
    gpus_per_eval: Annotated[float, typer.Option(help="with --executor ray: GPUs per worker")] = 0.0,
    cpus_per_eval: Annotated[float, typer.Option(help="with --executor ray: CPUs per worker")] = 1.0,
    data: Annotated[Path | None, typer.Option(help="data file or folder (else $COLLM_NAS_DATA)")] = None,
    run_dir: Annotated[Path | None, typer.Option(help="run folder (default runs/<id>)")] = None,
    resume: Annotated[str | None, typer.Option(help="continue the stopped run with this id")] = None,
    fake_script: Annotated[Path | None, typer.Option(hidden=True, help="tests: JSON list of replies for --llm fake")] = None,
):
    """Run a CoLLM-NAS search (or resume one) and write its run folder."""
    from collm_nas.graph.context import SearchSettings
    from collm_nas.graph.run import RunFolder, load_run_settings, run_search

    def body():
        if resume:
            folder = run_dir or Path("runs") / resume
            if not (folder / "config.json").exists():
                raise UserError(f"no run {resume!r} in {folder} (config.json missing); pass --run-dir")
            thread_id, settings = load_run_settings(folder)
            if thread_id != resume:
                raise UserError(f"{folder} holds run {thread_id!r}, not {resume!r}; pass --resume "
                                f"{thread_id}, or the folder of run {resume!r} with --run-dir")
        else:
            if objective not in ("valid", "test"):
                raise UserError(f"--objective must be 'valid' or 'test', got {objective!r}")
            if budget < 1:
                raise UserError(f"--budget must be at least 1, got {budget}")
            limit = cost_limit(max_flops, max_params, max_latency)
            if llm in ("openai", "vllm") and not model:
                raise UserError(f"--llm {llm} needs --model (the model name the server serves)")
            chosen = search_mode(mode, llm, single_llm)
            # Each setting, role field: (the option it comes from, its value). Only typed options
            # are passed; the rest come from $COLLM_NAS_* (graph/context.py) or the defaults, and a
            # typed field of an LLM role merges with the environment's other fields of that role.
            both_roles = _typed(ctx, {
                "backend": ("llm", llm if llm != "none" else None), "temperature": ("temperature", temperature),
                "model": ("model", model), "base_url": ("base_url", base_url),
                "structured_method": ("structured_method", structured_method), "reasoning": ("reasoning", reasoning),
                "script": ("fake_script", json.loads(fake_script.read_text()) if fake_script else None),
                "timeout": ("llm_timeout", llm_timeout), "max_retries": ("llm_retries", llm_retries),
            })
            roles = {field: {**both_roles, **llm_changes(spec, both_roles.get("backend", "local"))}
                     for field, spec in (("navigator_llm", navigator_llm), ("generator_llm", generator_llm))}
            # The mode is typed when --mode is, or one of its aliases (--llm none, --single-llm).
            mode_typed = _typed(ctx, {"mode": ("mode", mode), "single_llm": ("single_llm", single_llm or None),
                                      "llm": ("llm", "none" if llm == "none" else None)})
            settings = SearchSettings(**_typed(ctx, {
                "space": ("space", space), "dataset": ("dataset", dataset), "objective": ("objective", objective),
                "evaluator": ("evaluator", evaluator),
                "data_path": ("data", str(data.expanduser().absolute()) if data else None),
                "evaluator_options": ("evaluator_option", key_values(evaluator_option or [])),
                "target": ("target", target), "iterations": ("iterations", iterations),
                "budget": ("budget", budget), "candidates": ("candidates", candidates),
                "population": ("population", population), "prescreen": ("prescreen", prescreen),
                "navigator_memory": ("navigator_memory", navigator_memory),
                "generator_memory": ("generator_memory", generator_memory),
                "seed": ("seed", seed), "sources": ("sources", _split(sources) if sources else None),
                **_executor_fields(executor, ray_address, eval_workers, gpus_per_eval, cpus_per_eval),
            }), **({"mode": chosen} if mode_typed else {}),
                **({"cost_kind": limit.kind, "max_cost": limit.bound} if limit else {}),
                **{field: role for field, role in roles.items() if role})
            check_search_inputs(settings)
            thread_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
            folder = run_dir or Path("runs") / thread_id
        # The folder is claimed (locked, checked) before the progress display starts, so that a
        # folder in use or of another run is one line of error.
        with RunFolder(folder, thread_id) as claimed, SearchProgress(settings, console) as progress:
            result = run_search(settings, run_dir=claimed, thread_id=thread_id,
                                resume=bool(resume), on_event=progress.update)
        write_report(folder)
        console.print(f"run {result.thread_id}: {result.stop_reason}; folder {folder}")
        print((folder / "summary.md").read_text())

    _guarded(body)


def search_mode(mode: str, llm: str, single_llm: bool) -> str:
    """The mode `--mode` names, with `--llm none` (collm-nollm, or rznas-nollm with --mode
    rznas) and `--single-llm` (sillm) as aliases."""
    from collm_nas.graph.context import LLM_FREE_MODES, MODES

    if mode not in MODES:
        raise UserError(f"--mode must be one of {', '.join(MODES)}, got {mode!r}")
    chosen = "sillm" if single_llm else mode
    if llm != "none":
        return chosen
    if chosen in LLM_FREE_MODES.values():
        return chosen
    if chosen not in LLM_FREE_MODES:
        raise UserError(f"mode {chosen!r} needs the LLM: the LLM-free loops are "
                        f"{', '.join(LLM_FREE_MODES.values())} (or collm and rznas with --llm none)")
    return LLM_FREE_MODES[chosen]


def check_search_inputs(settings) -> None:
    """Fail before any LLM call on settings that cannot work; warn on a limit that leaves
    (almost) nothing to search."""
    get_space(settings.space)
    settings.evaluator_spec().build()  # with the run's evaluator options (e.g. a checkpoint)
    if settings.cost_limit() is not None:
        warning = limit_warning(settings)
        if warning:
            console.print(f"[bold yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)


LIMIT_SAMPLES = 100  # random architectures a cost limit is tried on
LIMIT_ENOUGH = 2  # allowed ones that show the limit leaves a real space (stops the sampling)


def limit_warning(settings) -> str | None:
    """A warning when the cost limit allows fewer than `LIMIT_ENOUGH` of `LIMIT_SAMPLES`
    random architectures (about 1 % of the space or less); None when it leaves enough."""
    import numpy as np

    space, limit, count = get_space(settings.space), settings.cost_limit(), settings.cost_counter()
    rng = np.random.default_rng(settings.seed)
    allowed, smallest = 0, float("inf")
    for _ in range(LIMIT_SAMPLES):
        value = count(space.sample(rng)).value(limit.kind)
        allowed += value <= limit.bound
        smallest = min(smallest, value)
        if allowed >= LIMIT_ENOUGH:
            return None
    return (f"--max-{limit.kind} {limit.bound:g} allows {allowed} of {LIMIT_SAMPLES} random "
            f"{settings.space} architectures (the smallest has {smallest:.3g} {limit.unit}); "
            "the search will find few or none: raise the limit")


@app.command()
def table(
    runs: Annotated[list[Path], typer.Argument(help="bench JSON files (written beside each bench table)")],
    out: Annotated[Path, typer.Option(help="markdown file (.png plot beside it)")] = Path("results/table.md"),
    note: Annotated[str, typer.Option(help="a paragraph to print under the header")] = "",
):
    """Merge bench runs into one comparison table, the LLM-vs-rule table and source shares."""
    from collm_nas.evals.tables import write_tables

    def body():
        loaded = _load_benches(runs)
        command = command_line()
        paths = write_tables(loaded, out, command, note, inputs=runs)
        print(paths["table"].read_text())

    _guarded(body)


@app.command()
def merge(
    runs: Annotated[list[Path], typer.Argument(help="bench JSON files, e.g. one per seed")],
    out: Annotated[Path, typer.Option(help="markdown file (.json and .png beside it)")],
    note: Annotated[str, typer.Option(help="a paragraph to print under the header, e.g. the "
                                           "commands that made the parts")] = "",
):
    """Merge benches run in separate processes into one bench output (table, JSON, plot)."""
    from collm_nas.evals.bench import write_outputs

    def body():
        loaded = _load_benches(runs)  # a run given twice counts once; two outcomes are refused
        command = command_line()
        paths = write_outputs(loaded, out, command, note, inputs=runs)
        print(paths["table"].read_text())

    _guarded(body)


@app.command("probe-ranking")
def probe_ranking(
    dataset: Annotated[str, typer.Option(help="cifar10 | cifar100 | imagenet16")] = "cifar10",
    trials: Annotated[int, typer.Option(help="sets of 10 random cells")] = 40,
    llm: Annotated[str, typer.Option(help="backend[:model][@url]")] = "local",
    variants: Annotated[str, typer.Option(help="rank, predict (comma-separated)")] = "rank,predict",
    seed: Annotated[int, typer.Option()] = 0,
    data: Annotated[Path | None, typer.Option(help="data file or folder (else $COLLM_NAS_DATA)")] = None,
    out: Annotated[Path | None, typer.Option(help="markdown table (.json beside it)")] = None,
):
    """The paper's ranking probe: blind ranking of 10 random cells, Kendall tau vs the table."""
    from collm_nas.evals.probe import VARIANTS, run_probe, write_probe

    def body():
        if trials < 1:
            raise UserError(f"--trials must be at least 1, got {trials}")
        chosen = _split(variants)
        if not chosen or any(v not in VARIANTS for v in chosen):
            raise UserError(f"--variants must be from {', '.join(VARIANTS)}, got {variants!r}")
        settings = llm_spec(llm, LLMSettings())
        from collm_nas.tools.evaluators import make_evaluator

        make_evaluator("nb201", dataset, data_path=str(data) if data else None)  # fail early
        results = run_probe(dataset, trials, settings, seed, chosen, str(data) if data else None)
        command = command_line()
        path = write_probe(dataset, results, f"{settings.backend}:{settings.model}",
                           out or Path(f"results/probe_ranking_{dataset}.md"), command)
        print(path.read_text())

    _guarded(body)


@app.command()
def proxies(
    space: Annotated[str, typer.Option(help="a space whose truth covers it (nb201)")] = "nb201",
    dataset: Annotated[str, typer.Option(help="cifar10 | cifar100 | imagenet16")] = "cifar10",
    proxies: Annotated[str, typer.Option(help="comma-separated proxy names")] = "synflow,zen,params,flops",
    sample: Annotated[int, typer.Option(help="networks for the torch proxies")] = 100,
    seed: Annotated[int, typer.Option()] = 0,
    input: Annotated[str, typer.Option(help="gaussian | fashion-mnist (data-dependent proxies)")] = "gaussian",
    batch: Annotated[int, typer.Option(help="inputs per batch for data-dependent proxies")] = 64,
    truth: Annotated[str | None, typer.Option(help="evaluator of the true accuracies")] = None,
    data: Annotated[Path | None, typer.Option(help="data file or folder (else $COLLM_NAS_DATA)")] = None,
    out: Annotated[Path | None, typer.Option(help="markdown table (.json beside it)")] = None,
):
    """Zero-cost proxies vs the true accuracies: Kendall, Spearman, top-10 % hits, time."""
    from collm_nas.evals.proxies import limit_threads, run_study, write_study
    from collm_nas.tools.proxies import INPUTS, check_proxy

    def body():
        names = [check_proxy(name) for name in _split(proxies)]
        if not names:
            raise UserError("--proxies names no proxy")
        if sample < 2 or batch < 2:
            raise UserError(f"--sample and --batch must be at least 2, got {sample} and {batch}")
        if input not in INPUTS:
            raise UserError(f"--input must be one of {', '.join(INPUTS)}, got {input!r}")
        limit_threads()
        path = out or Path(f"results/proxies_{space}_{dataset}.md")
        command = command_line()
        study = run_study(space, dataset, names, sample, seed, input, batch,
                          str(data) if data else None, truth,
                          progress=lambda partial: write_study(partial, path, command))
        print(write_study(study, path, command).read_text())

    _guarded(body)


def _supernet_file(space: str, data: str) -> Path:
    from collm_nas.tools.data import user_data_dir

    name = data if data in ("fashion-mnist", "cifar10") else "imagenet"
    return user_data_dir() / "supernets" / f"{space}-{name}.pt"


@supernet_app.command("train")
def supernet_train(
    space: Annotated[str, typer.Option(help="the supernet's space: shufflenet or autoformer")] = "shufflenet",
    data: Annotated[str, typer.Option(help="fashion-mnist | cifar10 | an ImageFolder root with train/ and val/")] = "fashion-mnist",
    data_root: Annotated[Path | None, typer.Option(help="where the images are, if not in their default place")] = None,
    epochs: Annotated[int, typer.Option()] = 5,
    width: Annotated[float, typer.Option(help="channel multiplier of the preset")] = 1.0,
    batch_size: Annotated[int, typer.Option()] = 128,
    optimizer: Annotated[str, typer.Option(help="adam | sgd (momentum 0.9, Nesterov)")] = "adam",
    lr: Annotated[float | None, typer.Option(help="initial learning rate, cosine to zero (default: adam 0.002, sgd 0.1)")] = None,
    same_start: Annotated[bool, typer.Option(help="start every path as nearly the same network (else independent random units, as the official trainer)")] = True,
    train_images: Annotated[int | None, typer.Option(help="train on the first N training images")] = None,
    flops_bins: Annotated[int, typer.Option(help="0: uniform paths; N: a random FLOPs bin of N, then a path in it")] = 0,
    seed: Annotated[int, typer.Option()] = 0,
    out: Annotated[Path | None, typer.Option(help="checkpoint (default: the user data dir, where the supernet evaluator looks)")] = None,
    resume: Annotated[bool, typer.Option(help="continue the checkpoint at --out")] = False,
):
    """Train a weight-sharing supernet (SPOS ShuffleNet, AutoFormer) with uniform single-path
    sampling; a checkpoint after each epoch."""
    import torch
    from collm_nas.evals.supernet import write_training_curve
    from collm_nas.spaces.shufflenet import ShuffleNetSpace
    from collm_nas.tools.image_data import load_splits
    from collm_nas.tools.supernet_train import (
        Recipe,
        SupernetRun,
        load_checkpoint,
        train_supernet,
        training_bar,
    )
    from collm_nas.tools.supernets import FAMILIES, default_preset

    def body():
        if space not in FAMILIES:
            raise UserError(f"supernet training is built for {', '.join(FAMILIES)}, not {space!r}")
        if space != "shufflenet" and width != 1.0:
            raise UserError("--width applies to the shufflenet supernet only")
        rate = lr if lr is not None else {"adam": 2e-3, "sgd": 0.1}.get(optimizer)
        if optimizer not in ("adam", "sgd"):
            raise UserError(f"--optimizer must be adam or sgd, got {optimizer!r}")
        if epochs < 1 or batch_size < 1 or rate <= 0 or width <= 0 or flops_bins < 0:
            raise UserError("--epochs and --batch-size must be at least 1; --lr and --width positive")
        target = out or _supernet_file(space, data)
        splits = load_splits(data, root=str(data_root) if data_root else None)
        dataset = splits.name if splits.name != "folder" else "imagenet"
        if resume:
            run, state = load_checkpoint(target)
            if run.epoch >= epochs:
                raise UserError(f"{target} already has {run.epoch} epochs; ask for more with --epochs")
            run.recipe = Recipe(**{**asdict(run.recipe), "epochs": epochs})
        else:
            if target.exists():
                raise UserError(f"{target} exists: add --resume to continue it, or choose another --out")
            recipe = Recipe(epochs=epochs, batch_size=batch_size, optimizer=optimizer, lr=rate,
                            train_images=train_images, seed=seed)
            preset = (ShuffleNetSpace().preset(dataset, width) if space == "shufflenet"
                      else default_preset(space, dataset))
            torch.manual_seed(seed)  # the supernet's initial weights
            run = SupernetRun(space, dataset, preset, recipe, flops_bins, same_start)
            run.model, state = FAMILIES[space].supernet(preset, same_start), None
        console.print(f"training {target} from epoch {run.epoch} to {epochs} on {splits.source}")
        with training_bar(console, run.epoch, epochs) as (on_batch, on_epoch):
            train_supernet(run, splits, target, on_batch, on_epoch, state)
        curve = write_training_curve(run.history, target.with_suffix(".png"))
        console.print(f"wrote {target} ({target.stat().st_size / 1e6:.1f} MB) and {curve}")

    _guarded(body)


@supernet_app.command("verify")
def supernet_verify(
    checkpoint: Annotated[Path | None, typer.Option(help="supernet checkpoint (default: the user data dir's fashion-mnist one of --space)")] = None,
    space: Annotated[str, typer.Option(help="the space of the default checkpoint: shufflenet or autoformer")] = "shufflenet",
    subnets: Annotated[int, typer.Option(help="paths to train from scratch")] = 30,
    paths: Annotated[str | None, typer.Option(help="comma-separated path keys to train instead of sampled ones (e.g. the ones searches chose)")] = None,
    epochs: Annotated[int, typer.Option(help="stand-alone training epochs per path")] = 2,
    train_images: Annotated[int | None, typer.Option(help="train each path on the first N training images")] = None,
    calib_batches: Annotated[int, typer.Option(help="training batches that recalibrate BatchNorm")] = 20,
    valid_images: Annotated[int | None, typer.Option(help="score on the first N validation images")] = None,
    test_images: Annotated[int | None, typer.Option(help="report on the first N test images")] = None,
    seed: Annotated[int, typer.Option(help="seed of the path sample")] = 0,
    train_seeds: Annotated[str | None, typer.Option(help="comma-separated stand-alone training seeds (default: the supernet's); with two or more, each path's truth is their mean and the seeds' own agreement is reported")] = None,
    truth: Annotated[str | None, typer.Option(help="benchmark: take each path's accuracy from the space's table (nb201) instead of training it")] = None,
    data_root: Annotated[Path | None, typer.Option(help="where the supernet's dataset is (a torchvision CIFAR-10 root; Fashion-MNIST: when not in its Debian place)")] = None,
    out: Annotated[Path, typer.Option(help="markdown table (.json and .png beside it)")] = Path("results/shufflenet_verify.md"),
):
    """Rank agreement of supernet-inherited and stand-alone accuracy (Kendall, Spearman, top-k)."""
    from collm_nas.evals.supernet import verify, write_verify
    from collm_nas.tools.evaluators.weight_sharing import WeightSharingEvaluator
    from collm_nas.tools.supernet_train import Recipe

    def body():
        keys = _split(paths) if paths else None
        if epochs < 1 or calib_batches < 1 or len(keys or range(subnets)) < 3:
            raise UserError("--epochs and --calib-batches must be at least 1; rank at least 3 paths")
        seeds = _split(train_seeds) if train_seeds else []
        if not all(x.isdigit() for x in seeds) or len(set(seeds)) < len(seeds):
            raise UserError(f"--train-seeds must be distinct non-negative integers, got {train_seeds!r}")
        if truth not in (None, "benchmark"):
            raise UserError(f"--truth must be benchmark (a space's table), got {truth!r}")
        if truth and seeds:
            raise UserError("--train-seeds trains paths; with --truth benchmark nothing is trained")
        evaluator = WeightSharingEvaluator(checkpoint or _supernet_file(space, "fashion-mnist"),
                                          calib_batches=calib_batches, valid_images=valid_images,
                                          test_images=test_images,
                                          data_root=str(data_root) if data_root else None)
        recipe = Recipe(**{**asdict(evaluator.run.recipe), "epochs": epochs,
                           "train_images": train_images})
        command = command_line()

        def progress(done, row):
            console.print(f"{done}/{len(keys or range(subnets))} {row['key']}: inherited {row['inherited_valid']:.2f}, "
                          f"stand-alone {row['standalone_valid']:.2f} ({row['standalone_seconds']} s)")

        table = None
        if truth is not None:
            from collm_nas.tools.evaluators import make_evaluator

            table = make_evaluator(evaluator.run.space, evaluator.run.dataset, truth)
        result = verify(evaluator, subnets, recipe, seed, out.with_suffix(".standalone.jsonl"),
                        progress, keys, table, [int(x) for x in seeds] or None)
        print(write_verify(result, out, command).read_text())

    _guarded(body)


@app.command()
def report(run_dir: Annotated[Path, typer.Argument(help="a run folder")]):
    """Rebuild a run's summary.md and plots from its events and summary."""
    _guarded(lambda: console.print(f"wrote {', '.join(str(p) for p in write_report(run_dir))}"))


@app.command("spaces")
def list_spaces(
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
):
    """List the installed search spaces: datasets, evaluators, cost limits, defaults."""
    from collm_nas.spaces import space_facts, space_names

    facts = [space_facts(name) for name in space_names()]
    if as_json:
        print(json.dumps(facts, indent=1))
        return
    for fact in facts:
        if "error" in fact:
            print(f"{fact['space']}: cannot be loaded: {fact['error']}")
            continue
        print(f"{fact['space']}: {fact['dimensions']} dimensions")
        print(f"  datasets:    {fact['datasets'][0]} (default), {', '.join(fact['datasets'][1:])}".rstrip(", "))
        print(f"  evaluators:  {fact['evaluators'][0]} (default), {', '.join(fact['evaluators'][1:])}".rstrip(", "))
        print(f"  cost limits: {', '.join(fact['cost_kinds'])}")

if __name__ == "__main__":
    app()

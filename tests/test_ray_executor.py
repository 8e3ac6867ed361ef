"""Candidate evaluation on a Ray cluster: same archive as local threads, nothing lost or repeated
when a worker dies, clear errors. The slow tests share one local cluster (2 CPUs, loopback)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from collm_nas.graph.builder import compile_graph
from collm_nas.graph.context import SearchSettings
from collm_nas.graph.run import open_checkpointer, run_search
from collm_nas.spaces import get_space
from collm_nas.tools.evaluators import make_evaluator, register_evaluator
from collm_nas.tools.executors import (
    INSTALL_RAY,
    EvaluatorSpec,
    ExecutorError,
    RayOptions,
    close_executor,
    make_executor,
)

DIE_ON_KEY = "COLLM_NAS_TEST_DIE_ON_KEY"  # COLLM_NAS_*: forwarded to the workers


class SlowBenchmark:
    """The NB201 table, half a second per architecture: long enough to kill a worker mid-round."""

    kind = "slow_benchmark"
    thread_safe = True
    cheap = False

    def __init__(self, space, dataset, data_path):
        self.table = make_evaluator(space.name, dataset, "benchmark", data_path)
        self.space = space

    def evaluate(self, arch):
        if self.space.key(arch) == os.environ.get(DIE_ON_KEY):
            os._exit(1)  # this architecture kills whichever worker evaluates it
        time.sleep(0.5)
        return self.table.evaluate(arch)


def settings(**changes) -> SearchSettings:
    return SearchSettings(**{"mode": "collm-nollm", "budget": 16, "candidates": 8, "iterations": 2,
                             "seed": 3, **changes})


def verdicts_of(run_dir) -> list[tuple[str, str, str]]:
    """(key, verdict, reason) of every candidate event in a run folder."""
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    return [(e["key"], e["verdict"], e.get("reason", "")) for e in events if e["event"] == "candidate"]


def archive_of(result) -> dict[str, tuple[float, float]]:
    return {r["key"]: (r["valid_acc"], r["test_acc"]) for r in result.archive}


# --- without a cluster -----------------------------------------------------------------------


def test_ray_executor_without_ray_installed_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(ExecutorError, match="pip install 'collm-nas\\[ray\\]'") as raised:
        make_executor("ray", EvaluatorSpec("nb201", "cifar10"), RayOptions(workers=1))
    assert str(raised.value) == f"--executor ray needs Ray: {INSTALL_RAY}"


def test_executor_settings_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("COLLM_NAS_EXECUTOR", "ray")
    monkeypatch.setenv("COLLM_NAS_EVAL_WORKERS", "8")
    monkeypatch.setenv("COLLM_NAS_GPUS_PER_EVAL", "1")
    chosen = SearchSettings()
    assert (chosen.executor, chosen.eval_workers, chosen.gpus_per_eval) == ("ray", 8, 1.0)


def test_local_executor_gives_the_evaluator_metrics(data_dir):
    arch = ["nor_conv_3x3"] * 6
    table = make_evaluator("nb201", "cifar10", data_path=str(data_dir))
    expected = table.evaluate(get_space("nb201").parse(arch))
    executor = make_executor("local", EvaluatorSpec("nb201", "cifar10", data_path=str(data_dir)))
    assert executor.evaluate(arch) == expected


# --- on a local Ray cluster ------------------------------------------------------------------


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    register_evaluator("slow_benchmark", SlowBenchmark)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import tests/
    ray.init(num_cpus=2, include_dashboard=False)
    yield ray
    close_executor()
    ray.shutdown()


@pytest.mark.slow
def test_ray_search_gives_the_same_archive_as_local_threads(ray_cluster):
    local = run_search(settings(executor="local"))
    on_ray = run_search(settings(executor="ray", eval_workers=2))
    assert len(local.archive) == 16
    assert archive_of(on_ray) == archive_of(local)
    assert sorted(r["evaluation"] for r in on_ray.archive) == list(range(1, 17))


@pytest.mark.slow
def test_killing_a_worker_mid_round_still_evaluates_every_candidate_once(ray_cluster, tmp_path):
    chosen = settings(executor="ray", eval_workers=2, evaluator="slow_benchmark", iterations=1, budget=8)
    victim = chosen.candidate_executor().worker_pids()[0]  # the pool starts before the search
    # 8 x 0.5 s on 2 workers is a round of at least 2 s: at 1 s the victim is busy with a candidate.
    # (A timer, not the run's events: those are written once the round's checkpoint is saved.)
    killer = threading.Timer(1.0, os.kill, (victim, signal.SIGKILL))
    started = time.monotonic()
    killer.start()
    result = run_search(chosen, run_dir=tmp_path)
    killer.join()
    assert time.monotonic() - started > 1.5  # the search was still in its round at the kill
    verdicts = verdicts_of(tmp_path)
    assert len(verdicts) == 8 and {verdict for _, verdict, _ in verdicts} == {"evaluated"}
    assert len({key for key, _, _ in verdicts}) == 8
    assert archive_of(result) == archive_of(run_search(settings(iterations=1, budget=8)))


@pytest.mark.slow
def test_a_candidate_that_kills_every_worker_is_recorded_as_failed_after_bounded_retries(
    ray_cluster, monkeypatch, tmp_path
):
    plain = run_search(settings(iterations=1, budget=8))
    deadly = plain.archive[0]["key"]
    monkeypatch.setenv(DIE_ON_KEY, deadly)
    close_executor()  # the next pool starts with the variable
    result = run_search(settings(executor="ray", eval_workers=2, evaluator="slow_benchmark",
                                 iterations=1, budget=8), run_dir=tmp_path)
    failed = [(key, reason) for key, verdict, reason in verdicts_of(tmp_path) if verdict == "evaluation_failed"]
    assert [key for key, _ in failed] == [deadly]
    assert "3 tries" in failed[0][1]
    assert result.rejections == {"evaluation_failed": 1} and result.evaluations == 7
    assert deadly not in archive_of(result)
    assert archive_of(result) == {k: v for k, v in archive_of(plain).items() if k != deadly}


@pytest.mark.slow
def test_a_worker_that_cannot_build_its_evaluator_is_one_clear_error(ray_cluster, tmp_path, monkeypatch):
    monkeypatch.setenv("COLLM_NAS_DATA", str(tmp_path))  # the workers look there (and find nothing)
    chosen = settings(executor="ray", eval_workers=1, data_path=str(tmp_path / "missing"))
    with pytest.raises(ExecutorError) as raised:
        chosen.candidate_executor()
    message = str(raised.value)
    assert message.startswith("Ray worker 0 (host ")
    assert "could not build the default evaluator for nb201: DataFileError: nb201.csv not found" in message


@pytest.mark.slow
def test_a_driver_killed_mid_search_resumes_on_ray_without_repeating(ray_cluster, tmp_path):
    close_executor()  # the drivers below need the cluster's CPUs
    address = ray_cluster.get_runtime_context().gcs_address  # their actors die with them
    run_dir = tmp_path / "run"
    search = [sys.executable, "-m", "collm_nas.cli", "search", "--mode", "collm-nollm", "--budget", "300",
              "--iterations", "40", "--executor", "ray", "--ray-address", address, "--run-dir", str(run_dir)]
    process = subprocess.Popen(search, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and process.poll() is None:
        if (run_dir / "events.jsonl").exists() and len(evaluated_keys(run_dir)) >= 30:
            break
        time.sleep(0.02)
    assert process.poll() is None, "the search ended before it could be killed"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    before = evaluated_keys(run_dir)
    assert 30 <= len(before) < 300

    thread_id = json.loads((run_dir / "config.json").read_text())["thread_id"]
    resumed = subprocess.run(
        [sys.executable, "-m", "collm_nas.cli", "search", "--resume", thread_id, "--run-dir", str(run_dir)],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    archive = [record["key"] for record in archive_in(run_dir, thread_id)]
    assert len(archive) == len(set(archive)) == 300  # nothing evaluated twice into the archive
    assert set(before) <= set(archive)
    assert json.loads((run_dir / "summary.json").read_text())["evaluations"] == 300
    # Only the round in flight at the kill (10 candidates) may have run again.
    assert len(evaluated_keys(run_dir)) <= 300 + 10


def archive_in(run_dir, thread_id) -> list[dict]:
    graph = compile_graph(open_checkpointer(run_dir))
    return graph.get_state({"configurable": {"thread_id": thread_id}}).values["archive"]


def evaluated_keys(run_dir) -> list[str]:
    return [key for key, verdict, _ in verdicts_of(run_dir) if verdict == "evaluated"]

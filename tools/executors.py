"""Where candidates are evaluated: in this process (`local`) or on a Ray cluster (`ray`).

An executor turns one architecture (its JSON form) into `Metrics`. The search graph's router
hands it the round's screened batch (`start`), then its `evaluate` branches (one `Send` per
candidate, on LangGraph's thread pool) each collect one result (`evaluate`), so the graph, its
state and its checkpoints are the same for both executors.

`ray`: a pool of actors, each holding its own evaluator built from the run's evaluator settings
(a supernet checkpoint and its images load once per worker, on its GPU). A dispatcher thread
sends each started evaluation to the next free actor, so the whole batch runs on every worker at
once, however few threads LangGraph has. A worker that dies mid-evaluation (process killed, node
lost) is restarted by Ray while its candidate goes to the next free worker, up to `retries` more
times; after that the candidate fails with `EvaluationFailed` (the graph records verdict
`evaluation_failed`). Each candidate's result is delivered once.
"""

from __future__ import annotations

import os
import queue
import socket
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol

from collm_nas.errors import CollmNasError
from collm_nas.spaces import get_space
from collm_nas.spaces.evaluation import Metrics
from collm_nas.tools.evaluators import EVALUATORS, make_evaluator, register_evaluator

INSTALL_RAY = "pip install 'collm-nas[ray]'"
ENV_PREFIX = "COLLM_NAS_"  # the workers see the driver's COLLM_NAS_* variables (data folders)


class EvaluationFailed(CollmNasError):
    """A candidate could not be evaluated (its workers died every time it was tried)."""


class ExecutorError(CollmNasError, RuntimeError):
    """The executor could not start: Ray missing, too few resources, a worker's evaluator failed."""


@dataclass(frozen=True)
class EvaluatorSpec:
    """What builds an evaluator: `make_evaluator`'s arguments (hashable, sent to every worker)."""

    space: str
    dataset: str | None
    kind: str | None = None
    data_path: str | None = None
    options: tuple[tuple[str, Any], ...] = ()

    def build(self):
        return make_evaluator(self.space, self.dataset, self.kind, self.data_path, self.options)


@dataclass(frozen=True)
class RayOptions:
    """The Ray cluster and the workers' shares of it."""

    address: str = ""  # "": start a local cluster; "auto"; "ray://host:port"
    workers: int = 2
    gpus_per_eval: float = 0.0
    cpus_per_eval: float = 1.0
    retries: int = 2  # further tries of a candidate whose worker died


class Executor(Protocol):
    def start(self, archs: list[dict[str, Any]]) -> None: ...

    def evaluate(self, arch: dict[str, Any]) -> Metrics: ...


class LocalExecutor:
    """The process's shared evaluator, on the caller's thread."""

    def __init__(self, spec: EvaluatorSpec):
        self.spec = spec

    def start(self, archs: list[dict[str, Any]]) -> None:
        """Nothing to start ahead: each `evaluate` runs on its caller's thread."""

    def evaluate(self, arch: dict[str, Any]) -> Metrics:
        return self.spec.build().evaluate(get_space(self.spec.space).parse(arch))


_pool_lock = threading.Lock()  # parallel `evaluate` branches ask for the executor at once
_pool: RayExecutor | None = None


def make_executor(kind: str, spec: EvaluatorSpec, ray_options: RayOptions = RayOptions()) -> Executor:
    """The executor for these settings. The process keeps one Ray pool, started on first use;
    other settings (the next run of a bench) replace it, so pools never wait on each other's
    share of the cluster."""
    global _pool
    if kind == "local":
        return LocalExecutor(spec)
    if kind != "ray":
        raise ExecutorError(f"unknown executor {kind!r}; choose local or ray")
    with _pool_lock:
        if _pool is None or (_pool.spec, _pool.options) != (spec, ray_options):
            close_executor()
            _pool = RayExecutor(spec, ray_options)
        return _pool


def close_executor() -> None:
    """Stop the process's Ray pool, if any (the cluster itself stays up)."""
    global _pool
    if _pool is not None:
        _pool.close()
        _pool = None


# --- Ray -----------------------------------------------------------------------------------


class EvaluatorWorker:
    """A Ray actor's body: one evaluator, built once; a build error is kept for `ready` to report
    (an exception in an actor's constructor would reach the driver as a long traceback)."""

    def __init__(self, spec: EvaluatorSpec, factory: Any):
        if factory is not None and spec.kind:
            register_evaluator(spec.kind, factory)  # a kind the driver registered in-process
        self.spec = spec
        self.error: str | None = None
        try:
            self.evaluator = spec.build()
        except Exception as err:  # any factory error: report it as one line
            self.error = f"{type(err).__name__}: {err}"

    def ready(self) -> tuple[str, int, str | None]:
        """(host, pid, the evaluator's build error or None)."""
        return socket.gethostname(), os.getpid(), self.error

    def evaluate(self, arch: dict[str, Any]) -> Metrics:
        return self.evaluator.evaluate(get_space(self.spec.space).parse(arch))


class RayExecutor:
    """Candidates evaluated by a pool of Ray actors (see the module docstring)."""

    def __init__(self, spec: EvaluatorSpec, options: RayOptions):
        ray = _import_ray()
        self.options = options
        self.spec = spec
        if not ray.is_initialized():
            ray.init(address=options.address or None, include_dashboard=False,
                     num_cpus=_local_cpus(options) if not options.address else None)
        _check_resources(ray.cluster_resources(), options)
        worker = ray.remote(EvaluatorWorker).options(
            num_cpus=options.cpus_per_eval, num_gpus=options.gpus_per_eval,
            max_restarts=-1,  # a killed worker comes back (and rebuilds its evaluator)
            runtime_env={"env_vars": {k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIX)}},
        )
        self.jobs: dict[str, Future] = {}  # evaluations started and not yet collected
        self._jobs_lock = threading.Lock()
        self.work: queue.Queue[_Job | None] = queue.Queue()
        factory = _factory(spec.kind)
        self.actors = [worker.remote(spec, factory) for _ in range(options.workers)]
        self.hosts: list[tuple[str, int]] = []
        for number, actor in enumerate(self.actors):
            try:
                host, pid, error = ray.get(actor.ready.remote())
            except ray.exceptions.RayError as err:  # e.g. its arguments would not unpickle there
                host, pid, error = "?", "?", _last_line(err)
            if error:
                self.close()
                raise ExecutorError(
                    f"Ray worker {number} (host {host}, pid {pid}) could not build the "
                    f"{spec.kind or 'default'} evaluator for {spec.space}: {error}"
                )
            self.hosts.append((host, pid))
        self.free: queue.Queue[int] = queue.Queue()
        for number in range(len(self.actors)):
            self.free.put(number)
        threading.Thread(target=self._dispatch, name="ray-dispatch", daemon=True).start()

    def worker_pids(self) -> list[int]:
        """The workers' process ids when they started (for fault tests)."""
        return [pid for _, pid in self.hosts]

    def start(self, archs: list[dict[str, Any]]) -> None:
        """Queue these evaluations (a round's batch) without waiting: the pool runs all of them
        however few threads later wait in `evaluate`."""
        with self._jobs_lock:
            for arch in archs:
                key = self._key(arch)
                if key not in self.jobs:
                    self.jobs[key] = Future()
                    self.work.put(_Job(arch, self.jobs[key]))

    def evaluate(self, arch: dict[str, Any]) -> Metrics:
        """The result of an evaluation started by `start` (or started now)."""
        self.start([arch])
        key = self._key(arch)
        try:
            return self.jobs[key].result()
        finally:
            with self._jobs_lock:
                self.jobs.pop(key, None)

    def _dispatch(self) -> None:
        """Each queued job to the next free worker, for as long as the pool lives."""
        while (job := self.work.get()) is not None:
            number = self.free.get()  # blocks until a worker is free
            sent = self.actors[number].evaluate.remote(job.arch)
            sent.future().add_done_callback(lambda done, n=number, j=job: self._finished(n, j, done))

    def _finished(self, number: int, job: _Job, done: Future) -> None:
        ray = _import_ray()
        try:
            job.result.set_result(done.result())
            self.free.put(number)
        except ray.exceptions.RayActorError as err:  # the worker died while evaluating this job
            # Back in the pool once Ray has restarted it, so no other job is sent to it dead.
            self.actors[number].ready.remote().future().add_done_callback(
                lambda _, n=number: self.free.put(n))
            job.failures.append(f"worker {number}: {_first_line(err)}")
            if len(job.failures) > self.options.retries:
                job.result.set_exception(EvaluationFailed(
                    f"every worker that tried it died ({len(job.failures)} tries): "
                    + "; ".join(job.failures)
                ))
            else:
                self.work.put(job)  # to the next free worker
        except Exception as err:  # the evaluator itself failed: the caller sees it, as locally
            self.free.put(number)
            job.result.set_exception(err)

    def _key(self, arch: dict[str, Any]) -> str:
        space = get_space(self.spec.space)
        return space.key(space.parse(arch))

    def close(self) -> None:
        ray = _import_ray()
        self.work.put(None)
        for actor in self.actors:
            ray.kill(actor)


@dataclass
class _Job:
    arch: dict[str, Any]
    result: Future
    failures: list[str] = field(default_factory=list)  # why each try failed


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ExecutorError(f"--executor ray needs Ray: {INSTALL_RAY}") from None
    return ray


def _factory(kind: str | None) -> Any:
    """The kind's factory, for workers to register (a kind registered in this process only,
    e.g. a notebook's, is unknown to theirs); None leaves the worker to name the error."""
    try:
        return EVALUATORS.load(kind) if kind else None
    except CollmNasError:
        return None


def _local_cpus(options: RayOptions) -> int:
    """A local cluster's CPUs: the machine's, or enough for every worker's share."""
    return max(os.cpu_count() or 1, int(-(-options.workers * options.cpus_per_eval // 1)))


def _check_resources(total: dict[str, float], options: RayOptions) -> None:
    """Every worker must fit at once, or the pool would wait for ever."""
    for resource, share in (("CPU", options.cpus_per_eval), ("GPU", options.gpus_per_eval)):
        needed = share * options.workers
        if needed > total.get(resource, 0):
            raise ExecutorError(
                f"{options.workers} eval workers x {share:g} {resource} each need {needed:g} "
                f"{resource}s; the Ray cluster has {total.get(resource, 0):g}: lower "
                "--eval-workers or the per-evaluation share, or add nodes"
            )


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


def _last_line(err: BaseException) -> str:
    """A Ray error's cause: the last line of the remote traceback it carries."""
    lines = str(err).strip().splitlines()
    return lines[-1].strip() if lines else type(err).__name__

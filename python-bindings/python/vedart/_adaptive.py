"""The automatic choice of executor (``executor=None``/``"auto"``, the default
``SchedulingPolicy.ADAPTIVE``), and ``ParallelIterator.explain()``.

Decided per pipeline segment, in this order:

1. Coroutine functions are awaited on an event loop (``map`` of an ``async
   def`` becomes an ``async_map`` stage when the pipeline is built), and
   functions marked ``@veda.gpu`` become ``gpu_map`` stages (:func:`stages_for`):
   a segment with GPU work, or with a plain callable given to ``async_map``,
   runs on the thread pool without measuring.
2. Otherwise the first chunks (one item each, the engine's first look-ahead
   window) run on pool threads, as with the thread executor, while their cost
   is measured: wall time, and the thread's CPU time (``time.thread_time``).
   The decision is made when the first chunk's result is needed, and applies
   to the chunks submitted after it.
3. *Inline*: when the whole segment would take less than
   :data:`INLINE_TOTAL_SECONDS` (its length times the measured cost), handing
   it to threads costs more than running it, so the rest runs on the calling
   thread.
4. *Processes*: when items cost at least :data:`PROCESS_MIN_ITEM_SECONDS`,
   hold the CPU (CPU time at least :data:`CPU_BOUND_RATIO` of wall time), the
   work left is worth starting processes for (:data:`PROCESS_MIN_WORK_SECONDS`,
   more when the pool is not running yet), the functions, the first chunk and
   its result pickle, and the first two chunks, run side by side on two
   threads, did not run in parallel (CPU-heavy code that releases the
   interpreter, such as hashing or NumPy, runs fine on threads), the rest goes
   to worker processes. *Cluster*: when a cluster is configured
   (``Config(cluster=...)``, never otherwise) and the work left is worth its
   network round trips (:data:`CLUSTER_MIN_WORK_SECONDS`, or unknown), such
   work goes to the cluster instead (``executor="dask"``); one that cannot be
   reached leaves it to the worker processes, and ``explain()`` says why.
5. *Threads* otherwise: waiting work (I/O, sleeps) and code that releases the
   interpreter overlap on threads.

The memory-model consequence: with the default executor, side effects of your
functions (globals, mutated arguments) may or may not reach the caller,
depending on where the work ran. Use ``executor="thread"`` when they must.
``explain()`` says what was chosen and why.
"""

from __future__ import annotations

import time
from typing import Any, Callable, NamedTuple, Optional, Union

from . import _deterministic, _process
from ._cluster import ENGINES, engine
from ._config import SchedulingPolicy
from ._executors import (
    SERIAL,
    THREAD_INLINE_PER_ITEM,
    THREAD_POOL,
    AsyncExecutor,
    Executor,
    Run,
    SerialExecutor,
    ThreadExecutor,
)
from ._gpu import GpuExecutor, gpu_stages, is_gpu_function
from ._process import ProcessExecutor
from ._runtime import get_runtime
from ._stages import ASYNC_MAP, GPU_MAP, MAP, PER_ITEM, Stage
from .exceptions import ExecutorError, VedaError

__all__ = [
    "AdaptiveExecutor",
    "Explanation",
    "Segment",
    "executor_for",
    "explain",
    "explained",
    "resolve_executor",
    "stages_for",
]

#: Step 3: a segment whose estimated total work is below this runs inline.
INLINE_TOTAL_SECONDS = 0.001

#: Step 4: the least cost per item for worker processes to pay off.
PROCESS_MIN_ITEM_SECONDS = 0.001

#: Step 4: CPU time over wall time of work that holds the CPU.
CPU_BOUND_RATIO = 0.7

#: Step 4: the least work left (estimated seconds) to move to a running pool,
#: and to one that must start first.
PROCESS_MIN_WORK_SECONDS = 0.05
PROCESS_MIN_WORK_COLD_SECONDS = 0.3

#: Step 4: the least work left (estimated seconds) to send to a configured
#: cluster, whose chunks each pay a network round trip through its scheduler.
CLUSTER_MIN_WORK_SECONDS = 1.0

#: Step 4: two chunks on two threads reaching this CPU-time parallelism show
#: that the work releases the interpreter.
THREAD_PARALLELISM = 1.4

#: Step 4: how long to wait for the second chunk, in multiples of the first
#: chunk's time (it ran beside the first, so it should end about as soon).
SECOND_PROBE_WAIT_FACTOR = 3


class _Measured:
    """Runs a chunk function and records its wall and thread CPU time."""

    __slots__ = ("fn", "start", "end", "cpu")

    def __init__(self, fn: Callable[[Any], Any]) -> None:
        self.fn = fn
        self.start = 0.0
        self.end = 0.0
        self.cpu = 0.0

    def __call__(self, chunk: Any) -> Any:
        cpu = time.thread_time()
        self.start = time.perf_counter()
        try:
            return self.fn(chunk)
        finally:
            self.end = time.perf_counter()
            self.cpu = time.thread_time() - cpu

    @property
    def wall(self) -> float:
        return max(self.end - self.start, 1e-9)


class _Handle:
    """A chunk of an adaptive run: where it went, once it went somewhere."""

    __slots__ = ("fn", "chunk", "size", "run", "inner", "measured")

    def __init__(self, fn: Callable[[Any], Any], chunk: Any) -> None:
        self.fn = fn
        self.chunk = chunk
        self.size = len(chunk)
        self.run: Optional[Run] = None
        self.inner: Any = None
        self.measured: Optional[_Measured] = None

    @property
    def elapsed(self) -> float:
        if self.measured is not None:
            return self.measured.wall
        return float(getattr(self.inner, "elapsed", 0.0))

    @property
    def nbytes(self) -> Optional[int]:
        """The bytes the chunk moved, when its run counts them (processes)."""
        return getattr(self.inner, "nbytes", None)


def _forced(fn: Callable[[Any], Any]) -> Optional[str]:
    """Step 1: why the segment of ``fn`` belongs on the thread pool, if it does."""
    plan = getattr(fn, "veda_plan", None)
    if plan is None:
        return None
    for stage in plan[0]:
        if stage.kind == GPU_MAP:
            return f"{stage!r} is GPU work: items run on the GPU, from the thread pool"
        if stage.kind == MAP and stage.arg == THREAD_POOL:
            return (
                f"{stage!r} is a plain callable given to async_map: it runs on the thread "
                "pool, never on the event loop"
            )
    return None


class _AdaptiveRun(Run):
    """Steps 2 to 5 for one segment; see the module documentation."""

    def __init__(self, executor: AdaptiveExecutor, mode: str) -> None:
        self._executor = executor
        self._mode = mode
        self._threads = executor.threads.start(mode)
        self._backend: Optional[Run] = None
        self._choice: Optional[tuple[str, str]] = None
        self._expected: Optional[int] = None
        #: Chunks submitted before the decision, all on the threads (step 2).
        self._probes: list[_Handle] = []
        #: ``unordered()``: the runs used hand results on as chunks finish.
        self._unordered = False

    # -- the Run interface ------------------------------------------------------

    def expect(self, items: Optional[int]) -> None:
        self._expected = items

    def submit(self, fn: Callable[[Any], Any], chunk: Any) -> Any:
        handle = _Handle(fn, chunk)
        if self._backend is None and not self._probes:
            reason = _forced(fn)
            if reason is not None:
                self._choose("thread", reason, self._threads)
        if self._backend is not None:
            self._dispatch(handle)
        else:
            self._probes.append(handle)
            self._on_threads(handle)
        return handle

    def result(self, handle: Any, timeout: Optional[float] = None) -> Any:
        if self._backend is None:
            started = time.monotonic()
            self._decide(timeout)
            if timeout is not None:
                timeout = max(0.0, timeout - (time.monotonic() - started))
        assert handle.run is not None
        return handle.run.result(handle.inner, timeout)

    def in_completion_order(self) -> bool:
        self._unordered = True
        threads: Any = self._threads  # a thread run: it has the unordered methods
        threads.in_completion_order()
        return True

    def completed(self, handles: Any, timeout: Optional[float] = None) -> int:
        """The probes come first and on the threads; after them, chunks of the
        chosen run in the order they finish."""
        if self._backend is None:
            started = time.monotonic()
            # Measure the probe that finishes first, not the first submitted:
            # a slow first item must not hold back the first result.
            probes = self._probes
            if len(probes) > 1:
                threads: Any = self._threads
                first = threads.completed([probe.inner for probe in probes], timeout)
                probes.insert(0, probes.pop(first))
            left = None if timeout is None else max(0.0, timeout - (time.monotonic() - started))
            self._decide(left)
            if timeout is not None:
                timeout = max(0.0, timeout - (time.monotonic() - started))
        run = handles[0].run
        same = [i for i, handle in enumerate(handles) if handle.run is run]
        completed = getattr(run, "completed", None)
        if completed is None or len(same) < 2:
            return 0
        return same[completed([handles[i].inner for i in same], timeout)]

    def cancel(self) -> None:
        self._threads.cancel()
        if self._backend is not None and self._backend is not self._threads:
            self._backend.cancel()

    def release(self) -> None:
        self._threads.release()
        if self._backend is not None and self._backend is not self._threads:
            self._backend.release()

    def describe(self, label: str) -> None:
        self._threads.describe(label)

    def explain(self) -> tuple[str, str]:
        if self._choice is None:
            return ("auto", "not decided: no chunk of this segment completed")
        return self._choice

    # -- dispatching ------------------------------------------------------------

    def _on_threads(self, handle: _Handle) -> None:
        measured = _Measured(handle.fn)
        handle.measured = measured
        handle.run = self._threads
        handle.inner = self._threads.submit(measured, handle.chunk)

    def _dispatch(self, handle: _Handle) -> None:
        backend = self._backend
        assert backend is not None
        try:
            handle.inner = backend.submit(handle.fn, handle.chunk)
            handle.run = backend
        except TypeError:
            if backend is self._threads:
                raise
            # An item that does not pickle: this chunk stays on the threads.
            handle.inner = self._threads.submit(handle.fn, handle.chunk)
            handle.run = self._threads

    def _choose(self, name: str, reason: str, backend: Run) -> None:
        self._choice = (name, reason)
        self._backend = backend
        if self._unordered and backend is not self._threads:
            in_completion_order = getattr(backend, "in_completion_order", None)
            if in_completion_order is not None:
                in_completion_order()
        # Read by the engine after every chunk (its step 7).
        self.target_chunk_seconds = backend.target_chunk_seconds
        self.target_chunk_bytes = getattr(backend, "target_chunk_bytes", None)

    # -- deciding ---------------------------------------------------------------

    def _decide(self, timeout: Optional[float]) -> None:
        probe = self._probes[0]
        assert probe.measured is not None
        # Raises the user's error, if any, or WaitExpired at the timeout.
        value = self._threads.result(probe.inner, timeout)
        measured = probe.measured
        per_item = measured.wall / max(1, probe.size)
        # (clock granularity can put a tiny chunk's CPU time above its wall time)
        cpu_ratio = min(1.0, measured.cpu / measured.wall)
        left = None if self._expected is None else max(0, self._expected - probe.size)
        cost = f"{per_item * 1e3:.3g} ms per item, CPU {cpu_ratio:.0%} of wall time"
        if self._expected is not None and self._expected * per_item < INLINE_TOTAL_SECONDS:
            self._choose(
                "inline",
                f"tiny work: {self._expected} item(s) at {cost}, about "
                f"{self._expected * per_item * 1e6:.0f} us in all, less than a hand-off to "
                "threads costs; the rest runs on the calling thread",
                SerialExecutor().start(self._mode),
            )
        elif per_item < PROCESS_MIN_ITEM_SECONDS or cpu_ratio < CPU_BOUND_RATIO:
            why = (
                "items are too cheap for worker processes to pay off"
                if per_item < PROCESS_MIN_ITEM_SECONDS
                else "the work mostly waits (I/O, sleeps), which threads overlap"
            )
            self._choose("thread", f"{cost}: {why}", self._threads)
        else:
            name, reason = self._cpu_bound(probe, value, per_item, left, cost)
            if name == "process":
                cluster, reason = self._on_cluster(per_item, left, cost, reason)
                if cluster is not None:
                    self._choose(cluster.name, reason, cluster.start(self._mode))
                    return
                backend = ProcessExecutor(self._executor.runtime, reason).start(self._mode)
                self._choose("process", reason, backend)
            else:
                self._choose("thread", reason, self._threads)

    def _cpu_bound(
        self, probe: _Handle, value: Any, per_item: float, left: Optional[int], cost: str
    ) -> tuple[str, str]:
        """Step 4 for work that holds the CPU: ``(executor, reason)``."""
        runtime = self._executor.runtime
        processes = runtime.config.num_processes or 1
        if processes < 2:
            return "thread", f"{cost}, but there is only one worker process to use"
        if _process.in_worker():
            return "thread", f"{cost}, but this is already a worker process"
        warm = _process.current_pool() is not None
        needed = PROCESS_MIN_WORK_SECONDS if warm else PROCESS_MIN_WORK_COLD_SECONDS
        if left is not None and left * per_item < needed:
            return "thread", (
                f"{cost}, but the {left} item(s) left (about {left * per_item * 1e3:.0f} ms) "
                "do not pay for moving to worker processes"
            )
        try:
            _process.dumps_plan(_process.plan_of(probe.fn))
            _process.dumps_chunk(probe.chunk, 0)
            _process.dumps_chunk(value, 0)
        except TypeError as error:
            return "thread", f"{cost}, but the work does not pickle ({error})"
        parallelism = self._parallelism()
        if parallelism is not None and parallelism >= THREAD_PARALLELISM:
            return "thread", (
                f"{cost}, but it releases the interpreter: two chunks on two threads ran "
                f"{parallelism:.1f}x in parallel"
            )
        checked = (
            "" if parallelism is None else f"; two chunks on two threads ran {parallelism:.1f}x"
        )
        return "process", (
            f"{cost}: the work holds the interpreter{checked}, so threads cannot run it in "
            "parallel; the rest runs in worker processes"
        )

    def _on_cluster(
        self, per_item: float, left: Optional[int], cost: str, reason: str
    ) -> tuple[Optional[Executor], str]:
        """Step 4, *cluster*: the cluster's executor for work that would go to
        worker processes, and the reason; ``None`` (and why, added to
        ``reason``) to keep it on this machine."""
        address = self._executor.runtime.config.cluster
        if address is None:
            return None, reason
        if left is not None and left * per_item < CLUSTER_MIN_WORK_SECONDS:
            return None, (
                f"{reason} (not on the cluster at {address}: the {left} item(s) left, about "
                f"{left * per_item:.2g} s, do not pay for its round trips)"
            )
        engine = next(iter(ENGINES))
        try:
            cluster = resolve_executor(engine, self._executor.runtime)
        except VedaError as error:
            return None, f"{reason} (the cluster at {address} is unavailable: {error})"
        return cluster, (
            f"{cost}: the work holds the interpreter and a cluster is configured, so the rest "
            f"runs on it ({engine} at {address}, {cluster.workers} worker threads)"
        )

    def _parallelism(self) -> Optional[float]:
        """The CPU time of the first two chunks over their combined wall time,
        when they ran side by side on two threads; ``None`` if they did not."""
        if self._executor.threads.workers < 2 or len(self._probes) < 2:
            return None
        first, second = self._probes[0], self._probes[1]
        if first.measured is None or second.measured is None:
            return None
        if not getattr(second.inner, "done", False):
            # Wait for it to end; its outcome (even an error) is left for the
            # engine to collect in order.
            wait = getattr(second.inner, "wait", None)
            if wait is None or not wait(SECOND_PROBE_WAIT_FACTOR * first.measured.wall + 0.005):
                return None
        a, b = first.measured, second.measured
        if b.end <= 0.0:
            return None
        overlap = min(a.end, b.end) - max(a.start, b.start)
        if overlap < 0.5 * min(a.wall, b.wall):
            return None  # they did not run side by side: no evidence either way
        span = max(a.end, b.end) - min(a.start, b.start)
        return (a.cpu + b.cpu) / max(span, 1e-9)


class AdaptiveExecutor(Executor):
    """The default executor: chooses inline, threads or processes per segment
    from the measured cost of its first chunk (see the module documentation)."""

    name = "auto"
    inline_per_item = THREAD_INLINE_PER_ITEM

    def __init__(self, runtime: Any) -> None:
        self.runtime = runtime
        self.threads = ThreadExecutor(runtime)
        self.workers = self.threads.workers
        self.reason = "the scheduling policy is ADAPTIVE"

    def start(self, mode: str) -> Run:
        return _AdaptiveRun(self, mode)


def stages_for(stages: tuple[Stage, ...], executor: Any) -> tuple[Stage, ...]:
    """The stages as ``executor`` runs them (step 1): ``map`` of a ``@veda.gpu``
    function is GPU work, and with ``executor="gpu"`` every ``map`` is."""
    if getattr(executor, "name", None) == "gpu":
        return gpu_stages(stages)
    if any(stage.kind == MAP and is_gpu_function(stage.fn) for stage in stages):
        return tuple(
            Stage(GPU_MAP, stage.fn) if stage.kind == MAP and is_gpu_function(stage.fn) else stage
            for stage in stages
        )
    return stages


# -- explain() ------------------------------------------------------------------


class Segment(NamedTuple):
    """One part of a pipeline in an :class:`Explanation`."""

    #: The stages it runs, e.g. ``"map(parse).filter(ok).sum()"``.
    stages: str
    #: Where: ``"thread"``, ``"process"``, ``"async"``, ``"gpu"``, ``"inline"``,
    #: ``"serial"``, or ``"auto"`` while not decided yet.
    executor: str
    #: Why, in words (with the measurements when the choice was measured).
    reason: str


class Explanation:
    """Where each part of a pipeline runs and why; returned by
    :meth:`vedart.ParallelIterator.explain`. ``str()`` gives one line per part.

    ``executor`` and ``reason`` describe the main part: the first one that
    runs your functions in parallel (else the first part).
    """

    __slots__ = ("segments", "measured")

    def __init__(self, segments: tuple[Segment, ...], measured: bool) -> None:
        #: The parts of the pipeline, in order.
        self.segments = segments
        #: Whether this reports a run (``True``) or the plan before one.
        self.measured = measured

    def _main(self) -> Optional[Segment]:
        for segment in self.segments:
            if segment.executor != "async":
                return segment
        return self.segments[0] if self.segments else None

    @property
    def executor(self) -> str:
        """The executor of the main part (``"inline"`` when nothing runs in parallel)."""
        main = self._main()
        return main.executor if main is not None else "inline"

    @property
    def reason(self) -> str:
        """Why the main part runs where it does."""
        main = self._main()
        return main.reason if main is not None else "the pipeline runs none of your functions"

    def __str__(self) -> str:
        if not self.segments:
            return f"inline: {self.reason}"
        return "\n".join(f"{s.stages}: {s.executor} ({s.reason})" for s in self.segments)

    def __repr__(self) -> str:
        return f"<vedart.Explanation executor={self.executor!r} measured={self.measured}>"


def explained(execution: Any) -> tuple[Segment, ...]:
    """What an :class:`~vedart._engine.Execution` ran where, for ``explain()``."""
    executor = execution.executor
    out = []
    for label, ran in execution.segments:
        explain_fn = getattr(ran, "explain", None)
        name, reason = explain_fn() if explain_fn is not None else ("", "")
        if not name:
            name = getattr(executor, "name", "executor")
            reason = getattr(executor, "reason", "") or "deterministic mode"
        out.append(Segment(label, name, reason))
    return tuple(out)


def _planned(pipeline: Any) -> tuple[Segment, ...]:
    """The segments of a pipeline that has not run, with what is known in advance."""
    runtime = get_runtime()
    executor = executor_for(pipeline._executor, runtime)
    stages = stages_for(pipeline._stages, executor)
    out: list[Segment] = []
    pending: list[Stage] = []

    def flush() -> None:
        if not pending:
            return
        label = ".".join(repr(stage) for stage in pending)
        forced = None
        if isinstance(executor, AdaptiveExecutor):
            fn: Any = lambda chunk: chunk  # noqa: E731 - a carrier for the plan
            fn.veda_plan = (tuple(pending), list)
            forced = _forced(fn)
            if forced is None:
                out.append(
                    Segment(
                        label,
                        "auto",
                        "decided when it runs: the first chunk runs on a thread while its "
                        "cost is measured (see vedart._adaptive)",
                    )
                )
                pending.clear()
                return
            out.append(Segment(label, "thread", forced))
        else:
            out.append(Segment(label, getattr(executor, "name", "executor"), executor.reason or ""))
        pending.clear()

    for stage in stages:
        if stage.kind in PER_ITEM:
            pending.append(stage)
            continue
        flush()
        if stage.kind == ASYNC_MAP:
            name = getattr(stage.fn, "__qualname__", None) or repr(stage.fn)
            out.append(
                Segment(
                    repr(stage),
                    "async",
                    f"{name} is a coroutine function: awaited on an event loop (the "
                    "awaiting caller's, else veda-async-loop)",
                )
            )
    flush()
    return tuple(out)


def explain(pipeline: Any) -> Explanation:
    """``pipeline.explain()``: see :meth:`vedart.ParallelIterator.explain`."""
    segments = pipeline._explained
    if segments is not None:
        return Explanation(segments, True)
    return Explanation(_planned(pipeline), False)


def resolve_executor(spec: Union[None, str, Executor], runtime: Any) -> Executor:
    """Chooses the executor for a pipeline: explicit ``spec`` first, then the
    runtime's :class:`~vedart.SchedulingPolicy`.

    ``"auto"``/``None`` under ADAPTIVE (the default) gives the adaptive
    executor, which measures the first chunk (:mod:`vedart._adaptive`);
    THREAD_ONLY and DETERMINISTIC (whose ordering :mod:`vedart._deterministic`
    adds on top) give the thread executor, PROCESS_ONLY the process executor,
    ASYNC_ONLY the async executor. Coroutine functions are always awaited on
    an event loop, whatever the executor (the ``async_map`` stage).
    """
    if isinstance(spec, Executor):
        return spec
    if spec is None or spec == "auto":
        policy = runtime.config.scheduling_policy
        if policy is SchedulingPolicy.ADAPTIVE:
            return AdaptiveExecutor(runtime)
        if policy is SchedulingPolicy.PROCESS_ONLY:
            return ProcessExecutor(runtime, "the scheduling policy is PROCESS_ONLY")
        if policy is SchedulingPolicy.ASYNC_ONLY:
            return AsyncExecutor(runtime, "the scheduling policy is ASYNC_ONLY")
        return ThreadExecutor(runtime, f"the scheduling policy is {policy.name}")
    if spec == "thread":
        return ThreadExecutor(runtime)
    if spec == "serial":
        return SERIAL
    if spec == "process":
        return ProcessExecutor(runtime)
    if spec == "async":
        return AsyncExecutor(runtime)
    if spec == "gpu":
        return GpuExecutor(runtime)
    if spec in ENGINES:
        return engine(spec).ClusterExecutor(runtime)  # type: ignore[no-any-return]
    raise ExecutorError(f"executor {spec!r} is not available in this build of vedart")


def executor_for(spec: Any, runtime: Any) -> Any:
    """The executor of a pipeline: :func:`resolve_executor`, wrapped in a
    :class:`~vedart._deterministic.DeterministicExecutor` when deterministic
    mode is on."""
    scheduler = _deterministic.current()
    if scheduler is None:
        return resolve_executor(spec, runtime)
    if spec is None or spec == "auto":
        # A choice from measured cost would depend on timing: the thread
        # executor, unless the policy names another one.
        policy = runtime.config.scheduling_policy.name
        spec = "thread" if policy in ("ADAPTIVE", "THREAD_ONLY", "DETERMINISTIC") else None
    return _deterministic.DeterministicExecutor(scheduler, resolve_executor(spec, runtime))

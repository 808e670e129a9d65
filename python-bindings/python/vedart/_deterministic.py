"""Deterministic mode: :func:`deterministic`, :func:`replay` and :class:`ExecutionTrace`.

Inside ``with veda.deterministic(seed):`` (or everywhere, with
``Config(deterministic_seed=...)`` / ``SchedulingPolicy.DETERMINISTIC``) every
pipeline and every spawned callable of the calling context runs through one
:class:`Scheduler`, which makes the run a function of the seed alone. The
choices are made in Rust, by the runtime's deterministic scheduler
(``vedart::Builder::new_deterministic(seed)``, through
``_vedart.DeterministicScheduler``; ``python-bindings/src/deterministic.rs``
explains how); this module turns pipelines and spawns into its tasks and runs
the Python calls it picks:

1. **Tasks.** A pipeline's chunks and each spawned callable are *tasks*. Each
   has a ticket in the deterministic runtime, whose task id is the task's id
   (the ids of ``vedart::Runtime::schedule_trace``, in submission order).
   Chunk boundaries are fixed (:data:`DETERMINISTIC_CHUNK_ITEMS`, or the
   pipeline's ``chunk_size``), never adapted to measured time, and nothing
   runs inline because it looked cheap: timing never changes what a task is.
2. **Order.** Submitting only queues a task. When the program waits for one (a
   pipeline reads its next chunk, ``future.result()``, ``await``, the end of a
   scope or of the block), the runtime's seeded pick chooses among the queued
   tasks of that pipeline or scope, one at a time, until the awaited task is
   done. Tasks nobody waited for run when the block ends.
3. **Threads, workers, executors.** Tasks of the thread executor run on the
   thread that waits (like the Rust runtime's deterministic flavour, which
   runs every task on one thread); other explicitly chosen executors (process,
   GPU) get one task at a time. ``executor=None``/``"auto"`` means the thread
   executor (a choice from measured cost would depend on timing). Each task is
   assigned the logical worker ``time % workers``.
4. **Randomness.** Before a task runs, ``random`` (and NumPy's global
   generator when NumPy is imported) is seeded with the task's seed, derived
   in Rust from ``(seed, task id)`` through PCG32 (:func:`task_seed`), so
   ``par_iter(range(100)).map(lambda _: random.random()).collect()`` is the
   same list for the same seed and a different one for another seed.
   :func:`deterministic` restores the caller's generator states when the block
   ends.
5. **Trace.** With ``record=True`` Rust records every dispatch as a
   :class:`TraceEvent` (task id, stage, executor, logical worker, logical time,
   index, and the number of candidates of the runtime's pick) of an
   :class:`ExecutionTrace`, which saves to and loads from JSON; :func:`replay`
   runs the same program again with the trace's seed, which gives the recorded
   order, and raises :class:`~vedart.ReplayError` at the first task that
   differs.

The mode lives in a :mod:`contextvars` variable, so it is scoped to the calling
context: other threads keep running normally. Scheduling is guarded by a
re-entrant lock (a task may start nested pipelines, which drive the same
scheduler on the same thread); one deterministic context is meant to be driven
from one thread at a time.

Limits: ``random`` and NumPy's global generator are process-wide, so another
thread drawing from them at the same time perturbs the sequence (give such
threads their own ``random.Random``); coroutines (``async_map``, coroutine
children of a scope) run on their event loop in asyncio's order.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import functools
import json
import os
import random
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any, Callable, Optional, Union

from . import _asyncio, _runtime, _trace, _vedart
from ._future import _base_cancel
from .exceptions import CancelledError, ConfigError

__all__ = [
    "TraceEvent",
    "ExecutionTrace",
    "Scheduler",
    "deterministic",
    "replay",
    "task_seed",
    "current",
]

#: Items per chunk in deterministic mode when the pipeline sets no chunk size:
#: chunk boundaries must not depend on measured time.
DETERMINISTIC_CHUNK_ITEMS = 32

#: Logical workers of a deterministic context unless ``workers=`` says otherwise.
#: A fixed number, not the machine's CPU count, so a seed means the same run on
#: every machine (it sizes the pipeline look-ahead window, ``2 * workers + 2``).
DEFAULT_WORKERS = 4

#: Version of the JSON written by :meth:`ExecutionTrace.to_json`. Format 1 was
#: written by the Python scheduler of earlier versions, whose task ids and
#: order the Rust scheduler does not reproduce.
TRACE_FORMAT = 2

#: ``task_seed(seed, task)``: the 64-bit seed of task ``task`` under ``seed``,
#: the first output of the PCG32 stream ``task`` seeded with ``seed``
#: (``pcg32_srandom(seed, task)``), derived in Rust.
task_seed: Callable[[int, int], int] = _vedart.task_seed


def _seed_generators(value: int) -> None:
    random.seed(value)
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        numpy.random.seed(value & 0xFFFFFFFF)


class _Seeded:
    """A task function that seeds the global generators before it runs. The
    seed travels with the argument (``(seed, chunk)``) so that one object serves
    every chunk of a run: executors that pickle the function once still work."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[[Any], Any]) -> None:
        self.fn = fn

    def __call__(self, packed: tuple[int, Any]) -> Any:
        seed, chunk = packed
        _seed_generators(seed)
        return self.fn(chunk)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_Seeded, (self.fn,))


# ---------------------------------------------------------------------------
# Traces


@dataclasses.dataclass(frozen=True)
class TraceEvent:
    """One task dispatch of a deterministic run."""

    #: Task id: submission order within the deterministic context.
    task: int
    #: What ran: the pipeline segment (``"map(f).filter(g)"``) or ``"spawn(fn)"``.
    stage: str
    #: The executor the task was assigned (``"thread"``, ``"process"``, ...).
    executor: str
    #: The logical worker the task was assigned.
    worker: int
    #: Logical time: the position of the dispatch in the run (0, 1, 2, ...).
    time: int
    #: The chunk's index in its pipeline segment, or the spawn's index in its scope.
    index: int = 0
    #: How many candidates the runtime's pick chose this task among (runnable
    #: tickets, as ``ScheduleEvent::runnable`` of ``schedule_trace()``).
    runnable: int = 0


class _ClassOrInstanceMethod:
    """A method that receives the class and the instance it was called on
    (``None`` when called on the class): pyveda 1.0 called
    ``load_from_file`` on a trace, VedaRT's ``load`` is called on the class."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self._fn = fn
        self.__doc__ = fn.__doc__

    def __get__(self, instance: Any, owner: Any) -> Callable[..., Any]:
        return functools.partial(self._fn, owner, instance)


class ExecutionTrace:
    """The recorded schedule of a deterministic run (``record=True``).

    A sequence of :class:`TraceEvent` in dispatch order, with the seed and the
    number of logical workers. Saves to and loads from JSON; give it to
    :func:`vedart.replay` to run the same order again.

    Examples:
        >>> import vedart as veda
        >>> with veda.deterministic(7, record=True) as trace:
        ...     _ = veda.par_iter(range(100)).map(abs).collect()
        >>> [e.task for e in trace] == sorted(e.task for e in trace)   # a seeded order
        False
        >>> veda.ExecutionTrace.from_json(trace.to_json()) == trace
        True
    """

    __slots__ = ("seed", "workers", "_events", "_source")

    def __init__(
        self,
        seed: int = 0,
        workers: int = DEFAULT_WORKERS,
        events: Optional[list[TraceEvent]] = None,
    ):
        self.seed = seed
        self.workers = workers
        self._events: list[TraceEvent] = list(events or ())
        #: The Rust scheduler recording this trace while its block runs.
        self._source: Optional[_vedart.DeterministicScheduler] = None

    @property
    def events(self) -> list[TraceEvent]:
        """The dispatches, in order (read from the Rust scheduler while the
        run is being recorded)."""
        source = self._source
        if source is not None:
            recorded = source.trace()
            if len(recorded) != len(self._events):
                self._events = [TraceEvent(*event) for event in recorded]
        return self._events

    @events.setter
    def events(self, events: list[TraceEvent]) -> None:
        self._source = None
        self._events = list(events)

    def _detach(self) -> None:
        """Keeps the events recorded so far; the run is over."""
        _ = self.events
        self._source = None

    def __len__(self) -> int:
        return len(self.events)

    def __iter__(self) -> Iterator[TraceEvent]:
        return iter(self.events)

    def __getitem__(self, index: int) -> TraceEvent:
        return self.events[index]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ExecutionTrace):
            return NotImplemented
        return (self.seed, self.workers, self.events) == (other.seed, other.workers, other.events)

    __hash__ = None  # type: ignore[assignment]

    def order(self) -> list[int]:
        """The task ids in the order they ran."""
        return [event.task for event in self.events]

    def to_dict(self) -> dict[str, Any]:
        """The trace as plain data (what :meth:`to_json` writes)."""
        return {
            "format": TRACE_FORMAT,
            "seed": self.seed,
            "workers": self.workers,
            "events": [dataclasses.asdict(event) for event in self.events],
        }

    def to_json(self, indent: Optional[int] = None) -> str:
        """The trace as a JSON document."""
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExecutionTrace:
        """Reads what :meth:`to_dict` produced.

        Raises:
            ValueError: not a trace, or one of another format version.
        """
        if isinstance(data, dict) and data.get("format") == 1:
            raise ValueError(
                "a vedart execution trace of format 1, recorded by the Python scheduler of "
                f"vedart before the Rust one drove deterministic mode (format {TRACE_FORMAT}): "
                "record it again"
            )
        if not isinstance(data, dict) or data.get("format") != TRACE_FORMAT:
            raise ValueError(f"not a vedart execution trace (format {TRACE_FORMAT})")
        try:
            events = [TraceEvent(**event) for event in data["events"]]
            return cls(int(data["seed"]), int(data["workers"]), events)
        except (KeyError, TypeError) as error:
            raise ValueError(f"malformed vedart execution trace: {error}") from None

    @classmethod
    def from_json(cls, text: str) -> ExecutionTrace:
        """Reads what :meth:`to_json` produced (see :meth:`from_dict`)."""
        return cls.from_dict(json.loads(text))

    def save(self, path: Union[str, os.PathLike[str]]) -> None:
        """Writes the trace to ``path`` as JSON."""
        with open(path, "w", encoding="utf-8") as out:
            out.write(self.to_json(indent=1))

    @classmethod
    def load(cls, path: Union[str, os.PathLike[str]]) -> ExecutionTrace:
        """Reads a trace written by :meth:`save`."""
        with open(path, encoding="utf-8") as src:
            return cls.from_json(src.read())

    # pyveda 1.0's names.

    def save_to_file(self, filepath: Union[str, os.PathLike[str]]) -> None:
        """pyveda 1.0's name of :meth:`save`."""
        self.save(filepath)

    def get_events(self) -> list[TraceEvent]:
        """pyveda 1.0's accessor: a copy of :attr:`events`."""
        return list(self.events)

    @_ClassOrInstanceMethod
    def load_from_file(
        cls, trace: Optional[ExecutionTrace], filepath: Union[str, os.PathLike[str]]
    ) -> ExecutionTrace:
        """pyveda 1.0's name of :meth:`load`. Called on the class it returns
        the trace read; called on a trace (``ExecutionTrace().load_from_file(p)``,
        pyveda's way) it also replaces that trace's seed, workers and events
        with those read, and returns it."""
        loaded = cls.load(filepath)
        if trace is None:
            return loaded
        trace.seed, trace.workers, trace.events = loaded.seed, loaded.workers, loaded.events
        return trace

    def __repr__(self) -> str:
        return f"ExecutionTrace(seed={self.seed}, workers={self.workers}, events={len(self)})"


# ---------------------------------------------------------------------------
# The scheduler

_QUEUED, _RUNNING, _DONE, _CANCELLED = range(4)


class _Task:
    """A unit of work queued in the Rust scheduler: a pipeline chunk or a
    spawned callable. ``state`` is the Python outcome; which task runs when
    is the Rust scheduler's decision."""

    __slots__ = ("scheduler", "id", "index", "state", "stage", "executor")

    def __init__(self, scheduler: Scheduler, index: int, stage: str, executor: str):
        self.scheduler = scheduler
        #: The task id, set when it is queued (see :meth:`Scheduler.submit`).
        self.id = 0
        self.index = index
        self.state = _QUEUED
        self.stage = stage
        self.executor = executor

    @property
    def finished(self) -> bool:
        return self.state >= _DONE

    def execute(self, seed: int) -> None:
        raise NotImplementedError

    def cancel_queued(self) -> bool:
        """Cancels the task if it has not started; returns whether it did."""
        if self.state != _QUEUED or not self.scheduler.unqueue(self):
            return False
        self.state = _CANCELLED
        self.on_cancelled()
        return True

    def on_cancelled(self) -> None:
        pass


class Scheduler:
    """One deterministic context: the Rust scheduler
    (``_vedart.DeterministicScheduler``) and the Python tasks it picks."""

    def __init__(
        self,
        seed: int,
        workers: int = DEFAULT_WORKERS,
        record: bool = False,
        replay: Optional[ExecutionTrace] = None,
    ) -> None:
        self.seed = seed
        self.workers = workers
        self.lock = threading.RLock()
        expected = None if replay is None else [(e.task, e.stage) for e in replay.events]
        self.native = _vedart.DeterministicScheduler(seed, workers, record, expected)
        self.trace: Optional[ExecutionTrace] = None
        if record or replay is not None:
            self.trace = ExecutionTrace(seed, workers)
            self.trace._source = self.native
        #: Queued tasks by id.
        self._tasks: dict[int, _Task] = {}
        #: Queue keys of the scopes' spawned tasks, by group.
        self._spawn_queues: dict[int, tuple[Any, int]] = {}

    def new_queue(self) -> int:
        return self.native.new_queue()

    def submit(self, task: _Task, queue: int, spawns: bool) -> None:
        """Queues ``task`` in ``queue`` (``spawns``: a scope's queue)."""
        with self.lock:
            task.id = self.native.submit(queue, spawns, task.stage, task.executor, task.index)
            self._tasks[task.id] = task

    def unqueue(self, task: _Task) -> bool:
        """Takes ``task`` out of its queue; whether it was queued."""
        with self.lock:
            if not self.native.cancel(task.id):
                return False
            self._tasks.pop(task.id, None)
            return True

    def queued(self, queue: int) -> list[_Task]:
        """The queued tasks of ``queue``, in submission order."""
        with self.lock:
            return [self._tasks[task_id] for task_id in self.native.queued(queue)]

    def _run(self, task_id: int, seed: int) -> None:
        # Called by the Rust scheduler for the task it picked.
        task = self._tasks.pop(task_id)
        task.state = _RUNNING
        try:
            task.execute(seed)
        finally:
            if task.state == _RUNNING:
                task.state = _DONE

    def drive(self, wanted: _Task) -> None:
        """Runs tasks of ``wanted``'s queue, chosen by the seed, until it has run."""
        with self.lock:
            if wanted.state == _QUEUED:
                self.native.drive(wanted.id, self._run)

    def spawn_queue(self, group: Any) -> int:
        with self.lock:
            entry = self._spawn_queues.get(id(group))
            if entry is None or entry[0] is not group:
                entry = self._spawn_queues[id(group)] = (group, self.native.new_queue())
            return entry[1]

    def drain(self) -> None:
        """Runs every spawned task still queued, in seeded order."""
        with self.lock:
            self.native.drain(self._run)
            self._spawn_queues.clear()

    def cancel_all(self) -> None:
        """Cancels every spawned task still queued."""
        with self.lock:
            for task_id in self.native.queued_spawns():
                self._tasks[task_id].cancel_queued()
            self._spawn_queues.clear()

    def finish_replay(self) -> None:
        """Checks that a replay ran every recorded task."""
        self.native.finish_replay()


# ---------------------------------------------------------------------------
# Pipelines: an executor wrapper whose runs queue chunks in the scheduler


class _ChunkTask(_Task):
    __slots__ = ("run", "fn", "chunk", "value", "error", "elapsed")

    def __init__(self, run: _DetRun, index: int, fn: Any, chunk: Any) -> None:
        super().__init__(run.scheduler, index, run.label, run.executor_name)
        self.run = run
        self.fn = fn
        self.chunk = chunk
        self.value: Any = None
        self.error: Optional[BaseException] = None
        self.elapsed = 0.0

    def execute(self, seed: int) -> None:
        run = self.run
        fn, chunk = self.fn, self.chunk
        self.fn = self.chunk = None
        if run.closed:
            self.state = _CANCELLED
            return
        started = time.perf_counter()
        try:
            if run.inner is None:
                _seed_generators(seed)
                self.value = run.ctx.copy().run(fn, chunk)
            else:
                seeded = run.seeded
                if seeded is None or seeded.fn is not fn:
                    # One wrapper per chunk function: executors that ship the
                    # function once per run (the process executor) see one.
                    seeded = run.seeded = _Seeded(fn)
                handle = run.inner.submit(seeded, (seed, chunk))
                self.value = run.inner.result(handle)
        except BaseException as error:
            self.error = error
            run.failed(self)
            if not isinstance(error, Exception):
                raise  # Ctrl+C, SystemExit: at once, not when the chunk is reached
        finally:
            self.elapsed = time.perf_counter() - started

    def on_cancelled(self) -> None:
        self.fn = self.chunk = None


class _DetRun:
    """A :class:`~vedart.Run` whose chunks are tasks of the scheduler."""

    __slots__ = (
        "scheduler",
        "inner",
        "mode",
        "queue",
        "label",
        "executor_name",
        "ctx",
        "closed",
        "error",
        "count",
        "seeded",
    )

    def __init__(self, scheduler: Scheduler, inner: Any, mode: str, executor_name: str) -> None:
        self.scheduler = scheduler
        self.inner = inner
        self.mode = mode
        self.queue = scheduler.new_queue()
        self.label = "chunk"
        self.executor_name = executor_name
        self.ctx = contextvars.copy_context()
        self.closed = False
        self.error: Optional[_ChunkTask] = None
        self.count = 0
        self.seeded: Optional[_Seeded] = None

    def describe(self, label: str) -> None:
        self.label = label

    def submit(self, fn: Callable[[Any], Any], chunk: Any) -> _ChunkTask:
        task = _ChunkTask(self, self.count, fn, chunk)
        self.count += 1
        if self.closed:
            task.state = _CANCELLED
        else:
            self.scheduler.submit(task, self.queue, False)
        return task

    def failed(self, task: _ChunkTask) -> None:
        """A chunk raised: fail-fast runs cancel every queued chunk, ordered
        runs only those after it (the consumer never reaches them)."""
        if self.error is None:
            self.error = task
        doomed = self.scheduler.queued(self.queue)
        if self.mode != "fail_fast":
            doomed = [t for t in doomed if t.index > task.index]
        for queued in doomed:
            queued.cancel_queued()

    def result(self, handle: _ChunkTask) -> Any:
        if not handle.finished:
            self.scheduler.drive(handle)
        if handle.error is not None:
            self.cancel()
            raise handle.error
        if handle.state == _CANCELLED:
            first = self.error
            self.cancel()
            if first is not None and first.error is not None:
                raise first.error  # cancelled because that chunk failed first
            raise CancelledError("the pipeline was cancelled")
        return handle.value

    def cancel(self) -> None:
        self.closed = True
        for task in self.scheduler.queued(self.queue):
            task.cancel_queued()
        if self.inner is not None:
            self.inner.cancel()


class DeterministicExecutor:
    """Runs another executor's chunks as tasks of a :class:`Scheduler`.

    The engine treats it like any :class:`~vedart.Executor`: it has a fixed
    ``default_chunk_size`` and never runs work inline on its own judgement.
    """

    inline_per_item: Optional[float] = None

    def __init__(self, scheduler: Scheduler, inner: Any) -> None:
        self.scheduler = scheduler
        self.inner = inner
        self.name = getattr(inner, "name", "executor")
        self.workers = scheduler.workers
        self.default_chunk_size = DETERMINISTIC_CHUNK_ITEMS

    def start(self, mode: str) -> _DetRun:
        # Thread-executor chunks run on the waiting thread; others one at a time.
        inner_run = None if self.name in ("thread", "serial") else self.inner.start(mode)
        return _DetRun(self.scheduler, inner_run, mode, self.name)

    def __repr__(self) -> str:
        return f"<vedart deterministic executor over {self.name!r}>"


# ---------------------------------------------------------------------------
# Spawned callables


class _SpawnTask(_Task):
    """A spawned callable waiting in the scheduler; it is also the ``_veda_task``
    of its :class:`~vedart.Future`, which calls :meth:`run_inline` to wait."""

    __slots__ = ("group", "call", "future", "ctx")

    def __init__(
        self,
        scheduler: Scheduler,
        group: Any,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        future: Any,
        index: int,
    ) -> None:
        super().__init__(scheduler, index, f"spawn({_trace.describe(fn)})", "thread")
        self.group = group
        self.call: Optional[tuple[Any, ...]] = (fn, args, kwargs)
        self.future = future
        self.ctx = contextvars.copy_context()

    def execute(self, seed: int) -> None:
        call, self.call = self.call, None
        future = self.future
        if call is None or self.group.cancelled:
            self.state = _CANCELLED
            _base_cancel(future)
            future.set_running_or_notify_cancel()
            return
        if not future.set_running_or_notify_cancel():
            self.state = _CANCELLED
            return
        fn, args, kwargs = call
        _seed_generators(seed)
        try:
            value = self.ctx.run(fn, *args, **kwargs)
        except BaseException as error:
            future.set_exception(error)
            if not isinstance(error, Exception):
                raise
            return
        future.set_result(value)

    def on_cancelled(self) -> None:
        self.call = None
        _base_cancel(self.future)
        self.future.set_running_or_notify_cancel()

    # -- what veda.Future expects of its task ---------------------------------

    @property
    def done(self) -> bool:
        return self.finished

    def cancel(self) -> bool:
        with self.scheduler.lock:
            return self.cancel_queued() or self.state == _CANCELLED

    def run_inline(self) -> bool:
        if not self.finished:
            self.scheduler.drive(self)
        return True

    def wait_spin(self, seconds: float) -> bool:
        return self.run_inline()

    def result(self) -> Any:
        import concurrent.futures

        return concurrent.futures.Future.result(self.future, 0)


def spawn(
    scheduler: Scheduler,
    group: Any,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    future: Any,
    index: int,
) -> None:
    """Queues ``fn(*args, **kwargs)`` as a task completing ``future``."""
    task = _SpawnTask(scheduler, group, fn, args, kwargs, future, index)
    scheduler.submit(task, scheduler.spawn_queue(group), True)
    future._veda_task = task


def run_deferred(futures: list[Any]) -> None:
    """Runs the queued deterministic tasks behind ``futures`` (a scope waits)."""
    for future in futures:
        task = future._veda_task
        if isinstance(task, _SpawnTask) and not task.finished:
            task.run_inline()


async def completed(fn: Callable[..., Any], *args: Any) -> Any:
    """An awaitable that runs ``fn(*args)`` on the awaiting thread: terminal
    operations awaited in deterministic mode run in program order."""
    return fn(*args)


# ---------------------------------------------------------------------------
# Activation: per context (the ``with`` blocks) or global (the Config)

_current: contextvars.ContextVar[Optional[Scheduler]] = contextvars.ContextVar(
    "vedart_deterministic", default=None
)

_global_lock = threading.Lock()
#: ``(runtime, scheduler)``: the global scheduler of a deterministic runtime
#: configuration, or ``None`` as the scheduler when the runtime is not one.
_global: Optional[tuple[Any, Optional[Scheduler]]] = None


def _global_scheduler(runtime: Any) -> Optional[Scheduler]:
    global _global
    with _global_lock:
        entry = _global
        if entry is None or entry[0] is not runtime:
            config = runtime.config
            seed = config.deterministic_seed
            on = seed is not None or config.scheduling_policy.name == "DETERMINISTIC"
            entry = _global = (runtime, Scheduler(seed or 0) if on else None)
        return entry[1]


def current() -> Optional[Scheduler]:
    """The scheduler of the calling context: the innermost ``deterministic``
    block, else the global one of a deterministic runtime configuration."""
    scheduler = _current.get()
    if scheduler is not None:
        return scheduler
    runtime = _runtime._current
    if runtime is None:
        return None
    entry = _global
    if entry is not None and entry[0] is runtime:
        return entry[1]
    return _global_scheduler(runtime)


def finish_global(runtime: Any) -> None:
    """Runs the spawned tasks still queued in the global scheduler of
    ``runtime`` (called before it shuts down), then forgets the scheduler."""
    global _global
    entry = _global
    if entry is None or entry[0] is not runtime:
        return
    try:
        if entry[1] is not None:
            entry[1].drain()
    finally:
        with _global_lock:
            if _global is entry:
                _global = None


def _after_fork_in_child() -> None:
    # Another thread may have held the lock when this process forked.
    global _global_lock
    _global_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
# Global deterministic mode: spawned tasks nobody waited for run before the
# runtime stops.
_runtime.on_shutdown(before=finish_global)


def _check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    if not 0 <= seed < 2**64:
        raise ConfigError("seed", f"must be in [0, 2**64), got {seed}")
    return seed


def _capture_generators() -> tuple[Any, Any]:
    numpy = sys.modules.get("numpy")
    return random.getstate(), (numpy.random.get_state() if numpy is not None else None)


def _restore_generators(saved: tuple[Any, Any]) -> None:
    state, numpy_state = saved
    random.setstate(state)
    numpy = sys.modules.get("numpy")
    if numpy is not None and numpy_state is not None:
        numpy.random.set_state(numpy_state)


@contextlib.contextmanager
def _activate(scheduler: Scheduler) -> Iterator[Scheduler]:
    saved = _capture_generators()
    token = _current.set(scheduler)
    try:
        yield scheduler
        scheduler.drain()
        scheduler.finish_replay()
    except BaseException:
        scheduler.cancel_all()
        raise
    finally:
        _current.reset(token)
        _restore_generators(saved)
        if scheduler.trace is not None:
            scheduler.trace._detach()


@contextlib.contextmanager
def deterministic(
    seed: int, record: bool = False, *, workers: int = DEFAULT_WORKERS
) -> Iterator[Optional[ExecutionTrace]]:
    """Runs the pipelines and spawns of the block in an order determined by
    ``seed``, with ``random`` (and NumPy's global generator) seeded per task.

    Scoped to the calling context: other threads run normally. Yields the
    :class:`ExecutionTrace` being recorded when ``record`` is true, else
    ``None``. When the block ends, spawned tasks nobody waited for run, and
    the caller's ``random``/NumPy generator states are restored.

    Args:
        seed: any integer in ``[0, 2**64)``.
        record: record an :class:`ExecutionTrace` of the run.
        workers: logical workers (assigned round-robin by logical time; they
            also size the pipeline look-ahead window).

    Raises:
        TypeError: ``seed`` is not an int.
        ConfigError: ``seed`` or ``workers`` out of range.

    Examples:
        >>> import random, vedart as veda
        >>> def draws(seed):
        ...     with veda.deterministic(seed):
        ...         return veda.par_iter(range(100)).map(lambda _: random.random()).collect()
        >>> draws(1) == draws(1), draws(1) == draws(2)
        (True, False)
    """
    seed = _check_seed(seed)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError("workers", f"must be a positive int, got {workers!r}")
    scheduler = Scheduler(seed, workers, record=record)
    with _activate(scheduler):
        yield scheduler.trace


@contextlib.contextmanager
def replay(trace: ExecutionTrace) -> Iterator[ExecutionTrace]:
    """Runs the block again with the seed and logical workers of ``trace``,
    which gives the recorded order when the program does the same thing, and
    yields the trace of this run, equal to ``trace`` when it did.

    Raises:
        ReplayError: the program submits tasks the trace does not have, or in
            another order, or fewer than it has.
        TypeError: ``trace`` is not an :class:`ExecutionTrace`.

    Examples:
        >>> import vedart as veda
        >>> with veda.deterministic(3, record=True) as first:
        ...     _ = veda.par_iter(range(200)).map(abs).sum()
        >>> with veda.replay(first) as again:
        ...     _ = veda.par_iter(range(200)).map(abs).sum()
        >>> again == first
        True
    """
    if not isinstance(trace, ExecutionTrace):
        raise TypeError(f"replay() expects an ExecutionTrace, got {type(trace).__name__}")
    scheduler = Scheduler(trace.seed, trace.workers, record=True, replay=trace)
    with _activate(scheduler):
        assert scheduler.trace is not None
        yield scheduler.trace


def awaitable_terminal(fn: Callable[..., Any], *args: Any) -> Any:
    """What a terminal operation returns on a thread with a running event loop:
    in deterministic mode the work runs when awaited, on the loop's thread."""
    if current() is not None:
        return completed(fn, *args)
    return _asyncio.run_blocking(fn, *args)

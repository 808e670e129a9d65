"""Executors: where the chunks of a pipeline run.

An :class:`Executor` starts a :class:`Run` for each parallel segment of a
pipeline; the engine (:mod:`vedart._engine`) submits chunks to the run and
collects their results in order. This is the seam later executors plug into
(the process, async and GPU executors implement the same two classes). The
choice between executors is made above them all, in :mod:`vedart._adaptive`
(``resolve_executor``), so that this module imports none of them.

* :class:`ThreadExecutor` runs chunks on the Rust thread pool. A worker takes
  the interpreter once per chunk and runs the fused chain item by item; each
  task runs in a copy of the caller's :mod:`contextvars` context.
* :class:`SerialExecutor` runs each chunk at once on the calling thread
  (``executor="serial"``): the reference behaviour, handy for debugging.
* :class:`AsyncExecutor` (``executor="async"``, ``ASYNC_ONLY``): coroutine
  functions are awaited on an event loop by the ``async_map`` stage; the plain
  callables of the pipeline run on the thread pool, never on the loop.
* The process executor (:mod:`vedart._process`), the GPU executor
  (:mod:`vedart._gpu`), the cluster engines (:mod:`vedart._cluster`:
  ``executor="dask"``) and the adaptive choice between them all
  (:mod:`vedart._adaptive`, the default) live in their own modules.
"""

from __future__ import annotations

import contextvars
import threading
import time
from typing import Any, Callable, Optional

from . import _vedart
from ._cluster import ENGINES
from ._deadline import WaitExpired, poll_pause
from .exceptions import CancelledError, _attach_others

__all__ = [
    "Executor",
    "Run",
    "ThreadExecutor",
    "SerialExecutor",
    "AsyncExecutor",
]

#: Executor names accepted by ``par_iter(..., executor=...)``.
EXECUTOR_NAMES = ("auto", "thread", "serial", "process", "async", "gpu", *ENGINES)

#: ``Stage.arg`` of a ``map`` stage whose function must run on the thread pool
#: (a plain callable given to ``async_map``): the adaptive executor then never
#: runs its segment inline or in other processes.
THREAD_POOL = "thread pool"


class Run:
    """One set of chunk tasks submitted by the engine, with one failure policy.

    ``mode`` is ``"fail_fast"`` (the first failure cancels everything and is
    raised at once) or ``"ordered"`` (a failure cancels only later chunks and is
    raised when the consumer reaches it).
    """

    def submit(self, fn: Callable[[Any], Any], chunk: Any) -> Any:
        """Schedules ``fn(chunk)``; returns a handle with an ``elapsed`` attribute."""
        raise NotImplementedError

    def result(self, handle: Any, timeout: Optional[float] = None) -> Any:
        """Waits for the chunk and returns ``fn(chunk)``, or raises its error.

        With ``timeout`` (seconds; the operation's deadline, see ``timeout=``
        of terminal operations), gives up after that long by raising
        ``vedart._deadline.WaitExpired``; the engine then cancels the run. A
        ``result`` without the ``timeout`` parameter waits in full, and the
        deadline is checked between chunks."""
        raise NotImplementedError

    def cancel(self) -> None:
        """Cancels chunks not started; running ones see ``vedart.cancelled()``."""
        raise NotImplementedError

    def describe(self, label: str) -> None:
        """Names the work the chunks do (the fused stages, e.g. ``"map(f)"``);
        deterministic traces record it. The default ignores it."""

    #: Seconds one chunk should take; ``None``: the engine's default (a few
    #: milliseconds). Read after every chunk, so a run may change it.
    target_chunk_seconds: Optional[float] = None

    def expect(self, items: Optional[int]) -> None:
        """Told, before the first ``submit``, how many items the engine will
        submit (``None`` when unknown). The default ignores it."""

    def release(self) -> None:
        """The consumer stopped early without an error (``take``, ``any``, a
        ``break``): results still in flight are not wanted. The default
        cancels them; a run may instead let short work finish."""
        self.cancel()

    def explain(self) -> tuple[str, str]:
        """``(executor, reason)`` for ``ParallelIterator.explain()``; the
        default leaves it to the executor's ``name`` and ``reason``."""
        return ("", "")

    # A run that can hand results on in completion order (``unordered()``)
    # defines ``in_completion_order() -> bool``, called before the first
    # ``submit``, and ``completed(handles, timeout=None) -> int``: the
    # position in ``handles`` (chunks submitted, not yet taken with
    # ``result``) of one that finished, the first to finish first, waiting
    # at most ``timeout`` seconds (then raising ``WaitExpired``). A run
    # without them is read in submission order.


class Executor:
    """Runs chunk functions somewhere; see the module documentation."""

    #: Name shown by ``explain`` and error notes.
    name = "executor"
    #: How many chunks run at once: sizes the look-ahead window.
    workers = 1
    #: Cost per item (seconds) below which the engine runs items on the calling
    #: thread instead (see :mod:`vedart._engine`, step 5); ``None``: never.
    inline_per_item: Optional[float] = None
    #: Chunk size used when neither the pipeline nor the config sets one;
    #: ``None`` adapts it to measured cost (deterministic mode fixes it, since
    #: chunk boundaries must not depend on timing).
    default_chunk_size: Optional[int] = None
    #: Why this executor was chosen, for ``explain()``.
    reason = "a vedart.Executor was given"

    def start(self, mode: str) -> Run:
        """Starts a :class:`Run` with failure policy ``mode``."""
        raise NotImplementedError


class _Finishing:
    """A chunk function that reports its chunk's end to an unordered
    :class:`_ThreadRun` (whatever the outcome)."""

    __slots__ = ("fn", "run", "index")

    def __init__(self, fn: Callable[[Any], Any], run: _ThreadRun, index: int) -> None:
        self.fn = fn
        self.run = run
        self.index = index

    def __call__(self, chunk: Any) -> Any:
        try:
            return self.fn(chunk)
        finally:
            self.run._finished(self.index)


#: Longest single sleep of an unordered thread run's wait, so that a
#: cancelled group (whose unstarted chunks never report) is noticed.
_COMPLETED_POLL_SECONDS = 0.05


class _ThreadRun(Run):
    __slots__ = ("_group", "_ctx", "_done", "_wake", "_submitted")

    def __init__(self, pool: Any, mode: str) -> None:
        self._group = _vedart.Group(pool, mode)  # type: ignore[arg-type]
        self._ctx = contextvars.copy_context()
        #: Unordered runs: indices of finished chunks not yet taken with
        #: ``result``, in finishing order.
        self._done: Optional[dict[int, None]] = None
        self._wake: Optional[threading.Condition] = None
        self._submitted = 0

    def in_completion_order(self) -> bool:
        self._done = {}
        self._wake = threading.Condition(threading.Lock())
        return True

    def _finished(self, index: int) -> None:
        wake = self._wake
        assert wake is not None and self._done is not None
        with wake:
            self._done[index] = None
            wake.notify()

    def completed(self, handles: Any, timeout: Optional[float] = None) -> int:
        wake, done = self._wake, self._done
        assert wake is not None and done is not None
        if _vedart.in_task():
            # A worker thread must not sleep here: the group's wait runs
            # queued chunks itself, which keeps nested pipelines from
            # deadlocking a small pool. So it takes a finished chunk if
            # there is one, else waits (and helps) for the oldest.
            for finished, task in enumerate(handles):
                if task.done:
                    return finished
            return 0
        # Task.index is the position in the group, which is the submit count.
        positions = {task.index: i for i, task in enumerate(handles)}
        deadline = None if timeout is None else time.monotonic() + timeout
        with wake:
            while True:
                for index in done:
                    position = positions.get(index)
                    if position is not None:
                        return position
                if self._group.failed or self._group.cancelled:
                    # Chunks cancelled before they started never report:
                    # the oldest one tells what happened.
                    return 0
                wake.wait(poll_pause(_COMPLETED_POLL_SECONDS, deadline))

    def submit(self, fn: Callable[[Any], Any], chunk: Any) -> Any:
        if self._done is not None:
            fn = _Finishing(fn, self, self._submitted)
            self._submitted += 1
        return self._group.submit(self._ctx.copy().run, (fn, chunk))

    def result(self, task: Any, timeout: Optional[float] = None) -> Any:
        done = self._done
        if done is not None:
            assert self._wake is not None
            with self._wake:
                reported = task.index in done
                done.pop(task.index, None)
            if reported and not task.done:
                # The chunk reported its end a moment before its task did; an
                # "ordered" group's wait would hold it behind earlier ones.
                task.wait(timeout)
        if not task.done:
            status = self._group.wait(task, timeout)
            if status == "timeout":
                raise WaitExpired
            if status == "failed":
                raise self._first_error()
            if status == "cancelled":
                raise CancelledError("the pipeline was cancelled")
        try:
            return task.result()
        except BaseException as exc:
            error = exc
        if task.state == "cancelled" and self._group.failed:
            # Cancelled because another chunk failed first: that error wins.
            raise self._first_error()
        # Raised outside the except block, so the error keeps its own context.
        others = self._group.errors()
        self._group.cancel()
        raise _attach_others(error, others)

    def _first_error(self) -> BaseException:
        errors = self._group.errors()
        self._group.cancel()
        return _attach_others(errors[0], errors[1:])

    def cancel(self) -> None:
        self._group.cancel()


#: Items cheaper than this hold the interpreter for less time than it takes to
#: hand it to another thread, so threads cannot speed them up.
THREAD_INLINE_PER_ITEM = 1e-6


class ThreadExecutor(Executor):
    """Runs chunks on the runtime's thread pool."""

    name = "thread"
    inline_per_item: Optional[float] = THREAD_INLINE_PER_ITEM

    def __init__(self, runtime: Any, reason: str = 'executor="thread" was requested') -> None:
        self._pool = runtime._pool
        self.workers = runtime.num_workers
        self.reason = reason

    def start(self, mode: str) -> Run:
        return _ThreadRun(self._pool, mode)


class _Done:
    __slots__ = ("value", "error", "elapsed")

    def __init__(self, value: Any, error: Optional[BaseException], elapsed: float) -> None:
        self.value = value
        self.error = error
        self.elapsed = elapsed


class _SerialRun(Run):
    __slots__ = ("_cancelled", "_failed")

    def __init__(self, mode: str) -> None:
        self._cancelled = False
        self._failed = False

    def submit(self, fn: Callable[[Any], Any], chunk: Any) -> Any:
        if self._cancelled or self._failed:
            return _Done(None, CancelledError("the pipeline was cancelled"), 0.0)
        started = time.perf_counter()
        try:
            value = fn(chunk)
        except BaseException as exc:  # delivered in order by result()
            self._failed = True
            return _Done(None, exc, time.perf_counter() - started)
        return _Done(value, None, time.perf_counter() - started)

    def result(self, handle: Any, timeout: Optional[float] = None) -> Any:
        # The chunk ran in submit(); the engine checks the deadline between chunks.
        if handle.error is not None:
            raise handle.error
        return handle.value

    def cancel(self) -> None:
        self._cancelled = True


class SerialExecutor(Executor):
    """Runs each chunk immediately on the calling thread."""

    name = "serial"
    workers = 1
    reason = 'executor="serial" was requested'

    def start(self, mode: str) -> Run:
        return _SerialRun(mode)


#: The one serial executor (it holds no state).
SERIAL = SerialExecutor()


class AsyncExecutor(ThreadExecutor):
    """``executor="async"``: coroutine functions are awaited on an event loop
    (by the ``async_map`` stage); the pipeline's plain callables run on the
    thread pool, never on the loop (nor on the calling thread)."""

    name = "async"
    inline_per_item: Optional[float] = None

    def __init__(self, runtime: Any, reason: str = 'executor="async" was requested') -> None:
        super().__init__(runtime, reason)
        self.reason = (
            f"{reason}; plain callables of an async pipeline run on the thread pool, "
            "never on the event loop"
        )


def check_executor_spec(spec: Any) -> None:
    """Raises at once for an ``executor=`` value that can never work."""
    if spec is None or isinstance(spec, Executor):
        return
    if not isinstance(spec, str):
        raise TypeError(f"executor must be a name or a vedart Executor, got {type(spec).__name__}")
    if spec not in EXECUTOR_NAMES:
        raise ValueError(f"executor must be one of {', '.join(EXECUTOR_NAMES)}; got {spec!r}")

"""joblib's ``Parallel``, and scikit-learn's ``n_jobs=``, on VedaRT.

Importing this module registers the joblib parallel backend ``"vedart"``::

    import joblib
    import vedart.joblib  # noqa: F401

    with joblib.parallel_config(backend="vedart", n_jobs=-1):
        scores = cross_val_score(SVC(), X, y, cv=5)

How it works (the backend adapts :class:`vedart.VedaExecutor` to joblib, as
joblib's Dask backend adapts Dask's client):

1. Each ``Parallel`` call configures the backend. It runs batches on threads
   when joblib asks for them (``prefer="threads"``, ``require="sharedmem"``),
   else in worker processes, through a :class:`vedart.VedaExecutor` of its own
   over VedaRT's shared pools: the runtime's threads, or the warm worker
   processes of the process executor. Several ``Parallel`` calls, pipelines
   and executors therefore share the cores instead of each starting workers.
2. ``n_jobs=-1`` is every worker of that pool (``-2`` all but one, ...);
   ``n_jobs`` is capped at the pool's size, and at most ``n_jobs`` batches of
   the call run at once (the others wait in the backend). ``n_jobs=1`` runs
   sequentially, as in every joblib backend. joblib's auto-batching groups
   tiny calls into batches.
3. Nested ``Parallel`` calls: inside a worker process they run sequentially
   (the processes fill the cores already). Inside a VedaRT thread they use
   the same thread pool (no threads added), and wait for their batches in
   order with :meth:`vedart.Future.result`, which runs a batch no thread has
   started on the waiting thread itself: a pool busy with waiting callers
   still makes progress, so nesting cannot deadlock.
4. Errors reach the caller with their type and message; from a worker
   process the worker's traceback comes with them (a note, and
   ``exc.veda_remote_traceback``). A worker process that dies raises
   :class:`TerminatedWorkerError` (joblib's ``TerminatedWorkerError``, as
   loky raises it) from the :class:`vedart.WorkerCrashedError`; the pool has
   replaced the worker. On an error, a timeout or Ctrl+C, joblib aborts the
   call: its waiting batches are cancelled and the worker processes running
   its batches are killed (and replaced); batches running on threads finish.

joblib's memory-mapping options (``max_nbytes``, ``mmap_mode``,
``temp_folder``) do not apply: arguments are pickled to the worker processes.
"""

from __future__ import annotations

import collections
import itertools
import threading
import traceback
from typing import Any, Callable, Optional

import joblib  # type: ignore[import-untyped]
from joblib.externals.loky.process_executor import (  # type: ignore[import-untyped]
    TerminatedWorkerError as _LokyTerminatedWorkerError,
)
from joblib.parallel import (  # type: ignore[import-untyped]
    AutoBatchingMixin,
    FallbackToBackend,
    ParallelBackendBase,
    SequentialBackend,
)

from . import _process, _vedart
from ._cf_executor import VedaExecutor
from ._future import Future
from ._runtime import get_runtime
from .exceptions import BrokenProcessPoolError, _attach_note

__all__ = ["VedaBackend", "TerminatedWorkerError", "BACKEND_NAME"]

#: The name the backend is registered under.
BACKEND_NAME = "vedart"

#: The first joblib whose backends implement ``submit`` (1.5.0).
MIN_JOBLIB = (1, 5)


def _version(text: str) -> tuple[int, ...]:
    parts = []
    for part in text.split(".")[:2]:
        digits = "".join(itertools.takewhile(str.isdigit, part))
        parts.append(int(digits or 0))
    return tuple(parts)


if _version(joblib.__version__) < MIN_JOBLIB:
    raise ImportError(
        f"vedart.joblib needs joblib {'.'.join(map(str, MIN_JOBLIB))} or newer; "
        f"joblib {joblib.__version__} is installed"
    )


class TerminatedWorkerError(BrokenProcessPoolError, _LokyTerminatedWorkerError):
    """A worker process died while it ran a batch of a ``Parallel`` call.

    Also joblib's ``TerminatedWorkerError`` (what the loky backend raises)
    and a :class:`vedart.BrokenProcessPoolError`; its ``__cause__`` is the
    :class:`vedart.WorkerCrashedError` naming the pid and the exit status or
    signal.
    """


def _result(fut: Future, timeout: Optional[float] = None) -> Any:
    try:
        return fut.result(timeout)
    except BrokenProcessPoolError as broken:
        if isinstance(broken, TerminatedWorkerError):
            raise
        raise TerminatedWorkerError(
            f"a worker process was terminated while it ran a batch of joblib tasks: "
            f"{broken.__cause__ or broken}"
        ) from (broken.__cause__ or broken)
    except Exception as error:
        _keep_traceback(error)
        raise


def _keep_traceback(error: BaseException) -> None:
    """joblib drops the ``__traceback__`` of a task's error (so that it keeps
    no frames alive): an error raised on a thread keeps its text, as one from
    a worker process does (a note and ``veda_remote_traceback``)."""
    if getattr(error, "veda_remote_traceback", None) is not None or error.__traceback__ is None:
        return
    text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    try:
        error.veda_remote_traceback = text  # type: ignore[attr-defined]
    except (AttributeError, TypeError):  # pragma: no cover - exotic exception types
        return
    _attach_note(error, f"vedart: raised in a worker thread; its traceback:\n{text.rstrip()}")


class VedaBackend(AutoBatchingMixin, ParallelBackendBase):  # type: ignore[misc]
    """The joblib parallel backend ``"vedart"``; see the module documentation."""

    supports_retrieve_callback = True
    supports_return_generator = True
    supports_timeout = True
    supports_sharedmem = True
    default_n_jobs = 1

    def __init__(
        self,
        nesting_level: Optional[int] = None,
        inner_max_num_threads: Optional[int] = None,
        threads: bool = False,
        **backend_kwargs: Any,
    ) -> None:
        super().__init__(
            nesting_level=nesting_level,
            inner_max_num_threads=inner_max_num_threads,
            **backend_kwargs,
        )
        #: A nested backend of a thread batch: threads unless processes are asked for.
        self._nested_threads = threads
        self._threads = threads
        self._executor: Optional[VedaExecutor] = None
        self._lock = threading.Lock()
        #: Batches waiting for one of the call's ``n_jobs`` slots: ``(future, batch)``.
        self._waiting: collections.deque[tuple[Future, Callable[[], Any]]] = collections.deque()
        self._running = 0
        #: Batches of the call that may run at once; ``None``: no limit here.
        self._limit: Optional[int] = None

    def _pool_size(self) -> int:
        runtime = get_runtime()
        if self._threads:
            return int(runtime.num_workers)
        return int(_process.ProcessExecutor(runtime).workers)

    def effective_n_jobs(self, n_jobs: Optional[int]) -> int:
        """How many batches of a call run at once (step 2)."""
        if n_jobs == 0:
            raise ValueError("n_jobs == 0 in Parallel has no meaning")
        if n_jobs is None or _process.in_worker():
            return 1
        size = self._pool_size()
        if n_jobs < 0:
            return max(size + 1 + n_jobs, 1)
        return min(n_jobs, size)

    def configure(
        self,
        n_jobs: int = 1,
        parallel: Any = None,
        prefer: Optional[str] = None,
        require: Optional[str] = None,
        **backend_kwargs: Any,
    ) -> int:
        """Chooses threads or processes for the call (step 1) and returns its
        number of workers."""
        if self._nested_threads:
            self._threads = prefer != "processes"
        else:
            self._threads = prefer == "threads" or require == "sharedmem"
        n = self.effective_n_jobs(n_jobs)
        if n == 1:
            raise FallbackToBackend(SequentialBackend(nesting_level=self.nesting_level))
        # Step 3: a call made by a VedaRT task waits for its batches in order,
        # helping, which joblib does when results are not retrieved by callback.
        helping = bool(_vedart.in_task())
        if helping and parallel is not None and not parallel.return_ordered:
            # Results in completion order need the callbacks: run sequentially.
            raise FallbackToBackend(SequentialBackend(nesting_level=self.nesting_level))
        self.supports_retrieve_callback = not helping
        self._limit = None if helping else n
        self.parallel = parallel
        self._executor = VedaExecutor("thread" if self._threads else "process")
        return n

    def submit(self, func: Callable[[], Any], callback: Optional[Callable[..., Any]] = None) -> Future:
        """Schedules one batch; returns its :class:`vedart.Future`."""
        fut = Future()
        fut.add_done_callback(self._finished)
        if callback is not None:
            fut.add_done_callback(callback)
        with self._lock:
            limit = self._limit
            if limit is not None and self._running >= limit:
                self._waiting.append((fut, func))
                return fut
            self._running += 1
        self._start(fut, func)
        return fut

    def _start(self, fut: Future, func: Callable[[], Any]) -> None:
        fut._veda_started = True  # type: ignore[attr-defined]
        executor = self._executor
        try:
            if executor is None:
                raise RuntimeError("the vedart joblib backend is not configured")
            executor._submit_into(fut, func)
        except BaseException as error:  # a batch that does not pickle, a closed runtime
            if fut.set_running_or_notify_cancel():
                fut.set_exception(error)

    def _finished(self, fut: Any) -> None:
        if not getattr(fut, "_veda_started", False):
            return
        with self._lock:
            self._running -= 1
            if not self._waiting:
                return
            self._running += 1
            nxt, func = self._waiting.popleft()
        self._start(nxt, func)

    def retrieve_result_callback(self, out: Future) -> Any:
        """The batch's results (joblib calls this from the future's callback)."""
        return _result(out)

    def retrieve_result(self, out: Future, timeout: Optional[float] = None) -> Any:
        """The batch's results, waited for in order (step 3)."""
        return _result(out, timeout)

    def abort_everything(self, ensure_ready: bool = True) -> None:
        """Step 4: cancels the waiting batches and kills the worker processes
        running the call's batches."""
        with self._lock:
            waiting, self._waiting = list(self._waiting), collections.deque()
        for fut, _ in waiting:
            fut.cancel()
        executor = self._executor
        if executor is not None:
            executor._abort()
            if not ensure_ready:
                executor.shutdown(wait=False)
                self._executor = None

    def terminate(self) -> None:
        """The end of a ``Parallel`` call: its executor refuses new batches
        (the pools it used stay warm)."""
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False)
        self.reset_batch_stats()

    def get_nested_backend(self) -> tuple[ParallelBackendBase, Optional[int]]:
        """Step 3: sequential inside worker processes, the same thread pool
        inside threads."""
        level = (self.nesting_level or 0) + 1
        if self._threads:
            return VedaBackend(nesting_level=level, threads=True), None
        return SequentialBackend(nesting_level=level), None

    def __repr__(self) -> str:
        return f"VedaBackend({'threads' if self._threads else 'processes'})"


joblib.register_parallel_backend(BACKEND_NAME, VedaBackend)

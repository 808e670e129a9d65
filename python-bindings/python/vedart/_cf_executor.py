"""``vedart.VedaExecutor``: VedaRT behind the :class:`concurrent.futures.Executor` interface.

How it works:

1. Where calls run. ``executor="thread"`` runs them on the runtime's thread
   pool, shared with pipelines and :func:`vedart.spawn`, so that several
   executors never oversubscribe the machine; with ``max_workers``,
   ``initializer`` or ``thread_name_prefix`` it gets a thread pool of its own
   (a ``_vedart.Runtime`` of at most ``max_workers`` threads), as a
   :class:`~concurrent.futures.ThreadPoolExecutor` has. ``executor="process"``
   runs them in the warm worker processes of the process executor (the
   children that ``par_iter(..., executor="process")`` uses); with
   ``max_workers`` or ``initializer`` it gets worker processes of its own.
   Pools of its own are stopped by :meth:`VedaExecutor.shutdown`; the shared
   ones live as long as the runtime. ``executor="auto"`` submits to the
   runtime's threads and lets ``map`` choose as ``par_iter`` does.
   ``executor="dask"`` sends each call to the cluster of
   ``veda.init(cluster=...)`` (:mod:`vedart._dask`), waited for by a task on
   the runtime's threads, and runs ``map`` as a pipeline there.
2. ``submit`` on threads: a task of the executor's task group, which
   completes a :class:`vedart.Future` (a :class:`concurrent.futures.Future`)
   in Rust. On processes: the call is pickled at once (a :class:`TypeError`
   names what does not pickle) and at most :data:`CALLS_PER_WORKER` calls per
   worker are in the pool at a time: those are *running* (as in
   ``ProcessPoolExecutor``'s call queue); the others wait here, *pending*, and
   ``cancel()`` works on them. A collector thread (``veda-executor-collect``)
   takes the calls that resolved (``ProcessBatch.take_completed``), completes
   their futures and sends the pending calls that now fit; it exits after
   :data:`COLLECTOR_LINGER_SECONDS` with nothing in flight.
3. ``map`` reads its iterables at once and starts the work without waiting
   for iteration, as the standard executors do. A pump thread
   (``veda-executor-map``) runs the calls as a pipeline of the engine
   (:mod:`vedart._engine`): chunks adapt to the measured cost per item, from
   one-item probes up, so slow items go one per chunk and tiny ones are
   batched (also on processes with ``chunksize=1``, where a hand-off costs
   more than a tiny item; ``chunksize > 1`` fixes the chunk size for
   processes). An item's exception is caught where it ran
   (``vedart._worker.run_item``) and raised when the iterator reaches it, so
   results before it come first. The iterator keeps no reference to what it
   yielded.
4. Ending a ``map`` early: an item's error or closing the iterator stops the
   work not started yet (chunks in flight on processes finish when short); a
   ``timeout`` (seconds from the call to ``map``) cancels it as a pipeline's
   timeout does (worker processes running it are killed and replaced).
5. Worker death: the future of the call it ran raises
   :class:`vedart.BrokenProcessPoolError` (a
   :class:`concurrent.futures.process.BrokenProcessPool`) from the
   :class:`vedart.WorkerCrashedError`. Unlike ``ProcessPoolExecutor``, the
   executor stays usable: the pool replaced the worker, and calls the dead one
   had not started ran on another. An ``initializer`` that raises breaks the
   executor for good, as in the standard executors.
6. ``shutdown(wait=True)`` waits for every call and map; ``cancel_futures``
   cancels the pending calls and the work of maps not started yet. After
   ``shutdown``, ``submit`` and ``map`` raise :class:`RuntimeError`. At
   interpreter exit, the work submitted still completes (the standard
   executors wait for it too).
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextvars
import functools
import itertools
import os
import sys
import threading
import time
import uuid
import weakref
from typing import Any, Callable, Iterable, Iterator, Optional

from . import _cluster, _process, _vedart, _worker
from ._config import DEFAULT_ADAPTIVE_INTERVAL_MS, MAX_WORKERS_LIMIT
from ._deadline import check_timeout
from ._engine import Execution, partials
from ._adaptive import resolve_executor
from ._executors import Executor, ThreadExecutor
from ._future import Future
from ._runtime import get_runtime
from ._stages import MAP, Collect, Stage
from ._trace import describe
from .exceptions import (
    BrokenProcessPoolError,
    BrokenThreadPoolError,
    CancelledError,
    ExecutorError,
    RuntimeStateError,
    TimeoutError,
    WorkerCrashedError,
)

__all__ = ["VedaExecutor"]

#: Step 2: calls per worker process in the pool at a time (running); more
#: wait in the executor (pending, cancellable).
CALLS_PER_WORKER = 2

#: Step 2: how long an idle collector waits for new calls before it exits.
COLLECTOR_LINGER_SECONDS = 1.0

#: How often a waiting collector looks at the executor's state (seconds).
COLLECTOR_POLL_SECONDS = 0.1

#: Callables submitted more than once whose plan is installed once per
#: worker process (a pool context); calls of others carry their callable.
MAX_CONTEXTS = 8

#: How many recently submitted callables are remembered to spot a second use.
MAX_SEEN = 64

EXECUTOR_KINDS = ("thread", "process", "auto", *_cluster.ENGINES)

_counter = itertools.count()

# The map stage functions are pickled by reference to the worker module.
_worker.register_alias()


def _check_workers(max_workers: Any) -> Optional[int]:
    if max_workers is None:
        return None
    if isinstance(max_workers, bool) or not isinstance(max_workers, int):
        raise TypeError(f"max_workers must be an int or None, got {type(max_workers).__name__}")
    if not 1 <= max_workers <= MAX_WORKERS_LIMIT:
        raise ValueError(
            f"max_workers must be between 1 and {MAX_WORKERS_LIMIT}, got {max_workers}"
        )
    return max_workers


# -- threads --------------------------------------------------------------------


class _ThreadStart:
    """What a thread of a private pool does before its first call: take the
    name ``{thread_name_prefix}_{n}`` and run the initializer. Called as
    ``start(fn, *args, **kwargs)`` around every call."""

    __slots__ = ("owner", "prefix", "initializer", "initargs", "local", "names")

    def __init__(
        self,
        owner: VedaExecutor,
        prefix: str,
        initializer: Optional[Callable[..., Any]],
        initargs: tuple[Any, ...],
    ) -> None:
        self.owner = owner
        self.prefix = prefix
        self.initializer = initializer
        self.initargs = initargs
        self.local = threading.local()
        self.names = itertools.count()

    def __call__(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if not getattr(self.local, "started", False) or self.owner._broken_by is not None:
            self._start()
        return fn(*args, **kwargs)

    def _start(self) -> None:
        broken = self.owner._broken_by
        if broken is not None:
            # Calls queued when the initializer failed do not run.
            raise BrokenThreadPoolError(str(broken)) from broken.__cause__
        if self.prefix:
            threading.current_thread().name = f"{self.prefix}_{next(self.names)}"
        if self.initializer is not None:
            try:
                self.initializer(*self.initargs)
            except Exception as exc:
                error = BrokenThreadPoolError(
                    f"the initializer {describe(self.initializer)} of {self.owner!r} raised "
                    f"{type(exc).__name__}: {exc}; the executor is not usable any more"
                )
                self.owner._break(error)
                raise error from exc
        self.local.started = True


class _PoolThreads(ThreadExecutor):
    """The thread executor of the engine over a given pool (step 3)."""

    def __init__(self, pool: Any, workers: int, inline: bool) -> None:
        self._pool = pool
        self.workers = workers
        self.reason = 'VedaExecutor(executor="thread")'
        if not inline:
            # The pump thread is none of the pool's: it must not run items
            # that need a thread of the pool (its name, its initializer).
            self.inline_per_item = None


class _ThreadLane:
    """Calls on threads (step 2)."""

    def __init__(self, workers: Optional[int], start: Optional[_ThreadStart]) -> None:
        #: The pool of its own, or ``None`` for the runtime's.
        self.own_pool = (
            None
            if workers is None
            else _vedart.Runtime(0, workers, DEFAULT_ADAPTIVE_INTERVAL_MS / 1000.0)
        )
        self.workers = workers or get_runtime().num_workers
        self.start = start
        self.lock = threading.Lock()
        self.runtime: Any = None
        self.group = self._new_group()

    def _new_group(self) -> Any:
        if self.own_pool is not None:
            return _vedart.Group(self.own_pool, "independent")
        self.runtime = get_runtime()
        return _vedart.Group(self.runtime._pool, "independent")

    def pool(self) -> Any:
        return self.own_pool if self.own_pool is not None else get_runtime()._pool

    def wrap(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        return fn if self.start is None else functools.partial(self.start, fn)

    def submit(
        self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], fut: Future
    ) -> None:
        fut._veda_fn = fn
        call = (self.wrap(fn), *args)
        run = contextvars.copy_context().run
        try:
            fut._attach_task(self.group.submit(run, call, kwargs or None, fut))
        except RuntimeStateError:
            runtime = self.runtime
            if runtime is None or not runtime.closed:
                raise
            # vedart.shutdown() ended the runtime (and cancelled its tasks):
            # calls go to the next one.
            with self.lock:
                if self.runtime is runtime:
                    self.group = self._new_group()
            fut._attach_task(self.group.submit(run, call, kwargs or None, fut))

    def engine_executor(self, kind: str) -> Executor:
        if kind == "auto":
            return resolve_executor("auto", get_runtime())
        return _PoolThreads(self.pool(), self.workers, inline=self.start is None)

    def cancel_pending(self) -> None:
        self.group.cancel()

    def wait(self) -> None:
        self.group.wait_all(None)

    def close(self) -> None:
        if self.own_pool is not None:
            self.own_pool.shutdown(None)


class _ClusterLane(_ThreadLane):
    """Calls on a cluster (``executor="dask"``): each is sent to the cluster
    by a task on the runtime's threads that waits for it there, as
    ``veda.spawn(..., executor="dask")`` does; cancelling the future cancels
    it on the cluster. ``map`` runs as a pipeline on the cluster."""

    def __init__(self, engine: str) -> None:
        super().__init__(None, None)
        self.engine_name = engine
        #: The engine's module (a ConfigError names the extra when missing).
        self.engine = _cluster.engine(engine)

    def submit(
        self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], fut: Future
    ) -> None:
        call = self.engine.submit_call(get_runtime().config, fn, args, kwargs)
        super().submit(call.run, (), {}, fut)
        fut._veda_fn = fn

    def engine_executor(self, kind: str) -> Executor:
        return resolve_executor(self.engine_name, get_runtime())


# -- processes ------------------------------------------------------------------


class _PoolProcesses(_process.ProcessExecutor):
    """The process executor of the engine over a given pool (step 3)."""

    def __init__(self, pool: Any, retries: int) -> None:
        self._the_pool = pool
        self.workers = pool.workers
        self.retries = retries
        self.reason = 'VedaExecutor(executor="process")'

    def start(self, mode: str) -> Any:
        return _process._ProcessRun(self._the_pool, mode, self.reason, self.retries)


class _Feed:
    """The calls of a process lane on one pool: a batch that hands its
    resolved calls to one collector (step 2)."""

    __slots__ = ("pool", "batch", "calls", "collector", "seen", "contexts")

    def __init__(self, pool: Any) -> None:
        self.pool = pool
        self.batch = pool.batch(completions=True)
        #: Calls in the pool, by index in the batch.
        self.calls: dict[int, Future] = {}
        self.collector: Optional[threading.Thread] = None
        #: ``id()`` of the callables submitted lately (no reference kept: an
        #: id reused by another object costs one needless context at worst).
        self.seen: collections.OrderedDict[int, None] = collections.OrderedDict()
        #: Callables submitted again, whose plan is a pool context:
        #: ``id(fn) -> (fn, context)``, the most recent :data:`MAX_CONTEXTS`.
        self.contexts: collections.OrderedDict[int, tuple[Any, Any]] = collections.OrderedDict()


class _ProcessLane:
    """Calls in worker processes (step 2)."""

    def __init__(
        self,
        owner: VedaExecutor,
        workers: Optional[int],
        initializer: Optional[Callable[..., Any]],
        initargs: tuple[Any, ...],
    ) -> None:
        self.owner = owner
        self.retries = int(getattr(get_runtime().config, "retries", 0))
        self.setup: Optional[tuple[Any, ...]] = None
        if initializer is not None:
            self.setup = (uuid.uuid4().hex, initializer, initargs)
            try:
                _process._dumps(self.setup)
            except Exception as error:
                raise TypeError(
                    f"the initializer {describe(initializer)} or its initargs cannot be sent "
                    f"to a worker process (they do not pickle: {error})"
                ) from error
        self.own_pool: Any = None
        if workers is not None or initializer is not None:
            count = workers or _process.ProcessExecutor(get_runtime()).workers
            program, args = _process.worker_command()
            self.own_pool = _vedart.ProcessPool(
                program,
                args,
                _process.worker_env(count),
                count,
                _process.GRACE_PERIOD_SECONDS,
            )
        self.lock = threading.Lock()
        #: Signalled whenever the lane becomes idle.
        self.idle = threading.Condition(self.lock)
        self.feed: Optional[_Feed] = None
        #: Pending calls: ``(future, feed, request, context)``.
        self.waiting: collections.deque[tuple[Future, _Feed, bytes, Any]] = collections.deque()
        self.in_flight = 0
        self.exiting = False

    def pool(self) -> Any:
        if self.own_pool is not None:
            return self.own_pool
        return _process.get_pool(_process.ProcessExecutor(get_runtime()).workers)

    def _current_feed(self) -> _Feed:
        pool = self.pool()
        feed = self.feed
        if feed is not None and feed.pool is pool:
            return feed
        with self.lock:
            if self.feed is None or self.feed.pool is not pool:
                self.feed = _Feed(pool)
            return self.feed

    def _plan(self, fn: Callable[..., Any]) -> tuple[Any, ...]:
        return ("call", functools.partial(_worker.run_call, self.setup, fn))

    def _context(self, feed: _Feed, fn: Callable[..., Any]) -> Any:
        """The pool context of ``fn``'s plan, made the second time ``fn`` is
        submitted (a callable submitted once, such as a joblib batch, travels
        with its call); ``None`` until then."""
        key = id(fn)
        with self.lock:
            entry = feed.contexts.get(key)
            if entry is not None and entry[0] is fn:
                feed.contexts.move_to_end(key)
                return entry[1]
            if key not in feed.seen:
                feed.seen[key] = None
                if len(feed.seen) > MAX_SEEN:
                    feed.seen.popitem(last=False)
                return None
        context = feed.pool.context(_dump_plan(fn, self._plan(fn)))
        with self.lock:
            feed.contexts[key] = (fn, context)
            if len(feed.contexts) > MAX_CONTEXTS:
                feed.contexts.popitem(last=False)
        return context

    def submit(
        self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], fut: Future
    ) -> None:
        feed = self._current_feed()
        context = self._context(feed, fn)
        request = _encode_job(fn, args, kwargs, None if context is not None else self._plan(fn))
        fut._veda_fn = fn
        with self.lock:
            if self.waiting or self.in_flight >= CALLS_PER_WORKER * feed.pool.workers:
                self.waiting.append((fut, feed, request, context))
                return
            self.in_flight += 1
        self._send(fut, feed, request, context)

    def _send(self, fut: Future, feed: _Feed, request: bytes, context: Any) -> None:
        """Puts one call in the pool (its slot is reserved)."""
        if not fut.set_running_or_notify_cancel():
            self._done(1)
            return
        with self.lock:
            call = feed.batch.submit(request, context, retries=self.retries)
            feed.calls[call.index] = fut
            if feed.collector is None:
                feed.collector = threading.Thread(
                    target=self._collect, args=(feed,), name="veda-executor-collect"
                )
                feed.collector.start()

    def _done(self, count: int) -> None:
        """``count`` calls left the pool: sends the pending calls that fit."""
        ready = []
        with self.lock:
            self.in_flight -= count
            while self.waiting:
                fut, feed, _, _ = self.waiting[0]
                if self.in_flight >= CALLS_PER_WORKER * feed.pool.workers:
                    break
                ready.append(self.waiting.popleft())
                self.in_flight += 1
            if self.in_flight == 0 and not self.waiting:
                self.idle.notify_all()
        for entry in ready:
            self._send(*entry)

    def _collect(self, feed: _Feed) -> None:
        idle_since = time.monotonic()
        while True:
            calls = feed.batch.take_completed(COLLECTOR_POLL_SECONDS)
            if calls:
                with self.lock:
                    futures = [feed.calls.pop(call.index) for call in calls]
                for fut, call in zip(futures, calls):
                    self._complete(fut, call.outcome())
                count = len(calls)
                # Nothing of the results stays here while the collector waits.
                del futures, calls, fut, call
                # After the futures: shutdown(wait=True) returns once all are done.
                self._done(count)
                idle_since = time.monotonic()
                continue
            with self.lock:
                if feed.calls:
                    continue
                if (
                    self.feed is not feed
                    or self.exiting
                    or time.monotonic() - idle_since >= COLLECTOR_LINGER_SECONDS
                ):
                    feed.collector = None
                    return

    def _complete(self, fut: Future, outcome: tuple[Any, ...]) -> None:
        if outcome[0] == "ok":
            try:
                value, _ = _process.decode_answer(outcome[1])
            except BaseException as error:  # a result that does not unpickle here
                fut.set_exception(error)
                return
            fut.set_result(value)
            return
        fut.set_exception(self._error(fut, outcome))

    def _error(self, fut: Future, outcome: tuple[Any, ...]) -> BaseException:
        kind = outcome[0]
        what = f"submit({describe(fut._veda_fn)})"
        if kind == "died":
            crash = _process.crash_error(outcome, running=what)
            broken = BrokenProcessPoolError(
                f"a worker process of {self.owner!r} died while running {what}: {crash}"
            )
            broken.__cause__ = crash
            return broken
        if kind == "remote":
            error = _process.remote_error(outcome[1], outcome[2])
            if isinstance(error, _worker.InitializerFailed):
                return self.owner._initializer_raised(
                    _process.remote_error(error.payload, outcome[2]), outcome[2]
                )
            return error
        if kind == "cancelled":
            return CancelledError(f"{what} was cancelled")
        if kind == "closed":
            return ExecutorError(f"{what}: the process pool was shut down before it ran")
        return _process.outcome_error(outcome)

    def engine_executor(self, kind: str) -> Executor:
        return _PoolProcesses(self.pool(), self.retries)

    def cancel_pending(self) -> None:
        with self.lock:
            pending, self.waiting = list(self.waiting), collections.deque()
        for fut, _, _, _ in pending:
            fut.cancel()
        self._done(0)

    def abort(self) -> None:
        """Cancels the pending calls and kills the running ones (their
        futures raise :class:`vedart.CancelledError`); the lane stays usable."""
        self.cancel_pending()
        with self.lock:
            feed, self.feed = self.feed, None
        if feed is not None:
            feed.batch.cancel()

    def wait(self) -> None:
        with self.idle:
            while self.in_flight or self.waiting:
                # Bounded, so a Ctrl+C on the main thread is not held up.
                self.idle.wait(COLLECTOR_POLL_SECONDS)

    def close(self) -> None:
        self.exiting = True
        if self.own_pool is not None:
            self.own_pool.shutdown(_process.EXIT_TIMEOUT_SECONDS)


def _dump_plan(fn: Callable[..., Any], plan: tuple[Any, ...]) -> bytes:
    """``plan`` (of a call of ``fn``) pickled for a worker process.

    Raises:
        TypeError: it does not pickle; the message names ``fn``.
    """
    try:
        return _process._dumps(plan)
    except Exception as error:
        raise TypeError(
            f"submit(): {describe(fn)} cannot be sent to a worker process (it does not "
            f'pickle: {error}); use executor="thread" for work that cannot leave this process'
        ) from error


def _encode_job(
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    plan: Optional[tuple[Any, ...]],
) -> bytes:
    """A request for ``fn(*args, **kwargs)``: ``(args, kwargs)`` pickled, after
    the ``plan`` when the call carries it (no pool context).

    Raises:
        TypeError: ``fn`` or an argument does not pickle; the message names it.
    """
    job = (args, kwargs)
    try:
        return _process._dumps(job if plan is None else (plan, job))
    except Exception as error:
        if plan is not None:
            _dump_plan(fn, plan)  # raises, naming fn, when it is the culprit
        named = [(f"argument {i}", value) for i, value in enumerate(args)]
        named += [(f"keyword argument {key!r}", value) for key, value in kwargs.items()]
        for name, value in named:
            try:
                _process._dumps(value)
            except Exception as item_error:
                raise TypeError(
                    f"submit({describe(fn)}): {name} ({_worker.short_repr(value)}) "
                    "cannot be sent to a worker "
                    f"process (it does not pickle: {item_error})"
                ) from item_error
        raise TypeError(
            f"submit({describe(fn)}): the call cannot be sent to a worker process: {error}"
        ) from error


# -- map ------------------------------------------------------------------------


class _Finished(Exception):
    """Every result of a map was taken."""


class _MapRun:
    """The work of one ``map`` call, run by a pump thread (steps 3 and 4)."""

    def __init__(
        self,
        owner: VedaExecutor,
        executor: Executor,
        stage_fn: Callable[[Any], Any],
        jobs: list[tuple[Any, ...]],
        chunk_size: Optional[int],
        what: str,
    ) -> None:
        self.owner = owner
        self.what = what
        self.cond = threading.Condition()
        self.results: collections.deque[Any] = collections.deque()
        self.finished = False
        self.stopped = False
        #: What ended the work early: a worker death, a cancellation, ...
        self.error: Optional[BaseException] = None
        self.execution = Execution(executor, chunk_size)
        self.stages = (Stage(MAP, stage_fn),)
        self.jobs: Optional[list[tuple[Any, ...]]] = jobs
        self.thread = threading.Thread(target=self._pump, name="veda-executor-map")

    def _pump(self) -> None:
        jobs, self.jobs = self.jobs, None
        stream: Any = partials(self.execution, jobs, self.stages, Collect(), stream_mode=True)
        del jobs
        try:
            for batch in stream:
                with self.cond:
                    if self.stopped:
                        break
                    self.results.extend(batch)
                    self.cond.notify_all()
                # The engine's frame still holds the list: it must not keep
                # results the consumer has taken alive.
                batch.clear()
        except BaseException as error:
            with self.cond:
                self.error = error
        finally:
            stream.close()
            self.execution.close()
            with self.cond:
                self.finished = True
                self.cond.notify_all()
            self.owner._map_finished(self)

    def stop(self, cancel: bool) -> None:
        """Step 4: stops the work not started; ``cancel`` also cancels what runs
        (worker processes running it are killed)."""
        with self.cond:
            if self.finished or (self.stopped and not cancel):
                return
            self.stopped = True
        for run in list(self.execution.runs):
            if cancel:
                run.cancel()
            else:
                run.release()

    def next(self, end: Optional[float]) -> Any:
        """The next result; raises the item's exception, :class:`_Finished` at
        the end, or ``TimeoutError`` once ``end`` (monotonic) has passed."""
        with self.cond:
            while not self.results:
                if self.finished:
                    raise self._ending()
                if end is None:
                    self.cond.wait()
                    continue
                left = end - time.monotonic()
                if left <= 0:
                    raise concurrent.futures.TimeoutError
                self.cond.wait(left)
            value = self.results.popleft()
        if type(value) is _worker.Raised:
            raise _item_error(value)
        return value

    def _ending(self) -> BaseException:
        error = self.error
        if error is None:
            return _Finished()
        self.error = None
        if isinstance(error, WorkerCrashedError):
            broken = BrokenProcessPoolError(
                f"a worker process of {self.owner!r} died while running {self.what}: {error}"
            )
            broken.__cause__ = error
            return broken
        return error


def _item_error(raised: Any) -> BaseException:
    if raised.exc is not None:
        return raised.exc  # type: ignore[no-any-return]
    return _process.remote_error(raised.payload, raised.pid)


def _results(run: _MapRun, end: Optional[float], timeout: Optional[float]) -> Iterator[Any]:
    # Yields what ``next`` returns without holding it (step 3).
    try:
        while True:
            yield run.next(end)
    except _Finished:
        return
    except KeyboardInterrupt:
        run.stop(cancel=True)
        raise
    except concurrent.futures.TimeoutError:
        run.stop(cancel=True)
        raise TimeoutError(
            f"{run.what}: the next result was not ready within the map's timeout of "
            f"{timeout:g} s; the work still running was cancelled",
            timeout=timeout,
            what=run.what,
        ) from None
    finally:
        run.stop(cancel=False)


# -- the executor -------------------------------------------------------------------

#: Every executor not collected yet, for the exit hook.
_live: weakref.WeakSet[VedaExecutor] = weakref.WeakSet()
_exiting = False


class VedaExecutor(concurrent.futures.Executor):
    """A :class:`concurrent.futures.Executor` that runs calls on VedaRT.

    ``VedaExecutor()`` is a drop-in for
    :class:`~concurrent.futures.ThreadPoolExecutor` (``executor="thread"``)
    and ``VedaExecutor("process")`` for
    :class:`~concurrent.futures.ProcessPoolExecutor`: ``submit`` returns a
    :class:`vedart.Future` (a :class:`concurrent.futures.Future`, so ``wait``,
    ``as_completed``, ``asyncio.wrap_future`` work unchanged), ``map`` yields
    results in order, ``shutdown`` and ``with`` behave as in the standard
    library. See :mod:`vedart._cf_executor` for how calls run.

    Args:
        executor: ``"thread"`` (the default), ``"process"``, ``"auto"``
            (``submit`` on threads; ``map`` chooses as ``par_iter`` does, from
            the measured cost of the first items) or ``"dask"`` (the cluster
            of ``veda.init(cluster=...)``: ``submit`` sends each call there,
            ``map`` runs as a pipeline there).
        max_workers: at most this many calls at once, on threads or worker
            processes of the executor's own, stopped by :meth:`shutdown`.
            ``None``: share VedaRT's pools (``Config.max_workers`` threads, or
            ``Config.num_processes`` warm worker processes).
        initializer: called as ``initializer(*initargs)`` once in each worker
            thread or process of the executor's own pool before its first
            call. If it raises, the executor is broken:
            :class:`vedart.BrokenThreadPoolError` /
            :class:`vedart.BrokenProcessPoolError`.
        thread_name_prefix: threads of its own are named
            ``{thread_name_prefix}_{n}`` (``threading.current_thread().name``).

    Raises:
        ValueError: an unknown ``executor``, ``max_workers`` < 1, or
            ``max_workers``/``initializer``/``thread_name_prefix`` with
            ``executor="auto"`` (which shares VedaRT's pools), or
            ``thread_name_prefix`` with ``executor="process"``.
        TypeError: ``initializer`` is not callable, or (processes) it or its
            ``initargs`` do not pickle.

    Examples:
        >>> import vedart as veda
        >>> with veda.VedaExecutor() as pool:
        ...     list(pool.map(pow, [2, 3], [5, 2]))
        [32, 9]
    """

    def __new__(cls, executor: str = "thread", *args: Any, **kwargs: Any) -> VedaExecutor:
        if cls is VedaExecutor and executor in ("thread", "auto"):
            cls = _ThreadVedaExecutor
        return super().__new__(cls)

    def __init__(
        self,
        executor: str = "thread",
        max_workers: Optional[int] = None,
        initializer: Optional[Callable[..., Any]] = None,
        initargs: tuple[Any, ...] = (),
        thread_name_prefix: str = "",
    ) -> None:
        if not isinstance(executor, str):
            hint = (
                f" (for ThreadPoolExecutor({executor})'s meaning, pass max_workers={executor})"
                if isinstance(executor, int) and not isinstance(executor, bool)
                else ""
            )
            raise TypeError(
                f"executor must be 'thread', 'process' or 'auto', got {executor!r}{hint}"
            )
        if executor not in EXECUTOR_KINDS:
            raise ValueError(
                f"executor must be one of {', '.join(map(repr, EXECUTOR_KINDS))}; got {executor!r}"
            )
        workers = _check_workers(max_workers)
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        if not isinstance(thread_name_prefix, str):
            raise TypeError("thread_name_prefix must be a str")
        own = workers is not None or initializer is not None or bool(thread_name_prefix)
        if executor == "auto" and own:
            raise ValueError(
                'executor="auto" shares VedaRT\'s pools: max_workers, initializer and '
                'thread_name_prefix need executor="thread" or "process"'
            )
        if executor == "process" and thread_name_prefix:
            raise ValueError('thread_name_prefix applies to executor="thread" only')
        if executor in _cluster.ENGINES and own:
            raise ValueError(
                f'executor="{executor}" runs calls on the cluster\'s workers: max_workers, '
                'initializer and thread_name_prefix need executor="thread" or "process"'
            )
        self._kind = executor
        self._name = f"VedaExecutor-{next(_counter)}"
        self._lock = threading.Lock()
        self._shut = False
        self._closed = False
        #: Set when the initializer raised: submit raises a copy (step 5).
        self._broken_by: Optional[BaseException] = None
        self._maps: set[_MapRun] = set()
        self._lane: Any
        if executor == "process":
            self._lane = _ProcessLane(self, workers, initializer, tuple(initargs))
        elif executor in _cluster.ENGINES:
            self._lane = _ClusterLane(executor)
        else:
            start = None
            if initializer is not None or thread_name_prefix:
                start = _ThreadStart(self, thread_name_prefix, initializer, tuple(initargs))
            size = workers if workers is not None else (get_runtime().num_workers if own else None)
            self._lane = _ThreadLane(size, start)
        _live.add(self)

    # -- submitting ---------------------------------------------------------------

    def _check_open(self) -> None:
        broken = self._broken_by
        if broken is not None:
            error = type(broken)(str(broken))
            raise error from broken.__cause__
        if self._shut:
            raise RuntimeError("cannot schedule new futures after shutdown")
        if _exiting:
            raise RuntimeError("cannot schedule new futures after interpreter shutdown")

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        """Schedules ``fn(*args, **kwargs)`` and returns its
        :class:`vedart.Future`.

        Raises:
            RuntimeError: after :meth:`shutdown`.
            BrokenThreadPoolError, BrokenProcessPoolError: the initializer failed.
            TypeError: ``fn`` is not callable; on processes, ``fn`` or an
                argument does not pickle (the message names it).
        """
        if not callable(fn):
            raise TypeError(f"submit() expects a callable, got {type(fn).__name__}")
        fut = Future()
        with self._lock:
            if self._shut or self._broken_by is not None or _exiting:
                self._check_open()
            self._lane.submit(fn, args, kwargs, fut)
        return fut

    def _submit_into(self, fut: Future, fn: Callable[..., Any], *args: Any) -> None:
        """``submit`` completing a future made beforehand (the joblib backend
        makes it when it queues a batch)."""
        with self._lock:
            self._check_open()
            self._lane.submit(fn, args, {}, fut)

    def map(
        self,
        fn: Callable[..., Any],
        *iterables: Iterable[Any],
        timeout: Optional[float] = None,
        chunksize: int = 1,
    ) -> Iterator[Any]:
        """``fn(*args)`` for the items of ``iterables`` taken together, as
        :func:`map`: an iterator of the results in order.

        The iterables are read at once and the work starts before the first
        ``next()`` (step 3 of the module documentation: tiny items are
        batched, also on processes with ``chunksize=1``). ``timeout`` counts
        from this call: a result not ready by then raises
        :class:`vedart.TimeoutError` (also :class:`TimeoutError`) and cancels
        the work still running. An exception of ``fn`` is raised when the
        iterator reaches its item, and stops the work not started yet.
        ``chunksize > 1`` sets the items per chunk on processes (threads adapt
        it, and ``ThreadPoolExecutor`` ignores it too).

        Raises:
            RuntimeError: after :meth:`shutdown`.
            ValueError: ``chunksize`` < 1; TypeError, ValueError: a bad ``timeout``.
        """
        if not callable(fn):
            raise TypeError(f"map() expects a callable, got {type(fn).__name__}")
        seconds = check_timeout(timeout)
        if isinstance(chunksize, bool) or not isinstance(chunksize, int):
            raise TypeError(f"chunksize must be an int, got {type(chunksize).__name__}")
        if chunksize < 1:
            raise ValueError("chunksize must be >= 1.")
        end = None if seconds is None else time.monotonic() + seconds
        jobs = list(zip(*iterables))
        lane = self._lane
        if self._kind == "process":
            stage_fn = functools.partial(_worker.run_item, lane.setup, fn)
        else:
            stage_fn = functools.partial(_worker.run_item, None, lane.wrap(fn))
        chunk_size = chunksize if chunksize > 1 and self._kind == "process" else None
        with self._lock:
            self._check_open()
            run = _MapRun(
                self,
                lane.engine_executor(self._kind),
                stage_fn,
                jobs,
                chunk_size,
                f"{self!r}.map({describe(fn)})",
            )
            self._maps.add(run)
            run.thread.start()
        return _results(run, end, seconds)

    def _map_finished(self, run: _MapRun) -> None:
        with self._lock:
            self._maps.discard(run)

    # -- failures -----------------------------------------------------------------

    def _break(self, error: BaseException) -> None:
        with self._lock:
            if self._broken_by is None:
                self._broken_by = error

    def _initializer_raised(self, error: BaseException, pid: Any) -> BaseException:
        broken = BrokenProcessPoolError(
            f"the initializer of {self!r} raised {type(error).__name__}: {error} "
            f"(in worker process {pid}); the executor is not usable any more"
        )
        broken.__cause__ = error
        self._break(broken)
        return broken

    # -- shutting down --------------------------------------------------------------

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Refuses new calls; ``cancel_futures`` cancels the pending ones (and
        the work of maps not started yet); ``wait`` waits for the rest. Pools of
        the executor's own are stopped once its calls are done; with
        ``wait=False`` that happens in the background. Idempotent.
        """
        with self._lock:
            self._shut = True
            maps = list(self._maps)
        if cancel_futures:
            self._lane.cancel_pending()
            for run in maps:
                run.stop(cancel=True)
        if wait:
            self._finish(maps)
        elif self._lane.own_pool is not None:
            threading.Thread(
                target=self._finish, args=(maps,), name="veda-executor-shutdown"
            ).start()

    def _finish(self, maps: list[_MapRun]) -> None:
        for run in maps:
            run.thread.join()
        self._lane.wait()
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._lane.close()

    def _abort(self) -> None:
        """Cancels everything not finished, killing worker processes that run
        it (joblib's ``abort_everything``); the executor stays usable."""
        with self._lock:
            maps = list(self._maps)
        for run in maps:
            run.stop(cancel=True)
        if isinstance(self._lane, _ProcessLane):
            self._lane.abort()
        else:
            self._lane.cancel_pending()
            self._lane.group = self._lane._new_group()

    def __repr__(self) -> str:
        lane = self._lane
        pool = "its own pool" if lane.own_pool is not None else "VedaRT's pool"
        return f"{self._name}({self._kind}, {pool})"


class _ThreadVedaExecutor(VedaExecutor, concurrent.futures.ThreadPoolExecutor):
    """A :class:`VedaExecutor` whose ``submit`` runs on threads. It is also a
    :class:`~concurrent.futures.ThreadPoolExecutor`, without any of its code,
    because ``loop.set_default_executor`` accepts nothing else."""


def _at_exit() -> None:
    """Step 6: work submitted before the interpreter exits completes."""
    global _exiting
    _exiting = True
    for executor in list(_live):
        try:
            executor.shutdown(wait=True)
        except Exception as error:  # the others still get their turn
            print(f"vedart: {executor!r} did not shut down at exit: {error!r}", file=sys.stderr)


def _after_fork_in_child() -> None:
    # The executors of the parent have no threads nor calls here: exit must
    # not wait for them.
    _live.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)
_register_atexit = getattr(threading, "_register_atexit", None)
if _register_atexit is not None:
    # Before threading joins the collector and pump threads.
    _register_atexit(_at_exit)
else:  # pragma: no cover - an interpreter without it
    import atexit

    atexit.register(_at_exit)

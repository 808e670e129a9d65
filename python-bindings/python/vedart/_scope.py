"""Structured concurrency: :func:`scope`, :class:`Scope` and :func:`spawn`.

A scope follows trio's rules:

1. ``with veda.scope() as s`` (or ``async with``) opens it; ``s.spawn(fn, ...)``
   starts a child and returns a :class:`~vedart.Future`. Plain callables run on
   the thread pool; coroutine functions run on the event loop (the scope's loop
   under ``async with``, VedaRT's background loop otherwise).
2. Leaving the block waits for every child, also when the block raised.
3. If the block raises or a child fails, the scope is cancelled: children not
   yet started never run, running ones are asked to stop
   (:func:`vedart.cancelled` turns true inside them; coroutines receive
   :class:`asyncio.CancelledError`), and nested work they started is cancelled
   with them.
4. The first error is raised when the block ends, with the other errors
   attached (``err.veda_other_errors`` and a note); if the block itself raised,
   its exception propagates with the children's errors attached.
5. Once the block has ended, ``spawn`` raises :class:`~vedart.ScopeClosedError`.
6. ``scope(timeout=t)`` gives the scope a deadline, ``t`` seconds after the
   block is entered, checked where the scope waits (the end of the block,
   :meth:`Scope.wait_all`). A wait that reaches it cancels the scope as in
   rule 3 and raises :class:`vedart.TimeoutError` (attached to the block's own
   exception, if it raised) without waiting any longer: a child already
   running on a thread cannot be stopped from outside and runs on until it
   returns, its result dropped.

While waiting, a thread that is itself a VedaRT task runs the scope's queued
children inline, so scopes nested in scope tasks cannot deadlock the pool.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import itertools
import threading
import time
from types import TracebackType
from typing import Any, Callable, Optional

from . import _asyncio, _cluster, _context, _deterministic, _trace, _vedart
from ._deadline import Deadline, check_timeout
from ._future import Future, _base_cancel, _chain_concurrent
from ._runtime import get_runtime
from .exceptions import ScopeClosedError, TimeoutError, _attach_others

__all__ = ["Scope", "scope", "spawn", "cancelled"]


def cancelled() -> bool:
    """Whether the VedaRT task running on this thread has been asked to stop.

    True inside a task whose scope, pipeline or caller was cancelled (a sibling
    failed, the ``with`` block raised, Ctrl+C, the awaiting coroutine was
    cancelled); always ``False`` outside VedaRT tasks. Long-running functions
    should check it now and then and return early.
    """
    return bool(_vedart.cancelled())


def _link_asyncio_task(task: asyncio.Task, fut: Future, loop: asyncio.AbstractEventLoop) -> None:  # type: ignore[type-arg]
    def done(t: asyncio.Task) -> None:  # type: ignore[type-arg]
        if t.cancelled():
            _base_cancel(fut)
            fut.set_running_or_notify_cancel()
            return
        fut.set_running_or_notify_cancel()
        exc = t.exception()
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(t.result())

    task.add_done_callback(done)

    def request_cancel() -> None:
        if _asyncio.running_loop() is loop:
            task.cancel()
        else:
            loop.call_soon_threadsafe(task.cancel)

    fut._veda_cancel = request_cancel


def _start(
    group: Any,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    loop: Optional[asyncio.AbstractEventLoop],
    fut: Future,
    index: int,
) -> bool:
    """Starts ``fn(*args, **kwargs)`` completing ``fut``; returns whether it is a
    coroutine child."""
    fut._veda_fn = fn
    if _asyncio.is_coroutine_function(fn):
        coro = fn(*args, **kwargs)
        here = _asyncio.running_loop()
        if loop is None:
            loop = here
        if loop is not None and here is loop:
            _link_asyncio_task(loop.create_task(coro), fut, loop)
        else:
            cf = _asyncio.submit_coroutine(coro, loop)
            _chain_concurrent(cf, fut)
            fut._veda_cancel = cf.cancel
        return True
    hook = _context.spawn_hook.get()
    if hook is not None:
        fn = hook(fn, index)
    tracer = _trace.recorder
    if tracer is not None:
        fn = tracer.wrap(fn, f"spawn({_trace.describe(fn)})", "spawn", index, "thread")
    scheduler = _deterministic.current()
    if scheduler is not None:
        _deterministic.spawn(scheduler, group, fn, args, kwargs, fut, index)
        return False
    ctx = contextvars.copy_context()
    fut._attach_task(group.submit(ctx.run, (fn, *args), kwargs or None, fut))
    return False


_spawn_counter = itertools.count()


def spawn(
    fn: Callable[..., Any], *args: Any, executor: Optional[str] = None, **kwargs: Any
) -> Future:
    """Runs ``fn(*args, **kwargs)`` outside any scope and returns its
    :class:`~vedart.Future` (``await``-able).

    Plain callables run on the thread pool; coroutine functions run on the
    running event loop of this thread, or on VedaRT's background loop.
    ``executor="dask"`` runs ``fn`` on the configured cluster instead
    (``veda.init(cluster=...)``); a pool thread waits for it there, and
    cancelling the future cancels it. ``executor`` is spawn's own keyword,
    never passed to ``fn``.

    Examples:
        >>> import vedart as veda
        >>> veda.spawn(pow, 2, 10).result()
        1024
    """
    if not callable(fn):
        raise TypeError(f"spawn() expects a callable, got {type(fn).__name__}")
    runtime = get_runtime()
    if executor is not None:
        fn, args, kwargs = _remote(runtime, executor, fn, args, kwargs)
    fut = Future()
    _start(runtime._root, fn, args, kwargs, None, fut, next(_spawn_counter))
    return fut


def _remote(
    runtime: Any, executor: str, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: Any
) -> tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]:
    """``spawn(..., executor=...)``: ``"thread"``/``"auto"`` change nothing;
    an engine of :mod:`vedart._cluster` (``"dask"``) gives a call that a pool
    thread submits to the cluster and waits for, cancelling it there when the
    child is cancelled. ``fn`` and its arguments are pickled at once, so one
    that cannot be sent is a :class:`TypeError` here.
    """
    if executor in ("thread", "auto"):
        return fn, args, kwargs
    if executor not in _cluster.ENGINES:
        names = ", ".join(("auto", "thread", *_cluster.ENGINES))
        raise ValueError(f"spawn(): executor must be one of {names}; got {executor!r}")
    if _asyncio.is_coroutine_function(fn):
        raise TypeError(
            f'spawn(): executor="{executor}" runs plain callables; a coroutine function '
            "runs on an event loop here"
        )
    call = _cluster.engine(executor).submit_call(runtime.config, fn, args, kwargs or {})
    return call.run, (), {}


class Scope:
    """A structured-concurrency scope; create it with :func:`vedart.scope`.

    See the module documentation for the rules.
    """

    def __init__(self, timeout: Optional[float] = None) -> None:
        self._timeout = check_timeout(timeout)
        #: Rule 6, from the moment the block is entered.
        self._deadline: Optional[Deadline] = None
        self._timeout_error: Optional[TimeoutError] = None
        self._lock = threading.RLock()
        self._group: Any = None
        self._futures: list[Future] = []
        self._coroutine_children: list[Future] = []
        self._errors: list[BaseException] = []
        self._state = "new"
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        # Coroutines waiting in ``async with``/``wait_all``: woken on each child's end.
        self._async_waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []

    # -- opening --------------------------------------------------------------

    def _open(self, loop: Optional[asyncio.AbstractEventLoop]) -> Scope:
        with self._lock:
            if self._state != "new":
                raise ScopeClosedError("a scope can be entered only once")
            self._group = _vedart.Group(get_runtime()._pool, "fail_fast")
            self._loop = loop
            self._state = "open"
            self._deadline = Deadline.start(self._timeout, self._describe)
        return self

    def _describe(self) -> str:
        with self._lock:
            running = sum(1 for f in self._futures if not f.done())
            total = len(self._futures)
        return f"veda.scope() ({running} of its {total} children still running)"

    def _left(self) -> Optional[float]:
        """Seconds to the scope's deadline, ``None`` without one."""
        return None if self._deadline is None else self._deadline.left()

    def _limit(self, timeout: Optional[float]) -> tuple[Optional[float], bool]:
        """How long a wait of at most ``timeout`` may last, and whether the
        scope's deadline is what limits it."""
        left = self._left()
        if left is None or (timeout is not None and timeout < left):
            return timeout, False
        return left, True

    def _expired(self) -> TimeoutError:
        """Rule 6: cancels the scope; its deadline's error (one per scope)."""
        assert self._deadline is not None
        if self._timeout_error is None:
            self._timeout_error = self._deadline.error()
        self.cancel()
        return self._timeout_error

    def __enter__(self) -> Scope:
        return self._open(None)

    async def __aenter__(self) -> Scope:
        return self._open(asyncio.get_running_loop())

    # -- children -------------------------------------------------------------

    def spawn(
        self, fn: Callable[..., Any], *args: Any, executor: Optional[str] = None, **kwargs: Any
    ) -> Future:
        """Starts ``fn(*args, **kwargs)`` as a child of the scope and returns its
        :class:`~vedart.Future`. ``executor="dask"`` runs it on the configured
        cluster, as :func:`vedart.spawn` does; cancelling the scope cancels it
        there.

        Raises:
            ScopeClosedError: the scope is not open (its block has ended).
            TypeError: ``fn`` is not callable.
        """
        if not callable(fn):
            raise TypeError(f"spawn() expects a callable, got {type(fn).__name__}")
        if executor is not None:
            fn, args, kwargs = _remote(get_runtime(), executor, fn, args, kwargs)
        fut = Future()
        fut.add_done_callback(self._child_done)
        with self._lock:
            if self._state != "open":
                raise ScopeClosedError("cannot spawn on a closed scope")
            if _start(self._group, fn, args, kwargs, self._loop, fut, len(self._futures)):
                self._coroutine_children.append(fut)
                if self._group.cancelled:
                    fut.cancel()
            self._futures.append(fut)
        return fut

    def _child_done(self, fut: concurrent.futures.Future) -> None:  # type: ignore[type-arg]
        with self._lock:
            waiters = list(self._async_waiters)
        for loop, event in waiters:
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # that loop is closed: nobody waits there any more
                pass
        if fut.cancelled():
            return
        exc = fut.exception()
        if exc is None:
            return
        with self._lock:
            self._errors.append(exc)
        self.cancel()

    def cancel(self) -> None:
        """Cancels the scope: children not started never run, running ones are
        asked to stop. The block still waits for them when it ends."""
        with self._lock:
            group = self._group
            children = list(self._coroutine_children)
        if group is not None:
            group.cancel()
        for child in children:
            if not child.done():
                child.cancel()

    @property
    def cancelled(self) -> bool:
        """Whether the scope (or the task it runs in) has been cancelled."""
        group = self._group
        return group is not None and bool(group.cancelled)

    # -- waiting --------------------------------------------------------------

    def _pending(self) -> list[Future]:
        with self._lock:
            return [f for f in self._futures if not f.done()]

    def _wait_sync(self, timeout: Optional[float]) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not self._group.wait_all(left):
                return False
            pending = self._pending()
            if not pending and self._group.pending == 0:
                return True
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            _wait_interruptibly(pending, left)
            if deadline is not None and time.monotonic() >= deadline and self._pending():
                return False

    async def _wait_async(self, timeout: Optional[float]) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        waiter = (asyncio.get_running_loop(), asyncio.Event())
        with self._lock:
            self._async_waiters.append(waiter)
        try:
            while True:
                waiter[1].clear()
                _deterministic.run_deferred(self._pending())
                if not self._pending() and self._group.pending == 0:
                    return True
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                try:
                    # Woken by every child's end; the short cap covers a child
                    # that finished between the check and the wait.
                    cap = 0.05 if left is None else min(left, 0.05)
                    await asyncio.wait_for(waiter[1].wait(), cap)
                except asyncio.TimeoutError:
                    pass
        finally:
            with self._lock:
                self._async_waiters.remove(waiter)

    def _results(self) -> list[Any]:
        with self._lock:
            errors = list(self._errors)
            futures = list(self._futures)
        if errors:
            raise _attach_others(errors[0], errors[1:])
        return [f.result() for f in futures]

    def wait_all(self, timeout: Optional[float] = None) -> Any:
        """Waits for every child spawned so far and returns their results in
        spawn order. On a thread with a running event loop, returns an awaitable.

        A ``timeout`` ends the wait only; reaching the scope's own deadline
        (``scope(timeout=...)``) also cancels the scope.

        Raises:
            Exception: the first error of a failed child, the others attached.
            vedart.TimeoutError: ``timeout`` seconds, or the scope's deadline,
                passed first.
            TypeError, ValueError: ``timeout`` is not a non-negative number.
        """
        seconds = check_timeout(timeout)
        if _asyncio.running_loop() is not None:
            return self._wait_all_async(seconds)
        limit, scoped = self._limit(seconds)
        if not self._wait_sync(limit):
            raise self._wait_all_timed_out(seconds, scoped)
        return self._results()

    async def _wait_all_async(self, timeout: Optional[float]) -> list[Any]:
        limit, scoped = self._limit(timeout)
        if not await self._wait_async(limit):
            raise self._wait_all_timed_out(timeout, scoped)
        return self._results()

    def _wait_all_timed_out(self, timeout: Optional[float], scoped: bool) -> TimeoutError:
        if scoped:
            return self._expired()
        assert timeout is not None
        return TimeoutError(
            f"Scope.wait_all(): children still running after {timeout:g} s",
            timeout=timeout,
            what="Scope.wait_all()",
        )

    # -- closing --------------------------------------------------------------

    def _finish(
        self, body_error: Optional[BaseException], timed_out: Optional[TimeoutError] = None
    ) -> None:
        with self._lock:
            self._state = "closed"
            errors = list(self._errors)
        if timed_out is not None:
            errors.insert(0, timed_out)
        if body_error is not None:
            if errors:
                _attach_others(body_error, errors)
            return
        if errors:
            raise _attach_others(errors[0], errors[1:])

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        if exc is not None:
            self.cancel()
        try:
            done = self._wait_sync(self._left())
        except BaseException as interrupt:
            # Interrupted while waiting (Ctrl+C): cancel the children and wait
            # for them once more; a second interrupt abandons the wait.
            self.cancel()
            try:
                self._wait_sync(self._left())
            finally:
                self._finish(interrupt)
            raise
        self._finish(exc, None if done else self._expired())

    async def __aexit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        if exc is not None:
            self.cancel()
        interrupted: Optional[BaseException] = None
        while True:
            try:
                done = await self._wait_async(self._left())
                break
            except asyncio.CancelledError as cancel:
                # The task hosting the scope was cancelled: cancel the children
                # and keep waiting for them, then propagate.
                self.cancel()
                interrupted = interrupted or cancel
        self._finish(
            exc if exc is not None else interrupted, None if done else self._expired()
        )
        if interrupted is not None and exc is None:
            raise interrupted

    def __repr__(self) -> str:
        return (
            f"<vedart.Scope {self._state} children={len(self._futures)} errors={len(self._errors)}>"
        )


def _wait_interruptibly(futures: list[Future], timeout: Optional[float]) -> None:
    _deterministic.run_deferred(futures)
    if futures:
        concurrent.futures.wait(futures, timeout=timeout)


def scope(*, timeout: Optional[float] = None) -> Scope:
    """A new :class:`Scope`, for ``with`` or ``async with``.

    ``timeout``: a deadline in seconds from entering the block; a wait of the
    scope that reaches it cancels the scope and raises
    :class:`vedart.TimeoutError` (rule 6 of the module documentation).

    Raises:
        TypeError, ValueError: ``timeout`` is not a non-negative number.

    Examples:
        >>> import vedart as veda
        >>> with veda.scope() as s:
        ...     a = s.spawn(sum, [1, 2, 3])
        ...     b = s.spawn(max, [4, 5])
        ...     results = s.wait_all()
        >>> results
        [6, 5]
    """
    return Scope(timeout)

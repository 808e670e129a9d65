"""Glue between VedaRT and asyncio.

* :func:`running_loop` tells whether the calling thread runs an event loop: then
  terminal operations return awaitables instead of blocking.
* :func:`background_loop` is a private event loop on a daemon thread
  (``veda-async-loop``) for coroutines started from synchronous code; a child
  made by ``os.fork`` starts its own.
* :func:`await_task` awaits a Rust task without blocking the loop; cancelling
  the awaiting coroutine cancels the task (and, through it, every group the task
  created).
* :data:`target_loop` names the loop on which ``async_map`` coroutines of the
  pipeline being run must execute.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import inspect
import os
import threading
from typing import Any, Callable, Coroutine, Optional

from . import _vedart
from ._runtime import get_runtime
from .exceptions import CancelledError

__all__ = ["running_loop", "background_loop", "is_coroutine_function", "await_task", "within"]

#: The loop that runs the ``async_map`` coroutines of the current pipeline.
target_loop: contextvars.ContextVar[Optional[asyncio.AbstractEventLoop]] = contextvars.ContextVar(
    "vedart_target_loop", default=None
)

_get_running_loop = asyncio._get_running_loop  # C fast path, no exception when absent


def running_loop() -> Optional[asyncio.AbstractEventLoop]:
    """The event loop running on this thread, or ``None``."""
    loop = _get_running_loop()
    if loop is not None and loop.is_running():
        return loop
    return None


def is_coroutine_function(fn: Any) -> bool:
    """Whether calling ``fn`` returns a coroutine: ``async def`` functions,
    ``functools.partial`` of them, and objects with an ``async def __call__``."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    if inspect.iscoroutinefunction(fn):
        return True
    if inspect.isfunction(fn) or inspect.ismethod(fn) or inspect.isbuiltin(fn):
        return False
    try:
        call = type(fn).__call__
    except AttributeError:
        return False
    return inspect.iscoroutinefunction(call)


_background_lock = threading.Lock()
_background: Optional[asyncio.AbstractEventLoop] = None


def background_loop() -> asyncio.AbstractEventLoop:
    """VedaRT's private event loop, started on first use on the daemon thread
    ``veda-async-loop``; coroutines submitted from synchronous code run there."""
    global _background
    loop = _background
    if loop is not None and not loop.is_closed():
        return loop
    with _background_lock:
        if _background is None or _background.is_closed():
            loop = asyncio.new_event_loop()
            ready = threading.Event()

            def run() -> None:
                asyncio.set_event_loop(loop)
                loop.call_soon(ready.set)
                loop.run_forever()

            threading.Thread(target=run, name="veda-async-loop", daemon=True).start()
            ready.wait()
            _background = loop
        return _background


# Loops inherited across fork(): their thread does not exist in the child, so
# they look alive but never run anything; kept (never closed: their selector
# is shared with the parent's loop) and never used.
_inherited: list[asyncio.AbstractEventLoop] = []


def _after_fork_in_child() -> None:
    global _background, _background_lock
    _background_lock = threading.Lock()
    if _background is not None:
        _inherited.append(_background)
    _background = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def submit_coroutine(
    coro: Coroutine[Any, Any, Any], loop: Optional[asyncio.AbstractEventLoop] = None
) -> concurrent.futures.Future:  # type: ignore[type-arg]
    """Schedules ``coro`` on ``loop`` (default: the background loop) from any
    thread; the returned future's ``cancel()`` cancels the coroutine."""
    return asyncio.run_coroutine_threadsafe(coro, loop or background_loop())


def wait_concurrent(
    future: concurrent.futures.Future,  # type: ignore[type-arg]
    deadline: Optional[Any] = None,
) -> Any:
    """``future.result()`` that also gives up, cancelling ``future``, when the
    VedaRT task running on this thread is cancelled (polled every 50 ms) or
    when ``deadline`` (a :class:`vedart._deadline.Deadline`) passes, raising
    its :class:`vedart.TimeoutError`."""
    try:
        # ``exception`` raises TimeoutError only when the wait timed out: a
        # TimeoutError the future holds is returned, and raised by result()
        # below, outside the wait.
        wait_polling(lambda seconds: future.exception(timeout=seconds), deadline)
    except BaseException:
        future.cancel()
        raise
    return future.result()


def wait_polling(wait: Callable[[float], Any], deadline: Optional[Any] = None) -> Any:
    """``wait(seconds)`` repeated until it returns (its result), giving up
    when the VedaRT task running on this thread is cancelled (polled every
    50 ms; :class:`vedart.CancelledError`) or when ``deadline`` passes (its
    :class:`vedart.TimeoutError`). ``wait`` raises :class:`TimeoutError`
    (or ``concurrent.futures.TimeoutError``) when nothing came in time."""
    interval = _vedart.SIGNAL_CHECK_INTERVAL
    while True:
        seconds = interval if deadline is None else min(interval, deadline.left())
        try:
            return wait(seconds)
        except (TimeoutError, concurrent.futures.TimeoutError):
            if _vedart.cancelled():
                raise CancelledError("the pipeline was cancelled") from None
            if deadline is not None and deadline.expired():
                raise deadline.error() from None


#: How long past its deadline an awaited operation is given to raise its own
#: :class:`vedart.TimeoutError` before :func:`within` stops waiting for it (a
#: thread that waits while being a task may be running a chunk itself).
DEADLINE_GRACE_SECONDS = 0.1


def _retrieve(task: asyncio.Future) -> None:  # type: ignore[type-arg]
    """Marks the outcome of an abandoned task as seen (no "never retrieved" log)."""
    if not task.cancelled():
        task.exception()


async def within(awaitable: Any, deadline: Any) -> Any:
    """Awaits ``awaitable``, at most until ``deadline`` (a
    :class:`vedart._deadline.Deadline`) plus :data:`DEADLINE_GRACE_SECONDS`;
    then cancels it and raises the deadline's :class:`vedart.TimeoutError`.
    Cancelling the awaiting coroutine cancels ``awaitable`` too."""
    task = asyncio.ensure_future(awaitable)
    try:
        done, _ = await asyncio.wait((task,), timeout=deadline.left() + DEADLINE_GRACE_SECONDS)
    except asyncio.CancelledError:
        task.cancel()
        raise
    if done:
        return task.result()
    task.cancel()
    task.add_done_callback(_retrieve)
    raise deadline.error()


async def await_task(task: Any) -> Any:
    """Awaits a Rust task (``_vedart.Task``) and returns its result.

    The wait is bridged from Rust (pyo3-async-runtimes on the VedaRT runtime), so
    the loop never blocks. If the awaiting coroutine is cancelled, the task is
    cancelled: not started, it never runs; running, it sees
    :func:`vedart.cancelled` and every group it created is cancelled.
    """
    try:
        await task.wait_async()
    except asyncio.CancelledError:
        task.cancel()
        raise
    return task.result()


def _call_targeting(
    loop: Optional[asyncio.AbstractEventLoop], fn: Callable[..., Any], *args: Any
) -> Any:
    target_loop.set(loop)  # in the task's own copy of the context
    return fn(*args)


async def run_blocking(fn: Callable[..., Any], *args: Any) -> Any:
    """Runs ``fn(*args)`` as a VedaRT task on the thread pool and awaits it; the
    task's ``async_map`` stages use the awaiting coroutine's loop."""
    runtime = get_runtime()
    ctx = contextvars.copy_context()
    task = runtime._root.submit(ctx.run, (_call_targeting, running_loop(), fn, *args))
    return await await_task(task)

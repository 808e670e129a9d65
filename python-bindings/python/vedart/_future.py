"""``vedart.Future``: a :class:`concurrent.futures.Future` that can also be awaited."""

from __future__ import annotations

import asyncio
import concurrent.futures
from typing import Any, Callable, Generator, Optional, TypeVar

from . import _vedart
from ._deadline import check_timeout
from ._trace import describe
from .exceptions import TimeoutError

__all__ = ["Future"]

T = TypeVar("T")

_base_cancel = concurrent.futures.Future.cancel

#: How long ``await future`` waits, with the interpreter released, for a task
#: that is about to finish before it suspends the coroutine (seconds). A task
#: that finishes within it returns without an event-loop round trip.
AWAIT_SPIN_SECONDS = 50e-6


class Future(concurrent.futures.Future):  # type: ignore[type-arg]
    """The result of :func:`vedart.spawn` and :meth:`vedart.Scope.spawn`.

    Everything :class:`concurrent.futures.Future` offers works (``result``,
    ``exception``, ``add_done_callback``, ``concurrent.futures.wait``), and
    ``await future`` works inside a coroutine without blocking the event loop.

    ``cancel()`` cancels the task if it has not started. A running task cannot be
    stopped from outside, so ``cancel()`` then returns ``False``, but the task is
    asked to stop: :func:`vedart.cancelled` turns true inside it (for a coroutine,
    it receives :class:`asyncio.CancelledError`). Cancelling a coroutine that
    awaits the future cancels the task the same way.

    Calling ``result()`` from inside another VedaRT task runs the awaited task
    right there if no thread has started it yet, so waiting never deadlocks the
    pool.
    """

    # The Rust task behind the future (thread executor), if any.
    _veda_task: Any = None
    # Called to request cancellation of a coroutine-backed future.
    _veda_cancel: Optional[Callable[[], Any]] = None
    # The function the task runs, for a timeout's message.
    _veda_fn: Any = None

    def _attach_task(self, task: Any) -> None:
        """Links the task that completes this future (see :meth:`_forget_task`)."""
        self._veda_task = task
        if self.done():  # it finished before the link was made
            self._veda_task = None

    def _forget_task(self) -> None:
        # A Rust task keeps its outcome, and Python's cycle collector cannot see
        # inside it: an exception whose traceback reaches this future (the
        # frame of a scope holding its children) would keep task, exception
        # and future alive for ever. Once done, the future holds the outcome
        # itself and needs the task no more.
        self._veda_task = None

    def set_result(self, result: Any) -> None:
        super().set_result(result)
        self._forget_task()

    def set_exception(self, exception: Optional[BaseException]) -> None:
        super().set_exception(exception)
        self._forget_task()

    def cancel(self) -> bool:
        """Cancels the task if it has not started and returns ``True``; otherwise
        asks it to stop and returns ``False`` (see the class documentation)."""
        task = self._veda_task
        if task is not None:
            if not task.cancel():
                return False
            return _base_cancel(self)
        request = self._veda_cancel
        if request is not None and not self.done():
            request()
            return False
        return _base_cancel(self)

    def _help(self) -> None:
        task = self._veda_task
        if task is None or self.done():
            return
        # A deterministic task (not a Rust one) runs when it is waited for.
        if _vedart.in_task() or not isinstance(task, _vedart.Task):
            task.run_inline()

    def result(self, timeout: Optional[float] = None) -> Any:
        """The task's return value, waiting up to ``timeout`` seconds.

        A timeout ends the wait, not the task (as for any
        :class:`concurrent.futures.Future`): call :meth:`cancel` to stop it,
        or give the work a deadline that cancels it with
        ``veda.scope(timeout=...)``.

        Raises:
            Exception: whatever the task raised.
            concurrent.futures.CancelledError: the task was cancelled.
            vedart.TimeoutError: ``timeout`` passed first (also the builtin
                :class:`TimeoutError`); the message names the task.
            TypeError, ValueError: ``timeout`` is not a non-negative number.
        """
        if timeout is None and not _vedart.in_task():
            task = self._veda_task
            if type(task) is _vedart.Task:
                # Nothing to run on this thread and no deadline: wait in Rust,
                # which wakes sooner than the future's condition (Ctrl+C
                # raises there, and the task runs on).
                task.wait()
                return super().result()
            if task is None:
                return super().result()
        self._wait(timeout)
        return super().result()

    def exception(self, timeout: Optional[float] = None) -> Optional[BaseException]:
        """The exception the task raised, or ``None``; waits like :meth:`result`."""
        self._wait(timeout)
        return super().exception()

    def _wait(self, timeout: Optional[float]) -> None:
        """Waits until done, or raises :class:`vedart.TimeoutError` after
        ``timeout`` seconds."""
        seconds = check_timeout(timeout)
        self._help()
        if self.done():
            return
        try:
            # Raises TimeoutError only when the wait times out: a TimeoutError
            # raised by the task itself is returned here, raised by result().
            super().exception(seconds)
        except concurrent.futures.TimeoutError:
            assert seconds is not None
            what = "the task"
            if self._veda_fn is not None:
                what = f"the task {describe(self._veda_fn)}"
            raise TimeoutError(
                f"{what} did not finish within {seconds:g} s "
                "(the task keeps running; cancel() asks it to stop)",
                timeout=seconds,
                what=what,
            ) from None

    def __await__(self) -> Generator[Any, None, Any]:
        task = self._veda_task
        if task is not None and not self.done() and task.wait_spin(AWAIT_SPIN_SECONDS):
            return task.result()
        if self.done():
            return self.result()
        return (yield from asyncio.wrap_future(self).__await__())

    __iter__ = __await__


def _chain_concurrent(source: concurrent.futures.Future, target: Future) -> None:  # type: ignore[type-arg]
    """Completes ``target`` when ``source`` completes (any thread)."""

    def done(src: concurrent.futures.Future) -> None:  # type: ignore[type-arg]
        if src.cancelled():
            _base_cancel(target)
            target.set_running_or_notify_cancel()
            return
        if not target.set_running_or_notify_cancel() and target.cancelled():
            return
        exc = src.exception()
        if exc is not None:
            target.set_exception(exc)
        else:
            target.set_result(src.result())

    source.add_done_callback(done)

"""The exceptions VedaRT raises.

Every exception that VedaRT itself raises derives from :class:`VedaError`.
Exceptions raised by *your* functions inside a pipeline or a task reach you
unchanged: same type, same message, with the traceback of the frame that raised
them and a note saying where they ran.

The Rust extension raises these classes too (it looks them up here), so this
module is the single definition of the hierarchy.
"""

from __future__ import annotations

import asyncio
import builtins
import concurrent.futures
import concurrent.futures.process
import concurrent.futures.thread
from typing import Any, Optional, Sequence

__all__ = [
    "VedaError",
    "ConfigError",
    "RuntimeStateError",
    "ScopeClosedError",
    "CancelledError",
    "ExecutorError",
    "ChunkInterruptedError",
    "ReplayError",
    "MetricsServerError",
    "TimeoutError",
    "BrokenProcessPoolError",
    "BrokenThreadPoolError",
]


class VedaError(Exception):
    """Base class of every error raised by VedaRT itself."""


class ConfigError(VedaError, ValueError):
    """An invalid :class:`vedart.Config` value; the message names the field.

    Also a :class:`ValueError`, so ``except ValueError`` catches it.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        #: The name of the offending field, e.g. ``"num_threads"``.
        self.field = field


class RuntimeStateError(VedaError):
    """The runtime is in the wrong state for the call: :func:`vedart.init` when a
    runtime is already running, or work submitted to a runtime that was shut down
    through a stale handle."""


class ScopeClosedError(VedaError):
    """:meth:`vedart.Scope.spawn` on a scope whose ``with`` block has ended."""


class CancelledError(VedaError, concurrent.futures.CancelledError):
    """The work was cancelled: a sibling failed, the scope exited with an
    error, the caller was interrupted, or the awaiting coroutine was cancelled.

    Also a :class:`concurrent.futures.CancelledError`.
    """


def _timeout_bases() -> tuple[type, ...]:
    """:class:`VedaError`, the builtin :class:`TimeoutError`, and the timeout
    errors of :mod:`concurrent.futures` and :mod:`asyncio` where they are
    other classes (before Python 3.11), so that every ``except`` written for a
    timeout catches VedaRT's."""
    bases: list[type] = [VedaError, builtins.TimeoutError]
    for other in (concurrent.futures.TimeoutError, asyncio.TimeoutError):
        if not any(issubclass(base, other) for base in bases):
            bases.append(other)
    return tuple(bases)


class TimeoutError(*_timeout_bases()):  # type: ignore[misc]  # noqa: A001
    """A ``timeout=`` passed before the operation finished: a terminal
    operation, streaming iteration, :meth:`vedart.Future.result`,
    :meth:`vedart.Scope.wait_all` or a :func:`vedart.scope` deadline.

    The message names the operation and the timeout. Work of a timed-out
    pipeline or scope is cancelled: queued chunks never run, worker processes
    running one are killed and replaced, coroutines are cancelled; a function
    already running on a thread cannot be stopped from outside and runs until
    it returns (its result is dropped; :func:`vedart.cancelled` turns true in
    it).

    Also the builtin :class:`TimeoutError` (and, before Python 3.11,
    :class:`concurrent.futures.TimeoutError` and :class:`asyncio.TimeoutError`).
    """

    def __init__(
        self, message: str, timeout: Optional[float] = None, what: Optional[str] = None
    ) -> None:
        super().__init__(message)
        #: The timeout that passed, in seconds.
        self.timeout = timeout
        #: What timed out, e.g. ``"par_iter(list[8]).map(fetch).collect()"``.
        self.what = what

    def __reduce__(self) -> Any:
        return (type(self), (str(self), self.timeout, self.what))


class ExecutorError(VedaError):
    """The requested executor does not exist or is not available here: among
    others, the OS refused the threads, processes or file descriptors it needs
    (a resource limit, memory); the message then names the OS error."""


class WorkerCrashedError(VedaError):
    """A worker process of the process executor died while it ran your work
    (a crash, ``os._exit``, a signal such as the kernel's OOM kill), or a
    cluster worker died (``executor="dask"``; :attr:`address` names it).

    The pool has already started a replacement, so the next call works. The
    message names the pid and the exit code or signal, and the chunks the
    death took down, and ends with the last lines the child wrote to stderr.
    One death is reported once, however many chunks it took down.
    """

    def __init__(
        self,
        message: str,
        pid: Optional[int] = None,
        exit_code: Optional[int] = None,
        signal: Optional[int] = None,
        stderr_tail: Sequence[str] = (),
        chunks: Sequence[int] = (),
        address: Optional[str] = None,
    ) -> None:
        super().__init__(message)
        #: The dead child's pid.
        self.pid = pid
        #: The address of the dead cluster worker (``executor="dask"``), else ``None``.
        self.address = address
        #: Its exit status, if it exited (rather than being killed by a signal).
        self.exit_code = exit_code
        #: The signal that killed it, if one did (9 for SIGKILL).
        self.signal = signal
        #: The last lines it wrote to stderr, oldest first.
        self.stderr_tail = tuple(stderr_tail)
        #: The chunks that failed with it, by position in their pipeline
        #: segment's submission order (0 is the first chunk sent to the pool).
        self.chunks = tuple(chunks)

    def __reduce__(self) -> Any:
        return (
            type(self),
            (
                str(self),
                self.pid,
                self.exit_code,
                self.signal,
                self.stderr_tail,
                self.chunks,
                self.address,
            ),
        )


class ChunkInterruptedError(ExecutorError):
    """A chunk was running in a worker process that was terminated to cancel
    *another* chunk (of another pipeline, sharing the pool), or to enforce
    another call's timeout.

    Chunks run at most once: this one had started, so it was not sent to
    another worker, and it may have run in part. Pipelines whose work may run
    again allow it with ``veda.Config(retries=N)``: the chunk is then re-run.
    """

    def __init__(
        self, message: str, pid: Optional[int] = None, chunks: Sequence[int] = ()
    ) -> None:
        super().__init__(message)
        #: The worker process that was terminated.
        self.pid = pid
        #: The chunks interrupted with it, by position in their pipeline
        #: segment's submission order.
        self.chunks = tuple(chunks)

    def __reduce__(self) -> Any:
        return (type(self), (str(self), self.pid, self.chunks))


class BrokenProcessPoolError(VedaError, concurrent.futures.process.BrokenProcessPool):
    """A call of :class:`vedart.VedaExecutor` (``executor="process"``) was lost
    with its worker process, or the executor's ``initializer`` raised in one.

    Also :class:`concurrent.futures.process.BrokenProcessPool` (so a
    :class:`concurrent.futures.BrokenExecutor`): code written for
    :class:`~concurrent.futures.ProcessPoolExecutor` catches it. Its
    ``__cause__`` is the original error: the :class:`WorkerCrashedError`
    naming the pid and the exit status or signal, or the initializer's
    exception. After a worker death the executor stays usable (the pool has
    replaced the worker, and calls the dead one had not started ran
    elsewhere); after an initializer failure it is broken for good.
    """


class BrokenThreadPoolError(VedaError, concurrent.futures.thread.BrokenThreadPool):
    """The ``initializer`` of a :class:`vedart.VedaExecutor` (``executor="thread"``)
    raised (its ``__cause__``): the executor is broken for good, as a
    :class:`~concurrent.futures.ThreadPoolExecutor` is; also
    :class:`concurrent.futures.thread.BrokenThreadPool`."""


class MetricsServerError(VedaError, OSError):
    """:func:`vedart.telemetry.serve_metrics` cannot listen on the address:
    the port is in use, the address is not one of this host's, or the OS
    refused it. The message names the address; ``__cause__`` is the OS
    error and ``errno`` its number. Also an :class:`OSError`."""

    def __init__(self, message: str, address: str = "", errno: Optional[int] = None) -> None:
        super().__init__(message)
        #: The address asked for, ``"host:port"``.
        self.address = address
        self.errno = errno

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""

    def __reduce__(self) -> Any:
        return (type(self), (str(self), self.address, self.errno))


class ReplayError(VedaError):
    """:func:`vedart.replay` found the program doing something other than what
    the trace recorded: another task, another order, more or fewer tasks. The
    message names the logical time and the tasks that differ."""


def _attach_note(exc: BaseException, note: str) -> None:
    """Adds ``note`` to ``exc``: ``add_note`` on Python 3.11+, else appended to
    ``__notes__`` (which tools such as pytest display on older versions too)."""
    add_note = getattr(exc, "add_note", None)
    if add_note is not None:
        add_note(note)
        return
    try:
        notes = exc.__dict__.setdefault("__notes__", [])
        notes.append(note)
    except (AttributeError, TypeError):  # pragma: no cover - exotic exception types
        pass


def _attach_others(first: BaseException, others: list[BaseException]) -> BaseException:
    """Attaches the errors that happened after ``first`` to it, as the list
    ``first.veda_other_errors`` plus a one-line note naming them."""
    others = [e for e in others if e is not first]
    if not others:
        return first
    try:
        first.veda_other_errors = others  # type: ignore[attr-defined]
    except (AttributeError, TypeError):  # pragma: no cover - exotic exception types
        pass
    names = ", ".join(f"{type(e).__name__}({e})" for e in others[:5])
    more = f" and {len(others) - 5} more" if len(others) > 5 else ""
    _attach_note(first, f"vedart: {len(others)} more task(s) failed: {names}{more}")
    return first

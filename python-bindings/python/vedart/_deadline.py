"""Timeouts: the ``timeout=`` argument of terminal operations, streaming,
:meth:`vedart.Future.result` and :func:`vedart.scope`.

1. :func:`check_timeout` validates the argument once, where the user passed it
   (``None``: no deadline; ``inf`` means the same).
2. A :class:`Deadline` is the absolute time by which the whole operation must
   be done, counted from its start, plus a description of the operation for
   the error message. Every wait of the operation is bounded by
   :meth:`Deadline.left`; whoever finds it passed raises
   :meth:`Deadline.error`, a :class:`vedart.TimeoutError`.
3. A :class:`vedart.Run` whose ``result(handle, timeout)`` gives up raises
   :class:`WaitExpired`; the engine turns it into the operation's error. A
   private class, so that a :class:`TimeoutError` raised by the user's own
   function is never mistaken for the deadline.
4. On the error's way out, whatever the operation started is cancelled (see
   :mod:`vedart._engine`, step 6): queued chunks never run, worker processes
   running a chunk are killed and replaced, coroutines are cancelled. Python
   threads cannot be killed: a chunk already running on a thread runs until
   its function returns (its result is dropped); :func:`vedart.cancelled`
   turns true inside it so that cooperative code can stop early.
"""

from __future__ import annotations

import math
import numbers
import time
from typing import Any, Optional

from .exceptions import TimeoutError

__all__ = ["check_timeout", "Deadline", "WaitExpired", "poll_pause"]


class WaitExpired(Exception):
    """Raised by ``Run.result(handle, timeout)`` when ``timeout`` passed before
    the chunk finished (step 3); never reaches the user."""


def poll_pause(longest: float, deadline: Optional[float]) -> float:
    """How long a polling wait may sleep: ``longest``, cut to what is left
    before ``deadline`` (a ``time.monotonic()`` value; ``None``: no deadline).

    Raises:
        WaitExpired: the deadline has passed.
    """
    if deadline is None:
        return longest
    left = deadline - time.monotonic()
    if left <= 0.0:
        raise WaitExpired
    return min(longest, left)


def check_timeout(timeout: Any, name: str = "timeout") -> Optional[float]:
    """``timeout`` as seconds, or ``None`` for no deadline.

    Raises:
        TypeError: not a number (``bool`` included).
        ValueError: negative or NaN.
    """
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, numbers.Real):
        raise TypeError(
            f"{name} must be a number of seconds or None, got {type(timeout).__name__}"
        )
    seconds = float(timeout)
    if math.isnan(seconds) or seconds < 0:
        raise ValueError(
            f"{name} must be a non-negative number of seconds or None, got {timeout!r}"
        )
    if math.isinf(seconds):
        return None
    return seconds


class Deadline:
    """When an operation must be done by (step 2).

    ``what`` describes the operation (``"par_iter(list[4]).map(f).collect()"``);
    a callable is called only when the error is built.
    """

    __slots__ = ("timeout", "at", "_what")

    def __init__(self, timeout: float, what: Any) -> None:
        self.timeout = timeout
        self.at = time.monotonic() + timeout
        self._what = what

    @classmethod
    def start(cls, timeout: Optional[float], what: Any) -> Optional[Deadline]:
        """A deadline ``timeout`` seconds from now, or ``None`` without one."""
        return None if timeout is None else cls(timeout, what)

    @property
    def what(self) -> str:
        what = self._what
        return str(what() if callable(what) else what)

    def left(self) -> float:
        """Seconds left, never negative."""
        return max(0.0, self.at - time.monotonic())

    def expired(self) -> bool:
        return time.monotonic() >= self.at

    def error(self) -> TimeoutError:
        """The :class:`vedart.TimeoutError` of this deadline."""
        what = self.what
        return TimeoutError(
            f"{what} did not finish within its timeout of {self.timeout:g} s; "
            "the work still running was cancelled",
            timeout=self.timeout,
            what=what,
        )

    def check(self) -> None:
        """Raises :meth:`error` if the deadline has passed."""
        if time.monotonic() >= self.at:
            raise self.error()


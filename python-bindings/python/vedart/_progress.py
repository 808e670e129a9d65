"""Progress bars of terminal operations: ``collect(progress=True)``.

How it works:

1. ``progress=True`` (or a string, the bar's description) makes the terminal
   operation create a :class:`Progress`: an atomic counter in Rust
   (``_vedart.Counter``) and a bar, ``tqdm`` when it is installed (its
   ``tqdm.auto`` flavour, so notebooks get a widget), else :class:`PlainBar`,
   a one-line text bar on standard error.
2. The engine counts the input items of the pipeline's first parallel segment
   into the counter as their chunks' results come back (any thread, any
   executor; the counter needs no lock and no interpreter).
3. A daemon thread, ``veda-progress``, reads the counter every
   :data:`REFRESH_SECONDS` (every :data:`REFRESH_SECONDS_NOT_A_TTY` when
   standard error is not a terminal) and moves the bar; the operation's
   thread never draws. So the bar also moves while the operation is awaited
   in asyncio.
4. When the operation ends the thread stops and the bar is drawn a last time
   and closed; after a successful run it shows every item as done.

The total is the length of the input when it has one (lists, ranges,
arrays); ``take(n)`` lowers it. Generators have no total: the bar then shows a
count and a rate.
"""

from __future__ import annotations

import importlib
import sys
import threading
import time
from types import TracebackType
from typing import Any, Optional, TextIO, Union

from . import _vedart

__all__ = ["Progress", "PlainBar", "tracking", "check"]

#: Seconds between two refreshes of a bar on a terminal.
REFRESH_SECONDS = 0.1

#: Seconds between two refreshes when standard error is not a terminal (a log).
REFRESH_SECONDS_NOT_A_TTY = 1.0

#: Width of the plain bar's gauge, in characters.
PLAIN_BAR_WIDTH = 24

DEFAULT_DESCRIPTION = "vedart"


def check(progress: Any) -> None:
    """Raises ``TypeError`` for a ``progress=`` value that is not a bool, a
    description string or ``None``."""
    if progress is not None and not isinstance(progress, (bool, str)):
        raise TypeError(
            f"progress must be a bool or a description string, got {type(progress).__name__}"
        )


def _format_seconds(seconds: float) -> str:
    seconds = int(seconds)
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}:{minutes:02d}:{seconds:02d}"
    return f"{minutes:02d}:{seconds:02d}"


class PlainBar:
    """A text progress bar on a stream, for when ``tqdm`` is not installed::

        vedart:  42%|##########              | 420/1000 [00:01<00:01, 350.0 items/s]

    Redrawn in place with a carriage return; :meth:`close` ends the line.
    """

    def __init__(
        self, total: Optional[int], description: str, stream: Optional[TextIO] = None
    ) -> None:
        self.total = total
        self.description = description
        self.n = 0
        self.stream = stream if stream is not None else sys.stderr
        self.started = time.monotonic()
        self._width = 0
        self._drawn: Optional[int] = None

    def update(self, n: int) -> None:
        """Advances the bar by ``n`` items and redraws it."""
        self.n += n
        self.refresh()

    def line(self) -> str:
        """The bar as text."""
        elapsed = time.monotonic() - self.started
        rate = self.n / elapsed if elapsed > 0 else 0.0
        speed = f"{rate:.1f} items/s"
        if self.total:
            fraction = min(1.0, self.n / self.total)
            filled = int(fraction * PLAIN_BAR_WIDTH)
            gauge = "#" * filled + " " * (PLAIN_BAR_WIDTH - filled)
            left = (self.total - self.n) / rate if rate > 0 else 0.0
            return (
                f"{self.description}: {int(fraction * 100):3d}%|{gauge}| {self.n}/{self.total} "
                f"[{_format_seconds(elapsed)}<{_format_seconds(left)}, {speed}]"
            )
        return f"{self.description}: {self.n} items [{_format_seconds(elapsed)}, {speed}]"

    def refresh(self) -> None:
        """Redraws the bar."""
        text = self.line()
        self._drawn = self.n
        pad = " " * max(0, self._width - len(text))
        self._width = len(text)
        try:
            self.stream.write("\r" + text + pad)
            self.stream.flush()
        except (OSError, ValueError):  # a closed or broken stream: no bar
            pass

    def close(self) -> None:
        """Draws the bar a last time (unless it shows the last count already)
        and ends its line."""
        if self._drawn != self.n:
            self.refresh()
        try:
            self.stream.write("\n")
            self.stream.flush()
        except (OSError, ValueError):
            pass


def _tqdm_class() -> Any:
    """``tqdm.auto.tqdm``, or ``None`` when tqdm is not installed."""
    try:
        module = importlib.import_module("tqdm.auto")
    except ImportError:
        return None
    return module.tqdm


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class Progress:
    """The progress of one terminal operation; see the module documentation."""

    def __init__(self, description: str, total: Optional[int]) -> None:
        self.description = description
        self.total = total
        #: Items done, counted by the engine (a Rust atomic).
        self.counter = _vedart.Counter()
        self._attached = False
        self._shown = 0
        self._bar: Any = None
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._lock = threading.Lock()

    # -- what the engine calls ------------------------------------------------

    def attach(self, source: Any) -> bool:
        """Called by each parallel segment with its input; returns whether this
        segment is the one counted (the first)."""
        if self._attached:
            return False
        self._attached = True
        remaining = source.remaining()
        if remaining is not None and (self.total is None or remaining < self.total):
            self.total = remaining
            with self._lock:
                if self._bar is not None:
                    self._bar.total = remaining
        return True

    def advance(self, n: int) -> None:
        """Counts ``n`` more items done."""
        self.counter.add(n)

    # -- the bar --------------------------------------------------------------

    def _open_bar(self) -> Any:
        tqdm = _tqdm_class()
        if tqdm is not None:
            return tqdm(total=self.total, desc=self.description, unit="item", leave=True)
        return PlainBar(self.total, self.description)

    def _show(self, value: int) -> None:
        with self._lock:
            delta = value - self._shown
            if delta > 0 and self._bar is not None:
                self._shown = value
                self._bar.update(delta)

    def _refresher(self, interval: float) -> None:
        while not self._stop.wait(interval):
            self._show(self.counter.value)

    def __enter__(self) -> Progress:
        self._bar = self._open_bar()
        interval = REFRESH_SECONDS if _is_terminal(sys.stderr) else REFRESH_SECONDS_NOT_A_TTY
        self._thread = threading.Thread(
            target=self._refresher, args=(interval,), name="veda-progress", daemon=True
        )
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        done = self.counter.value
        if exc is None and self.total is not None and not self._attached:
            done = self.total  # nothing ran in parallel: every item is done
        self._show(done)
        with self._lock:
            bar, self._bar = self._bar, None
        if bar is not None:
            bar.close()


class _NoProgress:
    """What :func:`tracking` returns for ``progress=False``: nothing to count."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc_info: Any) -> None:
        return None


_NO_PROGRESS = _NoProgress()


def tracking(progress: Union[None, bool, str], items: Any) -> Any:
    """A context manager for one terminal operation over ``items``: it yields
    a started :class:`Progress` when ``progress`` asks for one (``True`` or a
    description), else ``None``."""
    if progress is False or progress is None:
        return _NO_PROGRESS
    check(progress)
    description = progress if isinstance(progress, str) else DEFAULT_DESCRIPTION
    try:
        total: Optional[int] = len(items)
    except TypeError:
        total = None
    return Progress(description, total)

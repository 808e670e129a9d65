"""Task spans for ``vedart.telemetry.trace``: a timeline in Chrome's trace-event format.

While a :class:`Recorder` is installed (:data:`recorder`, process-wide), the
engine wraps every chunk function it submits, and ``spawn`` every callable it
starts, in a :class:`_Traced` call that records one span when it runs: what
ran (the pipeline segment such as ``"map(f).sum()"``, or ``"spawn(fn)"``), on
which thread, when it started and ended, and how long it waited in the queue
since submission. With no recorder installed the cost is one module-attribute
read per chunk.

:meth:`Recorder.chrome_trace` turns the spans into the JSON object format of
the Trace Event Format (``{"traceEvents": [...]}``) that Perfetto and
``chrome://tracing`` open: one complete event (``"ph": "X"``, microseconds) per
span on a track per thread, thread-name metadata events, and spans of the Rust
executors (process-pool calls, blocking-pool jobs, runtime tasks) from
``vedart_executors::telemetry`` on their own threads.

Spans of work that runs in another process (the process executor's children)
are not recorded there; the parent's own threads are.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any, Callable, Optional

__all__ = ["Recorder", "recorder", "install", "uninstall"]

#: Spans kept per recording; later ones are counted as dropped.
MAX_SPANS = 1 << 20

#: The installed recorder, or ``None`` (read by the engine for every chunk).
recorder: Optional[Recorder] = None

_install_lock = threading.Lock()


class _Span:
    __slots__ = (
        "name",
        "cat",
        "index",
        "executor",
        "tid",
        "thread",
        "queued",
        "start",
        "end",
        "ok",
    )

    def __init__(
        self,
        name: str,
        cat: str,
        index: int,
        executor: str,
        tid: int,
        thread: str,
        queued: int,
        start: int,
        end: int,
        ok: bool,
    ) -> None:
        self.name = name
        self.cat = cat
        self.index = index
        self.executor = executor
        self.tid = tid
        self.thread = thread
        self.queued = queued
        self.start = start
        self.end = end
        self.ok = ok


def _unwrapped(fn: Callable[..., Any]) -> Callable[..., Any]:
    return fn


class _Traced:
    """``fn`` that records a span of its call in ``recorder``."""

    __slots__ = ("recorder", "fn", "name", "cat", "index", "executor", "queued")

    def __init__(
        self,
        rec: Recorder,
        fn: Callable[..., Any],
        name: str,
        cat: str,
        index: int,
        executor: str,
    ) -> None:
        self.recorder = rec
        self.fn = fn
        self.name = name
        self.cat = cat
        self.index = index
        self.executor = executor
        self.queued = time.perf_counter_ns()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter_ns()
        ok = False
        try:
            result = self.fn(*args, **kwargs)
            ok = True
            return result
        finally:
            end = time.perf_counter_ns()
            thread = threading.current_thread()
            self.recorder.add(
                _Span(
                    self.name,
                    self.cat,
                    self.index,
                    self.executor,
                    thread.ident or 0,
                    thread.name,
                    self.queued,
                    start,
                    end,
                    ok,
                )
            )

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled for another process: the span could not come back, so the
        # child runs the plain function.
        return (_unwrapped, (self.fn,))


def describe(fn: Any) -> str:
    """A short name of a callable for traces and messages."""
    if isinstance(fn, _Traced):
        fn = fn.fn
    return getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)


class Recorder:
    """Collects spans until :meth:`chrome_trace` is asked for them."""

    def __init__(self, max_spans: int = MAX_SPANS) -> None:
        self.origin = time.perf_counter_ns()
        self.pid = os.getpid()
        self.max_spans = max_spans
        self.dropped = 0
        self._spans: list[_Span] = []
        self._lock = threading.Lock()

    def wrap(
        self, fn: Callable[..., Any], name: str, cat: str, index: int, executor: str
    ) -> _Traced:
        """``fn``, recording a span named ``name`` each time it is called."""
        return _Traced(self, fn, name, cat, index, executor)

    def add(self, span: _Span) -> None:
        with self._lock:
            if len(self._spans) < self.max_spans:
                self._spans.append(span)
            else:
                self.dropped += 1

    def spans(self) -> list[_Span]:
        with self._lock:
            return list(self._spans)

    def chrome_trace(self, rust_spans: Optional[list[dict[str, Any]]] = None) -> dict[str, Any]:
        """The spans as a Trace Event Format document (see the module docs).

        ``rust_spans`` are spans of the Rust executors as dicts with ``task``,
        ``kind``, ``thread``, ``thread_name``, ``start_ns`` and ``end_ns`` (on
        the :func:`time.perf_counter_ns` axis).
        """
        pid = self.pid
        events: list[dict[str, Any]] = [
            {"name": "process_name", "ph": "M", "pid": pid, "tid": 0, "args": {"name": "vedart"}}
        ]
        names: dict[int, str] = {}
        origin = self.origin
        for span in self.spans():
            names.setdefault(span.tid, span.thread)
            args: dict[str, Any] = {
                "index": span.index,
                "executor": span.executor,
                "queued_us": round(max(0, span.start - span.queued) / 1000, 3),
            }
            if not span.ok:
                args["error"] = True
            events.append(
                {
                    "name": span.name,
                    "cat": span.cat,
                    "ph": "X",
                    "ts": round((span.start - origin) / 1000, 3),
                    "dur": round(max(0, span.end - span.start) / 1000, 3),
                    "pid": pid,
                    "tid": span.tid,
                    "args": args,
                }
            )
        for raw in rust_spans or ():
            # Rust threads get ids of their own, clear of Python's thread idents.
            tid = (1 << 48) + int(raw["thread"])
            names.setdefault(tid, str(raw["thread_name"]))
            start = int(raw["start_ns"])
            events.append(
                {
                    "name": f"{raw['kind']} task {raw['task']}",
                    "cat": f"rust.{raw['kind']}",
                    "ph": "X",
                    "ts": round((start - origin) / 1000, 3),
                    "dur": round(max(0, int(raw["end_ns"]) - start) / 1000, 3),
                    "pid": pid,
                    "tid": tid,
                    "args": {"task": raw["task"]},
                }
            )
        for tid, name in sorted(names.items()):
            events.append(
                {"name": "thread_name", "ph": "M", "pid": pid, "tid": tid, "args": {"name": name}}
            )
        return {
            "traceEvents": events,
            "displayTimeUnit": "ms",
            "otherData": {"producer": "vedart", "dropped_spans": self.dropped},
        }


def install(rec: Recorder) -> None:
    """Makes ``rec`` the process-wide recorder.

    Raises:
        RuntimeError: another recording is in progress.
    """
    global recorder
    with _install_lock:
        if recorder is not None:
            raise RuntimeError("a vedart trace is already being recorded")
        recorder = rec


def uninstall(rec: Recorder) -> None:
    """Removes ``rec`` if it is the installed recorder."""
    global recorder
    with _install_lock:
        if recorder is rec:
            recorder = None


def _after_fork_in_child() -> None:
    # Another thread may have held the lock when this process forked.
    global _install_lock
    _install_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)

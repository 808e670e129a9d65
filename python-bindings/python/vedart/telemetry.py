"""``vedart.telemetry``: what the executors did, as numbers and as a timeline.

::

    import vedart as veda

    veda.par_iter(range(100_000)).map(work).collect()
    snap = veda.telemetry.snapshot()
    snap.run_time.p99                  # seconds: 99th percentile of task run time
    snap.executors["thread"]["tasks"]  # {'spawned': ..., 'completed': ..., ...}
    snap.export("metrics.prom")        # Prometheus text format (.json: JSON)

    with veda.telemetry.trace("run.json"):   # open in Perfetto / chrome://tracing
        veda.par_iter(range(1000)).map(work).collect()

How it is counted:

* Counting happens in Rust with relaxed atomics, with no lock on the paths
  that run tasks: per Python task of the thread executor (spawned, completed,
  failed, cancelled; histograms of queue wait and run time), and in the Rust
  executors themselves (blocking-pool jobs and gauges, process-pool calls,
  children, respawns and bytes moved, GPU operations and fallbacks).
* It is on by default (``Config(enable_telemetry=False)`` or
  :func:`set_enabled` turn it off; task counters and histograms then stand
  still, gauges stay exact). Counters only grow; compare two snapshots for
  rates.
* Histograms have logarithmic buckets (four per power of two), so p50, p95 and
  p99 are within about 12% of the exact figures.

Snapshots are read in one pass without stopping anything: figures of work
that is running while it is taken may be a task apart.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import threading
import time
from collections.abc import Iterator
from typing import Any, Callable, Optional, Union

from . import _runtime, _trace, _vedart

__all__ = [
    "Histogram",
    "Snapshot",
    "snapshot",
    "set_enabled",
    "is_enabled",
    "trace",
]

#: Spans a :func:`trace` keeps at most (per side: Python tasks, Rust executors).
MAX_TRACE_SPANS = 1 << 20

#: Power-of-two bucket boundaries of the Prometheus histograms, in nanoseconds:
#: 2**10 ns (about 1 us) to 2**36 ns (about 69 s). They are boundaries of the
#: log buckets too, so the cumulative counts are exact.
PROMETHEUS_BOUNDS_NS = tuple(1 << power for power in range(10, 37))

#: ``async_map`` coroutines: started, returned, raised, cancelled. The stage
#: counts on its event loop in plain integers and adds them here (Rust
#: atomics) when a lane of coroutines ends: see :func:`_count_coroutines`.
_COROUTINES = tuple(_vedart.Counter() for _ in range(4))


def _count_coroutines(started: int, completed: int, failed: int, cancelled: int) -> None:
    """Adds coroutine counts of the async executor (while counting is on)."""
    if not _vedart.telemetry_is_enabled():
        return
    for counter, n in zip(_COROUTINES, (started, completed, failed, cancelled)):
        if n:
            counter.add(n)


def _coroutine_counts() -> dict[str, int]:
    spawned, completed, failed, cancelled = (counter.value for counter in _COROUTINES)
    return _counts(
        {"spawned": spawned, "completed": completed, "failed": failed, "cancelled": cancelled}
    )


_sources_lock = threading.Lock()
_sources: dict[str, Callable[[], dict[str, Any]]] = {}


def _register_source(executor: str, read: Callable[[], dict[str, Any]]) -> None:
    """Lets a Python-side executor add figures of its own: ``read()`` returns
    a dict merged into ``snapshot().executors[executor]`` (numbers, or nested
    dicts of numbers). Registering a name again replaces the reader."""
    with _sources_lock:
        _sources[executor] = read


def _after_fork_in_child() -> None:
    # Another thread may have held the lock when this process forked.
    global _sources_lock
    _sources_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


@dataclasses.dataclass(frozen=True)
class Histogram:
    """A distribution of durations, in seconds; see :func:`snapshot`."""

    #: Values recorded.
    count: int
    #: Their sum.
    sum: float
    #: The smallest and the largest.
    min: float
    max: float
    #: Their mean.
    mean: float
    #: Median, 95th and 99th percentile (estimated from the buckets, within
    #: about 12%; clamped to ``min`` and ``max``). Zero when empty.
    p50: float
    p95: float
    p99: float
    #: The non-empty buckets: ``(lower_ns, upper_ns, count)``, ``count``
    #: values in ``[lower_ns, upper_ns)`` nanoseconds.
    buckets: tuple[tuple[int, int, int], ...] = ()

    @classmethod
    def _from_raw(cls, raw: dict[str, Any]) -> Histogram:
        return cls(
            count=int(raw["count"]),
            sum=float(raw["sum"]),
            min=float(raw["min"]),
            max=float(raw["max"]),
            mean=float(raw["mean"]),
            p50=float(raw["p50"]),
            p95=float(raw["p95"]),
            p99=float(raw["p99"]),
            buckets=tuple((int(lo), int(hi), int(n)) for lo, hi, n in raw["buckets"]),
        )

    def percentile(self, quantile: float) -> float:
        """The value (seconds) below which a fraction ``quantile`` (0 to 1) of
        the values lie, estimated like ``p50``."""
        if self.count == 0:
            return 0.0
        quantile = min(1.0, max(0.0, quantile))
        rank = max(1, min(self.count, math.ceil(quantile * self.count)))
        seen = 0
        for lower, upper, n in self.buckets:
            seen += n
            if seen >= rank:
                middle = (lower + (upper - lower) // 2) / 1e9
                return min(self.max, max(self.min, middle))
        return self.max

    def since(self, earlier: Histogram) -> Histogram:
        """The values recorded after ``earlier`` (a histogram of the same
        quantity from an older snapshot): "p99 over the last minute".

        ``min`` and ``max`` are then the bounds of the lowest and highest
        non-empty bucket, since the exact extremes are not kept per interval.
        """
        before = {(lower, upper): n for lower, upper, n in earlier.buckets}
        buckets = tuple(
            (lower, upper, n - before.get((lower, upper), 0))
            for lower, upper, n in self.buckets
            if n > before.get((lower, upper), 0)
        )
        count = sum(n for _, _, n in buckets)
        if count == 0:
            return Histogram(0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
        total = max(0.0, self.sum - earlier.sum)
        partial = Histogram(
            count, total, buckets[0][0] / 1e9, buckets[-1][1] / 1e9, total / count, 0, 0, 0, buckets
        )
        return dataclasses.replace(
            partial,
            p50=partial.percentile(0.50),
            p95=partial.percentile(0.95),
            p99=partial.percentile(0.99),
        )

    def cumulative(self, bound_ns: int) -> int:
        """How many values were below ``bound_ns`` nanoseconds (exact at the
        bucket boundaries, e.g. any power of two)."""
        return sum(n for _, upper, n in self.buckets if upper <= bound_ns)

    def to_dict(self) -> dict[str, Any]:
        """The histogram as plain data."""
        fields = dataclasses.asdict(self)
        fields["buckets"] = [list(bucket) for bucket in self.buckets]
        return fields


def _counts(raw: dict[str, Any]) -> dict[str, int]:
    counts = {key: int(raw[key]) for key in ("spawned", "completed", "failed", "cancelled")}
    finished = counts["completed"] + counts["failed"] + counts["cancelled"]
    counts["live"] = max(0, counts["spawned"] - finished)
    return counts


class Snapshot:
    """The telemetry of the process at one moment, from :func:`snapshot`.

    ``executors`` maps an executor name to a dict of its figures, each with
    ``tasks`` (``spawned``, ``completed``, ``failed``, ``cancelled``,
    ``live``):

    * ``"thread"``: Python tasks of the thread pool (pipeline chunks, spawned
      callables); ``workers`` (``current``, ``idle``, ``min``, ``max``,
      ``target``), ``queue_depth``, ``queue_wait`` and ``run_time``
      (:class:`Histogram`).
    * ``"process"``: calls to worker processes; ``children``,
      ``children_spawned``, ``respawns``, ``bytes_sent``, ``bytes_received``.
    * ``"async"``: coroutines of ``async_map`` stages (counted when each
      lane of coroutines on the event loop ends, so a running stage shows up
      a little late).
    * ``"gpu"``: stream operations, and ``fallbacks``: GPU work that ran on
      the CPU.

    ``runtime`` holds VedaRT's Rust async runtimes (in Python, the bridge
    that lets asyncio await VedaRT work): ``tasks``, ``workers``,
    ``queue_depth``, ``polls``, ``steals``, ``parks``, and histograms of
    queue wait and poll time (sampled, as ``vedart::telemetry`` documents).
    ``queue_wait``, ``run_time`` and ``p50``/``p95``/``p99`` are the thread
    executor's.
    """

    def __init__(
        self, raw: dict[str, Any], runtime_stats: Optional[dict[str, Any]], taken_at: float
    ) -> None:
        #: Unix time of the snapshot.
        self.taken_at = taken_at
        #: Whether counting was on.
        self.enabled = bool(raw["enabled"])
        tasks = raw["python_tasks"]
        #: How long thread-executor tasks waited for a thread.
        self.queue_wait = Histogram._from_raw(tasks["queue_wait"])
        #: How long thread-executor tasks ran.
        self.run_time = Histogram._from_raw(tasks["run_time"])
        blocking = raw["blocking"]
        if runtime_stats is not None:
            workers = {
                "current": int(runtime_stats["threads"]),
                "idle": int(runtime_stats["idle_threads"]),
                "min": int(runtime_stats["min_workers"]),
                "max": int(runtime_stats["max_workers"]),
                "target": int(runtime_stats["target_workers"]),
            }
            queue_depth = int(runtime_stats["queue_depth"])
        else:
            workers = {
                "current": int(blocking["threads"]),
                "idle": int(blocking["idle_threads"]),
                "min": int(blocking["min_workers"]),
                "max": int(blocking["max_workers"]),
                "target": int(blocking["min_workers"]),
            }
            queue_depth = int(blocking["queue_depth"])
        process = raw["process"]
        gpu = raw["gpu"]
        runtime = raw["async"]
        self.executors: dict[str, dict[str, Any]] = {
            "thread": {
                "tasks": _counts(tasks),
                "workers": workers,
                "queue_depth": queue_depth,
                "queue_wait": self.queue_wait,
                "run_time": self.run_time,
            },
            "process": {
                "tasks": _counts(process),
                "pools": int(process["pools"]),
                "children": int(process["children"]),
                "children_spawned": int(process["children_spawned"]),
                "respawns": int(process["respawns"]),
                "bytes_sent": int(process["bytes_sent"]),
                "bytes_received": int(process["bytes_received"]),
            },
            "async": {"tasks": _coroutine_counts()},
            "gpu": {"tasks": _counts(gpu), "fallbacks": int(gpu["fallbacks"])},
        }
        #: VedaRT's Rust async runtimes (in Python, the bridge that lets
        #: asyncio await VedaRT work): tasks, workers, queues, scheduler
        #: counters, histograms of queue wait and poll time (sampled).
        self.runtime: dict[str, Any] = {
            "tasks": _counts(runtime),
            "runtimes": int(runtime["runtimes"]),
            "workers": {
                "current": int(runtime["threads"]),
                "active": int(runtime["active_workers"]),
                "min": int(runtime["workers"]),
                "max": int(runtime["workers"]),
            },
            "queue_depth": int(runtime["injector_depth"]) + int(runtime["local_queue_depth"]),
            "injector_depth": int(runtime["injector_depth"]),
            "local_queue_depth": int(runtime["local_queue_depth"]),
            "polls": int(runtime["polls"]),
            "schedules": int(runtime["schedules"]),
            "steals": int(runtime["steals"]),
            "parks": int(runtime["parks"]),
            "queue_wait": Histogram._from_raw(runtime["queue_wait"]),
            "run_time": Histogram._from_raw(runtime["run_time"]),
        }
        #: The Rust blocking pools' own figures (jobs, gauges, histograms):
        #: the thread executor's pool and any other in the process.
        self.blocking_pools: dict[str, Any] = {
            "jobs": _counts(blocking),
            "pools": int(blocking["pools"]),
            "threads": int(blocking["threads"]),
            "peak_threads": int(blocking["peak_threads"]),
            "queue_depth": int(blocking["queue_depth"]),
            "queue_wait": Histogram._from_raw(blocking["queue_wait"]),
            "run_time": Histogram._from_raw(blocking["run_time"]),
        }
        #: Spans dropped for want of room while tracing.
        self.spans_dropped = int(raw["spans_dropped"])
        with _sources_lock:
            sources = list(_sources.items())
        for name, read in sources:
            self.executors.setdefault(name, {}).update(read())

    @property
    def p50(self) -> float:
        """Median run time of thread-executor tasks, in seconds."""
        return self.run_time.p50

    @property
    def p95(self) -> float:
        """95th percentile of their run time, in seconds."""
        return self.run_time.p95

    @property
    def p99(self) -> float:
        """99th percentile of their run time, in seconds."""
        return self.run_time.p99

    def _task_sources(self) -> list[tuple[str, dict[str, Any]]]:
        sources = [(name, f) for name, f in self.executors.items() if "tasks" in f]
        return sources + [("runtime", self.runtime)]

    def to_dict(self) -> dict[str, Any]:
        """Everything as plain data (histograms as dicts)."""

        def plain(value: Any) -> Any:
            if isinstance(value, Histogram):
                return value.to_dict()
            if isinstance(value, dict):
                return {key: plain(item) for key, item in value.items()}
            return value

        return {
            "taken_at": self.taken_at,
            "enabled": self.enabled,
            "executors": plain(self.executors),
            "runtime": plain(self.runtime),
            "blocking_pools": plain(self.blocking_pools),
            "spans_dropped": self.spans_dropped,
        }

    def to_json(self, indent: Optional[int] = None) -> str:
        """:meth:`to_dict` as JSON."""
        return json.dumps(self.to_dict(), indent=indent)

    def to_prometheus(self) -> str:
        """The snapshot in the Prometheus text exposition format (0.0.4).

        Counters: ``vedart_tasks_spawned_total`` and ``vedart_tasks_finished_total``
        (label ``outcome``: completed, failed, cancelled), per ``executor``
        (thread, process, async, gpu, and runtime for the Rust async runtime);
        ``vedart_process_respawns_total``, ``vedart_process_children_spawned_total``,
        ``vedart_process_bytes_sent_total``, ``vedart_process_bytes_received_total``,
        ``vedart_gpu_fallbacks_total``, ``vedart_scheduler_polls_total``,
        ``vedart_scheduler_steals_total``, ``vedart_scheduler_parks_total``.
        Gauges: ``vedart_tasks_live``, ``vedart_workers`` (labels ``executor``
        and ``kind``: current, idle, min, max, target, active),
        ``vedart_queue_depth``, ``vedart_process_children``,
        ``vedart_telemetry_enabled``. Histograms (power-of-two buckets, label
        ``executor``: thread, runtime): ``vedart_task_queue_wait_seconds``,
        ``vedart_task_run_time_seconds``.
        """
        out = _Exposition()
        out.family("vedart_telemetry_enabled", "gauge", "Whether telemetry counts (1) or not (0).")
        out.sample("vedart_telemetry_enabled", {}, int(self.enabled))
        out.family("vedart_tasks_spawned_total", "counter", "Tasks started, per executor.")
        for name, figures in self._task_sources():
            out.sample(
                "vedart_tasks_spawned_total", {"executor": name}, figures["tasks"]["spawned"]
            )
        out.family(
            "vedart_tasks_finished_total",
            "counter",
            "Tasks ended, per executor and outcome (completed, failed, cancelled).",
        )
        for name, figures in self._task_sources():
            for outcome in ("completed", "failed", "cancelled"):
                out.sample(
                    "vedart_tasks_finished_total",
                    {"executor": name, "outcome": outcome},
                    figures["tasks"][outcome],
                )
        out.family("vedart_tasks_live", "gauge", "Tasks queued or running, per executor.")
        for name, figures in self._task_sources():
            out.sample("vedart_tasks_live", {"executor": name}, figures["tasks"]["live"])
        runtime = self.runtime
        process = self.executors["process"]
        timed = {"thread": self.executors["thread"], "runtime": runtime}
        out.family("vedart_workers", "gauge", "Worker threads per executor, by kind.")
        for name, figures in timed.items():
            for kind, value in figures["workers"].items():
                out.sample("vedart_workers", {"executor": name, "kind": kind}, value)
        out.family("vedart_queue_depth", "gauge", "Work waiting for a worker, per executor.")
        for name, figures in timed.items():
            out.sample("vedart_queue_depth", {"executor": name}, figures["queue_depth"])
        for key, help_text in (
            ("polls", "Polls of async tasks."),
            ("steals", "Tasks an async worker stole from another worker's queue."),
            ("parks", "Times an async worker went to sleep for want of work."),
        ):
            metric = f"vedart_scheduler_{key}_total"
            out.family(metric, "counter", help_text)
            out.sample(metric, {}, runtime[key])
        out.family("vedart_process_children", "gauge", "Worker processes not yet reaped.")
        out.sample("vedart_process_children", {}, process["children"])
        for key, help_text in (
            ("children_spawned", "Worker processes started."),
            ("respawns", "Worker processes started to replace dead ones."),
            ("bytes_sent", "Bytes written to worker processes."),
            ("bytes_received", "Bytes read from worker processes."),
        ):
            metric = f"vedart_process_{key}_total"
            out.family(metric, "counter", help_text)
            out.sample(metric, {}, process[key])
        out.family("vedart_gpu_fallbacks_total", "counter", "GPU work that ran on the CPU.")
        out.sample("vedart_gpu_fallbacks_total", {}, self.executors["gpu"]["fallbacks"])
        for metric, key, help_text in (
            (
                "vedart_task_queue_wait_seconds",
                "queue_wait",
                "Time tasks waited to run (runtime: sampled polls).",
            ),
            (
                "vedart_task_run_time_seconds",
                "run_time",
                "Run time of tasks (runtime: of one poll, sampled).",
            ),
        ):
            out.family(metric, "histogram", help_text)
            for name, figures in timed.items():
                histogram = figures[key]
                labels = {"executor": name}
                for bound in PROMETHEUS_BOUNDS_NS:
                    out.sample(
                        f"{metric}_bucket",
                        {**labels, "le": repr(bound / 1e9)},
                        histogram.cumulative(bound),
                    )
                out.sample(f"{metric}_bucket", {**labels, "le": "+Inf"}, histogram.count)
                out.sample(f"{metric}_sum", labels, histogram.sum)
                out.sample(f"{metric}_count", labels, histogram.count)
        return out.text()

    def export(self, path: Union[str, os.PathLike[str]]) -> None:
        """Writes the snapshot to ``path``, in the format its extension names:
        ``.json`` (:meth:`to_json`), ``.prom`` or ``.txt`` (:meth:`to_prometheus`).

        Raises:
            ValueError: another extension.
        """
        suffix = os.path.splitext(os.fspath(path))[1].lower()
        if suffix == ".json":
            text = self.to_json(indent=1)
        elif suffix in (".prom", ".txt"):
            text = self.to_prometheus()
        else:
            raise ValueError(
                f"cannot tell the format from {suffix or 'no extension'!r}: use .json, .prom or .txt"
            )
        with open(path, "w", encoding="utf-8") as out:
            out.write(text)

    def __repr__(self) -> str:
        tasks = self.executors["thread"]["tasks"]
        return (
            f"<vedart.telemetry.Snapshot thread tasks={tasks['completed']}/{tasks['spawned']} "
            f"p50={self.p50 * 1e6:.1f}us p99={self.p99 * 1e6:.1f}us>"
        )


class _Exposition:
    """Builds Prometheus text exposition."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str) -> None:
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} {kind}")

    def sample(self, name: str, labels: dict[str, str], value: Union[int, float]) -> None:
        if labels:
            inner = ",".join(f'{key}="{_escape(str(val))}"' for key, val in labels.items())
            self.lines.append(f"{name}{{{inner}}} {_number(value)}")
        else:
            self.lines.append(f"{name} {_number(value)}")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: Union[int, float]) -> str:
    if isinstance(value, int):
        return str(value)
    return repr(float(value))


def snapshot() -> Snapshot:
    """The telemetry of the whole process now; see :class:`Snapshot`.

    Examples:
        >>> import vedart as veda
        >>> _ = veda.par_iter(range(1000), chunk_size=10).map(abs).collect()
        >>> snap = veda.telemetry.snapshot()
        >>> snap.executors["thread"]["tasks"]["completed"] > 0, snap.p50 > 0
        (True, True)
    """
    raw = _vedart.telemetry_snapshot()
    runtime = _runtime._current
    stats = None
    if runtime is not None and not runtime.closed:
        stats = runtime._pool.stats()
    return Snapshot(raw, stats, time.time())


def set_enabled(enabled: bool) -> None:
    """Turns counting on or off for the whole process (on by default)."""
    if not isinstance(enabled, bool):
        raise TypeError(f"enabled must be a bool, got {type(enabled).__name__}")
    _vedart.telemetry_set_enabled(enabled)


def is_enabled() -> bool:
    """Whether telemetry counts."""
    return bool(_vedart.telemetry_is_enabled())


def _rust_clock_offset() -> int:
    """Nanoseconds to add to a Rust span time to get ``perf_counter_ns`` time
    (both clocks are monotonic; the best of a few readings)."""
    best: Optional[tuple[int, int]] = None
    for _ in range(5):
        before = time.perf_counter_ns()
        rust = _vedart.telemetry_clock_ns()
        after = time.perf_counter_ns()
        if best is None or after - before < best[0]:
            best = (after - before, (before + after) // 2 - rust)
    assert best is not None
    return best[1]


@contextlib.contextmanager
def trace(
    path: Union[str, os.PathLike[str]], *, max_spans: int = MAX_TRACE_SPANS
) -> Iterator[None]:
    """Records every task that runs in the process while the block runs, as a
    span on the thread that ran it, and writes a Chrome trace-event JSON file
    to ``path`` when the block ends (also when it raises). Open the file in
    https://ui.perfetto.dev or ``chrome://tracing``.

    Pipeline chunks are named after their stages (``"map(parse).sum()"``),
    spawned tasks ``"spawn(fn)"``; their queue wait is in the span's ``args``.
    Spans of the Rust executors (process-pool calls, runtime tasks) appear on
    tracks of their own.

    Raises:
        RuntimeError: another trace is being recorded.

    Examples:
        >>> import json, os, tempfile, vedart as veda
        >>> path = os.path.join(tempfile.mkdtemp(), "run.json")
        >>> with veda.telemetry.trace(path):
        ...     _ = veda.par_iter(range(100), chunk_size=10).map(abs).collect()
        >>> events = json.load(open(path))["traceEvents"]
        >>> sum(e["ph"] == "X" and e["name"] == "map(abs).collect()" for e in events)
        10
    """
    recorder = _trace.Recorder(max_spans)
    _trace.install(recorder)
    _vedart.telemetry_take_spans()  # forget spans of an earlier recording
    _vedart.telemetry_start_spans(max_spans)
    try:
        yield
    finally:
        _vedart.telemetry_stop_spans()
        _trace.uninstall(recorder)
        offset = _rust_clock_offset()
        rust_spans = []
        for span in _vedart.telemetry_take_spans():
            if span["kind"] == "blocking":
                continue  # the thread executor's jobs: the Python spans show them, named
            span["start_ns"] += offset
            span["end_ns"] += offset
            rust_spans.append(span)
        document = recorder.chrome_trace(rust_spans)
        with open(path, "w", encoding="utf-8") as out:
            json.dump(document, out)

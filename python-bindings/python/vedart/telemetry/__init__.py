"""``vedart.telemetry``: what the executors did, as numbers and as a timeline.

::

    import vedart as veda

    veda.par_iter(range(100_000)).map(work).collect()
    snap = veda.telemetry.snapshot()
    snap.run_time.p99                  # seconds: 99th percentile of task run time
    snap.executors["thread"]["tasks"]  # {'spawned': ..., 'completed': ..., ...}
    snap.export("metrics.prom")        # Prometheus text format (.json: JSON)
    port = veda.telemetry.serve_metrics(9464)  # scrape http://127.0.0.1:9464/metrics

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

import atexit
import contextlib
import dataclasses
import json
import os
import threading
import time
from collections.abc import Iterator
from typing import Any, Callable, Optional, Union

from .. import _runtime, _trace, _vedart
from ..exceptions import ConfigError, MetricsServerError

__all__ = [
    "Histogram",
    "Snapshot",
    "snapshot",
    "set_enabled",
    "is_enabled",
    "trace",
    "serve_metrics",
    "stop_metrics",
    "collector",
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


#: ``prometheus_client`` once imported. It is imported on first use, not with
#: VedaRT: it is optional, and it would slow every start (worker processes
#: too) for programs that never export.
_client: Any = None
#: Held while importing it, and by :func:`os.fork`: a child forked while
#: another thread was in the middle of the import would find the module's
#: import lock taken forever, and hang at its first export.
_client_lock = threading.Lock()


#: The running endpoints of :func:`serve_metrics`: (server, serving thread).
_servers_lock = threading.Lock()
_servers: list[tuple[Any, threading.Thread]] = []


def _after_fork_in_child() -> None:
    # Another thread may have held the lock when this process forked.
    global _sources_lock, _servers_lock, _client_lock
    _sources_lock = threading.Lock()
    _servers_lock = threading.Lock()
    _client_lock = threading.Lock()  # held by the fork itself: see _client_lock
    # The endpoints' threads do not exist in a child: stopping one there would
    # wait for them forever. Closing the child's copies of their sockets lets
    # the port go when the parent stops serving, while the child lives on.
    for server, _ in _servers:
        server.server_close()
    _servers.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=lambda: _client_lock.acquire(),
        after_in_parent=lambda: _client_lock.release(),
        after_in_child=_after_fork_in_child,
    )


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
        the values lie, estimated like ``p50`` (by the same Rust code)."""
        return self._percentiles(quantile)[0]

    def _percentiles(self, *quantiles: float) -> list[float]:
        return _vedart.histogram_percentiles(
            list(self.buckets), self.min, self.max, [float(q) for q in quantiles]
        )

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
        p50, p95, p99 = partial._percentiles(0.50, 0.95, 0.99)
        return dataclasses.replace(partial, p50=p50, p95=p95, p99=p99)

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
        """The snapshot in the Prometheus text exposition format, written by
        ``prometheus_client`` from the collector that :func:`serve_metrics`
        serves (:func:`collector`); the metrics are listed there.

        Raises:
            ConfigError: ``prometheus_client`` is not installed (the
                ``vedart[metrics]`` extra).
        """
        client = _prometheus()
        registry = client.CollectorRegistry(auto_describe=False)
        registry.register(_SnapshotCollector(lambda: self))
        return client.generate_latest(registry).decode("utf-8")

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


def _prometheus() -> Any:
    """``prometheus_client`` (the ``metrics`` extra)."""
    global _client
    if _client is None:
        with _client_lock:
            if _client is None:
                try:
                    import prometheus_client
                    import prometheus_client.core
                except ImportError as error:
                    raise ConfigError(
                        "metrics",
                        "Prometheus export needs prometheus_client; install the extra: "
                        f"pip install 'vedart[metrics]' ({error})",
                    ) from error
                _client = prometheus_client
    return _client


class _SnapshotCollector:
    """A ``prometheus_client`` collector over :func:`snapshot`: every
    ``collect()`` reads ``source()`` once and yields its metric families.

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

    def __init__(self, source: Callable[[], Snapshot]) -> None:
        self._source = source

    def describe(self) -> list[Any]:
        # Without it a registry would call collect() (take a snapshot) at
        # registration just to learn the names.
        return []

    def collect(self) -> Iterator[Any]:
        core = _prometheus().core
        counter, gauge = core.CounterMetricFamily, core.GaugeMetricFamily
        snap = self._source()
        tasks = snap._task_sources()
        runtime = snap.runtime
        process = snap.executors["process"]
        timed = {"thread": snap.executors["thread"], "runtime": runtime}

        yield gauge(
            "vedart_telemetry_enabled",
            "Whether telemetry counts (1) or not (0).",
            value=int(snap.enabled),
        )
        spawned = counter(
            "vedart_tasks_spawned", "Tasks started, per executor.", labels=["executor"]
        )
        finished = counter(
            "vedart_tasks_finished",
            "Tasks ended, per executor and outcome (completed, failed, cancelled).",
            labels=["executor", "outcome"],
        )
        live = gauge(
            "vedart_tasks_live", "Tasks queued or running, per executor.", labels=["executor"]
        )
        for name, figures in tasks:
            spawned.add_metric([name], figures["tasks"]["spawned"])
            for outcome in ("completed", "failed", "cancelled"):
                finished.add_metric([name, outcome], figures["tasks"][outcome])
            live.add_metric([name], figures["tasks"]["live"])
        yield from (spawned, finished, live)

        workers = gauge(
            "vedart_workers", "Worker threads per executor, by kind.", labels=["executor", "kind"]
        )
        depth = gauge(
            "vedart_queue_depth", "Work waiting for a worker, per executor.", labels=["executor"]
        )
        for name, figures in timed.items():
            for kind, value in figures["workers"].items():
                workers.add_metric([name, kind], value)
            depth.add_metric([name], figures["queue_depth"])
        yield from (workers, depth)

        for key, help_text in (
            ("polls", "Polls of async tasks."),
            ("steals", "Tasks an async worker stole from another worker's queue."),
            ("parks", "Times an async worker went to sleep for want of work."),
        ):
            yield counter(f"vedart_scheduler_{key}", help_text, value=runtime[key])
        yield gauge(
            "vedart_process_children", "Worker processes not yet reaped.", value=process["children"]
        )
        for key, help_text in (
            ("children_spawned", "Worker processes started."),
            ("respawns", "Worker processes started to replace dead ones."),
            ("bytes_sent", "Bytes written to worker processes."),
            ("bytes_received", "Bytes read from worker processes."),
        ):
            yield counter(f"vedart_process_{key}", help_text, value=process[key])
        yield counter(
            "vedart_gpu_fallbacks",
            "GPU work that ran on the CPU.",
            value=snap.executors["gpu"]["fallbacks"],
        )

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
            family = core.HistogramMetricFamily(metric, help_text, labels=["executor"])
            for name, figures in timed.items():
                histogram: Histogram = figures[key]
                buckets: list[tuple[str, float]] = [
                    (repr(bound / 1e9), histogram.cumulative(bound))
                    for bound in PROMETHEUS_BOUNDS_NS
                ]
                buckets.append(("+Inf", histogram.count))
                family.add_metric([name], buckets, sum_value=histogram.sum)
            yield family


def collector() -> Any:
    """A ``prometheus_client`` collector of VedaRT's telemetry, for programs
    that already serve metrics with ``prometheus_client``: each scrape reads a
    fresh :func:`snapshot`. The metrics are those of :func:`serve_metrics`.

    ::

        prometheus_client.REGISTRY.register(veda.telemetry.collector())

    Raises:
        ConfigError: ``prometheus_client`` is not installed (the
            ``vedart[metrics]`` extra).
    """
    _prometheus()
    return _SnapshotCollector(snapshot)


def serve_metrics(port: int = 0, addr: str = "127.0.0.1") -> int:
    """Starts an HTTP endpoint that serves the telemetry at ``/metrics`` in
    the Prometheus text format, on a daemon thread, and returns the port it
    listens on (``port=0``: one the OS picks). Every scrape reads a fresh
    :func:`snapshot`; the exposition is ``prometheus_client``'s.

    It listens on ``addr`` only: the loopback interface by default, so that
    the figures are not published to the network unless you ask
    (``addr="0.0.0.0"``). More than one endpoint may run. All stop at
    :func:`vedart.shutdown`, at :func:`stop_metrics` and at exit.

    Raises:
        ConfigError: ``port`` is not an int in 0..65535, or
            ``prometheus_client`` is not installed (the ``vedart[metrics]``
            extra).
        MetricsServerError: the address cannot be listened on (the port is
            in use, the address is not local, permission denied); the
            message names the address, ``__cause__`` is the OS error.

    Examples:
        >>> import urllib.request, vedart as veda
        >>> port = veda.telemetry.serve_metrics()
        >>> body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read()
        >>> b"vedart_tasks_spawned_total" in body
        True
        >>> veda.telemetry.stop_metrics()
    """
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ConfigError("port", f"must be an int in 0..65535, got {port!r}")
    if not isinstance(addr, str):
        raise ConfigError("addr", f"must be a str, got {type(addr).__name__}")
    client = _prometheus()
    registry = client.CollectorRegistry(auto_describe=False)
    registry.register(_SnapshotCollector(snapshot))
    where = f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"
    try:
        started = client.start_http_server(port, addr=addr, registry=registry)
    except OSError as error:
        raise MetricsServerError(
            f"cannot serve metrics on {where}: {error.strerror or error}", where, error.errno
        ) from error
    if started is None:  # prometheus_client before 0.17 gives no handle to stop it
        raise ConfigError(
            "metrics", "serve_metrics needs prometheus_client>=0.17: pip install 'vedart[metrics]'"
        )
    server, thread = started
    bound = int(server.server_address[1])
    with _servers_lock:
        _servers.append((server, thread))
    return bound


def stop_metrics(port: Optional[int] = None) -> None:
    """Stops the :func:`serve_metrics` endpoint on ``port``, or every one
    (``None``); waits until it no longer answers. Idempotent."""
    with _servers_lock:
        stopping = [e for e in _servers if port is None or e[0].server_address[1] == port]
        _servers[:] = [e for e in _servers if e not in stopping]
    for server, thread in stopping:
        server.shutdown()
        server.server_close()
        thread.join()


# The endpoints stop with the runtime.
_runtime.on_shutdown(after=lambda timeout: stop_metrics())


atexit.register(stop_metrics)


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

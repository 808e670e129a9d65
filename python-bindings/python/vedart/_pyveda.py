"""What code written for pyveda 1.0 finds under the names it used.

VedaRT implements pyveda 1.0's guarantees. Its public module paths
(``vedart.config``, ``vedart.core.runtime``, ``vedart.core.scope``,
``vedart.iter.parallel``, ``vedart.deterministic.replay``,
``vedart.telemetry.metrics``, ``vedart.gpu``) are thin modules that re-export
VedaRT's own names; the few pyveda objects VedaRT has no class for are here,
each a view over VedaRT's figures rather than a second runtime:

* :class:`TelemetrySystem` (``runtime.telemetry``) and
  :class:`MetricsSnapshot`: pyveda's summary over
  :func:`vedart.telemetry.snapshot`, exported with VedaRT's collector.
* :class:`Counter`, :class:`Gauge`, :class:`Histogram`: pyveda's metric
  primitives for a program's own figures.
* :class:`GPURuntime` (``runtime.gpu``, ``vedart.gpu.GPURuntime``) and
  :class:`SchedulerView` (``runtime.scheduler``).

docs/python.md ("Coming from pyveda 1.0") lists every alias and the meaning
chosen where pyveda's was not VedaRT's.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
import types
from typing import Any, Callable, Optional

from . import _gpu, _runtime, _vedart, telemetry
from ._config import SchedulingPolicy

__all__ = [
    "Counter",
    "Gauge",
    "Histogram",
    "MetricsSnapshot",
    "TelemetrySystem",
    "GPURuntime",
    "SchedulerView",
]


class CallableModule(types.ModuleType):
    """A module that is also a function: ``vedart.gpu`` and
    ``vedart.deterministic`` were modules in pyveda 1.0 and are functions in
    VedaRT (``@veda.gpu``, ``with veda.deterministic(seed)``). Importing the
    module puts it in the function's place, so it calls the function."""

    _call: Callable[..., Any]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._call(*args, **kwargs)


def make_callable(module_name: str, call: Callable[..., Any]) -> None:
    """Turns the module ``module_name`` into a :class:`CallableModule` calling
    ``call``, with its signature for ``help()`` and ``inspect``."""
    import sys

    module = sys.modules[module_name]
    module.__class__ = CallableModule
    module._call = call  # type: ignore[attr-defined]
    module.__wrapped__ = call  # type: ignore[attr-defined]  # inspect.signature follows it


# ---------------------------------------------------------------------------
# vedart.telemetry.metrics


class Counter:
    """pyveda's counter: ``inc(amount=1)``, ``get()``, ``reset()``.

    It counts in VedaRT's lock-free Rust counter (the one VedaRT's own
    coroutine counts use). Counters only grow: ``inc`` of a negative amount
    raises ``ValueError``; ``reset()`` starts ``get()`` again from zero.
    """

    def __init__(self, name: str, description: str = "") -> None:
        self.name = name
        self.description = description
        self._counter = _vedart.Counter()
        self._base = 0

    def inc(self, amount: int = 1) -> None:
        """Adds ``amount`` (an int, at least 0)."""
        if isinstance(amount, bool) or not isinstance(amount, int) or amount < 0:
            raise ValueError(f"Counter.inc: amount must be an int >= 0, got {amount!r}")
        self._counter.add(amount)

    def get(self) -> int:
        """The count since creation or the last :meth:`reset`."""
        return self._counter.value - self._base

    def reset(self) -> None:
        """Starts the count again from zero."""
        self._base = self._counter.value

    def __repr__(self) -> str:
        return f"Counter({self.name!r}, value={self.get()})"


class Gauge:
    """pyveda's gauge: a number that goes up and down (``set``, ``inc``,
    ``dec``, ``get``), safe to change from several threads."""

    def __init__(self, name: str, description: str = "") -> None:
        self.name = name
        self.description = description
        self._value = 0.0
        self._lock = threading.Lock()

    def set(self, value: float) -> None:
        with self._lock:
            self._value = float(value)

    def inc(self, amount: float = 1.0) -> None:
        with self._lock:
            self._value += amount

    def dec(self, amount: float = 1.0) -> None:
        with self._lock:
            self._value -= amount

    def get(self) -> float:
        with self._lock:
            return self._value

    def __repr__(self) -> str:
        return f"Gauge({self.name!r}, value={self.get()})"


class Histogram:
    """pyveda's histogram: ``observe(value)``, ``get_percentile(0..100)``,
    ``get_mean()``, ``get_count()``.

    VedaRT's meaning: values are kept by a Rust histogram
    (``_vedart.Histogram``), in the logarithmic buckets of VedaRT's own
    histograms (four per power of two), so memory stays bounded and every
    value counts (pyveda kept the last 10,000 values exactly); percentiles
    are within about 12% and clamped to the smallest and largest value.
    Values must be positive or zero (durations, sizes); they are kept at a
    resolution of 1e-9 and saturate above about 1.8e10.
    """

    def __init__(self, name: str, description: str = "") -> None:
        self.name = name
        self.description = description
        self._values = _vedart.Histogram()

    def observe(self, value: float) -> None:
        """Records ``value`` (a number >= 0)."""
        try:
            self._values.record(float(value))
        except ValueError:
            raise ValueError(
                f"Histogram.observe: value must be finite and >= 0, got {value!r}"
            ) from None

    def get_percentile(self, percentile: float) -> float:
        """The value below which ``percentile`` percent (0 to 100) of the
        values lie; 0.0 when empty."""
        return self._values.percentile(percentile / 100.0)

    def get_mean(self) -> float:
        """The mean of the values; 0.0 when empty."""
        snap = self._values.snapshot()
        return float(snap["sum"]) / snap["count"] if snap["count"] else 0.0

    def get_count(self) -> int:
        """How many values were recorded."""
        return int(self._values.snapshot()["count"])

    def __repr__(self) -> str:
        return f"Histogram({self.name!r}, count={self.get_count()})"


@dataclasses.dataclass(frozen=True)
class MetricsSnapshot:
    """pyveda's summary of the telemetry, from ``runtime.telemetry.snapshot()``.

    Every figure is read from VedaRT's snapshot (``vedart``): tasks of the
    executors (thread, process, async, gpu and Python-side ones), latencies
    of thread-executor tasks in milliseconds. VedaRT's meanings where
    pyveda's differ: ``cpu_utilization_percent`` is this process's CPU time
    over the interval since the previous snapshot (of all CPUs), and
    ``memory_used_mb`` this process's resident memory; ``throughput`` counts
    tasks completed in that interval. ``gpu_utilization_percent`` is
    ``None``: VedaRT does not measure it.
    """

    timestamp: float
    tasks_executed: int
    tasks_failed: int
    tasks_pending: int
    avg_latency_ms: float
    p50_latency_ms: float
    p95_latency_ms: float
    p99_latency_ms: float
    throughput_tasks_per_sec: float
    cpu_utilization_percent: float
    memory_used_mb: float
    gpu_utilization_percent: Optional[float] = None
    gpu_memory_used_mb: Optional[float] = None
    #: VedaRT's snapshot, with every figure.
    vedart: Optional[telemetry.Snapshot] = dataclasses.field(default=None, compare=False)

    def export_prometheus(self) -> str:
        """VedaRT's Prometheus exposition of the snapshot
        (:meth:`vedart.telemetry.Snapshot.to_prometheus`: metric names
        ``vedart_*``, not pyveda's ``veda_*``).

        Raises:
            ValueError: the snapshot was made by hand, without VedaRT's.
        """
        return self._source().to_prometheus()

    def export_json(self) -> dict[str, Any]:
        """pyveda's JSON shape, plus ``"vedart"``: VedaRT's snapshot as plain
        data."""
        return {
            "timestamp": self.timestamp,
            "tasks": {
                "executed": self.tasks_executed,
                "failed": self.tasks_failed,
                "pending": self.tasks_pending,
            },
            "latency_ms": {
                "avg": self.avg_latency_ms,
                "p50": self.p50_latency_ms,
                "p95": self.p95_latency_ms,
                "p99": self.p99_latency_ms,
            },
            "throughput_tasks_per_sec": self.throughput_tasks_per_sec,
            "system": {
                "cpu_percent": self.cpu_utilization_percent,
                "memory_mb": self.memory_used_mb,
                "gpu_percent": self.gpu_utilization_percent,
                "gpu_memory_mb": self.gpu_memory_used_mb,
            },
            "vedart": self.vedart.to_dict() if self.vedart is not None else None,
        }

    def _source(self) -> telemetry.Snapshot:
        if self.vedart is None:
            raise ValueError("this MetricsSnapshot holds no VedaRT snapshot to export")
        return self.vedart


def _task_totals(snap: telemetry.Snapshot) -> tuple[int, int, int]:
    completed = failed = live = 0
    for figures in snap.executors.values():
        tasks = figures.get("tasks")
        if isinstance(tasks, dict):
            completed += int(tasks.get("completed", 0))
            failed += int(tasks.get("failed", 0))
            live += int(tasks.get("live", 0))
    return completed, failed, live


def _resident_mb() -> float:
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            pages = int(statm.read().split()[1])
    except (OSError, ValueError, IndexError):
        return 0.0
    return pages * os.sysconf("SC_PAGE_SIZE") / (1024 * 1024)


def _cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


class TelemetrySystem:
    """pyveda's ``runtime.telemetry``: :meth:`snapshot` summarises
    :func:`vedart.telemetry.snapshot` as a :class:`MetricsSnapshot`.

    VedaRT counts all the time, in Rust, with no collection thread: ``start``
    and ``stop`` turn counting on and off for the process
    (:func:`vedart.telemetry.set_enabled`).
    """

    #: Snapshots :meth:`get_snapshots` keeps (pyveda's figure).
    MAX_SNAPSHOTS = 100

    def __init__(self) -> None:
        self._lock = threading.Lock()
        first = telemetry.snapshot()
        self._last = (time.monotonic(), _task_totals(first)[0], _cpu_seconds())
        self._snapshots: list[MetricsSnapshot] = []

    def start(self) -> None:
        """Turns counting on (it is on unless ``enable_telemetry=False``)."""
        telemetry.set_enabled(True)

    def stop(self) -> None:
        """Turns counting off for the process."""
        telemetry.set_enabled(False)

    def snapshot(self) -> MetricsSnapshot:
        """The figures now, with throughput and CPU use since the previous
        call (or since this object was made)."""
        snap = telemetry.snapshot()
        completed, failed, live = _task_totals(snap)
        now, cpu = time.monotonic(), _cpu_seconds()
        with self._lock:
            then, completed_then, cpu_then = self._last
            self._last = (now, completed, cpu)
        elapsed = max(now - then, 1e-9)
        gpu_used = None
        if _gpu.gpu_available():
            gpu_used = GPURuntime().get_memory_stats().get("used_mb")
        run = snap.run_time
        result = MetricsSnapshot(
            timestamp=snap.taken_at,
            tasks_executed=completed,
            tasks_failed=failed,
            tasks_pending=live,
            avg_latency_ms=run.mean * 1e3,
            p50_latency_ms=run.p50 * 1e3,
            p95_latency_ms=run.p95 * 1e3,
            p99_latency_ms=run.p99 * 1e3,
            throughput_tasks_per_sec=max(0, completed - completed_then) / elapsed,
            cpu_utilization_percent=100.0 * (cpu - cpu_then) / elapsed / (os.cpu_count() or 1),
            memory_used_mb=_resident_mb(),
            gpu_utilization_percent=None,
            gpu_memory_used_mb=gpu_used,
            vedart=snap,
        )
        with self._lock:
            self._snapshots.append(result)
            del self._snapshots[: -self.MAX_SNAPSHOTS]
        return result

    def get_snapshots(self) -> list[MetricsSnapshot]:
        """The last snapshots taken through this object, oldest first."""
        with self._lock:
            return list(self._snapshots)


# ---------------------------------------------------------------------------
# vedart.gpu and runtime.scheduler


class GPURuntime:
    """pyveda's GPU runtime object: ``is_available()``, ``backend``,
    ``device_count``, ``get_memory_stats()``, over VedaRT's GPU executor
    (:func:`vedart.gpu_available`, CuPy). pyveda's ``get_utilization()`` is
    not offered: VedaRT does not measure it."""

    def is_available(self) -> bool:
        """Whether GPU functions run on a GPU here (:func:`vedart.gpu_available`)."""
        return _gpu.gpu_available()

    @property
    def backend(self) -> Optional[str]:
        """``"cupy"`` when GPU functions run on a GPU, else ``None``."""
        return "cupy" if self.is_available() else None

    @property
    def device_count(self) -> int:
        """CUDA devices the driver reports (0 without a driver)."""
        return int(_vedart.gpu_device_count())

    def fallback_count(self) -> int:
        """GPU function calls that ran on the CPU in this process."""
        return _gpu.fallback_count()

    def get_memory_stats(self) -> dict[str, float]:
        """``used_mb``, ``free_mb``, ``total_mb`` of the current device; an
        empty dict without a usable GPU."""
        if not self.is_available():
            return {}
        free, total = _gpu._cupy().cuda.runtime.memGetInfo()
        mb = 1024 * 1024
        return {"used_mb": (total - free) / mb, "free_mb": free / mb, "total_mb": total / mb}

    def __repr__(self) -> str:
        return f"<vedart GPURuntime available={self.is_available()} devices={self.device_count}>"


class SchedulerView:
    """pyveda's ``runtime.scheduler``: VedaRT has no scheduler object (each
    pipeline picks its executor under the runtime's ``scheduling_policy``),
    so this is a view of the runtime: ``policy``, ``config`` and
    ``get_stats()``."""

    def __init__(self, runtime: Any) -> None:
        self._runtime = runtime

    @property
    def policy(self) -> SchedulingPolicy:
        """The runtime's :class:`~vedart.SchedulingPolicy`."""
        return self._runtime.config.scheduling_policy  # type: ignore[no-any-return]

    @property
    def config(self) -> Any:
        """The runtime's :class:`~vedart.Config`."""
        return self._runtime.config

    def get_stats(self) -> dict[str, Any]:
        """``policy``, the thread pool (``workers``: :meth:`vedart.Runtime.stats`)
        and, per executor, pyveda's ``tasks_executed``, ``tasks_failed`` and
        ``avg_latency_ms`` (thread executor only; 0.0 elsewhere)."""
        snap = telemetry.snapshot()
        executors: dict[str, dict[str, Any]] = {}
        for name, figures in snap.executors.items():
            tasks = figures.get("tasks")
            if not isinstance(tasks, dict):
                continue
            run = figures.get("run_time")
            executors[name] = {
                "tasks_executed": int(tasks.get("completed", 0)),
                "tasks_failed": int(tasks.get("failed", 0)),
                "avg_latency_ms": run.mean * 1e3 if isinstance(run, telemetry.Histogram) else 0.0,
            }
        return {
            "policy": self.policy.name,
            "workers": self._runtime.stats().to_dict(),
            "executors": executors,
        }

    def __repr__(self) -> str:
        return f"<vedart scheduler view policy={self.policy.name}>"


def _gpu_view(runtime: Any) -> Optional[GPURuntime]:
    return GPURuntime() if runtime.config.enable_gpu and _gpu.gpu_available() else None


_runtime.provide_compat_views(
    telemetry=lambda runtime: TelemetrySystem(),
    gpu=_gpu_view,
    scheduler=SchedulerView,
)

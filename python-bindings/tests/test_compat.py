"""Code written for pyveda 1.0 runs unchanged: its module paths and names are
thin aliases of VedaRT's (``vedart._pyveda`` and the pyveda-shaped modules)."""

from __future__ import annotations

import importlib
import json
import threading
import warnings

import pytest

import vedart as veda
from conftest import run_python

#: pyveda 1.0's public module paths and the VedaRT object each name is.
ALIASES = {
    "vedart.config": {
        "Config": veda.Config,
        "ConfigBuilder": veda.ConfigBuilder,
        "SchedulingPolicy": veda.SchedulingPolicy,
    },
    "vedart.core.runtime": {
        "Runtime": veda.Runtime,
        "init": veda.init,
        "shutdown": veda.shutdown,
        "get_runtime": veda.get_runtime,
    },
    "vedart.core.scope": {"Scope": veda.Scope, "scope": veda.scope, "spawn": veda.spawn},
    "vedart.iter.parallel": {
        "ParallelIterator": veda.ParallelIterator,
        "par_iter": veda.par_iter,
    },
    "vedart.deterministic.replay": {
        "replay": veda.replay,
        "ExecutionTrace": veda.ExecutionTrace,
        "TraceEvent": veda.TraceEvent,
        "TaskScheduledEvent": veda.TraceEvent,
    },
}


@pytest.mark.parametrize("path", sorted(ALIASES))
def test_each_pyveda_module_path_re_exports_vedarts_own_objects(path):
    module = importlib.import_module(path)
    for name, obj in ALIASES[path].items():
        assert getattr(module, name) is obj, f"{path}.{name}"
    assert module.__doc__ and "pyveda" in module.__doc__


def test_telemetry_metrics_and_gpu_paths_import():
    from vedart.gpu import GPURuntime, gpu, gpu_available
    from vedart.telemetry.metrics import (
        Counter,
        Gauge,
        Histogram,
        MetricsSnapshot,
        TelemetrySystem,
    )

    assert gpu is veda._gpu.gpu and gpu_available is veda.gpu_available
    for cls in (Counter, Gauge, Histogram, MetricsSnapshot, TelemetrySystem, GPURuntime):
        assert cls.__module__ == "vedart._pyveda"  # one definition, one place
    # vedart.telemetry is still VedaRT's module, with the submodule beside it.
    assert veda.telemetry.snapshot and veda.telemetry.Histogram is not Histogram


def test_veda_gpu_and_veda_deterministic_stay_functions_once_their_modules_are_imported():
    import vedart.deterministic.replay
    import vedart.gpu

    assert veda.gpu is vedart.gpu and callable(veda.gpu)
    assert veda.deterministic is vedart.deterministic and callable(veda.deterministic)

    @veda.gpu
    def add_one(x):
        return x + 1

    @veda.gpu(device=0)
    def double(x):
        return 2 * x

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # without a GPU: CPU fallback
        assert add_one(1) == 2
        assert double(4) == 8
    with pytest.raises(TypeError):
        veda.gpu(42)
    with veda.deterministic(5, record=True) as trace:
        veda.par_iter(range(50), chunk_size=5).map(abs).collect()
    assert len(trace) == 10


def test_importing_the_modules_first_in_a_fresh_interpreter_keeps_the_functions():
    result = run_python(
        """
        import warnings
        warnings.simplefilter("ignore", RuntimeWarning)  # no GPU here: CPU fallback
        import vedart.gpu
        import vedart.deterministic
        from vedart.deterministic import replay as replay_module
        import vedart as veda
        assert veda.gpu is vedart.gpu
        print(veda.gpu(lambda x: x * 3)(2), vedart.gpu.gpu(lambda x: x)(1))
        with veda.deterministic(1, record=True) as trace:
            veda.par_iter(range(8), chunk_size=2).map(abs).collect()
        print(len(trace), replay_module.deterministic is vedart.deterministic.deterministic)
        """,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["6", "1", "4", "True"]


def test_config_classmethods_and_builder_names_of_pyveda():
    from vedart.config import Config, SchedulingPolicy

    assert Config.default() == Config()
    assert Config.thread_only().scheduling_policy is SchedulingPolicy.THREAD_ONLY
    config = (
        Config.builder()
        .threads(3)
        .processes(2)
        .policy(SchedulingPolicy.PROCESS_ONLY)
        .gpu(True)
        .telemetry(False)
        .worker_limits(1, 5)
        .adaptive_interval(250)
        .build()
    )
    assert (config.num_threads, config.num_processes) == (3, 2)
    assert config.scheduling_policy is SchedulingPolicy.PROCESS_ONLY
    assert config.enable_gpu and not config.enable_telemetry
    assert (config.min_workers, config.max_workers, config.adaptive_interval_ms) == (1, 5, 250)
    seeded = Config.builder().deterministic(42).build()
    assert seeded.deterministic_seed == 42
    assert seeded.scheduling_policy is SchedulingPolicy.DETERMINISTIC
    # The aliases validate like the setters they name.
    with pytest.raises(veda.ConfigError, match="num_threads"):
        Config.builder().threads(0).build()
    with pytest.raises(veda.ConfigError, match="min_workers"):
        Config.builder().worker_limits(6, 5).build()


def test_runtime_telemetry_gpu_and_scheduler(runtime_config):
    from vedart.telemetry.metrics import MetricsSnapshot, TelemetrySystem

    runtime = runtime_config(veda.Config(num_threads=2))
    assert isinstance(runtime.telemetry, TelemetrySystem)
    assert runtime.telemetry is runtime.telemetry  # one per runtime: rates between calls
    before = runtime.telemetry.snapshot()
    veda.par_iter(range(400), chunk_size=10, executor="thread").map(lambda x: x + 1).collect()
    after = runtime.telemetry.snapshot()
    assert isinstance(after, MetricsSnapshot)
    assert after.tasks_executed >= before.tasks_executed + 40
    assert after.throughput_tasks_per_sec > 0 and after.memory_used_mb > 0
    assert 0 <= after.p50_latency_ms <= after.p99_latency_ms
    assert after.vedart is not None
    assert runtime.telemetry.get_snapshots()[-2:] == [before, after]
    assert runtime.gpu is None  # enable_gpu is off, as in pyveda
    scheduler = runtime.scheduler
    assert scheduler.policy is veda.SchedulingPolicy.ADAPTIVE
    stats = scheduler.get_stats()
    assert stats["executors"]["thread"]["tasks_executed"] >= 40
    assert stats["workers"]["max_workers"] == 2

    off = runtime_config(veda.Config(enable_telemetry=False))
    try:
        assert off.telemetry is None
    finally:
        veda.telemetry.set_enabled(True)


def test_metrics_snapshot_exports():
    parser = pytest.importorskip("prometheus_client.parser")
    veda.par_iter(range(100), chunk_size=10, executor="thread").map(abs).collect()
    snap = veda.get_runtime().telemetry.snapshot()
    families = {f.name for f in parser.text_string_to_metric_families(snap.export_prometheus())}
    assert "vedart_tasks_spawned" in families
    data = snap.export_json()
    json.dumps(data)
    assert data["tasks"]["executed"] == snap.tasks_executed
    assert data["latency_ms"]["p99"] == snap.p99_latency_ms
    assert data["vedart"]["executors"]["thread"]["tasks"]["completed"] >= 10


def test_counter_gauge_histogram():
    from vedart.telemetry.metrics import Counter, Gauge, Histogram

    counter = Counter("requests", "Requests served")
    def count() -> None:
        for _ in range(1000):
            counter.inc()

    threads = [threading.Thread(target=count) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    counter.inc(5)
    assert counter.get() == 4005
    counter.reset()
    assert counter.get() == 0
    counter.inc()
    assert counter.get() == 1
    with pytest.raises(ValueError, match="amount"):
        counter.inc(-1)

    gauge = Gauge("queue")
    gauge.set(3)
    gauge.inc(2)
    gauge.dec(0.5)
    assert gauge.get() == 4.5

    hist = Histogram("latency_ms")
    assert hist.get_percentile(50) == 0.0 and hist.get_mean() == 0.0
    for value in range(1, 1001):
        hist.observe(float(value))
    hist.observe(0)
    assert hist.get_count() == 1001
    assert hist.get_mean() == pytest.approx(sum(range(1001)) / 1001)
    for percentile, exact in ((50, 500), (95, 950), (99, 990)):
        assert hist.get_percentile(percentile) == pytest.approx(exact, rel=0.13)
    assert hist.get_percentile(100) <= 1000 and hist.get_percentile(0) == 0.0
    with pytest.raises(ValueError, match="value"):
        hist.observe(-1)


def test_execution_trace_pyveda_methods(tmp_path):
    from vedart.deterministic.replay import ExecutionTrace, deterministic

    with deterministic(seed=9, record=True) as trace:
        veda.par_iter(range(40), chunk_size=4).map(abs).collect()
    path = str(tmp_path / "execution.json")
    trace.save_to_file(path)
    events = trace.get_events()
    assert events == trace.events and events is not trace.events
    pyveda_way = ExecutionTrace()
    assert pyveda_way.load_from_file(path) is pyveda_way
    assert pyveda_way == trace
    assert ExecutionTrace.load_from_file(path) == trace
    with veda.replay(ExecutionTrace.load(path)) as again:
        veda.par_iter(range(40), chunk_size=4).map(abs).collect()
    assert again.get_events() == events


def test_gpu_runtime_object():
    from vedart.gpu import GPURuntime

    gpu = GPURuntime()
    assert gpu.is_available() == veda.gpu_available()
    assert isinstance(gpu.device_count, int) and gpu.device_count >= 0
    if gpu.is_available():
        stats = gpu.get_memory_stats()
        assert stats["total_mb"] >= stats["free_mb"] > 0 and gpu.backend == "cupy"
    else:
        assert gpu.get_memory_stats() == {} and gpu.backend is None


def test_a_program_written_for_pyveda_runs_unchanged(tmp_path):
    result = run_python(
        f"""
        import json, warnings
        warnings.simplefilter("ignore", RuntimeWarning)  # no GPU here: CPU fallback
        import vedart as veda
        from vedart.config import Config, ConfigBuilder, SchedulingPolicy
        from vedart.core.runtime import get_runtime, init, shutdown
        from vedart.core.scope import scope, spawn
        from vedart.iter.parallel import par_iter
        from vedart.deterministic.replay import deterministic, ExecutionTrace
        from vedart.telemetry.metrics import Counter, Histogram, MetricsSnapshot
        from vedart.gpu import gpu

        config = (ConfigBuilder().threads(4).processes(2)
                  .policy(SchedulingPolicy.ADAPTIVE).gpu(False).telemetry(True)
                  .worker_limits(1, 4).build())
        runtime = init(config)
        assert get_runtime() is runtime and runtime.config.num_threads == 4

        processed = Counter("processed")
        latency = Histogram("latency_ms")

        def work(x):
            processed.inc()
            latency.observe(x / 10)
            return x * x

        total = par_iter(range(1000)).map(work).filter(lambda x: x % 2 == 0).sum()
        with scope() as s:
            futures = [s.spawn(pow, i, 2) for i in range(10)]
        results = [f.result() for f in futures]
        lone = spawn(sum, [1, 2, 3]).result()

        @veda.gpu
        def matrix_multiply(a, b):
            return a * b

        @gpu
        def add(a, b):
            return a + b

        with deterministic(seed=42, record=True) as trace:
            ordered = veda.par_iter(range(100)).map(lambda x: x + 1).collect()
        trace.save_to_file({str(tmp_path / "execution.json")!r})
        loaded = ExecutionTrace()
        loaded.load_from_file({str(tmp_path / "execution.json")!r})

        snapshot = runtime.telemetry.snapshot()
        assert isinstance(snapshot, MetricsSnapshot)
        prom = snapshot.export_prometheus()
        data = snapshot.export_json()
        stats = runtime.scheduler.get_stats()
        print(json.dumps({{
            "total": total, "results": results, "lone": lone,
            "mm": matrix_multiply(6, 7), "add": add(1, 2),
            "ordered": ordered[:3], "events": len(loaded.get_events()),
            "same_trace": loaded == trace,
            "processed": processed.get(), "p50": round(latency.get_percentile(50)),
            "executed": snapshot.tasks_executed > 0,
            "prom": "vedart_tasks_spawned_total" in prom,
            "json": data["tasks"]["executed"] == snapshot.tasks_executed,
            "gpu": runtime.gpu, "policy": stats["policy"],
        }}))
        shutdown()
        """,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["total"] == sum(x * x for x in range(1000) if (x * x) % 2 == 0)
    assert out["results"] == [i * i for i in range(10)] and out["lone"] == 6
    assert (out["mm"], out["add"]) == (42, 3)
    assert out["ordered"] == [1, 2, 3] and out["events"] > 0 and out["same_trace"]
    assert out["processed"] == 1000 and 40 <= out["p50"] <= 60
    assert out["executed"] and out["prom"] and out["json"]
    assert out["gpu"] is None and out["policy"] == "ADAPTIVE"

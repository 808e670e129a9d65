"""``vedart.telemetry``: snapshots, exports, the switch, Chrome traces."""

from __future__ import annotations

import json
import threading
import time

import pytest

import vedart as veda
from vedart import telemetry

HANG_TIMEOUT = 60.0


def busy(x):
    deadline = time.perf_counter() + 0.0002
    while time.perf_counter() < deadline:
        pass
    return x


def bad(x):
    raise OSError(x)


def run_work(chunks=50):
    return veda.par_iter(range(chunks * 10), chunk_size=10, executor="thread").map(busy).collect()


@pytest.fixture(autouse=True)
def counting_on():
    telemetry.set_enabled(True)
    yield
    telemetry.set_enabled(True)


def settled():
    """A snapshot taken once no thread-executor task is queued or running
    (tasks cancelled by earlier tests end when the pool reaches them)."""
    deadline = time.monotonic() + HANG_TIMEOUT
    while True:
        snap = telemetry.snapshot()
        if snap.executors["thread"]["tasks"]["live"] == 0 or time.monotonic() > deadline:
            return snap
        time.sleep(0.01)


def test_snapshot_counts_tasks_and_has_real_percentiles():
    before = settled()
    run_work(50)
    after = settled()
    b, a = before.executors["thread"]["tasks"], after.executors["thread"]["tasks"]
    assert a["spawned"] - b["spawned"] == 50
    assert a["completed"] - b["completed"] == 50
    assert a["failed"] == b["failed"] and a["cancelled"] == b["cancelled"]
    assert after.enabled
    for hist in (after.run_time, after.queue_wait):
        assert hist.count >= 50
        assert 0 < hist.p50 <= hist.p95 <= hist.p99 <= hist.max
        assert hist.min <= hist.p50
    assert after.p50 == after.run_time.p50 and after.p99 == after.run_time.p99
    assert after.run_time.percentile(0.5) == pytest.approx(after.run_time.p50, rel=1e-9)
    # These 50 tasks each busy-wait 10 x 0.2 ms: about 2 ms (buckets are
    # within ~12%; the upper bound allows for a loaded machine).
    mine = after.run_time.since(before.run_time)
    assert mine.count == 50
    assert 0.0017 <= mine.p50 <= mine.p95 <= mine.p99 <= 1.0
    assert mine.sum == pytest.approx(after.run_time.sum - before.run_time.sum)
    waits = after.queue_wait.since(before.queue_wait)
    assert waits.count == 50 and waits.p99 > 0
    workers = after.executors["thread"]["workers"]
    assert workers["current"] >= 0 and workers["max"] >= workers["min"]
    assert after.run_time.since(after.run_time).count == 0


def test_failures_and_cancellations_are_counted():
    def boom(x):
        if x == 0:
            raise ValueError("boom")
        time.sleep(0.01)
        return x

    before = settled().executors["thread"]["tasks"]
    with pytest.raises(ValueError):
        veda.par_iter(range(40), chunk_size=1, executor="thread").map(boom).collect()
    after = settled().executors["thread"]["tasks"]
    assert after["failed"] - before["failed"] == 1
    assert after["cancelled"] > before["cancelled"]
    spawned = after["spawned"] - before["spawned"]
    finished = sum(after[k] - before[k] for k in ("completed", "failed", "cancelled"))
    assert finished == spawned


def test_switching_off_freezes_task_counters():
    settled()
    telemetry.set_enabled(False)
    assert not telemetry.is_enabled()
    before = telemetry.snapshot()
    run_work(20)
    after = telemetry.snapshot()
    assert not after.enabled
    assert after.executors["thread"]["tasks"] == before.executors["thread"]["tasks"]
    assert after.run_time.count == before.run_time.count
    telemetry.set_enabled(True)
    run_work(5)
    assert telemetry.snapshot().run_time.count > after.run_time.count
    with pytest.raises(TypeError):
        telemetry.set_enabled(1)  # type: ignore[arg-type]


def test_config_enable_telemetry_applies_at_init(runtime_config):
    runtime_config(veda.Config(enable_telemetry=False))
    assert not telemetry.is_enabled()
    runtime_config(veda.Config())
    assert telemetry.is_enabled()


def test_async_runtime_tasks_are_counted():
    import asyncio

    before = telemetry.snapshot().runtime

    async def main():
        # Awaited pipelines are bridged to asyncio by VedaRT's async runtime.
        for _ in range(5):
            await veda.par_iter(range(10)).map(abs).collect()

    asyncio.run(main())
    after = telemetry.snapshot().runtime
    assert after["tasks"]["spawned"] - before["tasks"]["spawned"] >= 5
    assert after["tasks"]["completed"] - before["tasks"]["completed"] >= 5
    assert after["polls"] > before["polls"]
    assert after["runtimes"] >= 1 and after["workers"]["max"] >= 1


def test_async_map_coroutines_are_counted():
    import asyncio

    async def ok(x):
        await asyncio.sleep(0)
        return x

    async def bad(x):
        if x == 3:
            raise KeyError(x)
        # Long enough that only the failure's cancellation ends it, however
        # slowly the feeder thread gets to see the failure on a busy machine.
        await asyncio.sleep(30)
        return x

    before = telemetry.snapshot().executors["async"]["tasks"]
    assert veda.par_iter(range(100)).async_map(ok).collect() == list(range(100))
    with pytest.raises(KeyError):
        veda.par_iter(range(100)).async_map(bad, concurrency=5).collect()
    deadline = time.monotonic() + HANG_TIMEOUT
    while True:  # lanes hand their counts over when they end
        after = telemetry.snapshot().executors["async"]["tasks"]
        if after["live"] == 0 and after["spawned"] > before["spawned"] + 100:
            break
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert after["completed"] - before["completed"] >= 100
    assert after["failed"] - before["failed"] == 1
    assert after["cancelled"] > before["cancelled"]  # the failure cancelled the others
    started = after["spawned"] - before["spawned"]
    ended = sum(after[k] - before[k] for k in ("completed", "failed", "cancelled"))
    assert started == ended


def test_to_dict_and_to_json_round_trip():
    run_work(5)
    snap = telemetry.snapshot()
    data = json.loads(snap.to_json())
    assert data == json.loads(json.dumps(snap.to_dict()))
    thread = data["executors"]["thread"]
    assert set(thread["tasks"]) == {"spawned", "completed", "failed", "cancelled", "live"}
    assert thread["run_time"]["count"] == snap.run_time.count
    assert {"thread", "process", "async", "gpu"} <= set(data["executors"])
    assert data["runtime"]["tasks"]["spawned"] >= 0 and "steals" in data["runtime"]
    assert data["executors"]["gpu"]["fallbacks"] >= 0


def test_prometheus_exposition_parses():
    parser = pytest.importorskip("prometheus_client.parser")
    run_work(10)
    snap = telemetry.snapshot()
    families = {f.name: f for f in parser.text_string_to_metric_families(snap.to_prometheus())}
    assert families["vedart_tasks_spawned"].type == "counter"
    assert families["vedart_tasks_finished"].type == "counter"
    spawned = {
        s.labels["executor"]: s.value
        for s in families["vedart_tasks_spawned"].samples
        if s.name == "vedart_tasks_spawned_total"
    }
    assert spawned["thread"] == snap.executors["thread"]["tasks"]["spawned"]
    hist = families["vedart_task_run_time_seconds"]
    assert hist.type == "histogram"
    for executor, expected in (("thread", snap.run_time), ("runtime", snap.runtime["run_time"])):
        mine = [s for s in hist.samples if s.labels["executor"] == executor]
        buckets = [s for s in mine if s.name.endswith("_bucket")]
        values = [s.value for s in buckets]
        assert values == sorted(values)  # cumulative
        assert buckets[-1].labels["le"] == "+Inf" and buckets[-1].value == expected.count
        count = next(s.value for s in mine if s.name.endswith("_count"))
        assert count == expected.count
        total = next(s.value for s in mine if s.name.endswith("_sum"))
        assert total == pytest.approx(expected.sum)
    # Power-of-two bounds are bucket boundaries: the cumulative counts are exact.
    ms = next(
        s.value
        for s in hist.samples
        if s.labels["executor"] == "thread" and s.labels.get("le") == repr(2**20 / 1e9)
    )
    assert ms == sum(n for _, upper, n in snap.run_time.buckets if upper <= 2**20)
    assert families["vedart_workers"].type == "gauge"
    assert families["vedart_gpu_fallbacks"].type == "counter"
    assert families["vedart_scheduler_steals"].type == "counter"


def test_export_picks_the_format_from_the_extension(tmp_path):
    snap = telemetry.snapshot()
    snap.export(tmp_path / "m.json")
    assert json.loads((tmp_path / "m.json").read_text())["executors"]
    snap.export(tmp_path / "m.prom")
    assert "# TYPE vedart_tasks_spawned_total counter" in (tmp_path / "m.prom").read_text()
    snap.export(str(tmp_path / "m.txt"))
    assert (tmp_path / "m.txt").read_text().startswith("# HELP")
    with pytest.raises(ValueError, match="extension|format"):
        snap.export(tmp_path / "m.csv")


def test_registered_sources_add_figures():
    telemetry._register_source("test-executor", lambda: {"tasks_seen": 3})
    try:
        assert telemetry.snapshot().executors["test-executor"] == {"tasks_seen": 3}
    finally:
        with telemetry._sources_lock:
            telemetry._sources.pop("test-executor")


# -- traces ------------------------------------------------------------------


def load_trace(path):
    data = json.loads(path.read_text())
    assert isinstance(data["traceEvents"], list)
    return data


def check_trace_format(events):
    """Fields the Trace Event Format requires of each kind of event."""
    for event in events:
        assert event["ph"] in ("X", "M")
        assert isinstance(event["pid"], int) and isinstance(event["tid"], int)
        if event["ph"] == "X":
            assert isinstance(event["name"], str) and event["name"]
            assert isinstance(event["ts"], (int, float)) and event["ts"] >= 0
            assert isinstance(event["dur"], (int, float)) and event["dur"] >= 0
        else:
            assert event["name"] in ("process_name", "thread_name")
            assert isinstance(event["args"]["name"], str)


def test_trace_records_every_task_as_a_span_on_its_thread(tmp_path):
    path = tmp_path / "run.json"
    with telemetry.trace(path):
        veda.par_iter(range(200), chunk_size=10, executor="thread").map(busy).collect()
        with veda.scope() as s:
            s.spawn(busy, 1)
            s.spawn(busy, 2)
    data = load_trace(path)
    events = data["traceEvents"]
    check_trace_format(events)
    spans = [e for e in events if e["ph"] == "X"]
    chunks = [e for e in spans if e["name"] == "map(busy).collect()"]
    assert sorted(e["args"]["index"] for e in chunks) == list(range(20))
    assert all(e["dur"] > 0 and e["args"]["queued_us"] >= 0 for e in chunks)
    assert sum(e["name"] == "spawn(busy)" for e in spans) == 2
    names = {e["tid"]: e["args"]["name"] for e in events if e["name"] == "thread_name"}
    span_threads = {names[e["tid"]] for e in chunks}
    assert any(name.startswith("veda-blocking-") for name in span_threads)
    assert data["otherData"]["dropped_spans"] == 0
    # Spans on one thread never overlap unless nested.
    by_thread = {}
    for e in sorted(spans, key=lambda e: e["ts"]):
        by_thread.setdefault(e["tid"], []).append(e)
    for thread_spans in by_thread.values():
        stack = []
        for e in thread_spans:
            end = e["ts"] + e["dur"]
            while stack and stack[-1] <= e["ts"]:
                stack.pop()
            assert not stack or end <= stack[-1] + 1  # nested (1 us rounding)
            stack.append(end)


def test_trace_is_written_when_the_block_raises_and_nests_are_refused(tmp_path):
    path = tmp_path / "failed.json"
    with pytest.raises(KeyError):
        with telemetry.trace(path):
            veda.par_iter(range(20), chunk_size=5, executor="thread").map(busy).collect()
            with pytest.raises(RuntimeError, match="already"):
                with telemetry.trace(tmp_path / "inner.json"):
                    pass
            raise KeyError("stop")
    spans = [e for e in load_trace(path)["traceEvents"] if e["ph"] == "X"]
    assert sum(e["name"] == "map(busy).collect()" for e in spans) == 4
    assert not (tmp_path / "inner.json").exists()
    # Nothing is recorded once the block has ended.
    with telemetry.trace(tmp_path / "later.json"):
        pass
    spans = [e for e in load_trace(tmp_path / "later.json")["traceEvents"] if e["ph"] == "X"]
    assert spans == []


def test_trace_marks_failed_tasks_and_covers_other_threads(tmp_path):
    path = tmp_path / "threads.json"

    def elsewhere():
        veda.par_iter(range(30), chunk_size=10, executor="thread").map(busy).collect()

    with telemetry.trace(path):
        thread = threading.Thread(target=elsewhere)
        thread.start()
        thread.join(HANG_TIMEOUT)
        with pytest.raises(OSError):
            veda.par_iter(range(3), chunk_size=1, executor="thread").map(bad).collect()
    spans = [e for e in load_trace(path)["traceEvents"] if e["ph"] == "X"]
    assert sum(e["name"] == "map(busy).collect()" for e in spans) == 3  # from the other thread
    assert any(e["name"] == "map(bad).collect()" and e["args"].get("error") for e in spans)

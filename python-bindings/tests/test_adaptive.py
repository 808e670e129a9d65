"""The automatic choice of executor (``executor=None``, ADAPTIVE) and explain()."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time

import pytest

import vedart as veda
from vedart import _adaptive, _gpu


def busy(seconds):
    """Holds the interpreter for ``seconds`` of wall time."""
    end = time.perf_counter() + seconds
    n = 0
    while time.perf_counter() < end:
        n += 1
    return n


def busy_item(x):
    busy(0.003)
    return x, os.getpid()


def test_explain_before_a_run_says_the_choice_is_measured():
    explanation = veda.par_iter(range(10)).map(abs).explain()
    assert not explanation.measured
    assert explanation.executor == "auto"
    assert "first chunk" in explanation.reason
    assert "map(abs): auto" in str(explanation)
    assert repr(explanation).startswith("<vedart.Explanation")


def test_tiny_work_runs_inline_on_the_calling_thread(monkeypatch):
    # "Tiny" is relaxed, so that a loaded machine cannot change the outcome.
    monkeypatch.setattr(_adaptive, "INLINE_TOTAL_SECONDS", 1.0)
    pipeline = veda.par_iter(range(50)).map(lambda x: (x + 1, threading.current_thread().name))
    result = pipeline.collect()
    assert [x for x, _ in result] == list(range(1, 51))
    explanation = pipeline.explain()
    assert explanation.measured
    assert explanation.executor == "inline", explanation
    assert "tiny work" in explanation.reason
    # The first chunks ran on pool threads while measured; the rest ran here.
    assert result[0][1].startswith("veda-blocking-")
    assert {name for _, name in result[20:]} == {threading.current_thread().name}


def test_waiting_work_stays_on_threads():
    pipeline = veda.par_iter(range(40)).map(lambda x: time.sleep(0.002) or x)
    assert pipeline.collect() == list(range(40))
    explanation = pipeline.explain()
    assert explanation.executor == "thread"
    assert "waits" in explanation.reason


def test_cheap_items_stay_on_threads():
    pipeline = veda.par_iter(range(50_000)).map(lambda x: x * 2)
    assert pipeline.sum() == sum(range(50_000)) * 2
    explanation = pipeline.explain()
    assert explanation.executor == "thread"
    assert "too cheap" in explanation.reason


@pytest.mark.skipif(sys.platform != "linux", reason="the process pool needs Linux")
def test_cpu_bound_work_that_holds_the_interpreter_goes_to_processes(monkeypatch):
    # A busy loop holds the interpreter; the ratio check is relaxed so that a
    # loaded machine (CPU time well below wall time) cannot change the outcome.
    monkeypatch.setattr(_adaptive, "CPU_BOUND_RATIO", 0.0)
    pipeline = veda.par_iter(range(150)).map(busy_item)
    result = pipeline.collect()
    assert [x for x, _ in result] == list(range(150))
    explanation = pipeline.explain()
    assert explanation.executor == "process", explanation
    assert "holds the interpreter" in explanation.reason
    assert os.getpid() in {pid for _, pid in result[:6]}  # the measured first chunks
    assert {pid for _, pid in result[10:]} - {os.getpid()}


def test_work_that_does_not_pickle_stays_on_threads(monkeypatch):
    monkeypatch.setattr(_adaptive, "CPU_BOUND_RATIO", 0.0)
    lock = threading.Lock()

    def holds_a_lock(x):
        with lock:
            busy(0.003)
        return x

    pipeline = veda.par_iter(range(150)).map(holds_a_lock)
    assert pipeline.collect() == list(range(150))
    explanation = pipeline.explain()
    assert explanation.executor == "thread"
    assert "does not pickle" in explanation.reason


def test_little_work_left_is_not_worth_processes(monkeypatch):
    monkeypatch.setattr(_adaptive, "CPU_BOUND_RATIO", 0.0)
    pipeline = veda.par_iter(range(3)).map(busy_item)
    assert [x for x, _ in pipeline.collect()] == [0, 1, 2]
    explanation = pipeline.explain()
    assert explanation.executor == "thread"
    assert "do not pay for" in explanation.reason


def test_two_chunks_that_ran_in_parallel_show_released_interpreter():
    def measured(start, end, cpu):
        m = _adaptive._Measured(abs)
        m.start, m.end, m.cpu = start, end, cpu
        return m

    class Done:
        done = True

    run = _adaptive._AdaptiveRun(_adaptive.AdaptiveExecutor(veda.get_runtime()), "fail_fast")
    if run._executor.threads.workers < 2:
        pytest.skip("needs two worker threads")
    first, second = _adaptive._Handle(abs, [1]), _adaptive._Handle(abs, [2])
    first.inner = second.inner = Done()
    run._probes = [first, second]
    # Side by side, each busy the whole time: the interpreter was released.
    first.measured, second.measured = measured(0.0, 0.010, 0.010), measured(0.0, 0.010, 0.0095)
    assert run._parallelism() == pytest.approx(1.95)
    # Side by side but taking turns: one CPU's worth in all.
    first.measured, second.measured = measured(0.0, 0.010, 0.005), measured(0.0, 0.011, 0.005)
    assert run._parallelism() < _adaptive.THREAD_PARALLELISM
    # One after the other: no evidence.
    first.measured, second.measured = measured(0.0, 0.010, 0.010), measured(0.010, 0.020, 0.010)
    assert run._parallelism() is None


def test_gpu_functions_and_async_map_callables_go_where_they_belong_without_measuring(
    monkeypatch,
):
    # The CPU fallback warns once per process: make this test's call the first.
    monkeypatch.setattr(_gpu, "_warned", False)

    @veda.gpu
    def double(x):
        return x * 2

    names = veda.par_iter(range(3)).async_map(lambda _: threading.current_thread().name).collect()
    assert all(name.startswith("veda-blocking-") for name in names)
    pipeline = veda.par_iter(range(3)).map(double)
    assert "GPU work" in pipeline.explain().reason
    with pytest.warns(RuntimeWarning) if not veda.gpu_available() else _nothing():
        assert pipeline.collect() == [0, 2, 4]
    assert pipeline.explain().executor == "thread"


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_coroutine_functions_go_to_the_async_executor():
    async def inc(x):
        await asyncio.sleep(0)
        return x + 1

    pipeline = veda.par_iter(range(5)).map(inc)
    assert pipeline.collect() == [1, 2, 3, 4, 5]
    assert pipeline.explain().executor == "async"


def test_side_effects_are_visible_with_the_thread_executor():
    seen = []
    veda.par_iter(range(100), executor="thread").map(seen.append).collect()
    assert sorted(seen) == list(range(100))


def test_explicit_executors_explain_themselves():
    for name in ("thread", "serial", "async"):
        pipeline = veda.par_iter(range(4), executor=name).map(abs)
        assert pipeline.explain().executor == name
        pipeline.collect()
        assert pipeline.explain().executor == name
        assert "requested" in pipeline.explain().reason
    assert veda.par_iter(range(3)).explain().executor == "inline"


def test_an_error_in_the_measured_chunk_propagates():
    def bad(x):
        raise ValueError(f"bad {x}")

    # The first two chunks are measured side by side: whichever fails first
    # stops the run.
    with pytest.raises(ValueError, match=r"^bad [01]\b"):
        veda.par_iter(range(100)).map(bad).collect()

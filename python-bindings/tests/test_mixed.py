"""Mixed pipelines: parallel stages feeding ``async_map`` and back, on threads
and processes, streaming with bounded buffering."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time

import pytest
from conftest import HANG_TIMEOUT

import vedart as veda


def cpu(x):
    return x * 3


def test_items_enter_the_async_stage_while_the_thread_stage_still_works():
    events = []
    lock = threading.Lock()

    def produce(x):
        time.sleep(0.005)
        with lock:
            events.append(("produced", x))
        return x

    async def consume(x):
        with lock:
            events.append(("consumed", x))
        await asyncio.sleep(0)
        return -x

    result = (
        veda.par_iter(range(60), chunk_size=2, executor="thread")
        .map(produce)
        .async_map(consume, concurrency=4)
        .collect()
    )
    assert result == [-x for x in range(60)]
    first_consumed = events.index(next(e for e in events if e[0] == "consumed"))
    last_produced = max(i for i, e in enumerate(events) if e[0] == "produced")
    assert first_consumed < last_produced


def test_the_async_stage_bounds_what_the_stage_before_it_produces_ahead():
    produced = 0
    lock = threading.Lock()
    release = threading.Event()

    def produce(x):
        nonlocal produced
        with lock:
            produced += 1
        return x

    async def stuck(x):
        while not release.is_set():
            await asyncio.sleep(0.001)
        return x

    def generate():
        yield from range(100_000)

    stream = iter(
        veda.par_iter(generate(), chunk_size=10, executor="thread")
        .map(produce)
        .async_map(stuck, concurrency=5)
    )
    box = []
    reader = threading.Thread(target=lambda: box.append(next(stream)))
    reader.start()
    time.sleep(0.3)
    with lock:
        ahead = produced
    release.set()
    reader.join(HANG_TIMEOUT)
    assert box == [0]
    workers = veda.get_runtime().num_workers
    # async_map buffers 4 x concurrency items; the thread stage adds its
    # look-ahead window of chunks: far from the 100,000 items of the input.
    assert ahead <= 20 + 10 * (2 * workers + 2) + 20
    assert sum(stream) == sum(range(1, 100_000))


def test_threads_then_async_then_threads_again():
    async def io(x):
        await asyncio.sleep(0.001)
        return x + 1

    names = (
        veda.par_iter(range(100), executor="thread")
        .map(cpu)
        .async_map(io, concurrency=16)
        .map(lambda x: (x, threading.current_thread().name))
        .collect()
    )
    assert [x for x, _ in names] == [x * 3 + 1 for x in range(100)]
    assert all(name.startswith("veda-blocking-") for _, name in names)


@pytest.mark.skipif(sys.platform != "linux", reason="the process pool needs Linux")
def test_processes_then_async_then_a_reduction():
    async def io(pair):
        await asyncio.sleep(0.001)
        return pair[0]

    total = (
        veda.par_iter(range(200), executor="process")
        .map(lambda x: (cpu(x), os.getpid()))
        .async_map(io, concurrency=32)
        .sum()
    )
    assert total == sum(cpu(x) for x in range(200))


def test_an_awaited_mixed_pipeline_uses_the_callers_loop():
    async def main():
        loop_thread = threading.get_ident()

        async def where(x):
            await asyncio.sleep(0)
            return threading.get_ident()

        idents = await veda.par_iter(range(50)).map(cpu).async_map(where).collect()
        assert set(idents) == {loop_thread}

    asyncio.run(main())


def test_an_error_in_the_async_stage_stops_the_stage_before_it():
    produced = []

    def produce(x):
        produced.append(x)
        time.sleep(0.001)
        return x

    async def bad(x):
        if x == 10:
            raise RuntimeError("ten")
        return x

    with pytest.raises(RuntimeError, match="ten"):
        veda.par_iter(range(100_000), executor="thread").map(produce).async_map(bad).collect()
    assert len(produced) < 100_000


def test_explain_lists_each_part_of_a_mixed_pipeline():
    async def io(x):
        return x

    pipeline = veda.par_iter(range(20), executor="thread").map(cpu).async_map(io).map(abs)
    before = pipeline.explain()
    assert [s.executor for s in before.segments] == ["thread", "async", "thread"]
    assert not before.measured
    pipeline.collect()
    after = pipeline.explain()
    assert after.measured
    assert [s.executor for s in after.segments] == ["thread", "async", "thread"]
    assert after.executor == "thread"
    assert "async_map(" in str(after)

"""The asyncio bridge: awaitable terminal operations, spawn, cancellation, async_map."""

from __future__ import annotations

import asyncio
import inspect
import threading
import time

import pytest

import vedart as veda


def run(coro, timeout=60):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def test_terminal_operations_return_awaitables_on_a_loop_thread():
    async def main():
        pipeline = veda.par_iter(range(10)).map(lambda x: x + 1)
        pending = pipeline.collect()
        assert inspect.isawaitable(pending)
        assert await pending == list(range(1, 11))
        assert await pipeline.sum() == 55
        assert await pipeline.count() == 10
        assert await pipeline.max() == 10
        assert await pipeline.any(lambda x: x == 3) is True
        assert await pipeline.to_dict(lambda x: x) == {x: x for x in range(1, 11)}

    run(main())


def test_outside_a_running_loop_it_blocks_and_returns():
    assert veda.par_iter([1, 2]).collect() == [1, 2]

    def in_thread():
        return veda.par_iter([3]).collect()

    async def main():
        # A worker thread of the loop has no running loop: it blocks.
        return await asyncio.get_running_loop().run_in_executor(None, in_thread)

    assert run(main()) == [3]


def test_awaiting_a_pipeline_does_not_block_the_loop():
    ticks = 0

    async def ticker(stop):
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0.005)

    async def main():
        stop = asyncio.Event()
        tick_task = asyncio.create_task(ticker(stop))
        result = (
            await veda.par_iter(range(20), chunk_size=1)
            .map(lambda x: time.sleep(0.02) or x)
            .collect()
        )
        stop.set()
        await tick_task
        return result

    assert run(main()) == list(range(20))
    assert ticks >= 5


def test_await_spawn_and_future():
    async def main():
        assert await veda.spawn(pow, 3, 4) == 81
        fut = veda.spawn(lambda: threading.current_thread().name)
        name = await fut
        assert name.startswith("veda-blocking-")
        with pytest.raises(ZeroDivisionError):
            await veda.spawn(lambda: 1 / 0)

    run(main())


def test_cancelling_the_awaiting_task_cancels_the_job(two_threads):
    started = 0
    stopped_by_cancel = 0
    lock = threading.Lock()
    first = threading.Event()

    def slow(x):
        nonlocal started, stopped_by_cancel
        with lock:
            started += 1
        first.set()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if veda.cancelled():
                with lock:
                    stopped_by_cancel += 1
                return None
            time.sleep(0.002)
        return x

    async def main():
        task = asyncio.create_task(veda.par_iter(range(200), chunk_size=1).map(slow).collect())
        await asyncio.get_running_loop().run_in_executor(None, first.wait, 30)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    t0 = time.monotonic()
    run(main())
    # The running chunks notice the cancellation and stop; queued ones never run.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and stopped_by_cancel < started:
        time.sleep(0.01)
    assert stopped_by_cancel == started
    assert started < 200
    assert time.monotonic() - t0 < 30


def test_cancelling_an_awaited_spawn_cancels_the_task():
    running = threading.Event()
    outcome = []

    def work():
        running.set()
        deadline = time.monotonic() + 30
        while not veda.cancelled() and time.monotonic() < deadline:
            time.sleep(0.001)
        outcome.append(veda.cancelled())

    async def awaits(fut):
        return await fut

    async def main():
        task = asyncio.create_task(awaits(veda.spawn(work)))
        await asyncio.get_running_loop().run_in_executor(None, running.wait, 30)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(main())
    deadline = time.monotonic() + 30
    while not outcome and time.monotonic() < deadline:
        time.sleep(0.01)
    assert outcome == [True]


def test_async_for_streams_in_order():
    async def main():
        out = []
        async for x in veda.par_iter(range(1000)).map(lambda x: -x):
            out.append(x)
            if len(out) == 600:
                break
        return out

    assert run(main()) == [-x for x in range(600)]


def test_async_map_runs_on_the_callers_loop_when_awaited():
    async def main():
        loop_thread = threading.get_ident()

        async def where(x):
            await asyncio.sleep(0)
            return threading.get_ident(), x

        result = await veda.par_iter(range(50)).map(lambda x: x * 2).async_map(where).collect()
        assert [x for _, x in result] == [x * 2 for x in range(50)]
        assert {ident for ident, _ in result} == {loop_thread}

    run(main())


def test_async_map_from_sync_code_uses_the_background_loop_with_bounded_concurrency():
    in_flight = 0
    peak = 0

    async def tracked(x):
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.005)
        in_flight -= 1
        return threading.current_thread().name, x

    result = veda.par_iter(range(300)).async_map(tracked, concurrency=10).collect()
    assert [x for _, x in result] == list(range(300))
    assert {name for name, _ in result} == {"veda-async-loop"}
    assert peak <= 10


def test_async_map_with_a_plain_callable_runs_in_the_thread_pool():
    names = veda.par_iter(range(10)).async_map(lambda _: threading.current_thread().name).collect()
    assert all(name.startswith("veda-blocking-") for name in names)


def test_async_map_errors_propagate():
    async def bad(x):
        if x == 7:
            raise LookupError("seven")
        return x

    with pytest.raises(LookupError, match="seven"):
        veda.par_iter(range(20)).async_map(bad).collect()

    async def main():
        with pytest.raises(LookupError, match="seven"):
            await veda.par_iter(range(20)).async_map(bad).collect()

    run(main())


def test_cancelling_an_async_for_consumer_stops_the_stream():
    started = 0
    lock = threading.Lock()

    def slow(x):
        nonlocal started
        with lock:
            started += 1
        time.sleep(0.01)
        return x

    async def consume():
        async for _ in veda.par_iter(range(10_000), chunk_size=1).map(slow):
            pass

    async def main():
        task = asyncio.create_task(consume())
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(main())
    time.sleep(0.2)
    settled = started
    time.sleep(0.3)
    assert started == settled  # nothing new starts once the consumer is gone
    assert started < 10_000

"""The async executor: ``async_map``, ``map`` of coroutine functions,
``executor="async"``, bounded concurrency, order, cancellation."""

from __future__ import annotations

import asyncio
import random
import threading
import time

import pytest
from conftest import HANG_TIMEOUT

import vedart as veda


def run(coro):
    return asyncio.run(coro)


class Tracker:
    """Counts coroutines in flight (they all run on one loop)."""

    def __init__(self):
        self.in_flight = 0
        self.peak = 0
        self.started = 0

    async def __call__(self, x, delay=0.002):
        self.in_flight += 1
        self.started += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await asyncio.sleep(delay)
        finally:
            self.in_flight -= 1
        return x


def test_concurrency_is_bounded_and_reached():
    tracker = Tracker()

    async def one(x):
        return await tracker(x)

    assert veda.par_iter(range(200)).async_map(one, concurrency=10).collect() == list(range(200))
    assert tracker.peak == 10


def test_results_come_in_input_order_whatever_finishes_first():
    rng = random.Random(5)
    delays = [rng.random() * 0.01 for _ in range(300)]

    async def jittery(i):
        await asyncio.sleep(delays[i])
        return -i

    assert veda.par_iter(range(300)).async_map(jittery, concurrency=50).collect() == [
        -i for i in range(300)
    ]


def test_map_of_a_coroutine_function_is_awaited_with_every_executor():
    async def double(x):
        await asyncio.sleep(0)
        return 2 * x

    for executor in (None, "thread", "async", "serial"):
        assert veda.par_iter(range(20), executor=executor).map(double).collect() == [
            2 * x for x in range(20)
        ]
    explanation = veda.par_iter(range(3)).map(double).explain()
    assert explanation.segments[0].executor == "async"


def test_filter_and_flat_map_refuse_coroutine_functions():
    async def pred(x):
        return True

    with pytest.raises(TypeError, match="async_map"):
        veda.par_iter(range(3)).filter(pred)
    with pytest.raises(TypeError, match="async_map"):
        veda.par_iter(range(3)).flat_map(pred)


def test_the_async_executor_runs_plain_callables_on_the_thread_pool():
    loop_threads = set()

    async def where(name):
        loop_threads.add(threading.current_thread().name)
        return name

    names = (
        veda.par_iter(range(5), executor="async")
        .map(lambda _: threading.current_thread().name)
        .async_map(where)
        .collect()
    )
    assert all(name.startswith("veda-blocking-") for name in names)
    assert loop_threads == {"veda-async-loop"}
    explanation = veda.par_iter(range(5), executor="async").map(abs).explain()
    assert explanation.executor == "async" and "never on the event loop" in explanation.reason


def test_async_only_policy(runtime_config):
    runtime_config(veda.Config(scheduling_policy=veda.SchedulingPolicy.ASYNC_ONLY))

    async def inc(x):
        return x + 1

    names = veda.par_iter(range(4)).map(lambda _: threading.current_thread().name).collect()
    assert all(name.startswith("veda-blocking-") for name in names)
    assert veda.par_iter(range(4)).map(inc).collect() == [1, 2, 3, 4]


def test_the_first_error_is_raised_and_the_rest_is_cancelled():
    started = set()
    cancelled = set()

    async def work(x):
        started.add(x)
        if x == 3:
            await asyncio.sleep(0.05)
            raise KeyError("three")
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.add(x)
            raise
        return x

    began = time.monotonic()
    with pytest.raises(KeyError, match="three"):
        veda.par_iter(range(3, 40)).async_map(work, concurrency=8).collect()
    assert time.monotonic() - began < HANG_TIMEOUT
    deadline = time.monotonic() + HANG_TIMEOUT
    while cancelled != started - {3} and time.monotonic() < deadline:
        time.sleep(0.01)
    # Every other coroutine that had started was cancelled; most never started.
    assert cancelled == started - {3}
    assert len(started) < 37


def test_cancelling_the_awaiting_task_cancels_the_coroutines_in_flight():
    state = {"started": 0, "cancelled": 0}
    all_started = None

    async def slow(x):
        state["started"] += 1
        if state["started"] == 5:
            all_started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            state["cancelled"] += 1
            raise
        return x

    async def main():
        nonlocal all_started
        all_started = asyncio.Event()
        task = asyncio.ensure_future(
            veda.par_iter(range(50)).async_map(slow, concurrency=5).collect()
        )
        await asyncio.wait_for(all_started.wait(), HANG_TIMEOUT)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        deadline = time.monotonic() + HANG_TIMEOUT
        while state["cancelled"] < 5 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)

    run(main())
    assert state == {"started": 5, "cancelled": 5}


def test_an_early_stop_cancels_the_remaining_coroutines():
    tracker = Tracker()

    async def one(x):
        return await tracker(x, delay=0.01)

    assert veda.par_iter(range(10_000)).async_map(one, concurrency=4).take(3).collect() == [0, 1, 2]
    time.sleep(0.1)
    assert tracker.started < 100  # bounded: blocks of 8, at most 16 items buffered
    for x in veda.par_iter(range(10_000)).async_map(one, concurrency=4):
        if x == 5:
            break
    assert tracker.started < 200


def test_the_input_is_read_with_bounded_look_ahead():
    consumed = 0

    def source():
        nonlocal consumed
        for i in range(100_000):
            consumed += 1
            yield i

    async def echo(x):
        await asyncio.sleep(0)
        return x

    stream = iter(veda.par_iter(source()).async_map(echo, concurrency=10))
    assert next(stream) == 0
    assert consumed <= 100  # blocks of 20 items, at most 40 buffered, and one block ahead
    assert sum(stream) == sum(range(1, 100_000))


def test_ten_thousand_coroutines_with_high_concurrency():
    async def sleepy(x):
        await asyncio.sleep(0.001)
        return x

    started = time.monotonic()
    assert veda.par_iter(range(10_000)).async_map(sleepy, concurrency=1000).sum() == sum(
        range(10_000)
    )
    assert time.monotonic() - started < HANG_TIMEOUT


def test_awaited_coroutines_run_on_the_callers_loop_and_the_loop_stays_responsive():
    async def main():
        loop_thread = threading.get_ident()
        ticks = 0
        stop = False

        async def ticker():
            nonlocal ticks
            while not stop:
                ticks += 1
                await asyncio.sleep(0.001)

        async def where(x):
            await asyncio.sleep(0.001)
            return threading.get_ident()

        tick_task = asyncio.ensure_future(ticker())
        idents = await veda.par_iter(range(200)).async_map(where, concurrency=20).collect()
        stop = True
        await tick_task
        assert set(idents) == {loop_thread}
        assert ticks > 0

    run(main())


def test_explain_reports_the_loop():
    async def f(x):
        return x

    pipeline = veda.par_iter(range(3)).async_map(f, concurrency=7)
    assert pipeline.collect() == [0, 1, 2]
    segment = pipeline.explain().segments[-1]
    assert segment.executor == "async"
    assert "veda-async-loop" in segment.reason and "at most 7" in segment.reason

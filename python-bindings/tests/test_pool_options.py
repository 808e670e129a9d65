"""What pool users expect of ``par_iter``: ``unordered()`` (results as their
chunks finish), and ``initializer``/``initargs``/``max_tasks_per_child`` for
work in worker processes, like ``ProcessPoolExecutor``.

No test asserts a speed: a slow item waits on a gate that the test opens
only after it has seen what must come first, so an ordered run would fail
(or hit the watchdog) instead of passing slowly.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time

import pytest
from conftest import HANG_TIMEOUT

import vedart as veda
from vedart import _process

EXECUTORS = ["thread", "process", None]

#: Longest a gated item waits for its gate before it gives up.
GATE_SECONDS = 30.0


def wait_for_file(path: str) -> None:
    deadline = time.monotonic() + GATE_SECONDS
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.01)


def gated(gate: str):
    """Item 0 waits until the file ``gate`` exists; the others return at once
    (a file, so that it works in worker processes too)."""

    def fn(x: int) -> int:
        if x == 0:
            wait_for_file(gate)
        return x

    return fn


def slow_first(x: int) -> int:
    time.sleep(0.5 if x == 0 else 0.005)
    return x


def fail_fast_item(gate: str):
    def fn(x: int) -> int:
        if x == 0:
            wait_for_file(gate)
        if x == 3:
            raise ValueError(f"bad item {x}")
        return x

    return fn


def open_gate(path) -> None:
    path.write_text("open")


def settle(executor) -> None:
    """With processes, waits until the pool has all its workers: a worker
    killed by an earlier cancellation may still be starting, and the pool
    would queue the fast items behind the gated one on the workers it has."""
    if executor != "process":
        return
    veda.par_iter(range(4), executor="process").map(abs).collect()
    pool = _process.current_pool()
    deadline = time.monotonic() + HANG_TIMEOUT
    while len(pool.pids()) < pool.workers and time.monotonic() < deadline:
        time.sleep(0.01)


# -- unordered() ----------------------------------------------------------------


@pytest.mark.timeout(120)
@pytest.mark.parametrize("executor", EXECUTORS)
def test_unordered_collect_lists_results_as_they_finish(executor):
    out = veda.par_iter(range(8), chunk_size=1, executor=executor).map(slow_first)
    assert out.collect() == list(range(8))  # ordered: input order
    results = out.unordered().collect(timeout=HANG_TIMEOUT)
    assert sorted(results) == list(range(8))
    assert results[0] != 0, "the slow first item must not come first"
    assert results.index(0) > 0


@pytest.mark.timeout(120)
@pytest.mark.parametrize("executor", EXECUTORS)
def test_unordered_first_result_comes_while_a_slow_item_runs(tmp_path, executor):
    gate = tmp_path / "gate"
    settle(executor)
    pipeline = veda.par_iter(range(6), chunk_size=1, executor=executor).map(gated(str(gate)))
    stream = pipeline.unordered().iter(timeout=HANG_TIMEOUT)
    try:
        first = next(stream)
        # Item 0 is still waiting for the gate, so this came first.
        assert first != 0
        assert not gate.exists()
    finally:
        open_gate(gate)
    assert sorted([first, *stream]) == list(range(6))


@pytest.mark.timeout(120)
@pytest.mark.parametrize("executor", EXECUTORS)
def test_unordered_error_is_raised_while_a_slow_item_runs(tmp_path, executor):
    for way in ("collect", "iterate"):
        # A gate of its own: a thread cannot be stopped, so the gated item of
        # the first way runs until its gate opens.
        gate = tmp_path / way
        settle(executor)
        pipeline = veda.par_iter(range(6), chunk_size=1, executor=executor).map(
            fail_fast_item(str(gate))
        )
        try:
            with pytest.raises(ValueError, match="bad item 3"):
                if way == "collect":
                    pipeline.unordered().collect(timeout=HANG_TIMEOUT)
                else:
                    list(pipeline.unordered().iter(timeout=HANG_TIMEOUT))
            assert not gate.exists()
        finally:
            open_gate(gate)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("executor", ["thread", "process"])
def test_unordered_timeout_after_the_fast_results(tmp_path, executor):
    gate = tmp_path / "gate"
    settle(executor)
    pipeline = veda.par_iter(range(6), chunk_size=1, executor=executor).map(gated(str(gate)))
    seen = []
    try:
        with pytest.raises(veda.TimeoutError):
            for item in pipeline.unordered().iter(timeout=2.0):
                seen.append(item)
        # Every item but the gated one may come (a worker process may hold
        # items queued behind it, so not all of them need to).
        assert seen and 0 not in seen
        if executor == "thread":
            assert sorted(seen) == [1, 2, 3, 4, 5]
        with pytest.raises(veda.TimeoutError):
            pipeline.unordered().collect(timeout=1.0)
    finally:
        open_gate(gate)


@pytest.mark.timeout(120)
def test_unordered_keeps_every_result_of_a_long_mixed_run():
    items = list(range(2000))
    got = (
        veda.par_iter(items, executor="process")
        .map(lambda x: x * 2)
        .filter(lambda x: x % 3)
        .unordered()
        .collect(timeout=HANG_TIMEOUT)
    )
    assert sorted(got) == [x * 2 for x in items if (x * 2) % 3]
    assert veda.par_iter(items).map(abs).unordered().sum() == sum(items)


def die_at_5(x: int) -> int:
    if x == 5:
        os._exit(3)
    time.sleep(0.01)
    return x


@pytest.mark.timeout(120)
def test_unordered_worker_death_is_a_crash_error_and_the_pool_recovers():
    pipeline = veda.par_iter(range(20), chunk_size=1, executor="process")
    with pytest.raises(veda.WorkerCrashedError, match="chunk 5"):
        pipeline.map(die_at_5).unordered().collect(timeout=HANG_TIMEOUT)
    assert sorted(pipeline.map(abs).unordered().collect(timeout=HANG_TIMEOUT)) == list(range(20))


@pytest.mark.timeout(60)
def test_nested_unordered_pipelines_on_one_thread_do_not_deadlock(runtime_config):
    runtime_config(veda.Config(num_threads=1))

    def inner(x: int) -> int:
        pipeline = veda.par_iter(range(x, x + 5), chunk_size=1, executor="thread")
        return pipeline.map(lambda y: y * 2).unordered().sum()

    outer = veda.par_iter(range(4), chunk_size=1, executor="thread").map(inner).unordered()
    assert sorted(outer.collect(timeout=HANG_TIMEOUT / 2)) == [20, 30, 40, 50]


# -- unordered() async_map ---------------------------------------------------------


def async_gated(gate: asyncio.Event):
    """Item 0's coroutine waits for ``gate``; the others return at once."""

    async def fn(x: int) -> int:
        if x == 0:
            await asyncio.wait_for(gate.wait(), GATE_SECONDS)
        return x

    return fn


@pytest.mark.timeout(120)
def test_unordered_async_map_yields_results_as_coroutines_finish():
    async def main() -> None:
        gate = asyncio.Event()
        pipeline = veda.par_iter(range(10)).async_map(async_gated(gate), concurrency=4)
        seen = []
        async for item in pipeline.unordered().aiter(timeout=HANG_TIMEOUT):
            seen.append(item)
            if len(seen) == 9:
                # Every other item came while item 0 still waits: an ordered
                # stage would hold them all back behind it (and time out).
                assert 0 not in seen
                gate.set()
        assert sorted(seen) == list(range(10)) and seen[-1] == 0
        # collect() lists them in the order they finished, too.
        gate = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.call_later(0.3, gate.set)
        done = await veda.par_iter(range(10)).async_map(async_gated(gate)).unordered().collect()
        assert sorted(done) == list(range(10)) and done[-1] == 0
        # Input order is still the default.
        gate.set()
        assert await veda.par_iter(range(10)).async_map(async_gated(gate)).collect() == list(
            range(10)
        )

    asyncio.run(main())


async def slow_then_fast(x: int) -> int:
    await asyncio.sleep(0.4 if x == 0 else 0.001)
    return x * 10


@pytest.mark.timeout(120)
@pytest.mark.parametrize("executor", ["thread", "process"])
def test_unordered_async_map_after_a_parallel_stage_from_sync_code(executor):
    # Run from synchronous code: the coroutines run on the background loop.
    pipeline = (
        veda.par_iter(range(12), chunk_size=1, executor=executor)
        .map(abs)
        .async_map(slow_then_fast, concurrency=3)
        .unordered()
    )
    results = pipeline.collect(timeout=HANG_TIMEOUT)
    assert sorted(results) == [x * 10 for x in range(12)]
    assert results[0] != 0
    assert "as they finish" in str(pipeline.explain())


@pytest.mark.timeout(120)
def test_unordered_async_map_error_and_timeout_cancel_the_rest():
    cancelled = []

    async def work(x: int) -> int:
        if x == 3:
            raise ValueError("bad item 3")
        try:
            await asyncio.sleep(30 if x == 0 else 0.001)
        except asyncio.CancelledError:
            cancelled.append(x)
            raise
        return x

    async def main() -> None:
        pipeline = veda.par_iter(range(8)).async_map(work).unordered()
        with pytest.raises(ValueError, match="bad item 3"):
            await pipeline.collect(timeout=HANG_TIMEOUT)
        quick = veda.par_iter([1, 2, 0, 4]).async_map(work).unordered()
        seen = []
        with pytest.raises(veda.TimeoutError):
            async for item in quick.aiter(timeout=1.0):
                seen.append(item)
        assert sorted(seen) == [1, 2, 4]
        for _ in range(100):  # the cancellations reach the loop
            if cancelled.count(0) == 2:
                break
            await asyncio.sleep(0.02)
        assert cancelled.count(0) == 2

    asyncio.run(main())


@pytest.mark.timeout(120)
def test_unordered_async_map_bounds_the_items_in_flight_and_keeps_them_all():
    running = [0, 0]  # now, most

    async def work(x: int) -> int:
        running[0] += 1
        running[1] = max(running[1], running[0])
        await asyncio.sleep(0.0005 * (x % 7))
        running[0] -= 1
        return x

    results = veda.par_iter(range(3000)).async_map(work, concurrency=8).unordered().collect()
    assert sorted(results) == list(range(3000))
    assert running[1] <= 8


# -- initializer / initargs -------------------------------------------------------


def record_init(log: str, value: int) -> None:
    global INIT_VALUE
    INIT_VALUE = value
    with open(log, "a") as out:
        out.write(f"{os.getpid()}\n")


def read_init(x: int) -> tuple[int, int]:
    time.sleep(0.002)
    return INIT_VALUE, os.getpid()  # noqa: F821 - set by record_init


def failing_init() -> None:
    raise RuntimeError("no database here")


def init_counts(log) -> dict[int, int]:
    counts: dict[int, int] = {}
    for line in log.read_text().split():
        counts[int(line)] = counts.get(int(line), 0) + 1
    return counts


@pytest.mark.timeout(120)
def test_initializer_runs_once_per_worker_and_sees_initargs(tmp_path):
    log = tmp_path / "init.log"
    for _ in range(2):  # a second pipeline with the same initializer: not again
        results = (
            veda.par_iter(range(40), chunk_size=1, initializer=record_init, initargs=(str(log), 42))
            .map(read_init)
            .collect(timeout=HANG_TIMEOUT)
        )
        assert [value for value, _ in results] == [42] * 40
        counts = init_counts(log)
        assert {pid for _, pid in results} <= set(counts)
        assert set(counts.values()) == {1}, counts


@pytest.mark.timeout(120)
def test_config_initializer_applies_to_process_work(tmp_path, runtime_config):
    log = tmp_path / "init.log"
    runtime_config(veda.Config(initializer=record_init, initargs=(str(log), 7)))
    results = veda.par_iter(range(20), chunk_size=1, executor="process").map(read_init).collect()
    assert [value for value, _ in results] == [7] * 20
    assert set(init_counts(log).values()) == {1}


@pytest.mark.timeout(120)
def test_failing_initializer_is_a_broken_pool_error():
    pipeline = veda.par_iter(range(8), initializer=failing_init).map(abs)
    with pytest.raises(veda.BrokenProcessPoolError, match="no database here") as info:
        pipeline.collect(timeout=HANG_TIMEOUT)
    assert isinstance(info.value.__cause__, RuntimeError)
    assert "initializer" in str(info.value)
    # The pool is still usable for other work.
    assert veda.par_iter(range(4), executor="process").map(abs).collect() == [0, 1, 2, 3]


# -- max_tasks_per_child ----------------------------------------------------------


def item_and_pid(x: int) -> tuple[int, int]:
    return x, os.getpid()


@pytest.mark.timeout(120)
def test_max_tasks_per_child_replaces_workers_with_results_intact(tmp_path):
    log = tmp_path / "init.log"
    results = (
        veda.par_iter(
            range(40),
            chunk_size=1,
            max_tasks_per_child=2,
            initializer=record_init,
            initargs=(str(log), 5),
        )
        .map(item_and_pid)
        .collect(timeout=HANG_TIMEOUT)
    )
    assert [x for x, _ in results] == list(range(40))
    pids = [pid for _, pid in results]
    assert len(set(pids)) >= 20, "each worker runs at most two chunks"
    assert all(pids.count(pid) <= 2 for pid in set(pids))
    # Every replacement ran the initializer, once.
    assert set(pids) <= set(init_counts(log))
    assert set(init_counts(log).values()) == {1}


@pytest.mark.timeout(120)
def test_max_tasks_per_child_in_config(runtime_config):
    runtime_config(veda.Config(max_tasks_per_child=1))
    results = veda.par_iter(range(10), chunk_size=1, executor="process").map(item_and_pid).collect()
    assert [x for x, _ in results] == list(range(10))
    assert len({pid for _, pid in results}) == 10


# -- bad options -------------------------------------------------------------------


def test_bad_process_options_are_clear_errors():
    with pytest.raises(veda.ConfigError, match="max_tasks_per_child"):
        veda.par_iter(range(3), max_tasks_per_child=0)
    with pytest.raises(veda.ConfigError, match="max_tasks_per_child"):
        veda.Config(max_tasks_per_child=0)
    with pytest.raises(veda.ConfigError, match="initializer"):
        veda.par_iter(range(3), initializer=42)
    with pytest.raises(veda.ConfigError, match="initargs"):
        veda.Config(initializer=print, initargs=[1])
    with pytest.raises(veda.ConfigError, match='executor="process"'):
        veda.par_iter(range(3), executor="thread", initializer=print)
    lock = threading.Lock()
    with pytest.raises(TypeError, match="initializer"):
        veda.par_iter(range(3), initializer=lambda: lock.acquire()).map(abs).collect()

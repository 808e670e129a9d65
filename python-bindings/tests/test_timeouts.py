"""``timeout=``: terminal operations, streaming, awaited pipelines, futures and
scopes raise ``veda.TimeoutError`` at their deadline and cancel their work.

Hung work sleeps for a minute: returning within :data:`BOUND` seconds proves
the timeout ended the wait (the bound only catches hangs, it is no speed
claim).
"""

from __future__ import annotations

import asyncio
import builtins
import concurrent.futures
import inspect
import operator
import os
import pickle
import sys
import threading
import time

import pytest

import vedart as veda
from vedart import _process

#: Far beyond any timeout used here, far below the minute a hung chunk sleeps.
BOUND = 15.0
HANG_SECONDS = 60.0

linux_only = pytest.mark.skipif(sys.platform != "linux", reason="the process pool needs Linux")


def hang(x):
    """Item 1 hangs (a minute); the others return at once. Module level, so
    that worker processes can import it.

    On a thread it stops once cancelled (``veda.cancelled()``), as cooperative
    code does: a thread cannot be killed, and hung chunks would otherwise hold
    the pool's threads for the tests that follow. A worker process is killed.
    """
    if x == 1:
        deadline = time.monotonic() + HANG_SECONDS
        while not veda.cancelled() and time.monotonic() < deadline:
            time.sleep(0.01)
    return x


async def ahang(x):
    if x == 1:
        await asyncio.sleep(HANG_SECONDS)
    return x


def wait_until(predicate, timeout=BOUND):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def timed(fn):
    """``(exception raised by fn(), seconds it took)``."""
    started = time.monotonic()
    with pytest.raises(veda.TimeoutError) as info:
        fn()
    return info.value, time.monotonic() - started


# -- the exception ------------------------------------------------------------------


def test_timeout_error_is_a_veda_error_and_every_builtin_timeout_error():
    error = veda.TimeoutError("x timed out", timeout=0.5, what="x")
    assert "TimeoutError" in veda.__all__
    assert veda.TimeoutError is veda.exceptions.TimeoutError
    assert isinstance(error, veda.VedaError)
    assert isinstance(error, builtins.TimeoutError)
    assert isinstance(error, concurrent.futures.TimeoutError)
    assert isinstance(error, asyncio.TimeoutError)
    assert str(error) == "x timed out" and error.errno is None
    copy = pickle.loads(pickle.dumps(error))
    assert (type(copy), str(copy), copy.timeout, copy.what) == (
        veda.TimeoutError,
        "x timed out",
        0.5,
        "x",
    )


# -- every terminal operation, on every executor -------------------------------------

TERMINALS = {
    "collect": lambda p, t: p.collect(timeout=t),
    "sum": lambda p, t: p.sum(timeout=t),
    "count": lambda p, t: p.count(timeout=t),
    "min": lambda p, t: p.min(timeout=t),
    "max": lambda p, t: p.max(timeout=t),
    "reduce": lambda p, t: p.reduce(operator.add, timeout=t),
    "fold": lambda p, t: p.fold(0, operator.add, timeout=t),
    "any": lambda p, t: p.any(lambda x: x > 100, timeout=t),
    "all": lambda p, t: p.all(lambda x: x < 100, timeout=t),
    "for_each": lambda p, t: p.for_each(lambda x: None, timeout=t),
    "to_dict": lambda p, t: p.to_dict(str, timeout=t),
}

EXPECTED = {
    "collect": [1, 2, 3, 4],
    "sum": 10,
    "count": 4,
    "min": 1,
    "max": 4,
    "reduce": 10,
    "fold": 10,
    "any": False,
    "all": True,
    "for_each": None,
    "to_dict": {"1": 1, "2": 2, "3": 3, "4": 4},
}

EXECUTORS = [
    pytest.param("thread", id="thread"),
    pytest.param("process", id="process", marks=linux_only),
    pytest.param("async", id="async"),
]


def hanging(executor, fn=hang):
    """Items 1 to 4, one per chunk; item 1 hangs (``ahang`` on the async executor)."""
    stage = ahang if executor == "async" and fn is hang else fn
    return veda.par_iter(range(1, 5), chunk_size=1, executor=executor).map(stage)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("executor", EXECUTORS)
@pytest.mark.parametrize("terminal", sorted(TERMINALS))
def test_every_terminal_raises_at_its_timeout(terminal, executor):
    pipeline = hanging(executor)
    error, took = timed(lambda: TERMINALS[terminal](pipeline, 0.3))
    assert took < BOUND
    assert f".{terminal}()" in str(error) and "0.3 s" in str(error)
    assert error.timeout == 0.3 and error.what.startswith("par_iter(range[4])")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("executor", EXECUTORS)
@pytest.mark.parametrize("terminal", sorted(TERMINALS))
def test_a_timeout_not_reached_changes_nothing(terminal, executor):
    stage = abs
    if executor == "async":

        async def stage(x):
            return x

    pipeline = veda.par_iter(range(1, 5), chunk_size=1, executor=executor).map(stage)
    assert TERMINALS[terminal](pipeline, 30) == EXPECTED[terminal]
    assert TERMINALS[terminal](pipeline, float("inf")) == EXPECTED[terminal]


@pytest.mark.timeout(60)
def test_the_default_executor_times_out_too():
    error, took = timed(
        lambda: veda.par_iter(range(1, 5), chunk_size=1).map(hang).collect(timeout=0.3)
    )
    assert took < BOUND and "collect()" in str(error)


@pytest.mark.timeout(60)
def test_a_timeout_error_of_the_users_own_is_not_taken_for_the_deadline():
    def raises(x):
        raise builtins.TimeoutError(f"my own, item {x}")

    with pytest.raises(builtins.TimeoutError) as info:
        veda.par_iter(range(4), executor="thread").map(raises).collect(timeout=30)
    assert not isinstance(info.value, veda.TimeoutError)
    assert "my own" in str(info.value)

    async def araises(x):
        await asyncio.sleep(0.2)  # the feeder is waiting by then
        raise builtins.TimeoutError("my own coroutine's")

    # (a coroutine's TimeoutError used to be mistaken for the feeder's poll
    # timing out, which then spun for ever)
    for timeout in (None, 30):
        with pytest.raises(builtins.TimeoutError, match="my own coroutine's") as info:
            veda.par_iter(range(4)).map(araises).collect(timeout=timeout)
        assert not isinstance(info.value, veda.TimeoutError)


# -- bad values ---------------------------------------------------------------------

BAD = [
    pytest.param(-1, ValueError, id="negative"),
    pytest.param(float("nan"), ValueError, id="nan"),
    pytest.param("1", TypeError, id="string"),
    pytest.param(True, TypeError, id="bool"),
    pytest.param([1], TypeError, id="list"),
]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("value, kind", BAD)
def test_bad_timeouts_are_refused_naming_the_argument(value, kind):
    pipeline = veda.par_iter(range(4)).map(abs)
    calls = [
        lambda: pipeline.collect(timeout=value),
        lambda: pipeline.sum(timeout=value),
        lambda: pipeline.iter(timeout=value),
        lambda: pipeline.aiter(timeout=value),
        lambda: veda.spawn(abs, 1).result(timeout=value),
        lambda: veda.spawn(abs, 1).exception(timeout=value),
        lambda: veda.scope(timeout=value),
    ]
    for call in calls:
        with pytest.raises(kind, match="timeout"):
            call()
    with veda.scope() as s:
        with pytest.raises(kind, match="timeout"):
            s.wait_all(timeout=value)

    async def awaited():
        with pytest.raises(kind, match="timeout"):
            await pipeline.collect(timeout=value)

    asyncio.run(awaited())


def test_zero_and_integer_timeouts_are_accepted():
    assert veda.spawn(abs, -3).result(timeout=10) == 3
    assert veda.par_iter(range(4)).map(abs).collect(timeout=10) == [0, 1, 2, 3]
    fut = veda.spawn(time.sleep, 0.2)
    with pytest.raises(veda.TimeoutError):
        fut.result(timeout=0)
    assert fut.result(timeout=30) is None


# -- streaming ------------------------------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("executor", EXECUTORS)
def test_streaming_delivers_what_is_ready_then_raises_at_the_deadline(executor):
    got = []

    def consume():
        for item in hanging(executor).iter(timeout=0.5):
            got.append(item)

    error, took = timed(consume)
    assert took < BOUND and ".iter()" in str(error)
    assert got == []  # item 1 comes first and hangs

    pipeline = veda.par_iter(range(6), chunk_size=1, executor="thread").map(abs)
    assert list(pipeline.iter(timeout=30)) == list(range(6))


@pytest.mark.timeout(60)
def test_the_streaming_deadline_counts_the_consumers_time_too():
    got = []

    def consume():
        for item in veda.par_iter(range(100), chunk_size=1).map(abs).iter(timeout=1.0):
            got.append(item)
            time.sleep(0.05)

    error, took = timed(consume)
    assert 0 < len(got) < 100 and took < BOUND
    assert "1 s" in str(error)


@pytest.mark.timeout(60)
def test_the_streaming_deadline_starts_with_the_iteration():
    stream = veda.par_iter(range(8), chunk_size=1).map(abs).iter(timeout=3.0)
    time.sleep(3.3)  # before the first next(): not counted
    assert list(stream) == list(range(8))


@pytest.mark.timeout(60)
@pytest.mark.parametrize("executor", EXECUTORS)
def test_async_for_with_a_deadline(executor):
    async def main():
        got = []
        async for item in hanging(executor).aiter(timeout=0.5):
            got.append(item)
        return got

    error, took = timed(lambda: asyncio.run(main()))
    assert took < BOUND and ".aiter()" in str(error)

    async def fine():
        return [x async for x in veda.par_iter(range(5)).map(abs).aiter(timeout=30)]

    assert asyncio.run(fine()) == list(range(5))


# -- awaited pipelines ----------------------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("executor", EXECUTORS)
def test_an_awaited_terminal_raises_at_its_timeout(executor):
    async def main():
        return await hanging(executor).sum(timeout=0.5)

    error, took = timed(lambda: asyncio.run(main()))
    assert took < BOUND and ".sum()" in str(error)

    async def fine():
        return await veda.par_iter(range(5), executor=executor).map(abs).sum(timeout=30)

    assert asyncio.run(fine()) == 10


@pytest.mark.timeout(60)
def test_an_awaited_timeout_cancels_the_coroutines_in_flight():
    state = {"started": 0, "cancelled": 0}

    async def waits(x):
        state["started"] += 1
        try:
            await asyncio.sleep(HANG_SECONDS)
        except asyncio.CancelledError:
            state["cancelled"] += 1
            raise
        return x

    async def main():
        with pytest.raises(veda.TimeoutError):
            await veda.par_iter(range(10)).async_map(waits, concurrency=4).collect(timeout=1.0)
        # The cancellation reaches the coroutines on this loop's next turns.
        for _ in range(200):
            if state["cancelled"] == state["started"]:
                break
            await asyncio.sleep(0.01)

    asyncio.run(main())
    assert state["started"] == 4 and state["cancelled"] == 4


@pytest.mark.timeout(60)
def test_a_timeout_in_the_background_loop_cancels_the_coroutines():
    state = {"started": 0, "cancelled": 0}
    lock = threading.Lock()

    async def waits(x):
        with lock:
            state["started"] += 1
        try:
            await asyncio.sleep(HANG_SECONDS)
        except asyncio.CancelledError:
            with lock:
                state["cancelled"] += 1
            raise

    with pytest.raises(veda.TimeoutError):
        veda.par_iter(range(10)).async_map(waits, concurrency=3).collect(timeout=1.0)
    assert wait_until(lambda: state["cancelled"] == state["started"] == 3)


# -- thread chunks cannot be killed; the call returns anyway -------------------------


@pytest.mark.timeout(60)
def test_a_thread_chunk_runs_on_but_the_call_returns_and_sees_cancelled(two_threads):
    lock = threading.Lock()
    state = {"started": 0, "stopped": 0}

    def cooperative(x):
        with lock:
            state["started"] += 1
        deadline = time.monotonic() + HANG_SECONDS
        while not veda.cancelled() and time.monotonic() < deadline:
            time.sleep(0.01)
        with lock:
            state["stopped"] += veda.cancelled()
        return x

    error, took = timed(
        lambda: veda.par_iter(range(20), chunk_size=1, executor="thread")
        .map(cooperative)
        .collect(timeout=0.3)
    )
    assert took < BOUND
    # The running chunks were asked to stop; the queued ones never started.
    assert wait_until(lambda: state["stopped"] == state["started"])
    started = state["started"]
    assert 1 <= started <= 2
    time.sleep(0.2)
    assert state["started"] == started
    # The pool is free again.
    assert veda.par_iter(range(4), executor="thread").map(abs).collect() == [0, 1, 2, 3]


# -- the process executor: hung children are killed and replaced ---------------------


def _sleep_recording_pid(path):
    with open(path, "w") as f:
        f.write(str(os.getpid()))
    time.sleep(HANG_SECONDS)
    return path


def _sleep_then_mark(path):
    time.sleep(2.0)
    with open(path, "w") as f:
        f.write("ran on")
    return path


@linux_only
@pytest.mark.timeout(90)
def test_a_process_child_running_a_timed_out_chunk_is_killed_and_replaced(tmp_path):
    veda.par_iter(range(8), executor="process").map(abs).collect()  # warm
    path = str(tmp_path / "pid")
    # Long enough for the chunk to start on a loaded machine (a chunk that
    # has not started when the deadline passes is withdrawn, not killed).
    error, took = timed(
        lambda: veda.par_iter([path], executor="process")
        .map(_sleep_recording_pid)
        .collect(timeout=3.0)
    )
    assert took < BOUND
    assert wait_until(lambda: os.path.exists(path) and open(path).read())
    pid = int(open(path).read())
    assert wait_until(lambda: not os.path.exists(f"/proc/{pid}"))
    pool = _process.current_pool()
    assert wait_until(lambda: len(pool.pids()) == pool.workers)
    assert pid not in pool.pids()
    assert veda.par_iter(range(6), executor="process").map(abs).collect() == list(range(6))


@linux_only
@pytest.mark.timeout(90)
def test_no_process_work_runs_on_after_the_timeout(tmp_path):
    veda.par_iter(range(8), executor="process").map(abs).collect()  # warm
    paths = [str(tmp_path / f"item{i}") for i in range(12)]
    error, took = timed(
        lambda: veda.par_iter(paths, chunk_size=1, executor="process")
        .map(_sleep_then_mark)
        .collect(timeout=0.5)
    )
    assert took < BOUND
    # Every chunk takes 2 s: one left running would have marked its file by now.
    time.sleep(3.0)
    assert [p for p in paths if os.path.exists(p)] == []
    assert veda.par_iter(range(4), executor="process").map(abs).sum() == 6


# -- futures and scopes ----------------------------------------------------------------


@pytest.mark.timeout(60)
def test_future_result_times_out_naming_the_task_and_leaves_it_running():
    release = threading.Event()

    def blocked():
        release.wait(HANG_SECONDS)
        return "done"

    fut = veda.spawn(blocked)
    error, took = timed(lambda: fut.result(timeout=0.2))
    assert took < BOUND
    assert isinstance(error, builtins.TimeoutError) and isinstance(error, veda.VedaError)
    assert "blocked" in str(error) and "0.2 s" in str(error) and error.timeout == 0.2
    with pytest.raises(veda.TimeoutError):
        fut.exception(timeout=0.05)
    assert not fut.done()
    release.set()
    assert fut.result(timeout=BOUND) == "done"


@pytest.mark.timeout(60)
def test_future_result_timeout_on_a_coroutine_task():
    async def sleeper():
        await asyncio.sleep(HANG_SECONDS)

    fut = veda.spawn(sleeper)
    error, took = timed(lambda: fut.result(timeout=0.2))
    assert "sleeper" in str(error)
    fut.cancel()
    assert wait_until(fut.done)


@pytest.mark.timeout(60)
def test_a_tasks_own_timeout_error_is_not_the_waits():
    def raises():
        raise builtins.TimeoutError("the task's own")

    with pytest.raises(builtins.TimeoutError, match="the task's own") as info:
        veda.spawn(raises).result(timeout=BOUND)
    assert not isinstance(info.value, veda.TimeoutError)


@pytest.mark.timeout(60)
def test_a_scope_deadline_cancels_its_children_and_raises(two_threads):
    lock = threading.Lock()
    state = {"started": 0, "stopped": 0}

    def cooperative():
        with lock:
            state["started"] += 1
        deadline = time.monotonic() + HANG_SECONDS
        while not veda.cancelled() and time.monotonic() < deadline:
            time.sleep(0.01)
        with lock:
            state["stopped"] += 1

    started = time.monotonic()
    with pytest.raises(veda.TimeoutError) as info:
        with veda.scope(timeout=0.3) as s:
            futures = [s.spawn(cooperative) for _ in range(6)]
    assert time.monotonic() - started < BOUND
    assert "veda.scope()" in str(info.value) and info.value.timeout == 0.3
    assert wait_until(lambda: all(f.done() for f in futures))
    assert state["stopped"] == state["started"] <= 2
    assert sum(f.cancelled() for f in futures) == 6 - state["started"]


@pytest.mark.timeout(60)
def test_a_scope_deadline_applies_to_wait_all_and_attaches_to_the_blocks_error():
    with pytest.raises(veda.TimeoutError, match="veda.scope"):
        with veda.scope(timeout=0.3) as s:
            s.spawn(time.sleep, 1.0)
            s.wait_all()

    with pytest.raises(KeyError) as info:
        with veda.scope(timeout=0.3) as s:
            s.spawn(time.sleep, 1.0)
            raise KeyError("body")
    # (the block's own error wins; the wait for the cancelled child timed out)
    others = getattr(info.value, "veda_other_errors", [])
    assert all(isinstance(e, veda.TimeoutError) for e in others)

    with veda.scope(timeout=30) as s:
        a = s.spawn(pow, 2, 5)
        assert s.wait_all(timeout=10) == [32]
    assert a.result() == 32

    # A wait_all timeout of its own only ends that wait.
    with veda.scope(timeout=30) as s:
        s.spawn(time.sleep, 0.5)
        with pytest.raises(veda.TimeoutError, match="wait_all"):
            s.wait_all(timeout=0.05)
        assert not s.cancelled


@pytest.mark.timeout(60)
def test_an_async_scope_deadline_cancels_its_coroutine_children():
    async def main():
        with pytest.raises(veda.TimeoutError):
            async with veda.scope(timeout=0.3) as s:
                child = s.spawn(asyncio.sleep, HANG_SECONDS)
        for _ in range(200):
            if child.done():
                break
            await asyncio.sleep(0.01)
        return child

    started = time.monotonic()
    child = asyncio.run(main())
    assert time.monotonic() - started < BOUND
    assert child.cancelled()


def test_every_terminal_and_stream_takes_a_keyword_timeout():
    for name in [*TERMINALS, "iter", "aiter"]:
        parameter = inspect.signature(getattr(veda.ParallelIterator, name)).parameters["timeout"]
        assert parameter.kind is inspect.Parameter.KEYWORD_ONLY and parameter.default is None
    assert inspect.signature(veda.scope).parameters["timeout"].default is None

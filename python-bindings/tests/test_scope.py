"""Structured concurrency: scope, spawn, Future, cancellation, nesting."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time

import pytest

import vedart as veda


def test_wait_all_returns_results_in_spawn_order():
    def slow(x, delay):
        time.sleep(delay)
        return x

    with veda.scope() as s:
        s.spawn(slow, "a", 0.05)
        s.spawn(slow, "b", 0.0)
        s.spawn(slow, x="c", delay=0.01)
        assert s.wait_all() == ["a", "b", "c"]


def test_exit_waits_for_every_child():
    finished = []

    def child(i):
        time.sleep(0.01 * (i % 3))
        finished.append(i)

    with veda.scope() as s:
        for i in range(20):
            s.spawn(child, i)
    assert sorted(finished) == list(range(20))


def test_spawn_returns_an_awaitable_concurrent_future():
    with veda.scope() as s:
        fut = s.spawn(pow, 2, 8)
    assert isinstance(fut, concurrent.futures.Future)
    assert isinstance(fut, veda.Future)
    assert fut.result() == 256
    assert concurrent.futures.wait([fut]).done == {fut}


def test_child_failure_cancels_siblings_and_is_raised_with_the_others(two_threads):
    started = []
    saw_cancel = threading.Event()
    barrier = threading.Barrier(2, timeout=30)

    def waits_for_cancel():
        barrier.wait()
        deadline = time.monotonic() + 30
        while not veda.cancelled():
            if time.monotonic() > deadline:
                return "never cancelled"
            time.sleep(0.001)
        saw_cancel.set()
        raise RuntimeError("stopped after cancel")

    def fails():
        barrier.wait()
        raise ValueError("boom")

    def never_starts(i):
        started.append(i)

    with pytest.raises(ValueError, match="boom") as info:
        with veda.scope() as s:
            s.spawn(waits_for_cancel)
            s.spawn(fails)
            for i in range(50):
                s.spawn(never_starts, i)
    assert saw_cancel.is_set()
    assert len(started) < 50
    others = info.value.veda_other_errors
    assert [type(e) for e in others] == [RuntimeError]
    assert any("1 more task(s) failed" in note for note in info.value.__notes__)


def test_body_error_cancels_children_and_propagates(two_threads):
    cancelled_seen = threading.Event()
    running = threading.Event()

    def cooperative():
        running.set()
        deadline = time.monotonic() + 30
        while not veda.cancelled() and time.monotonic() < deadline:
            time.sleep(0.001)
        if veda.cancelled():
            cancelled_seen.set()

    with pytest.raises(KeyError):
        with veda.scope() as s:
            s.spawn(cooperative)
            assert running.wait(30)
            raise KeyError("body")
    assert cancelled_seen.is_set()


def test_queued_children_of_a_cancelled_scope_never_run(runtime_config):
    runtime_config(veda.Config(num_threads=1, min_workers=0))
    ran = []
    gate = threading.Event()
    with pytest.raises(ZeroDivisionError):
        with veda.scope() as s:
            s.spawn(gate.wait, 30)
            futures = [s.spawn(ran.append, i) for i in range(10)]
            try:
                raise ZeroDivisionError
            finally:
                s.cancel()
                gate.set()
    assert ran == []
    assert all(f.cancelled() for f in futures)


def test_spawning_on_a_closed_scope_raises():
    with veda.scope() as s:
        pass
    with pytest.raises(veda.ScopeClosedError):
        s.spawn(print)
    with pytest.raises(veda.VedaError):
        s.spawn(print)
    with pytest.raises(veda.ScopeClosedError):
        veda.Scope().spawn(print)


def test_children_may_spawn_siblings_while_the_scope_is_open():
    results = []

    with veda.scope() as s:

        def parent():
            s.spawn(results.append, "child")
            results.append("parent")

        s.spawn(parent)
    assert sorted(results) == ["child", "parent"]


def test_scopes_nested_ten_deep_in_scope_tasks_with_two_threads(two_threads):
    def nest(depth):
        if depth == 0:
            return 1
        with veda.scope() as s:
            a = s.spawn(nest, depth - 1)
            b = s.spawn(nest, depth - 1)
        return a.result() + b.result()

    done = []
    thread = threading.Thread(target=lambda: done.append(nest(10)))
    thread.start()
    thread.join(120)
    assert done == [1024]


def test_future_result_inside_a_task_runs_the_awaited_task_inline(runtime_config):
    runtime_config(veda.Config(num_threads=1, min_workers=0))

    def outer():
        inner = veda.spawn(lambda: threading.current_thread().name)
        return inner.result(timeout=30)

    # With one thread, the inner task can only run if the waiting outer task
    # runs it itself.
    assert veda.spawn(outer).result(timeout=60).startswith("veda-blocking-")


def test_wait_all_timeout():
    gate = threading.Event()
    with veda.scope() as s:
        s.spawn(gate.wait, 30)
        with pytest.raises(TimeoutError):
            s.wait_all(timeout=0.05)
        gate.set()


def test_spawn_outside_a_scope_and_cancel_before_start(runtime_config):
    runtime_config(veda.Config(num_threads=1, min_workers=0))
    gate = threading.Event()
    blocker = veda.spawn(gate.wait, 30)
    queued = veda.spawn(lambda: "ran")
    assert queued.cancel() is True
    assert queued.cancelled()
    gate.set()
    assert blocker.result(timeout=30) is True
    with pytest.raises(concurrent.futures.CancelledError):
        queued.result()


def test_cancel_of_a_running_future_asks_it_to_stop():
    running = threading.Event()

    def loop_until_cancelled():
        running.set()
        deadline = time.monotonic() + 30
        while not veda.cancelled():
            if time.monotonic() > deadline:
                return "not cancelled"
            time.sleep(0.001)
        return "cancelled"

    fut = veda.spawn(loop_until_cancelled)
    assert running.wait(30)
    assert fut.cancel() is False
    assert fut.result(timeout=30) == "cancelled"


def test_veda_cancelled_is_false_outside_tasks():
    assert veda.cancelled() is False
    assert veda.spawn(veda.cancelled).result() is False


def test_sync_scope_runs_coroutine_children_on_the_background_loop():
    async def co(x):
        await asyncio.sleep(0.01)
        return threading.current_thread().name, x

    with veda.scope() as s:
        fut = s.spawn(co, 5)
    assert fut.result() == ("veda-async-loop", 5)
    assert veda.spawn(co, 6).result(timeout=30) == ("veda-async-loop", 6)


def test_async_scope_cancels_coroutine_siblings_with_cancelled_error():
    outcome = {}

    async def sleeper():
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            outcome["sleeper"] = "CancelledError"
            raise

    async def fails():
        await asyncio.sleep(0.01)
        raise ValueError("async boom")

    async def main():
        with pytest.raises(ValueError, match="async boom"):
            async with veda.scope() as s:
                s.spawn(sleeper)
                s.spawn(fails)

    asyncio.run(asyncio.wait_for(main(), 60))
    assert outcome == {"sleeper": "CancelledError"}


def test_async_scope_mixes_threads_and_coroutines():
    async def co():
        await asyncio.sleep(0.01)
        return threading.get_ident()

    async def main():
        loop_thread = threading.get_ident()
        async with veda.scope() as s:
            a = s.spawn(co)
            b = s.spawn(threading.get_ident)
            results = await s.wait_all()
        assert results[0] == loop_thread
        assert results[1] != loop_thread
        assert await a == loop_thread and await b == results[1]

    asyncio.run(asyncio.wait_for(main(), 60))

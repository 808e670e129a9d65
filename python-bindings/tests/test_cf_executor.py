"""``vedart.VedaExecutor`` under the standard library's expectations of a
``concurrent.futures.Executor`` (the cases of CPython's own executor tests),
on threads and on worker processes."""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import gc
import os
import threading
import time
import weakref

import pytest

import vedart as veda
from vedart import _process
from conftest import HANG_TIMEOUT, run_python

pytestmark = pytest.mark.timeout(120)

KINDS = ["thread", "process"]


# -- functions the calls run (module level: they pickle by reference) -----------


def square(x):
    return x * x


def fail(message):
    raise ValueError(message)


def fail_on_three(x):
    if x == 3:
        raise ValueError(f"item {x} failed")
    return x


def wait_for(path, value=None, cap=HANG_TIMEOUT):
    """Returns ``value`` once ``path`` exists (the test creates it to release
    the call); gives up after ``cap`` seconds so nothing outlives a test."""
    deadline = time.monotonic() + cap
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.01)
    return value


def touch(path):
    with open(path, "w") as f:
        f.write("x")
    return path


class Payload:
    """A result object whose lifetime the tests watch."""


def make_payload(_):
    return Payload()


def exit_now(code):
    os._exit(code)


INIT_STATE = {}


def remember_init(tag):
    INIT_STATE["tag"] = tag
    INIT_STATE["pid"] = os.getpid()


def init_state(_):
    return INIT_STATE.get("tag"), os.getpid()


def broken_initializer():
    raise OSError("no database here")


@pytest.fixture(params=KINDS)
def executor(request):
    ex = veda.VedaExecutor(request.param)
    yield ex
    ex.shutdown(wait=True, cancel_futures=True)


@pytest.fixture
def gate(tmp_path):
    """A file path the calls wait for; created when the test leaves."""
    path = str(tmp_path / "go")
    yield path
    if not os.path.exists(path):
        open(path, "w").close()


def release(path):
    open(path, "w").close()


def wait_running(fut):
    deadline = time.monotonic() + HANG_TIMEOUT
    while not fut.running() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert fut.running()


# -- the Executor interface -----------------------------------------------------


def test_submit_returns_standard_futures_on_every_kind(executor):
    assert isinstance(executor, cf.Executor)
    fut = executor.submit(square, 7)
    assert isinstance(fut, cf.Future)
    assert fut.result(timeout=HANG_TIMEOUT) == 49
    assert fut.done() and not fut.cancelled()
    keyword = executor.submit(pow, 2, exp=5) if executor._kind == "thread" else None
    if keyword is not None:
        assert keyword.result(timeout=HANG_TIMEOUT) == 32


def test_an_exception_of_the_call_is_the_futures_exception(executor):
    fut = executor.submit(fail, "bad input")
    error = fut.exception(timeout=HANG_TIMEOUT)
    assert isinstance(error, ValueError) and str(error) == "bad input"
    with pytest.raises(ValueError, match="bad input"):
        fut.result()


def test_a_worker_processs_error_carries_its_traceback():
    with veda.VedaExecutor("process") as ex:
        error = ex.submit(fail, "remote").exception(timeout=HANG_TIMEOUT)
    assert isinstance(error, ValueError)
    assert "in fail" in error.veda_remote_traceback
    assert "raise ValueError(message)" in error.veda_remote_traceback


def test_wait_first_completed_returns_with_the_first_done(executor, gate):
    blocked = executor.submit(wait_for, gate, "slow")
    fast = executor.submit(square, 3)
    done, not_done = cf.wait([blocked, fast], timeout=HANG_TIMEOUT, return_when=cf.FIRST_COMPLETED)
    assert fast in done
    assert blocked in not_done
    release(gate)
    assert blocked.result(timeout=HANG_TIMEOUT) == "slow"


def test_wait_first_exception_returns_with_the_first_failure(executor, gate):
    blocked = executor.submit(wait_for, gate)
    failing = executor.submit(fail, "first")
    done, not_done = cf.wait(
        [blocked, failing], timeout=HANG_TIMEOUT, return_when=cf.FIRST_EXCEPTION
    )
    assert done == {failing} and not_done == {blocked}
    release(gate)


def test_wait_all_completed_and_wait_timeouts(executor, gate):
    blocked = executor.submit(wait_for, gate, 1)
    quick = executor.submit(square, 2)
    started = time.monotonic()
    done, not_done = cf.wait([blocked, quick], timeout=0.3)
    assert time.monotonic() - started >= 0.25
    assert not_done == {blocked}
    release(gate)
    done, not_done = cf.wait([blocked, quick], timeout=HANG_TIMEOUT)
    assert done == {blocked, quick} and not not_done


def test_as_completed_yields_duplicates_once_and_times_out(executor, gate):
    a = executor.submit(square, 2)
    b = executor.submit(square, 3)
    assert {f.result() for f in cf.as_completed([a, a, b, b], timeout=HANG_TIMEOUT)} == {4, 9}
    assert len(list(cf.as_completed([a, a, b], timeout=HANG_TIMEOUT))) == 2
    blocked = executor.submit(wait_for, gate)
    with pytest.raises(cf.TimeoutError):
        for _ in cf.as_completed([a, blocked], timeout=0.2):
            pass
    release(gate)


def test_future_result_timeout_is_the_standard_timeout(executor, gate):
    blocked = executor.submit(wait_for, gate)
    with pytest.raises(cf.TimeoutError):
        blocked.result(timeout=0.1)
    with pytest.raises(TimeoutError):
        blocked.exception(timeout=0.05)
    release(gate)


def test_pending_futures_cancel_running_ones_do_not():
    with veda.VedaExecutor(max_workers=1) as ex:
        gate = threading.Event()
        running = ex.submit(gate.wait, HANG_TIMEOUT)
        pending = ex.submit(square, 4)
        wait_running(running)
        assert not running.cancel()
        assert pending.cancel() and pending.cancelled()
        gate.set()
        assert running.result(timeout=HANG_TIMEOUT) is True


# -- map ------------------------------------------------------------------------


def test_map_yields_results_in_order_like_map(executor):
    assert list(executor.map(square, range(10))) == [x * x for x in range(10)]
    assert list(executor.map(pow, [2, 3, 4], [5, 2])) == [32, 9]
    assert list(executor.map(square, [])) == []
    assert list(executor.map(square, range(1000), chunksize=7)) == [x * x for x in range(1000)]


def test_map_of_many_tiny_items_is_exact(executor):
    items = list(range(20_000))
    assert list(executor.map(abs, items)) == items


def test_map_raises_an_items_exception_after_the_results_before_it(executor):
    results = executor.map(fail_on_three, range(8))
    assert [next(results) for _ in range(3)] == [0, 1, 2]
    with pytest.raises(ValueError, match="item 3 failed") as raised:
        next(results)
    if executor._kind == "process":
        assert "fail_on_three" in raised.value.veda_remote_traceback
    # The standard executors' iterator ends with the error too.
    with pytest.raises(StopIteration):
        next(results)


def test_map_timeout_counts_from_the_call_and_raises_timeout_error(executor, gate):
    results = executor.map(wait_for, [gate, gate], ["a", "b"], timeout=0.3)
    started = time.monotonic()
    with pytest.raises(cf.TimeoutError) as raised:
        next(results)
    assert isinstance(raised.value, veda.TimeoutError)
    assert time.monotonic() - started < HANG_TIMEOUT
    release(gate)


def test_map_submits_the_work_without_iteration(tmp_path, executor):
    paths = [str(tmp_path / f"f{i}") for i in range(10)]
    executor.map(touch, paths)
    executor.shutdown(wait=True)
    assert all(os.path.exists(p) for p in paths)


def test_the_map_iterator_keeps_no_reference_to_yielded_results(executor):
    for obj in executor.map(make_payload, range(10)):
        ref = weakref.ref(obj)
        del obj
        deadline = time.monotonic() + HANG_TIMEOUT
        while ref() is not None and time.monotonic() < deadline:
            gc.collect()
            time.sleep(0.01)
        assert ref() is None


def test_the_executor_keeps_no_reference_to_finished_futures_or_their_calls(executor):
    fut = executor.submit(make_payload, 0)
    result = weakref.ref(fut.result(timeout=HANG_TIMEOUT))
    future = weakref.ref(fut)
    del fut
    deadline = time.monotonic() + HANG_TIMEOUT
    while (result() is not None or future() is not None) and time.monotonic() < deadline:
        gc.collect()
        time.sleep(0.01)
    assert result() is None and future() is None


def test_a_discarded_future_frees_the_callable_it_ran():
    collected = threading.Event()
    payload = Payload()
    weakref.finalize(payload, collected.set)
    with veda.VedaExecutor() as ex:
        ex.submit(lambda p=payload: p)
        del payload
        assert collected.wait(HANG_TIMEOUT)


# -- shutdown ---------------------------------------------------------------------


def test_submit_and_map_after_shutdown_raise_runtime_error(executor):
    executor.shutdown()
    with pytest.raises(RuntimeError, match="after shutdown"):
        executor.submit(square, 2)
    with pytest.raises(RuntimeError, match="after shutdown"):
        executor.map(square, [1])
    executor.shutdown()  # idempotent


def test_the_with_block_waits_for_every_call(tmp_path, executor):
    paths = [str(tmp_path / f"w{i}") for i in range(6)]
    with executor:
        for path in paths:
            executor.submit(touch, path)
    assert all(os.path.exists(p) for p in paths)


@pytest.mark.parametrize("kind", KINDS)
def test_shutdown_cancel_futures_cancels_the_pending_calls(kind, gate):
    ex = veda.VedaExecutor(kind, max_workers=1)
    blocked = ex.submit(wait_for, gate, "done")
    wait_running(blocked)
    queued = [ex.submit(square, i) for i in range(6)]
    ex.shutdown(wait=False, cancel_futures=True)
    release(gate)
    assert blocked.result(timeout=HANG_TIMEOUT) == "done"
    cancelled = [f for f in queued if f.cancelled()]
    # At most one call besides the running one may have left for the pool.
    assert len(cancelled) >= len(queued) - 1
    for f in queued:
        if not f.cancelled():
            assert f.result(timeout=HANG_TIMEOUT) in {x * x for x in range(6)}


def test_shutdown_cancel_futures_stops_a_maps_remaining_work(gate):
    ex = veda.VedaExecutor(max_workers=1)
    results = ex.map(wait_for, [gate] * 50, range(50))
    time.sleep(0.05)
    ex.shutdown(wait=False, cancel_futures=True)
    release(gate)
    got = []
    with pytest.raises(cf.CancelledError):
        for value in results:
            got.append(value)
    assert got == list(range(len(got))) and len(got) < 50
    ex.shutdown(wait=True)


# -- worker processes ---------------------------------------------------------------


def test_a_dead_worker_breaks_its_call_not_the_executor():
    with veda.VedaExecutor("process") as ex:
        error = ex.submit(exit_now, 7).exception(timeout=HANG_TIMEOUT)
        assert isinstance(error, veda.BrokenProcessPoolError)
        assert isinstance(error, cf.process.BrokenProcessPool)
        assert isinstance(error, cf.BrokenExecutor)
        assert isinstance(error.__cause__, veda.WorkerCrashedError)
        assert error.__cause__.exit_code == 7
        assert "exit_now" in str(error)
        # The pool replaced the worker: the executor goes on.
        assert ex.submit(square, 5).result(timeout=HANG_TIMEOUT) == 25
        results = ex.map(exit_now, [9])
        with pytest.raises(cf.BrokenExecutor) as raised:
            next(results)
        assert isinstance(raised.value.__cause__, veda.WorkerCrashedError)


def test_calls_that_do_not_pickle_name_the_culprit():
    with veda.VedaExecutor("process") as ex:
        with pytest.raises(TypeError, match="argument 0"):
            ex.submit(square, threading.Lock())
        local = 3
        # Closures travel by value (cloudpickle).
        assert ex.submit(lambda x: x + local, 1).result(timeout=HANG_TIMEOUT) == 4


def test_a_function_submitted_again_runs_from_a_context_and_stays_right():
    with veda.VedaExecutor("process") as ex:
        futures = [ex.submit(square, i) for i in range(200)]
        assert [f.result(timeout=HANG_TIMEOUT) for f in futures] == [i * i for i in range(200)]


@pytest.mark.parametrize("kind", KINDS)
def test_an_executor_outlives_a_vedart_shutdown(kind):
    ex = veda.VedaExecutor(kind)
    try:
        assert ex.submit(square, 3).result(timeout=HANG_TIMEOUT) == 9
        veda.shutdown()
        # The next call goes to the runtime (or process pool) started after it.
        assert ex.submit(square, 4).result(timeout=HANG_TIMEOUT) == 16
        assert list(ex.map(square, range(5))) == [0, 1, 4, 9, 16]
    finally:
        ex.shutdown()


def test_take_completed_hands_over_every_resolved_call_once():
    pool = _process.get_pool(_process.ProcessExecutor(veda.get_runtime()).workers)
    with pytest.raises(ValueError, match="completions=True"):
        pool.batch().take_completed(0)
    batch = pool.batch(completions=True)
    assert batch.take_completed(0.01) == []
    # A request without a context carries its plan: here square(i).
    calls = [batch.submit(_process._dumps((("call", square), i)), None) for i in range(6)]
    taken = []
    deadline = time.monotonic() + HANG_TIMEOUT
    while len(taken) < len(calls) and time.monotonic() < deadline:
        taken += batch.take_completed(0.1)
    assert sorted(call.index for call in taken) == [call.index for call in calls]
    assert all(call.outcome()[0] == "ok" for call in taken)
    assert batch.take_completed(0.01) == [] and batch.failures() == []


# -- own pools, initializer, names ---------------------------------------------------


def test_max_workers_bounds_the_calls_running_at_once():
    lock = threading.Lock()
    running = [0, 0]

    def probe():
        with lock:
            running[0] += 1
            running[1] = max(running[1], running[0])
        time.sleep(0.02)
        with lock:
            running[0] -= 1

    with veda.VedaExecutor(max_workers=3) as ex:
        for f in [ex.submit(probe) for _ in range(24)]:
            f.result(timeout=HANG_TIMEOUT)
    assert 1 <= running[1] <= 3


def test_thread_initializer_and_names():
    seen = []
    with veda.VedaExecutor(
        max_workers=2, initializer=seen.append, initargs=("ready",), thread_name_prefix="io"
    ) as ex:
        names = {f.result() for f in [ex.submit(lambda: threading.current_thread().name)
                                      for _ in range(20)]}
    assert names and all(name.startswith("io_") for name in names)
    assert seen == ["ready"] * len(seen) and 1 <= len(seen) <= 2


def test_process_initializer_runs_in_each_worker_before_its_calls():
    with veda.VedaExecutor("process", max_workers=2, initializer=remember_init, initargs=("x",)) as ex:
        states = [f.result(timeout=HANG_TIMEOUT) for f in [ex.submit(init_state, i) for i in range(8)]]
        assert all(tag == "x" for tag, _ in states)
        assert list(ex.map(init_state, range(4)))[0][0] == "x"
    assert "tag" not in INIT_STATE  # it ran in the workers, not here


@pytest.mark.parametrize("kind", KINDS)
def test_a_failing_initializer_breaks_the_executor(kind):
    ex = veda.VedaExecutor(kind, max_workers=1, initializer=broken_initializer)
    try:
        error = ex.submit(square, 2).exception(timeout=HANG_TIMEOUT)
        expected = veda.BrokenThreadPoolError if kind == "thread" else veda.BrokenProcessPoolError
        assert isinstance(error, expected) and isinstance(error, cf.BrokenExecutor)
        assert isinstance(error.__cause__, OSError)
        assert "no database here" in str(error)
        with pytest.raises(expected):
            ex.submit(square, 3)
    finally:
        ex.shutdown(wait=True)


def test_arguments_are_checked():
    with pytest.raises(ValueError, match="'thread', 'process', 'auto'"):
        veda.VedaExecutor("spark")
    with pytest.raises(ValueError, match="max_workers"):
        veda.VedaExecutor(max_workers=0)
    with pytest.raises(TypeError, match="max_workers=8"):
        veda.VedaExecutor(8)  # ThreadPoolExecutor's first argument
    with pytest.raises(ValueError, match="auto"):
        veda.VedaExecutor("auto", max_workers=2)
    with pytest.raises(TypeError, match="initializer"):
        veda.VedaExecutor(initializer=3)
    with veda.VedaExecutor() as ex:
        with pytest.raises(ValueError, match="chunksize"):
            ex.map(square, [1], chunksize=0)
        with pytest.raises(TypeError):
            ex.submit(3)


def test_auto_submits_to_threads_and_maps_like_par_iter():
    with veda.VedaExecutor("auto") as ex:
        assert isinstance(ex, cf.ThreadPoolExecutor)
        assert ex.submit(square, 6).result(timeout=HANG_TIMEOUT) == 36
        assert list(ex.map(square, range(100))) == [x * x for x in range(100)]


# -- asyncio ------------------------------------------------------------------------


def test_asyncio_runs_its_default_executor_calls_on_vedart():
    async def main():
        loop = asyncio.get_running_loop()
        ex = veda.VedaExecutor()
        loop.set_default_executor(ex)
        name = await loop.run_in_executor(None, veda._vedart.thread_name)
        threaded = await asyncio.to_thread(veda._vedart.thread_name)
        wrapped = await asyncio.wrap_future(ex.submit(square, 9))
        awaited = await ex.submit(square, 10)
        return name, threaded, wrapped, awaited

    name, threaded, wrapped, awaited = asyncio.run(main())
    assert name.startswith("veda-") and threaded.startswith("veda-")
    assert (wrapped, awaited) == (81, 100)


def test_ctrl_c_in_result_interrupts_the_wait_only():
    # Waiting is interruptible, and an interrupted wait cancels nothing: the
    # call and the executor's other calls run on (as with the standard ones).
    result = run_python(
        """
        import os, signal, threading, time, vedart as veda
        ex = veda.VedaExecutor(max_workers=1)
        slow = ex.submit(time.sleep, 1.0)
        queued = ex.submit(pow, 2, 8)
        threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()
        started = time.monotonic()
        try:
            slow.result()
        except KeyboardInterrupt:
            print("interrupted after", round(time.monotonic() - started, 1))
        print("queued", queued.result(), "slow", slow.result())
        ex.shutdown()
        """
    )
    assert result.returncode == 0, result.stderr
    assert "interrupted after" in result.stdout
    assert "queued 256 slow None" in result.stdout


def test_a_forked_child_exits_without_waiting_for_the_parents_executors():
    result = run_python(
        """
        import os, vedart as veda
        ex = veda.VedaExecutor("process")
        ex.submit(pow, 2, 3).result()
        ex.submit(__import__("time").sleep, 30)
        pid = os.fork()
        if pid == 0:
            raise SystemExit(0)  # a normal exit, with the atexit hooks
        _, status = os.waitpid(pid, 0)
        print("child", os.waitstatus_to_exitcode(status))
        ex.shutdown(cancel_futures=True, wait=False)
        ex._abort()
        """,
        timeout=20,
    )
    assert result.returncode == 0, result.stderr
    assert "child 0" in result.stdout


def test_work_submitted_before_exit_completes(tmp_path):
    path = tmp_path / "late"
    result = run_python(
        f"""
        import time, vedart as veda
        def late(path):
            time.sleep(0.5)
            open(path, "w").close()
        ex = veda.VedaExecutor("process")
        ex.submit(late, {str(path)!r})
        ex2 = veda.VedaExecutor()
        ex2.submit(late, {str(path) + "-thread"!r})
        """
    )
    assert result.returncode == 0, result.stderr
    assert path.exists() and os.path.exists(str(path) + "-thread")

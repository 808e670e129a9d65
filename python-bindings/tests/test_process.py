"""The process executor: results, memory model, errors, crashes, cancellation,
the worker protocol, and the pool's life."""

from __future__ import annotations

import asyncio
import os
import pickle
import signal
import struct
import subprocess
import sys
import threading
import time

import pytest
from conftest import HANG_TIMEOUT, run_python

import vedart as veda
from vedart import _process, _stages

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the process pool needs Linux")


def square(x):
    return x * x


class ParseError(Exception):
    """An exception whose __init__ does not take its args back."""

    def __init__(self, item, reason):
        super().__init__(f"cannot parse {item}: {reason}")
        self.item = item
        self.reason = reason


def parse(x):
    if x == 7:
        raise ParseError(x, "seven")
    return x


def processes(**kwargs):
    return veda.par_iter(kwargs.pop("items", range(100)), executor="process", **kwargs)


def children_of(pid):
    """``(pid, state)`` of every process whose parent is ``pid``."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append((int(entry), fields[0]))
    return out


def wait_until(predicate, timeout=HANG_TIMEOUT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


# -- results ----------------------------------------------------------------------


def test_results_match_serial_for_every_terminal_operation():
    data = list(range(500))
    assert processes(items=data).map(square).collect() == [x * x for x in data]
    offset = 3
    assert processes(items=data).map(lambda x: x + offset).filter(lambda x: x % 2).sum() == sum(
        x + offset for x in data if (x + offset) % 2
    )
    assert processes(items=data).flat_map(lambda x: [x, x]).count() == 1000
    assert processes(items=data).min(key=lambda x: -x) == 499
    assert processes(items=data).max() == 499
    assert processes(items=data).reduce(lambda a, b: a + b) == sum(data)
    folded = processes(items=data).fold(list, lambda acc, x: acc + [x], lambda a, b: a + b)
    assert folded == data
    assert processes(items=data).any(lambda x: x == 250)
    assert not processes(items=data).all(lambda x: x < 250)
    assert processes(items=data).to_dict(lambda x: x % 7) == {x % 7: x for x in data}
    assert processes(items=data).to_dict(str, square) == {str(x): x * x for x in data}
    assert processes(items=[]).map(square).sum(10) == 10
    assert processes(items=[]).map(square).min(default="none") == "none"
    assert processes(items=["a", "b", "c"]).map(str.upper).sum("") == "ABC"


def test_closures_and_lambdas_load_in_a_fresh_child_without_cloudpickle():
    # A function sent by value is rebuilt by vedart._worker from its marshalled
    # code (nothing of cloudpickle's): a child does not import cloudpickle (tens
    # of ms at start-up) for lambdas and closures.
    _process.shutdown_pool()
    offset = 10

    def make(scale):
        def scaled(x):
            import math

            return math.floor(x * scale) + offset

        return scaled

    assert processes(items=range(5)).map(make(2)).collect() == [10, 12, 14, 16, 18]
    loaded = processes(items=range(4)).map(lambda _: "cloudpickle" in sys.modules).collect()
    assert loaded == [False] * 4


def test_functions_sent_by_value_need_nothing_private_of_cloudpickle(monkeypatch):
    # What a cloudpickle upgrade may rename or reshape: the workers must not
    # depend on it (they used to run copies of cloudpickle 3.x's functions).
    import cloudpickle

    for name in (
        "_make_function",
        "_function_setstate",
        "_function_getstate",
        "_make_empty_cell",
        "_make_cell",
        "_code_reduce",
        "_dynamic_function_reduce",
        "subimport",
        "_builtin_type",
    ):
        monkeypatch.delattr(cloudpickle.cloudpickle, name, raising=False)
    monkeypatch.setattr(_process, "_pickler_class", None)
    _process.shutdown_pool()
    offset = 3
    assert processes(items=range(4)).map(lambda x: x + offset).collect() == [3, 4, 5, 6]
    loaded = processes(items=range(2)).map(lambda _: "cloudpickle" in sys.modules).collect()
    assert loaded == [False] * 2
    _process.shutdown_pool()


def test_functions_of_main_sent_by_value_keep_what_makes_them_work():
    # Functions of __main__ are sent by value: recursion through the globals,
    # keyword defaults, attributes, docstrings, closures (a cell filled after
    # the function was made), modules they name, and a class of __main__
    # (cloudpickle's, imported by the child for it alone).
    code = """
    import math, sys
    import vedart as veda

    def factorial(n):
        \"\"\"n!\"\"\"
        return 1 if n < 2 else n * factorial(n - 1)

    factorial.tag = "marked"

    def scaled(x, *, by=3):
        return math.floor(x * by)

    class Point:
        def __init__(self, x):
            self.x = x

    def make():
        def later():
            return value
        value = 7
        return later

    later = make()

    def check(n):
        return (factorial(n), factorial.__doc__, factorial.tag, scaled(n), later(),
                "cloudpickle" in sys.modules)

    def check_class(n):
        return Point(n).x, "cloudpickle" in sys.modules

    run = veda.par_iter([5], executor="process")
    print(run.map(check).collect())
    print(veda.par_iter([2], executor="process").map(check_class).collect())
    """
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    functions, classes = result.stdout.strip().splitlines()
    assert functions == "[(120, 'n!', 'marked', 15, 7, False)]"
    assert classes == "[(2, True)]"


def test_the_work_runs_in_other_processes_and_the_pool_stays_warm():
    pids = set(processes().map(lambda _: os.getpid()).collect())
    assert os.getpid() not in pids
    assert 1 <= len(pids) <= veda.get_runtime().config.num_processes
    again = set(processes().map(lambda _: os.getpid()).collect())
    assert again <= set(_process.current_pool().pids())


def test_side_effects_in_a_child_never_reach_the_parent():
    seen = []

    def record(x):
        seen.append(x)
        os.environ["VEDART_TEST_EFFECT"] = "set in a child"
        return x

    assert processes(items=range(50)).map(record).collect() == list(range(50))
    assert seen == []
    assert "VEDART_TEST_EFFECT" not in os.environ


def test_children_get_the_parents_path_and_capped_numeric_threads():
    path, omp, marker = (
        processes(items=[0])
        .map(
            lambda _: (sys.path, os.environ.get("OMP_NUM_THREADS"), os.environ.get("VEDART_WORKER"))
        )
        .collect()[0]
    )
    assert [p for p in path if p] == [p for p in sys.path if p]
    assert omp is not None and int(omp) >= 1
    assert marker == "1"


def test_printing_in_a_child_does_not_corrupt_the_stream():
    def noisy(x):
        print("noise on stdout", x)
        os.write(1, b"raw bytes on fd 1\n")
        return x * 3

    assert processes(items=range(30)).map(noisy).collect() == [x * 3 for x in range(30)]


def test_numpy_arrays_travel_both_ways():
    np = pytest.importorskip("numpy")
    arrays = [np.arange(1000) * i for i in range(20)]
    sums = processes(items=arrays).map(lambda a: a * 2).collect()
    assert all((got == a * 2).all() for got, a in zip(sums, arrays))


def test_chunks_grow_with_cheap_items():
    pool = _process.get_pool(veda.get_runtime().config.num_processes)
    before = pool.stats()["calls_ok"]
    assert processes(items=range(20_000)).map(lambda x: x + 1).sum() == sum(range(1, 20_001))
    calls = pool.stats()["calls_ok"] - before
    # Adaptive chunks: far fewer calls than items (about a dozen here).
    assert calls < 200


def test_vedart_inside_a_child_uses_threads_not_more_processes():
    def nested(x):
        import vedart

        explanation = vedart.par_iter(range(3)).map(abs)
        total = explanation.sum()
        return total, explanation.explain().executor

    results = processes(items=range(2)).map(nested).collect()
    assert [total for total, _ in results] == [3, 3]
    assert all(executor != "process" for _, executor in results)


def test_awaiting_a_process_pipeline():
    async def main():
        return await processes(items=range(20)).map(square).collect()

    assert asyncio.run(main()) == [x * x for x in range(20)]


# -- errors -----------------------------------------------------------------------


def test_an_exception_keeps_its_type_message_attributes_and_remote_traceback():
    with pytest.raises(ParseError) as info:
        processes(items=range(20)).map(parse).collect()
    assert info.value.item == 7 and info.value.reason == "seven"
    assert str(info.value) == "cannot parse 7: seven"
    text = info.value.veda_remote_traceback
    assert "in parse" in text and 'raise ParseError(x, "seven")' in text
    assert __file__ in text
    notes = getattr(info.value, "__notes__", [])
    assert any("raised in worker process" in note and "in parse" in note for note in notes)


def test_exception_classes_defined_in_a_function_come_back_as_themselves():
    class LocalError(LookupError):
        pass

    def fails(x):
        if x == 3:
            raise LocalError("local")
        return x

    with pytest.raises(LocalError, match="local"):
        processes(items=range(10)).map(fails).collect()


def test_an_unpicklable_callable_is_named_before_anything_runs():
    lock = threading.Lock()

    def holds_a_lock(x):
        return lock, x

    with pytest.raises(TypeError, match="holds_a_lock.*cannot be sent to a worker process"):
        processes().map(holds_a_lock).collect()


def test_an_unpicklable_item_is_named_with_its_position():
    items = [1, 2, threading.Lock(), 4]
    with pytest.raises(TypeError, match=r"item 2 of the input \(<unlocked _thread.lock"):
        processes(items=items).map(lambda x: x).collect()


def test_an_unpicklable_result_is_reported():
    with pytest.raises(TypeError, match="cannot be sent back from the worker process"):
        processes(items=range(3)).map(lambda _: threading.Lock()).collect()


def test_a_child_that_exits_raises_worker_crashed_and_the_next_call_works():
    started = time.monotonic()
    with pytest.raises(veda.WorkerCrashedError) as info:
        processes(items=range(10)).map(lambda x: os._exit(3) if x == 4 else x).collect()
    assert time.monotonic() - started < HANG_TIMEOUT
    error = info.value
    assert isinstance(error, veda.VedaError)
    assert error.exit_code == 3 and error.signal is None
    assert error.pid is not None and str(error.pid) in str(error)
    assert "exited with status 3" in str(error)
    assert processes(items=range(10)).map(square).collect() == [x * x for x in range(10)]


def test_a_child_killed_by_a_signal_names_it_and_its_last_stderr_lines():
    def dies(x):
        if x == 2:
            print("about to die", file=sys.stderr, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        return x

    with pytest.raises(veda.WorkerCrashedError) as info:
        processes(items=range(6)).map(dies).collect()
    assert info.value.signal == signal.SIGKILL and info.value.exit_code is None
    assert "signal 9" in str(info.value)
    assert any("about to die" in line for line in info.value.stderr_tail)
    crashed = pickle.loads(pickle.dumps(info.value))
    assert crashed.signal == signal.SIGKILL and crashed.pid == info.value.pid
    assert processes(items=range(6)).map(square).sum() == 55


# -- cancellation -----------------------------------------------------------------


def test_a_failure_terminates_the_children_working_on_the_job():
    def work(x):
        if x == 0:
            time.sleep(0.3)
            raise ValueError("first")
        time.sleep(120)
        return x

    pool = _process.get_pool(veda.get_runtime().config.num_processes)
    started = time.monotonic()
    with pytest.raises(ValueError, match="first"):
        processes(items=range(pool.workers + 2), chunk_size=1).map(work).collect()
    assert time.monotonic() - started < HANG_TIMEOUT
    # The sleepers were terminated and replaced; no zombie is left behind.
    assert wait_until(lambda: all(state != "Z" for _, state in children_of(os.getpid())))
    assert processes(items=range(4)).map(square).collect() == [0, 1, 4, 9]


def test_an_early_stop_lets_short_chunks_finish_instead_of_killing_children():
    processes(items=range(8)).map(square).collect()  # warm
    pids = set(_process.current_pool().pids())
    # (a filter keeps take() from being pushed down to the source)
    early = processes(items=range(10_000)).map(square).filter(lambda _: True).take(3)
    assert early.collect() == [0, 1, 4]
    assert processes(items=range(10_000)).any(lambda x: x == 5)
    time.sleep(0.2)
    assert set(_process.current_pool().pids()) == pids


def test_cancelling_the_awaiting_task_terminates_the_children():
    processes(items=range(8)).map(square).collect()  # warm
    old = set(_process.current_pool().pids())

    def slow(x):
        time.sleep(120)
        return x

    async def main():
        task = asyncio.ensure_future(processes(items=range(4), chunk_size=1).map(slow).collect())
        await asyncio.sleep(0.5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    started = time.monotonic()
    asyncio.run(main())
    assert time.monotonic() - started < HANG_TIMEOUT
    assert wait_until(lambda: not (set(_process.current_pool().pids()) & old))


def test_ctrl_c_terminates_the_children_and_none_outlive_the_interpreter():
    code = """
        import os, signal, threading, time
        import vedart as veda
        from vedart import _process

        veda.par_iter(range(4), executor="process").map(abs).collect()
        first = _process.current_pool().pids()
        print("FIRST", *first, flush=True)

        def slow(x):
            time.sleep(120)

        threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
        started = time.monotonic()
        try:
            veda.par_iter(range(8), executor="process", chunk_size=1).map(slow).collect()
        except KeyboardInterrupt:
            print("INTERRUPTED", round(time.monotonic() - started, 2), flush=True)
        deadline = time.monotonic() + 30
        while any(os.path.exists(f"/proc/{p}") for p in first) and time.monotonic() < deadline:
            time.sleep(0.05)
        print("GONE", not any(os.path.exists(f"/proc/{p}") for p in first), flush=True)
        pool = _process.current_pool()
        while len(pool.pids()) < pool.workers and time.monotonic() < deadline:
            time.sleep(0.05)
        print("LAST", *pool.pids(), flush=True)
    """
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    lines = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines()}
    assert "INTERRUPTED" in lines, result.stdout + result.stderr
    assert lines["GONE"] == ["True"]
    # The interpreter exited: the children of its pool exited with it.
    last = [int(pid) for pid in lines["LAST"]]
    assert last and wait_until(lambda: not any(os.path.exists(f"/proc/{p}") for p in last))


# -- the pool and the worker --------------------------------------------------------


def test_the_pool_can_be_shut_down_and_restarts_on_next_use():
    processes(items=range(4)).map(square).collect()
    old = set(_process.current_pool().pids())
    _process.shutdown_pool()
    assert _process.current_pool() is None
    assert wait_until(lambda: not any(os.path.exists(f"/proc/{p}") for p in old))
    assert processes(items=range(4)).map(square).collect() == [0, 1, 4, 9]
    assert not set(_process.current_pool().pids()) & old


def test_pool_stats_count_children_and_calls():
    processes(items=range(100)).map(square).collect()
    stats = _process.current_pool().stats()
    assert stats["calls_ok"] > 0 and stats["bytes_sent"] > 0 and stats["bytes_received"] > 0
    assert {w["state"] for w in stats["workers"]} <= {"live", "retiring", "terminating"}
    assert all(w["pid"] > 0 for w in stats["workers"])


def _frame(kind, frame_id, payload):
    return struct.pack("<IQB", len(payload), frame_id, kind) + payload


def _read_frame(stream):
    length, frame_id, kind = struct.unpack("<IQB", stream.read(13))
    return frame_id, kind, stream.read(length)


def _worker_process():
    env = dict(os.environ)
    env["VEDART_WORKER_SYS_PATH"] = os.pathsep.join(p for p in sys.path if p)
    program, args = _process.worker_command()
    return subprocess.Popen(
        [program, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )


def test_the_worker_speaks_the_frame_protocol_and_exits_0_at_eof():
    child = _worker_process()
    plan = _process.dumps_plan(("chain", (("map", square),), ("sum",)))
    child.stdin.write(_frame(4, 5, b"\x01" + plan))  # Control/Install, context 5
    child.stdin.write(_frame(1, 11, struct.pack("<Q", 5) + pickle.dumps([1, 2, 3])))
    child.stdin.write(_frame(1, 12, struct.pack("<Q", 5) + pickle.dumps([])))
    child.stdin.write(_frame(1, 13, struct.pack("<Q", 5) + pickle.dumps(["x"])))
    child.stdin.flush()
    # Each request is acknowledged (Started) before it runs, then answered.
    assert _read_frame(child.stdout) == (11, 5, b"")
    frame_id, kind, payload = _read_frame(child.stdout)
    assert (frame_id, kind) == (11, 2)
    assert _process.decode_answer(payload)[0] == 14
    assert _read_frame(child.stdout) == (12, 5, b"")
    frame_id, kind, payload = _read_frame(child.stdout)
    assert (frame_id, kind) == (12, 2)
    assert _process.decode_answer(payload)[0] is _stages._MISSING
    assert _read_frame(child.stdout) == (13, 5, b"")
    frame_id, kind, payload = _read_frame(child.stdout)
    assert (frame_id, kind) == (13, 3)
    error = _process.remote_error(payload, child.pid)
    assert isinstance(error, TypeError)
    child.stdin.close()
    assert child.wait(HANG_TIMEOUT) == 0
    assert child.stdout.read() == b""


def test_worker_command_runs_the_worker_file_without_importing_the_package():
    program, args = _process.worker_command()
    assert program == sys.executable
    assert args[-1].endswith("_worker.py") or args == ["-m", "vedart._worker"]
    code = (
        "import runpy, sys; sys.argv = [sys.argv[1]]; "
        "runpy.run_path(sys.argv[0], run_name='not_main'); "
        "print('vedart' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, args[-1]], capture_output=True, text=True, timeout=60
    )
    assert result.stdout.strip() == "False", result.stderr


def test_shutdown_stops_the_worker_processes_and_the_next_map_starts_new_ones():
    assert veda.par_iter(range(8), executor="process").map(abs).collect() == list(range(8))
    old = set(_process.get_pool(veda.get_runtime().config.num_processes).pids())
    veda.shutdown()
    assert wait_until(lambda: not any(os.path.exists(f"/proc/{p}") for p in old))
    assert veda.par_iter(range(4), executor="process").map(abs).collect() == [0, 1, 2, 3]
    new = set(_process.get_pool(veda.get_runtime().config.num_processes).pids())
    assert new and not old & new

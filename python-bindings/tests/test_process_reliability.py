"""The process executor's reliability rules: one report per worker death,
chunks that run at most once, retries, payloads of any size, per-call
timeouts."""

from __future__ import annotations

import concurrent.futures
import os
import signal
import sys
import threading
import time

import pytest
from conftest import process_running, run_python

import vedart as veda
from vedart import _process

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the process pool needs Linux")


def crash_first(x):
    """Chunk 0 kills its worker after the chunks behind it were queued there."""
    if x == 0:
        time.sleep(0.3)
        os._exit(7)
    return x


# -- one death, one report ----------------------------------------------------------


@pytest.mark.timeout(60)
def test_one_worker_death_is_reported_once_with_the_chunks_it_took_down(runtime_config):
    runtime_config(veda.Config(num_processes=1))
    with pytest.raises(veda.WorkerCrashedError) as info:
        veda.par_iter(range(8), chunk_size=1, executor="process").map(crash_first).collect()
    error = info.value
    assert error.exit_code == 7
    assert 0 in error.chunks
    assert "chunk" in str(error)
    others = getattr(error, "veda_other_errors", [])
    crashes = [e for e in others if isinstance(e, veda.WorkerCrashedError)]
    assert crashes == [], f"the death was reported {1 + len(crashes)} times"
    # The report survives pickling, chunks included.
    import pickle

    again = pickle.loads(pickle.dumps(error))
    assert again.chunks == error.chunks and again.pid == error.pid
    assert veda.par_iter(range(4), executor="process").map(abs).collect() == [0, 1, 2, 3]


# -- at most once ---------------------------------------------------------------------


def _appender(log):
    """Pipeline B: each item leaves a line, then takes a while, so that other
    pipelines' chunks queue behind it."""

    def work(x):
        with open(log, "a") as f:
            f.write(f"{x}\n")
        time.sleep(0.2)
        return x

    return work


def _sleeps(x):
    """Pipeline A's items: long enough to be running, or queued behind
    pipeline B's chunks, when A is cancelled."""
    time.sleep(0.1)
    return x


def _lines(path):
    with open(path) as f:
        return [int(line) for line in f.read().split()]


def _cancelled_soon(pause):
    """Runs pipeline A as a task, cancels it after ``pause`` seconds, and
    waits for it to end."""
    future = veda.spawn(
        lambda: veda.par_iter(range(6), chunk_size=1, executor="process").map(_sleeps).collect()
    )
    time.sleep(pause)
    if future.cancel():
        return False  # it had not started
    try:
        future.result(timeout=60)
    except concurrent.futures.CancelledError:
        # veda.CancelledError when the pipeline saw the request, or the bare
        # one when the task had been claimed but not begun: it never runs.
        return True
    return False


@pytest.mark.timeout(60)
def test_cancelling_a_pipeline_never_runs_another_pipelines_chunk_again(runtime_config, tmp_path):
    runtime_config(veda.Config(num_processes=1))
    veda.par_iter(range(2), executor="process").map(abs).collect()  # a warm worker
    log = tmp_path / "b.log"
    results = []
    b = threading.Thread(
        target=lambda: results.append(
            veda.par_iter(range(6), chunk_size=1, executor="process")
            .map(_appender(str(log)))
            .collect()
        )
    )
    b.start()
    time.sleep(0.1)  # B's first chunk runs, A's chunks queue behind it on the one worker
    assert _cancelled_soon(0.05)
    b.join(60)
    assert results == [list(range(6))]
    assert sorted(_lines(log)) == list(range(6)), "a chunk of B ran twice"


@pytest.mark.timeout(180)
def test_chunks_run_exactly_once_while_other_pipelines_on_the_pool_are_cancelled(
    runtime_config, tmp_path
):
    import random

    runtime_config(veda.Config(num_processes=2))
    log = tmp_path / "b.log"
    stop = threading.Event()
    cancellations = []

    def cancel_pipelines(seed):
        pauses = random.Random(seed)
        while not stop.is_set():
            cancellations.append(_cancelled_soon(pauses.uniform(0.0, 0.3)))

    threads = [threading.Thread(target=cancel_pipelines, args=(seed,)) for seed in range(2)]
    for thread in threads:
        thread.start()
    try:
        items = range(40)
        result = (
            veda.par_iter(items, chunk_size=1, executor="process").map(_appender(log)).collect()
        )
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
    assert result == list(items)
    assert sum(cancellations) >= 3, "the other pipelines were hardly cancelled"
    ran = _lines(log)
    twice = sorted({x for x in ran if ran.count(x) > 1})
    assert twice == [], f"items ran more than once: {twice}"
    assert sorted(ran) == list(items)


def _dies_once(log, marker):
    def work(x):
        with open(log, "a") as f:
            f.write(f"{x}\n")
        if x == 3 and not os.path.exists(marker):
            open(marker, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)
        return x

    return work


@pytest.mark.timeout(60)
@pytest.mark.parametrize("retries", [0, 1])
def test_a_chunk_whose_worker_is_killed_runs_again_only_with_retries(
    runtime_config, tmp_path, retries
):
    runtime_config(veda.Config(num_processes=2, retries=retries))
    log, marker = tmp_path / "ran.log", tmp_path / "died"
    pipeline = veda.par_iter(range(8), chunk_size=1, executor="process").map(
        _dies_once(str(log), str(marker))
    )
    if retries == 0:
        with pytest.raises(veda.WorkerCrashedError) as info:
            pipeline.collect()
        assert info.value.signal == signal.SIGKILL
        assert _lines(log).count(3) == 1
    else:
        assert pipeline.collect() == list(range(8))
        ran = _lines(log)
        assert ran.count(3) == 2
        assert all(ran.count(x) == 1 for x in range(8) if x != 3)


def test_retries_is_validated():
    with pytest.raises(veda.ConfigError, match="retries"):
        veda.Config(retries=-1)
    with pytest.raises(veda.ConfigError, match="retries"):
        veda.Config(retries=1.5)
    assert veda.Config.builder().retries(2).build().retries == 2


# A worker that acknowledges each request and runs it on a thread of its own, so
# that two requests can be running on one child at once. Requests are
# ``[context id: 8 bytes][seconds to sleep]``.
CONCURRENT_WORKER = """
import os, struct, sys, threading, time
HEADER = struct.Struct("<IQB")
lock = threading.Lock()

def write(frame_id, kind, payload=b""):
    with lock:
        os.write(1, HEADER.pack(len(payload), frame_id, kind) + payload)

def run(frame_id, seconds):
    time.sleep(seconds)
    write(frame_id, 2, b"done")

stdin = sys.stdin.buffer
while True:
    head = stdin.read(13)
    if len(head) < 13:
        break
    length, frame_id, kind = HEADER.unpack(head)
    payload = stdin.read(length)
    if kind == 1:
        write(frame_id, 5)
        threading.Thread(target=run, args=(frame_id, float(payload[8:])), daemon=True).start()
"""


@pytest.mark.timeout(60)
def test_a_started_chunk_on_a_worker_killed_for_another_cancellation_is_interrupted(tmp_path):
    from vedart import _vedart

    script = tmp_path / "worker.py"
    script.write_text(CONCURRENT_WORKER)
    pool = _vedart.ProcessPool(sys.executable, [str(script)], [], 1, 0.2)
    try:
        batch = pool.batch()
        once = batch.submit(b"30", None)
        again = batch.submit(b"0.5", None, retries=1)
        other = pool.batch()
        victim = other.submit(b"30", None)
        time.sleep(0.5)  # every request is acknowledged by now
        victim.cancel()
        assert batch.wait(once, False, 20) == "finished"
        assert once.outcome()[0] == "interrupted"
        error = _process.outcome_error(once.outcome())
        assert isinstance(error, veda.ChunkInterruptedError)
        assert isinstance(error, veda.ExecutorError)
        assert error.pid == once.outcome()[2] and "at most once" in str(error)
        # The call that allows a retry ran again on the replacement.
        assert batch.wait(again, False, 20) == "finished"
        assert again.outcome() == ("ok", b"done")
        (reported,) = _process.failure_errors([once])
        assert reported.chunks == (once.index,)
    finally:
        pool.close()


# -- payloads of any size -----------------------------------------------------------


def _mebibyte(_):
    return bytes(1 << 20)


@pytest.mark.timeout(300)
def test_two_thousand_results_of_a_mebibyte_each_cross_in_chunks_sized_by_bytes():
    pool = _process.get_pool(veda.get_runtime().config.num_processes)
    before = pool.stats()["calls_ok"]
    count = 0
    for result in veda.par_iter(range(2000), executor="process").map(_mebibyte):
        assert len(result) == 1 << 20
        count += 1
    assert count == 2000
    calls = _process.current_pool().stats()["calls_ok"] - before
    # Chunks move at most about TARGET_CHUNK_BYTES (16 MiB), however cheap the
    # items: 2 GiB takes well over a hundred chunks.
    assert calls >= 2000 // 32, f"{calls} chunks"


@pytest.mark.timeout(300)
def test_a_result_of_300_mb_arrives_whole_without_extra_copies():
    result = run_python(
        """
        import resource
        import vedart as veda

        def big(_):
            return b"x" * 300_000_000

        veda.par_iter(range(2), executor="process").map(abs).collect()  # a warm pool
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        (value,) = veda.par_iter([0], executor="process").map(big).collect()
        assert len(value) == 300_000_000 and value[:1] == b"x" and value[-1:] == b"x"
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
        print("PEAK_MB", peak // 1024)
        """,
        timeout=280,
    )
    assert result.returncode == 0, result.stderr
    peak = int(result.stdout.split("PEAK_MB")[1].split()[0])
    # The answer's bytes and the result: twice the payload, plus noise; a
    # third copy would be 900 MB.
    assert peak < 800, f"the parent's peak grew by {peak} MB"


def _twenty_megabytes(_):
    return bytes(20 << 20)


@pytest.mark.timeout(120)
def test_a_result_over_the_message_limit_names_the_limit_and_keeps_the_worker(runtime_config):
    runtime_config(veda.Config(num_processes=1, max_message_bytes=10 << 20))
    veda.par_iter(range(2), executor="process").map(abs).collect()
    pids = _process.current_pool().pids()
    with pytest.raises(veda.ExecutorError) as info:
        veda.par_iter([0], executor="process").map(_twenty_megabytes).collect()
    text = str(info.value)
    assert "max_message_bytes" in text and str(10 << 20) in text, text
    assert "protocol" not in text
    assert veda.par_iter(range(3), executor="process").map(abs).collect() == [0, 1, 2]
    assert _process.current_pool().pids() == pids


def test_max_message_bytes_is_validated():
    with pytest.raises(veda.ConfigError, match="max_message_bytes"):
        veda.Config(max_message_bytes=0)
    with pytest.raises(veda.ConfigError, match="max_message_bytes"):
        veda.Config(max_message_bytes="1 GB")


def _echo_first(chunk):
    return [len(chunk[0]), chunk[0]]


@pytest.mark.timeout(120)
def test_the_worker_joins_requests_and_splits_answers_longer_than_a_frame():
    from vedart import _vedart

    program, args = _process.worker_command()
    pool = _vedart.ProcessPool(
        program, args, _process.worker_env(1), 1, 1.0, max_frame_size=1 << 20
    )
    try:
        payload = os.urandom(5 << 20)
        request = _process.dumps_chunk((_process.plan_of(_echo_first), [payload]), 0)
        batch = pool.batch()
        call = batch.submit(request, None)
        assert batch.wait(call, False, 60) == "finished"
        outcome = call.outcome()
        assert outcome[0] == "ok", outcome
        value, _ = _process.decode_answer(outcome[1])
        assert value == [len(payload), payload]
    finally:
        pool.close()


# -- per-call timeouts (the binding's API for the timeout= work) -------------------


@pytest.mark.timeout(60)
def test_a_call_past_its_timeout_times_out_and_only_its_worker_is_replaced(tmp_path):
    from vedart import _vedart

    script = tmp_path / "worker.py"
    script.write_text(CONCURRENT_WORKER)
    pool = _vedart.ProcessPool(sys.executable, [str(script)], [], 2, 0.2)
    try:
        batch = pool.batch()
        slow = batch.submit(b"30", None, timeout=0.5)
        time.sleep(0.2)  # the slow call is on one child: the next one goes to the other
        quick = batch.submit(b"1.5", None)
        started = time.monotonic()
        assert batch.wait(slow, False, 20) == "finished"
        assert time.monotonic() - started < 15
        outcome = slow.outcome()
        assert outcome[0] == "timeout" and outcome[3] == 0.5, outcome
        victim = outcome[2]
        error = _process.outcome_error(outcome)
        assert isinstance(error, veda.TimeoutError) and error.timeout == 0.5
        assert str(victim) in str(error)
        # The other child's call is unaffected.
        assert batch.wait(quick, False, 20) == "finished"
        assert quick.outcome() == ("ok", b"done")
        deadline = time.monotonic() + 10
        while victim in pool.pids() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert victim not in pool.pids()
        with pytest.raises(ValueError, match="timeout"):
            batch.submit(b"0", None, timeout=-1.0)
    finally:
        pool.close()


# -- a parent killed with SIGKILL takes its workers along ---------------------------


@pytest.mark.timeout(90)
def test_workers_exit_when_their_parent_is_killed_with_sigkill():
    import subprocess

    from conftest import HANG_TIMEOUT

    code = (
        "import sys, time\n"
        "import vedart as veda\n"
        "from vedart import _process\n"
        "veda.par_iter(range(40), executor='process').map(abs).collect()\n"
        "print(' '.join(map(str, _process.current_pool().pids())), flush=True)\n"
        # Busy workers: they are not waiting on their pipes, so only the
        # parent-death signal can stop them.
        "veda.par_iter([120] * 8, chunk_size=1, executor='process').map(time.sleep).collect()\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    parent = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        line = parent.stdout.readline()
        pids = [int(pid) for pid in line.split()]
        assert pids, "the parent printed no worker pids"
        time.sleep(1.0)  # the sleeps reach the workers
        parent.kill()  # SIGKILL: no atexit hook, no shutdown
        parent.wait(timeout=HANG_TIMEOUT)
        deadline = time.monotonic() + 20
        alive = pids
        while alive and time.monotonic() < deadline:
            time.sleep(0.05)
            alive = [pid for pid in pids if process_running(pid)]
        assert not alive, f"workers {alive} outlived their parent"
    finally:
        if parent.poll() is None:
            parent.kill()

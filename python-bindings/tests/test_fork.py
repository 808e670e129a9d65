"""Fork safety: a process forked after using VedaRT (``os.fork``,
``multiprocessing``'s ``fork`` start method) can use every executor, and so can
its parent afterwards; Ctrl+C while the process pool starts is prompt.

Every test runs in a fresh interpreter (forking pytest itself would copy its
threads and state), under a watchdog: a child that hangs is killed and dumps
its stacks first.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from conftest import HANG_TIMEOUT, run_python

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")

#: Defines ``use_<executor>()`` for each executor, ``use_all()``, and
#: ``in_child(body)``: fork, run ``body`` in the child under a watchdog, and
#: return the child's exit code (124: it hung).
PRELUDE = """
import asyncio, faulthandler, os, signal, sys, threading, time, warnings
import vedart as veda
from vedart import telemetry

# Python 3.12+ warns that fork() of a threaded process may deadlock the child:
# exactly what these tests check does not happen.
warnings.simplefilter("ignore", DeprecationWarning)
veda.init(veda.Config(num_processes=2))

def sq(x):
    return x * x

async def asq(x):
    await asyncio.sleep(0)
    return x * x

EXPECTED = [x * x for x in range(60)]

def use_thread():
    assert veda.par_iter(range(60), executor="thread").map(sq).collect() == EXPECTED

def use_process():
    assert veda.par_iter(range(60), executor="process").map(sq).collect() == EXPECTED

def use_async_from_sync():
    assert veda.par_iter(range(60)).async_map(asq).collect() == EXPECTED

def use_async_in_asyncio():
    async def main():
        return await veda.par_iter(range(60)).async_map(asq).collect()
    assert asyncio.run(asyncio.wait_for(main(), 60)) == EXPECTED

def use_scope():
    with veda.scope() as s:
        futures = [s.spawn(sq, i) for i in range(8)]
    assert [f.result() for f in futures] == EXPECTED[:8]
    assert veda.spawn(sq, 9).result() == 81

def use_auto():
    assert veda.par_iter(range(60)).map(sq).collect() == EXPECTED
    assert veda.par_iter(range(60), executor="auto").map(sq).sum() == sum(EXPECTED)

def use_telemetry():
    snap = telemetry.snapshot()
    assert snap.executors["thread"]["tasks"]["spawned"] >= 0
    assert "vedart_" in snap.to_prometheus()

USES = {
    "thread": use_thread,
    "process": use_process,
    "async_from_sync": use_async_from_sync,
    "async_in_asyncio": use_async_in_asyncio,
    "scope": use_scope,
    "auto": use_auto,
    "telemetry": use_telemetry,
}

def use_all():
    for use in USES.values():
        use()

def in_child(body, timeout=90):
    pid = os.fork()
    if pid == 0:
        faulthandler.dump_traceback_later(timeout - 10, exit=True)
        code = 0
        try:
            body()
            veda.shutdown()
        except BaseException:
            import traceback
            traceback.print_exc()
            code = 1
        sys.stderr.flush()
        os._exit(code)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.02)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return 124
"""


def run_prelude(code: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return run_python(PRELUDE + textwrap.dedent(code), timeout=timeout)


@pytest.mark.timeout(120)
def test_a_process_map_works_in_a_child_forked_after_one():
    # Regression: the child waited for ever for the parent's spawn thread,
    # which does not exist after fork, and Ctrl+C could not stop it.
    result = run_prelude(
        """
        use_process()
        print("child", in_child(use_process))
        use_process()
        print("parent ok")
        """,
        timeout=100,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["child", "0", "parent", "ok"], result.stderr


@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    "used",
    ["thread", "process", "async_from_sync", "async_in_asyncio", "scope", "auto", "telemetry"],
)
def test_a_forked_child_uses_every_executor_and_so_does_the_parent(used):
    result = run_prelude(
        f"""
        USES[{used!r}]()
        print("child", in_child(use_all))
        use_all()
        print("parent ok")
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["child", "0", "parent", "ok"], result.stderr


@pytest.mark.timeout(300)
def test_a_child_forked_in_the_middle_of_maps_on_other_threads_works():
    # Other threads are inside maps (and holding the locks of pools, queues and
    # telemetry registries) at the moment of each fork.
    result = run_prelude(
        """
        stop = threading.Event()
        errors = []

        def keep_busy(use):
            try:
                while not stop.is_set():
                    use()
            except BaseException as error:
                errors.append(error)

        busy = [
            threading.Thread(target=keep_busy, args=(use,))
            for use in (use_thread, use_process, use_async_from_sync, use_telemetry)
        ]
        for thread in busy:
            thread.start()
        codes = []
        for _ in range(4):
            time.sleep(0.2)
            codes.append(in_child(use_all))
        stop.set()
        for thread in busy:
            thread.join(60)
        assert not errors, errors
        print("children", *codes)
        use_all()
        print("parent ok")
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["children", "0", "0", "0", "0", "parent", "ok"], result.stderr


@pytest.mark.timeout(300)
def test_multiprocessing_with_the_fork_start_method_runs_vedart_in_its_workers():
    result = run_prelude(
        """
        import multiprocessing

        def work(n):
            use_thread()
            use_process()
            use_async_from_sync()
            return veda.par_iter(range(n), executor="process").map(sq).sum()

        use_all()
        ctx = multiprocessing.get_context("fork")
        with ctx.Pool(2) as pool:
            sums = pool.map_async(work, [10, 20, 30]).get(timeout=120)
        assert sums == [sum(x * x for x in range(n)) for n in (10, 20, 30)], sums
        process = ctx.Process(target=use_all)
        process.start()
        process.join(120)
        print("process", process.exitcode)
        use_all()
        print("parent ok")
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["process", "0", "parent", "ok"], result.stderr


#: Children a pool of this size would start: far more than can start between
#: the Ctrl+C and the ``KeyboardInterrupt`` (tens), so a build that went on
#: after it would start them all.
HUGE_POOL = 1000


@pytest.mark.timeout(180)
def test_ctrl_c_while_the_process_pool_starts_stops_it_and_leaves_no_child():
    sleep = shutil.which("sleep")
    if sleep is None:
        pytest.skip("no sleep program")
    code = textwrap.dedent(
        f"""
        import os, signal, threading, time
        import vedart as veda
        from vedart import _process

        signal.signal(signal.SIGINT, signal.default_int_handler)

        def children():
            mine = []
            for entry in os.listdir("/proc"):
                if not entry.isdigit():
                    continue
                try:
                    with open(f"/proc/{{entry}}/stat") as stat:
                        fields = stat.read().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if int(fields[1]) == os.getpid():
                    mine.append(int(entry))
            return mine

        most = 0
        watching = True

        def watch():
            # Ctrl+C from here, once the first children exist: the build is
            # under way (a signal from the test's process could arrive after
            # the build on a busy machine).
            global most
            interrupted = False
            while watching:
                count = len(children())
                most = max(most, count)
                if count and not interrupted:
                    os.kill(os.getpid(), signal.SIGINT)
                    interrupted = True
                time.sleep(0.005)

        # The seam: children that take no part in the protocol, and cost
        # nothing while the pool is started.
        _process.worker_command = lambda: ({sleep!r}, ["600"])
        veda.init(veda.Config(num_processes={HUGE_POOL}))
        threading.Thread(target=watch, daemon=True).start()
        print("ready", flush=True)
        try:
            veda.par_iter(range(10), executor="process").map(abs).collect()
            print("finished", flush=True)
        except KeyboardInterrupt:
            print("interrupted", flush=True)
        deadline = time.monotonic() + {HANG_TIMEOUT / 2}
        while children() and time.monotonic() < deadline:
            time.sleep(0.05)
        watching = False
        print("left", len(children()), "most", most, "pool", _process.current_pool(), flush=True)
        """
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        out, err = proc.communicate(timeout=HANG_TIMEOUT)
    finally:
        proc.kill()
        proc.wait()
    lines = out.split("\n")
    assert lines[0] == "interrupted", (out, err)
    _, left, _, most, _, pool = lines[1].split()
    print(f"children at most {most} of {HUGE_POOL}")
    assert left == "0", (out, err)
    assert int(most) < HUGE_POOL // 2, "the build went on after Ctrl+C"
    assert pool == "None", (out, err)
    assert proc.returncode == 0, err


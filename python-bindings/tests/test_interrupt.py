"""Ctrl+C, interpreter exit and fork, in child interpreters."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from conftest import HANG_TIMEOUT, run_python

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

#: The requirement is 0.5 s; the assertion allows for a loaded machine.
INTERRUPT_BOUND = 1.5


def _child_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    return env


def test_ctrl_c_interrupts_a_blocking_collect_and_cancels_the_rest():
    code = textwrap.dedent(
        """
        import sys, threading, time
        import vedart as veda

        started = 0
        lock = threading.Lock()

        def slow(x):
            global started
            with lock:
                started += 1
            time.sleep(0.2)
            return x

        veda.init(veda.Config(num_threads=2))
        print("ready", flush=True)
        try:
            veda.par_iter(range(1000), chunk_size=1).map(slow).collect()
            print("finished", flush=True)
        except KeyboardInterrupt:
            print("interrupted", started, flush=True)
            time.sleep(1.0)
            print("later", started, flush=True)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_child_env(),
    )
    try:
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(0.5)  # let the work start
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        line = proc.stdout.readline().split()
        latency = time.monotonic() - sent
        assert line and line[0] == "interrupted", proc.stderr.read()
        print(f"KeyboardInterrupt after {latency * 1000:.0f} ms")
        assert latency < INTERRUPT_BOUND
        at_interrupt = int(line[1])
        later = int(proc.stdout.readline().split()[1])
        # Only chunks already running may finish; nothing new starts.
        assert later - at_interrupt <= 2
        assert later < 1000
        proc.wait(HANG_TIMEOUT)
    finally:
        proc.kill()
        proc.wait()


def test_ctrl_c_interrupts_a_scope_wait_all():
    code = textwrap.dedent(
        """
        import time
        import vedart as veda

        print("ready", flush=True)
        try:
            with veda.scope() as s:
                for _ in range(4):
                    s.spawn(time.sleep, 0.3)
                s.wait_all()
                s.wait_all()
                time.sleep(30)
        except KeyboardInterrupt:
            print("interrupted", flush=True)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_child_env(),
    )
    try:
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        assert proc.stdout.readline().strip() == "interrupted", proc.stderr.read()
        assert proc.wait(HANG_TIMEOUT) == 0
    finally:
        proc.kill()
        proc.wait()


def test_interpreter_exits_cleanly_with_work_still_running():
    result = run_python(
        """
        import time
        import vedart as veda

        veda.spawn(time.sleep, 0.3)
        veda.par_iter(range(10)).map(lambda x: x).collect()
        for _ in range(100):
            veda.spawn(time.sleep, 0.05)
        print("leaving", flush=True)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "leaving"
    assert "Traceback" not in result.stderr


def test_a_forked_child_starts_a_fresh_runtime():
    if not hasattr(os, "fork"):
        pytest.skip("no fork")
    result = run_python(
        """
        import asyncio, os, warnings
        import vedart as veda

        async def awaited():
            return await veda.par_iter(range(100)).map(lambda x: x * 2).sum()

        warnings.simplefilter("ignore", DeprecationWarning)
        assert veda.par_iter(range(100)).sum() == 4950
        assert asyncio.run(awaited()) == 9900  # the asyncio bridge is running
        pid = os.fork()
        if pid == 0:
            ok = veda.par_iter(range(100)).map(lambda x: x * 2).sum() == 9900
            ok = ok and asyncio.run(asyncio.wait_for(awaited(), 30)) == 9900
            os._exit(0 if ok else 1)
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status))
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0"

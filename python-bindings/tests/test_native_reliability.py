"""Native reliability: memory that pool threads and runtimes leave behind, the
C stack of every thread that runs Python code, and OS failures that must reach
Python as typed errors rather than panics.

Each test runs in a fresh interpreter (``run_python``): it measures the
process's resident memory, raises the recursion limit, or lowers resource
limits, none of which may leak into the test session.
"""

from __future__ import annotations

import pytest

from conftest import run_python

#: Resident set size of the child, read from /proc after a warm-up so that
#: what the allocator and the thread-stack cache settle on does not count.
RSS = """
import os, time
import vedart as veda

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
"""


def _grown(code: str, *, timeout: float) -> int:
    result = run_python(RSS + code, timeout=timeout)
    assert result.returncode == 0, result.stderr
    return int(result.stdout.split()[-1])


@pytest.mark.timeout(240)
def test_retired_pool_threads_leave_no_native_memory() -> None:
    # Each burst starts pool threads that retire after the 1 ms keep-alive; no
    # telemetry snapshot is taken, so nothing but thread exit may free what a
    # thread counted into.
    grown = _grown(
        """
rt = veda.init(veda.Config(num_threads=2, min_workers=0, adaptive_interval_ms=1))

def churn():
    assert veda.par_iter(range(4)).map(lambda x: x).collect() == [0, 1, 2, 3]
    deadline = time.monotonic() + 30
    while rt.stats().threads:
        assert time.monotonic() < deadline, "pool threads never retired"
        time.sleep(0.0005)

for _ in range(100):
    churn()
before = rss()
for _ in range(1000):
    churn()
print(rss() - before)
""",
        timeout=200,
    )
    assert grown < 1 << 20, f"1,000 thread churns grew RSS by {grown} bytes"


@pytest.mark.timeout(240)
def test_init_shutdown_cycles_leave_no_native_memory() -> None:
    grown = _grown(
        """
def cycle():
    veda.init(veda.Config(num_threads=2, min_workers=0))
    assert veda.par_iter(range(8)).map(lambda x: x + 1).collect() == list(range(1, 9))
    veda.shutdown()

for _ in range(200):
    cycle()
before = rss()
for _ in range(2000):
    cycle()
print(rss() - before)
""",
        timeout=200,
    )
    assert grown < 2 << 20, f"2,000 init/shutdown cycles grew RSS by {grown} bytes"

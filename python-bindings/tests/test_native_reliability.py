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

import vedart as veda

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


#: Runs ``DUMP`` (``repr`` unless the test sets it) of a nested list ``depth``
#: deep, which recurses on the C stack, on every kind of thread that runs Python
#: code for VedaRT, then on a plain ``threading.Thread``; prints one line per
#: success, so a crash shows where it happened. The ``threading.Thread`` goes
#: last: glibc caches the stack of an exited thread and hands it to the next
#: thread that asks for less, which would let a too-small VedaRT thread pass.
DEEP = """
import asyncio, json, sys, threading
sys.setrecursionlimit(10_000_000)
import vedart as veda
DUMP = globals().get("DUMP", repr)

def deep_dump(depth):
    nested = []
    for _ in range(depth):
        nested = [nested]
    return len(DUMP(nested))

async def awaited(depth):
    return await veda.par_iter([depth]).map(deep_dump).collect()

def check(*depths):
    for depth in depths:
        expected = 2 * depth + 2
        assert veda.par_iter([depth]).map(deep_dump).collect() == [expected]
        print("thread map", depth, flush=True)
        assert veda.spawn(deep_dump, depth).result(timeout=60) == expected
        print("veda.spawn", depth, flush=True)
        assert asyncio.run(awaited(depth)) == [expected]
        print("asyncio", depth, flush=True)
    for depth in depths:
        result = []
        thread = threading.Thread(target=lambda: result.append(deep_dump(depth)))
        thread.start()
        thread.join()
        assert result == [2 * depth + 2], result
        print("threading.Thread", depth, flush=True)
"""


@pytest.mark.timeout(120)
def test_pool_threads_are_as_deep_as_threading_threads() -> None:
    # A 16,000-deep repr overflows Rust's 2 MiB default thread stack; 50,000
    # is what a threading.Thread handles with the usual 8 MiB.
    result = run_python(DEEP + "\ncheck(16_000, 50_000)\n", timeout=100)
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    assert result.stdout.count("threading.Thread") == 2, result.stdout


@pytest.mark.timeout(120)
def test_pool_threads_respect_threading_stack_size() -> None:
    # json.dumps of 200,000 levels needs more than 8 MiB (and, unlike repr, is
    # quick that deep): only the size set with threading.stack_size() before
    # the runtime starts makes it fit, and reading it must not reset it.
    result = run_python(
        "import json, threading\nthreading.stack_size(64 << 20)\nDUMP = json.dumps\n"
        + DEEP
        + "\ncheck(200_000)\nassert threading.stack_size() == 64 << 20\n",
        timeout=100,
    )
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    assert "threading.Thread 200000" in result.stdout, result.stdout


#: Lowers a resource limit so that no further thread (``AS``: no room for a
#: thread stack) or file descriptor (``NOFILE``) can be had, then runs one
#: executor that must start threads or open a reactor. Limits bind root too
#: (unlike ``RLIMIT_NPROC``), so this fails for real here and in CI.
STARVED = """
import asyncio, os, resource, sys
import vedart as veda
# Everything the run will import, while files can still be opened.
import vedart._asyncio, vedart._executors, vedart._process, vedart._worker, cloudpickle

def sq(x):
    return x * x

veda.init(veda.Config(num_threads=2, min_workers=2))
if PATH == "asyncio":
    # The thread pool is up before the limit: only the asyncio bridge starts.
    assert veda.par_iter(range(8), executor="thread").map(sq).collect() == [x * x for x in range(8)]

if LIMIT == "AS":
    with open("/proc/self/statm") as f:
        size = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    # Room for the interpreter's small allocations (1.5 MiB), none for a
    # thread's stack (8 MiB for VedaRT's Python threads, 2 MiB for the others).
    resource.setrlimit(resource.RLIMIT_AS, (size + (3 << 19), resource.RLIM_INFINITY))
else:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    open_now = len(os.listdir("/proc/self/fd")) - 1  # less the listing's own
    resource.setrlimit(resource.RLIMIT_NOFILE, (open_now, hard))

async def awaited():
    return await veda.par_iter(range(4), executor="thread").map(sq).collect()

try:
    if PATH == "thread":
        veda.par_iter(range(4), executor="thread").map(sq).collect()
    elif PATH == "asyncio":
        asyncio.run(awaited())
    else:
        veda.par_iter(range(4), executor="process").map(sq).collect()
except veda.VedaError as error:
    print("RAISED", type(error).__name__, error)
else:
    print("NO ERROR")
"""


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "path, limit, what, os_error",
    [
        # pthread_create's EAGAIN (or ENOMEM, by C library); EMFILE.
        ("thread", "AS", "the blocking pool could not start a thread", "(os error "),
        ("asyncio", "AS", "cannot start the asyncio bridge", "(os error "),
        ("process", "AS", "cannot start the process-pool driver", "(os error "),
        ("process", "NOFILE", "cannot start the process-pool driver", "(os error 24)"),
    ],
)
def test_os_refusals_raise_executor_error(path: str, limit: str, what: str, os_error: str) -> None:
    code = f"PATH, LIMIT = {path!r}, {limit!r}\n" + STARVED
    result = run_python(code, timeout=45)
    # No abort, no panic crossing into Python: a typed error naming the OS's.
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    assert "panicked" not in result.stderr and "PanicException" not in result.stderr, result.stderr
    line = result.stdout.strip().splitlines()[-1]
    assert line.startswith("RAISED ExecutorError "), (line, result.stderr)
    assert what in line and os_error in line, line


# -- failed tasks are collected ------------------------------------------------------


class _Marked(ValueError):
    """Raised only by these tests, so live instances can be counted."""


def _fail_at_3(x: int) -> int:
    if x == 3:
        raise _Marked("item 3")
    return x


def _live(kind: type) -> int:
    import gc

    gc.collect()
    return sum(1 for obj in gc.get_objects() if isinstance(obj, kind))


@pytest.mark.timeout(120)
def test_failed_scopes_and_pipelines_are_collected() -> None:
    # A failure's traceback reaches the frames that hold the scope, group and
    # tasks, and the Rust task and group hold the exception: the collector
    # must see inside them, or every failure stays in memory for good.
    def failing_scope() -> None:
        with pytest.raises(_Marked):
            with veda.scope() as s:
                for i in range(6):
                    s.spawn(_fail_at_3, i)

    def failing_pipeline() -> None:
        with pytest.raises(_Marked):
            veda.par_iter(range(50), executor="thread", chunk_size=2).map(_fail_at_3).collect()

    for run in (failing_scope, failing_pipeline):
        for _ in range(5):
            run()
        errors, futures = _live(_Marked), _live(veda.Future)
        for _ in range(100):
            run()
        assert _live(_Marked) <= errors + 2, f"{run.__name__}: failures are never freed"
        assert _live(veda.Future) <= futures + 12, f"{run.__name__}: futures are never freed"

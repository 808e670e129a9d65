"""NumPy arrays to and from worker processes through POSIX shared memory
(pickle protocol 5 out-of-band buffers; see ``vedart._worker``, "Shared
memory"): values intact both ways, results mapped rather than copied,
segments private (0600), unlinked once both sides hold them, and none left
behind by a cancelled run or a parent killed with SIGKILL mid-map."""

from __future__ import annotations

import mmap
import os
import signal
import stat
import subprocess
import sys
import time

import pytest
from conftest import HANG_TIMEOUT, process_running, run_in_threads, run_python

import vedart as veda
from vedart import _process, _worker

np = pytest.importorskip("numpy")

pytestmark = pytest.mark.skipif(
    not os.path.isdir(_worker.SHM_DIR), reason="no /dev/shm on this machine"
)

#: Elements of a float64 array well over the shared memory threshold (1 MiB).
BIG = 1 << 17


def family_segments(family: str | None = None) -> list[str]:
    prefix = family or _process.shm_family()
    assert prefix
    return sorted(name for name in os.listdir(_worker.SHM_DIR) if name.startswith(prefix))


def wait_until_no_segments(family: str | None = None) -> list[str]:
    deadline = time.monotonic() + HANG_TIMEOUT
    left = family_segments(family)
    while left and time.monotonic() < deadline:
        veda.par_iter(range(2), executor="process").map(abs).collect()  # reaps
        time.sleep(0.05)
        left = family_segments(family)
    return left


def mapped(array) -> bool:
    """Whether ``array``'s memory is a mapping (not a copy in a pickle)."""
    base = array
    while isinstance(base, np.ndarray) and base.base is not None:
        base = base.base
    if isinstance(base, memoryview):
        base = base.obj
    return isinstance(base, mmap.mmap)


def negate(a):
    return -a


@pytest.mark.timeout(120)
def test_arrays_cross_both_ways_intact_and_results_are_mapped():
    rng = np.random.default_rng(3)
    arrays = [
        rng.random(BIG),
        np.arange(BIG * 2, dtype=np.int32).reshape(512, -1),
        np.asfortranarray(rng.random((256, 512))),
        rng.random((600, 600))[::2, ::3],  # not contiguous: pickled in-band
        rng.random(10),  # small: in-band
        np.zeros(0),
    ]
    out = veda.par_iter(arrays, chunk_size=1, executor="process").map(negate).collect()
    for got, sent in zip(out, arrays):
        assert got.dtype == sent.dtype and got.shape == sent.shape
        assert np.array_equal(got, -sent)
    assert mapped(out[0]) and mapped(out[1]) and mapped(out[2])
    assert not mapped(out[4])
    assert out[0].flags.writeable
    out[0][0] = 42.0  # a private mapping of the result: writable, ours
    # Sums of arrays sent out, bytearrays both ways, rows of one 2-D array.
    sums = veda.par_iter(arrays[:3], executor="process").map(np.sum).collect()
    assert sums == pytest.approx([float(np.sum(a)) for a in arrays[:3]])
    blobs = [bytearray(os.urandom(BIG)) for _ in range(3)]
    assert veda.par_iter(blobs, executor="process").map(bytes).collect() == [bytes(b) for b in blobs]
    matrix = rng.random((64, BIG // 8))
    rows = veda.par_iter(matrix, executor="process").map(np.sum).collect()
    assert rows == pytest.approx(matrix.sum(axis=1))
    assert family_segments() == []


def segments_seen_by_worker(item):
    """In the worker: the family's segments that exist while the chunk runs."""
    family = os.environ[_worker.SHM_FAMILY_VARIABLE]
    names = [name for name in os.listdir(_worker.SHM_DIR) if name.startswith(family)]
    return names, float(item.sum())


@pytest.mark.timeout(120)
def test_a_segment_is_unlinked_once_the_worker_has_mapped_it(runtime_config):
    runtime_config(veda.Config(num_processes=1))
    array = np.ones(BIG)
    [(names, total)] = (
        veda.par_iter([array], executor="process").map(segments_seen_by_worker).collect()
    )
    assert total == BIG
    assert names == [], "the worker held the array, yet its name was still there"
    assert family_segments() == []


@pytest.mark.timeout(120)
def test_with_retries_the_name_stays_until_the_call_resolves(runtime_config):
    runtime_config(veda.Config(num_processes=1, retries=1))
    [(names, total)] = (
        veda.par_iter([np.ones(BIG)], executor="process").map(segments_seen_by_worker).collect()
    )
    assert total == BIG
    # A chunk that may run again must find its segment again: kept until
    # the call resolved, then unlinked by the parent.
    assert len(names) == 1 and names[0].startswith(f"{_process.shm_family()}{os.getpid()}-")
    assert family_segments() == []


def test_segments_are_private_to_the_user_and_discarded_when_unsent():
    shared = _worker.SharedBuffers(f"{_process.shm_family()}{os.getpid()}-test-")
    data = _process._dumps(np.ones(BIG), shared)
    assert len(shared.names) == 1
    info = os.stat(os.path.join(_worker.SHM_DIR, shared.names[0]))
    assert stat.S_IMODE(info.st_mode) == 0o600
    assert info.st_uid == os.getuid() and info.st_size == BIG * 8
    payload = b"".join(shared.envelope(data, _worker.SHM_UNLINK_ON_RECEIPT))
    assert _worker.shared_names(payload) == shared.names
    assert _worker.shared_nbytes(payload) == BIG * 8
    assert np.array_equal(_worker.load(payload), np.ones(BIG))
    assert family_segments() == []  # unlinked on receipt
    shared = _worker.SharedBuffers(f"{_process.shm_family()}{os.getpid()}-test-")
    _process._dumps([np.ones(BIG), np.ones(BIG)], shared)
    assert len(family_segments()) == 2
    shared.discard()
    assert family_segments() == []


@pytest.mark.timeout(120)
def test_without_shared_memory_arrays_go_through_the_pipes(monkeypatch):
    def refuse(name, view):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_worker, "_write_segment", refuse)
    arrays = [np.full(BIG, float(i)) for i in range(4)]
    sums = veda.par_iter(arrays, executor="process").map(np.sum).collect()
    assert sums == [float(i * BIG) for i in range(4)]
    assert family_segments() == []


def big_unless_first(i):
    if i == 0:
        # Fails once the other worker has answered all it took (the count of
        # its segments stays put), so that no call is cancelled while it runs.
        family = os.environ[_worker.SHM_FAMILY_VARIABLE]
        mine = f"{family}{os.getpid()}-"
        deadline = time.monotonic() + HANG_TIMEOUT
        seen, since = 0, time.monotonic()
        while time.monotonic() < deadline:
            names = os.listdir(_worker.SHM_DIR)
            count = sum(1 for n in names if n.startswith(family) and not n.startswith(mine))
            if count != seen:
                seen, since = count, time.monotonic()
            elif seen and time.monotonic() - since > 0.3:
                break
            time.sleep(0.01)
        raise ValueError("bad item 0")
    return np.full(BIG, float(i))


@pytest.mark.timeout(120)
def test_answers_never_read_are_reaped_after_a_failure_or_an_early_stop(runtime_config):
    runtime_config(veda.Config(num_processes=2))
    # One item per worker: when item 0 fails, item 1 has answered and
    # nothing else is queued, so no call is cancelled while it runs.
    with pytest.raises(ValueError, match="bad item 0"):
        veda.par_iter([0, 1], chunk_size=1, executor="process").map(big_unless_first).collect()
    assert wait_until_no_segments() == []
    # An early stop leaves the chunks in flight to finish: their answers are
    # never read.
    pipeline = veda.par_iter(list(range(12)), chunk_size=1, executor="process")
    first = pipeline.map(lambda i: np.full(BIG, float(i))).filter(lambda a: True).take(1)
    assert first.collect()[0][0] == 0.0
    assert wait_until_no_segments() == []


def slow_big(i):
    time.sleep(0.05 * (i % 4))
    return np.full(BIG, float(i))


@pytest.mark.timeout(120)
def test_no_segment_outlives_cancelled_runs_once_the_pool_is_shut_down():
    # Timeouts cancel chunks while they run: a worker may answer a call just
    # cancelled, and its answer is dropped unread; shutting the pool down
    # sweeps what such answers left.
    for timeout in (0.1, 0.2, 0.3, 0.4):
        with pytest.raises(veda.TimeoutError):
            veda.par_iter(range(40), chunk_size=1, executor="process").map(slow_big).collect(
                timeout=timeout
            )
    family = _process.shm_family()
    _process.shutdown_pool()
    assert family_segments(family) == []


KILLED_PARENT = """
import os, sys, time
import numpy as np
import vedart as veda
from vedart import _process

def slow_negate(a):
    time.sleep(0.2)
    return -a

veda.init(veda.Config(num_processes=2))
veda.par_iter(range(4), executor="process").map(abs).collect()
print(_process.shm_family(), *_process.current_pool().pids(), flush=True)
arrays = [np.full(1 << 18, float(i)) for i in range(400)]
veda.par_iter(arrays, chunk_size=1, executor="process").map(slow_negate).collect()
"""


def janitors(family: str) -> list[int]:
    """The pids of the janitors sweeping ``family``."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                args = cmdline.read().split(b"\0")
        except OSError:
            continue
        if b"--janitor" in args and family.encode() in args:
            found.append(int(entry))
    return found


def _parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as stat_file:
        return int(stat_file.read().rsplit(")", 1)[1].split()[1])


CTRL_C_DURING_JANITOR_START = """
import os, time
from vedart import _process

real_waitpid = os.waitpid
interrupted = []

def waitpid(pid, options):
    if not interrupted:  # the Ctrl+C lands while the shell is being waited for
        interrupted.append(pid)
        raise KeyboardInterrupt
    return real_waitpid(pid, options)

os.waitpid = waitpid
fds = len(os.listdir("/proc/self/fd"))
try:
    _process.shm_family()
except KeyboardInterrupt:
    pass
os.waitpid = real_waitpid

def children():
    mine = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat") as stat:
                if int(stat.read().rsplit(")", 1)[1].split()[1]) == os.getpid():
                    mine.append(entry)
        except (OSError, ValueError):
            pass
    return mine

family = _process.shm_family()
print(len(children()), len(os.listdir("/proc/self/fd")) - fds, family)
"""


def test_ctrl_c_while_the_janitor_starts_leaves_no_zombie_and_no_descriptor():
    result = run_python(CTRL_C_DURING_JANITOR_START)
    assert result.returncode == 0, result.stderr
    children, extra_fds, family = result.stdout.split()
    assert children == "0"  # the shell was reaped, not left a zombie
    # The first lifeline was closed; the retry holds the second one.
    assert extra_fds == "1"
    assert family.startswith("vedart-")


@pytest.mark.timeout(120)
def test_no_segment_remains_after_the_parent_is_killed_mid_map():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    parent = subprocess.Popen(
        [sys.executable, "-c", KILLED_PARENT], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        family, *pids = parent.stdout.readline().split()
        assert family.startswith(f"vedart-{parent.pid}-")
        workers = [int(pid) for pid in pids]
        [janitor] = janitors(family)
        assert workers and process_running(janitor)
        # Detached: not a child the parent's shutdown would wait for.
        assert _parent_of(janitor) != parent.pid
        # Mid-map: segments of queued requests (made by the parent) and of
        # answers (made by the workers) exist.
        deadline = time.monotonic() + HANG_TIMEOUT
        seen: list[str] = []
        while time.monotonic() < deadline:
            seen = family_segments(family)
            creators = {name[len(family) :].split("-")[0] for name in seen}
            if str(parent.pid) in creators and len(creators) > 1:
                break
            time.sleep(0.01)
        assert seen, "no segment appeared during the map"
        parent.send_signal(signal.SIGKILL)  # no atexit hook, no shutdown
        parent.wait(timeout=HANG_TIMEOUT)
        deadline = time.monotonic() + HANG_TIMEOUT
        alive = [janitor, *workers]
        while alive and time.monotonic() < deadline:
            time.sleep(0.05)
            alive = [pid for pid in alive if process_running(pid)]
        assert not alive, f"processes {alive} outlived their parent"
        assert family_segments(family) == []
    finally:
        if parent.poll() is None:
            parent.kill()
        _worker.sweep(f"vedart-{parent.pid}-")


@pytest.mark.timeout(180)
def test_maps_from_several_threads_at_once_keep_every_array_and_leave_nothing():
    def client(seed: int) -> None:
        for round_ in range(4):
            arrays = [np.full(BIG, float(seed * 100 + round_ * 10 + i)) for i in range(6)]
            out = veda.par_iter(arrays, executor="process").map(negate).collect()
            assert all(np.array_equal(got, -a) for got, a in zip(out, arrays))

    run_in_threads(client, 4)
    assert wait_until_no_segments() == []


@pytest.mark.timeout(120)
def test_a_veda_executor_result_array_comes_back_mapped():
    with veda.VedaExecutor("process") as pool:
        result = pool.submit(np.full, BIG, 7.0).result(timeout=HANG_TIMEOUT)
        mapped_back = list(pool.map(np.negative, [np.ones(BIG)] * 3))
    assert mapped(result) and float(result.sum()) == 7.0 * BIG
    assert all(np.array_equal(a, -np.ones(BIG)) for a in mapped_back)
    assert wait_until_no_segments() == []

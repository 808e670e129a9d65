"""NumPy arrays to and from worker processes: shared memory against pipes.

VedaRT's process executor passes large out-of-band buffers (pickle protocol 5,
NumPy arrays) through POSIX shared memory: the sender writes each array into a
segment once and the receiver maps it, where ``multiprocessing.Pool.map``
pickles each array into a message and copies it through a pipe.

1. ``sum``: 100 arrays of 8 MB (1,048,576 float64) summed in the workers
   (``par_iter(arrays, executor="process").map(np.sum)`` against
   ``Pool.map(np.sum, arrays)``): arrays to the workers, scalars back.
   Target (issue 11): vedart >= 3x faster.
2. ``round trip``: the same arrays negated in the workers (``np.negative``):
   8 MB arrays both ways.

Both pools have the same number of workers (the usable cores) and are started
and warmed before timing; contestants are timed interleaved, medians of
``--repeat`` runs. Peak memory: each contestant runs its workload once more in
a fresh interpreter, which then reports its own peak RSS and the largest peak
RSS of its worker processes (``VmHWM`` in ``/proc/<pid>/status``; pages of
shared memory mapped count too), and the RSS it had before the workload (the
arrays themselves: 800 MB).

Usage: python benches/python/bench_numpy_shm.py [--arrays N] [--repeat R]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import subprocess
import sys

import numpy as np
from _harness import cores, header, measure, report

import vedart as veda

#: Items per array: 8 MB of float64.
ARRAY_ITEMS = 1 << 20


def make_arrays(count: int) -> list[np.ndarray]:
    rng = np.random.default_rng(11)
    return [rng.random(ARRAY_ITEMS) for _ in range(count)]


def vedart_sum(arrays: list[np.ndarray]) -> list[float]:
    return veda.par_iter(arrays, executor="process").map(np.sum).collect()


def pool_sum(pool: multiprocessing.pool.Pool, arrays: list[np.ndarray]) -> list[float]:
    return pool.map(np.sum, arrays)


def vedart_negate(arrays: list[np.ndarray]) -> list[np.ndarray]:
    return veda.par_iter(arrays, executor="process").map(np.negative).collect()


def pool_negate(pool: multiprocessing.pool.Pool, arrays: list[np.ndarray]) -> list[np.ndarray]:
    return pool.map(np.negative, arrays)


def status_kib(field: str, pid: object = "self") -> int:
    """A ``/proc/<pid>/status`` figure in KiB (``VmRSS``, ``VmHWM``: the peak)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def peak_in_fresh_interpreter(contestant: str, workload: str, count: int) -> dict[str, int]:
    """Runs one workload in a new interpreter (this script with ``--peak``)
    and returns its RSS figures in KiB."""
    result = subprocess.run(
        [sys.executable, __file__, "--peak", contestant, workload, "--arrays", str(count)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if result.returncode != 0:
        raise RuntimeError(result.stderr)
    return json.loads(result.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def peak_child(contestant: str, workload: str, count: int) -> None:
    # VmHWM rather than getrusage's ru_maxrss: a new interpreter inherits the
    # peak of the process that forked it, VmHWM starts afresh with exec.
    arrays = make_arrays(count)
    workers = cores()
    before = status_kib("VmRSS")
    if contestant == "vedart":
        from vedart import _process

        veda.init(veda.Config(num_processes=workers))
        result = (vedart_sum if workload == "sum" else vedart_negate)(arrays)
        pool = _process.current_pool()
        pids = pool.pids() if pool is not None else []
    else:
        pool = multiprocessing.Pool(workers)
        result = (pool_sum if workload == "sum" else pool_negate)(pool, arrays)
        pids = [process.pid for process in pool._pool]  # type: ignore[attr-defined]
    worker = max((status_kib("VmHWM", pid) for pid in pids), default=0)
    print(json.dumps({"before": before, "parent": status_kib("VmHWM"), "worker": worker}))
    del result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--arrays", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--peak", nargs=2, metavar=("CONTESTANT", "WORKLOAD"))
    args = parser.parse_args()
    if args.peak:
        peak_child(args.peak[0], args.peak[1], args.arrays)
        return

    header("bench_numpy_shm")
    workers = cores()
    arrays = make_arrays(args.arrays)
    expected_sums = [float(np.sum(a)) for a in arrays]
    veda.init(veda.Config(num_processes=workers))
    pool = multiprocessing.Pool(workers)
    # Warm both pools (start-up, imports of NumPy in the workers).
    vedart_sum(arrays[:8])
    pool_sum(pool, arrays[:8])

    def check_sum(name: str, result: object) -> None:
        assert isinstance(result, list) and len(result) == len(arrays), name
        assert all(abs(float(x) - y) < 1e-6 * abs(y) for x, y in zip(result, expected_sums)), name

    def check_negate(name: str, result: object) -> None:
        assert isinstance(result, list) and len(result) == len(arrays), name
        assert all(np.array_equal(x, -a) for x, a in zip(result, arrays)), name

    size = f"{args.arrays} arrays of {ARRAY_ITEMS * 8 / 1e6:.0f} MB, {workers} workers"
    times = measure(
        {
            "multiprocessing.Pool.map(np.sum)": lambda: pool_sum(pool, arrays),
            "vedart process map(np.sum)": lambda: vedart_sum(arrays),
        },
        args.repeat,
        check_sum,
    )
    report(
        f"sum: {size} (target: vedart >= 3x faster)",
        times,
        "multiprocessing.Pool.map(np.sum)",
    )
    times = measure(
        {
            "multiprocessing.Pool.map(np.negative)": lambda: pool_negate(pool, arrays),
            "vedart process map(np.negative)": lambda: vedart_negate(arrays),
        },
        args.repeat,
        check_negate,
    )
    report(
        f"round trip: {size}, each negated and sent back",
        times,
        "multiprocessing.Pool.map(np.negative)",
    )
    pool.terminate()
    pool.join()

    print("\npeak RSS (MiB), each workload once in a fresh interpreter")
    print(
        f"{'contestant':<44} {'before':>8} {'parent peak':>12} {'largest worker peak':>20}"
    )
    for workload in ("sum", "negate"):
        for contestant in ("pool", "vedart"):
            figures = peak_in_fresh_interpreter(contestant, workload, args.arrays)
            name = f"{'multiprocessing.Pool' if contestant == 'pool' else 'vedart'} {workload}"
            print(
                f"{name:<44} {figures['before'] / 1024:>8.0f} {figures['parent'] / 1024:>12.0f} "
                f"{figures['worker'] / 1024:>20.0f}"
            )
    sys.stdout.flush()


if __name__ == "__main__":
    main()

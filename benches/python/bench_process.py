"""The process executor's overheads: tiny items, and the first result from a
cold pool.

1. 200,000 tiny items (``x * 2``) on ``executor="process"``, against
   ``multiprocessing.Pool.map`` (default chunksize). Both pools are started and
   warmed before timing. Target (issue 5): vedart <= 1.0x Pool.map's time.
2. Time to the first result of the first process map of a fresh interpreter
   (the pool is started by that map: fork+exec of the children, their start-up,
   the first chunk), measured in new interpreters after ``import vedart``.
   Target: <= 100 ms. ``multiprocessing.Pool`` (fork) and ProcessPoolExecutor
   are measured the same way for comparison.

Usage: python benches/python/bench_process.py [--items N] [--repeat R] [--cold-runs K]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import subprocess
import sys

from _harness import cores, header, measure, median, report

import vedart as veda

COLD_VEDART = """
import time, vedart as veda
started = time.perf_counter()
first = next(iter(veda.par_iter(range(1000), executor="process").map(lambda x: x * 2)))
print(time.perf_counter() - started)
"""

COLD_POOL = """
import time, multiprocessing
def double(x):
    return x * 2
if __name__ == "__main__":
    started = time.perf_counter()
    pool = multiprocessing.get_context("fork").Pool({workers})
    first = next(pool.imap(double, range(1000)))
    print(time.perf_counter() - started)
    pool.terminate()
"""

COLD_PPE = """
import time, concurrent.futures, multiprocessing
def double(x):
    return x * 2
if __name__ == "__main__":
    started = time.perf_counter()
    ex = concurrent.futures.ProcessPoolExecutor({workers}, mp_context=multiprocessing.get_context("fork"))
    first = next(ex.map(double, range(1000)))
    print(time.perf_counter() - started)
    ex.shutdown(cancel_futures=True)
"""


def double(x: int) -> int:
    return x * 2


def cold(code: str, runs: int) -> list[float]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    out = []
    for _ in range(runs):
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
        )
        if result.returncode != 0:
            raise RuntimeError(result.stderr)
        out.append(float(result.stdout.strip().splitlines()[-1]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--cold-runs", type=int, default=7)
    args = parser.parse_args()
    header(__file__)
    workers = cores()
    data = list(range(args.items))
    expected = [x * 2 for x in data]

    veda.init(veda.Config(num_processes=workers))
    veda.par_iter(data[:1000], executor="process").map(double).collect()  # start the pool
    pool = multiprocessing.get_context("fork").Pool(workers)
    pool.map(double, data[:1000])

    def check(name: str, result: object) -> None:
        if list(result) != expected:  # type: ignore[call-overload]
            raise AssertionError(f"{name} returned a wrong result")

    contestants = {
        "multiprocessing Pool.map": lambda: pool.map(double, data),
        'vedart executor="process"': lambda: (
            veda.par_iter(data, executor="process").map(double).collect()
        ),
        "serial list(map) (for reference)": lambda: list(map(double, data)),
    }
    times = measure(contestants, args.repeat, check)
    report(
        f"{args.items:,} tiny items (x * 2), {workers} processes, warm pools",
        times,
        "multiprocessing Pool.map",
    )
    ours = median(times, 'vedart executor="process"')
    theirs = median(times, "multiprocessing Pool.map")
    print(f"\nvedart / Pool.map (medians): {ours / theirs:.2f}x (target <= 1.0x)")
    pool.close()
    pool.join()
    veda.shutdown()

    print(f"\nTime to the first result, cold pool ({args.cold_runs} fresh interpreters each)")
    for name, code in (
        ('vedart executor="process"', COLD_VEDART),
        ("multiprocessing Pool (fork)", COLD_POOL.format(workers=workers)),
        ("ProcessPoolExecutor (fork)", COLD_PPE.format(workers=workers)),
    ):
        values = cold(code, args.cold_runs)
        print(
            f"{name:<44} median {statistics.median(values) * 1000:7.1f} ms   "
            f"best {min(values) * 1000:7.1f} ms"
        )
    print("(target: vedart <= 100 ms)")


if __name__ == "__main__":
    main()

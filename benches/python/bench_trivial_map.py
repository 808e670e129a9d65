"""1,000,000 trivial items (``x * 2``): per-item overhead of a parallel map.

All contestants hold the interpreter for the whole computation, so none can
beat ``list(map(...))``; the question is how little each adds. Targets:
vedart <= 1.3x the time of ``list(map(...))`` with the automatic executor
(issue 4), and <= 1.2x with ``executor="thread"`` (issue 13).

The automatic executor measures the first chunk, sees work far too cheap to
hand to threads and runs the rest on the calling thread (``explain()`` says
so): that row is the probe plus an inline run. The ``executor="thread"`` row
forces the thread pool, so it measures the pool's per-chunk hand-off.

Usage: python benches/python/bench_trivial_map.py [--items N] [--repeat R]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import multiprocessing.pool

from _harness import cores, header, measure, report

import vedart as veda


def double(x):
    return x * 2


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument(
        "--slow-items",
        type=int,
        default=100_000,
        help="items for the per-item-future contestants (TPE, joblib)",
    )
    args = parser.parse_args()
    header(__file__)
    workers = cores()
    data = range(args.items)
    expected = [x * 2 for x in data]

    veda.init(veda.Config(num_threads=workers))
    tpe = concurrent.futures.ThreadPoolExecutor(workers)
    tpool = multiprocessing.pool.ThreadPool(workers)

    def check(name, result):
        if name != "list(map)" and "per-item" not in name and result != expected:
            raise AssertionError(f"{name} returned a wrong result")

    contestants = {
        "list(map)": lambda: list(map(double, data)),
        "vedart auto (probe, then inline)": lambda: (
            veda.par_iter(data).map(double).collect()
        ),
        'vedart executor="thread"': lambda: (
            veda.par_iter(data, executor="thread").map(double).collect()
        ),
        "multiprocessing ThreadPool.map": lambda: tpool.map(double, data),
    }
    veda.par_iter(data).map(double).collect()  # warm the pool
    times = measure(contestants, args.repeat, check)
    report(
        f"{args.items:,} items, x * 2, {workers} threads",
        times,
        "list(map)",
        "targets: vedart auto <= 1.30x list(map), executor=\"thread\" <= 1.20x",
    )

    # Contestants that make one future per item are far slower; time them on
    # fewer items and scale, so the run stays short.
    small = range(args.slow_items)
    scale = args.items / args.slow_items
    slow = {
        "list(map)": lambda: list(map(double, small)),
        "vedart": lambda: veda.par_iter(small).map(double).collect(),
        "ThreadPoolExecutor.map (per-item futures)": lambda: list(tpe.map(double, small)),
    }
    try:
        import joblib

        parallel = joblib.Parallel(n_jobs=workers, prefer="threads")
        slow["joblib threading (batch_size=auto)"] = lambda: parallel(
            joblib.delayed(double)(x) for x in small
        )
    except ImportError:
        print("(joblib not installed: skipped)")
    times = measure(slow, max(3, args.repeat // 2))
    report(
        f"{args.slow_items:,} items (per-item future contestants; x{scale:.0f} for {args.items:,})",
        times,
        "list(map)",
    )
    tpe.shutdown()
    tpool.close()
    veda.shutdown()


if __name__ == "__main__":
    main()

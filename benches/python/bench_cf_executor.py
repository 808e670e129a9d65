"""``vedart.VedaExecutor`` against the standard library's executors, same run.

1. 20,000 ``submit(f, i).result()`` round trips on threads, against
   ``ThreadPoolExecutor``. Target (issue 11): <= 1.0x its time.
2. ``list(map(f, items))`` of 100,000 tiny items on threads, against
   ``ThreadPoolExecutor.map``. Target: <= 0.5x.
3. The same map on worker processes with ``chunksize=1``, against
   ``ProcessPoolExecutor.map(..., chunksize=1)``. VedaRT batches tiny items
   under the hood (chunks sized from the measured cost per item); the standard
   executor sends each item on its own. Target: <= 0.2x.

Every executor is started and warmed before timing; contestants are timed
interleaved (see ``_harness``) and the ratios come from this one run.

Usage: python benches/python/bench_cf_executor.py [--calls N] [--items N] [--repeat R]
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import multiprocessing

from _harness import cores, header, measure, median, report

import vedart as veda


def tiny(x: int) -> int:
    return x + 1


def round_trips(executor: cf.Executor, calls: int) -> int:
    total = 0
    for i in range(calls):
        total += executor.submit(tiny, i).result()
    return total


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--process-repeat", type=int, default=3)
    args = parser.parse_args()
    header(__file__)
    workers = cores()
    data = list(range(args.items))
    expected = [x + 1 for x in data]
    ratios = []

    veda_threads = veda.VedaExecutor()
    std_threads = cf.ThreadPoolExecutor()
    for ex in (veda_threads, std_threads):
        list(ex.map(tiny, range(1000)))

    total = sum(i + 1 for i in range(args.calls))
    times = measure(
        {
            "ThreadPoolExecutor": lambda: round_trips(std_threads, args.calls),
            "VedaExecutor()": lambda: round_trips(veda_threads, args.calls),
        },
        args.repeat,
        lambda name, result: None if result == total else (_ for _ in ()).throw(AssertionError(name)),
    )
    report(f"{args.calls:,} submit().result() round trips, threads", times, "ThreadPoolExecutor")
    ratios.append(("round trips, threads", median(times, "VedaExecutor()") / median(times, "ThreadPoolExecutor"), 1.0))

    def check(name: str, result: object) -> None:
        if result != expected:
            raise AssertionError(f"{name} returned a wrong result")

    times = measure(
        {
            "ThreadPoolExecutor.map": lambda: list(std_threads.map(tiny, data)),
            "VedaExecutor().map": lambda: list(veda_threads.map(tiny, data)),
        },
        args.repeat,
        check,
    )
    report(f"map of {args.items:,} tiny items, threads", times, "ThreadPoolExecutor.map")
    ratios.append(("map, threads", median(times, "VedaExecutor().map") / median(times, "ThreadPoolExecutor.map"), 0.5))
    veda_threads.shutdown()
    std_threads.shutdown()

    veda_processes = veda.VedaExecutor("process")
    std_processes = cf.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"))
    for ex in (veda_processes, std_processes):
        list(ex.map(tiny, range(1000)))
    times = measure(
        {
            "ProcessPoolExecutor.map(chunksize=1)": lambda: list(std_processes.map(tiny, data, chunksize=1)),
            'VedaExecutor("process").map(chunksize=1)': lambda: list(veda_processes.map(tiny, data, chunksize=1)),
        },
        args.process_repeat,
        check,
    )
    report(
        f"map of {args.items:,} tiny items, {workers} processes, chunksize=1",
        times,
        "ProcessPoolExecutor.map(chunksize=1)",
    )
    ratios.append(
        (
            "map, processes, chunksize=1",
            median(times, 'VedaExecutor("process").map(chunksize=1)')
            / median(times, "ProcessPoolExecutor.map(chunksize=1)"),
            0.2,
        )
    )
    veda_processes.shutdown()
    std_processes.shutdown()

    print("\nVedaExecutor / standard executor (medians, this run):")
    for name, ratio, target in ratios:
        print(f"  {name:<32} {ratio:6.3f}x   (target <= {target}x)")


if __name__ == "__main__":
    main()

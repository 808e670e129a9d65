"""CPU-bound pure Python: ``fib(22)`` over 2,000 items.

The work holds the interpreter, so threads cannot help: only processes can.
Targets (issue 5): vedart's process executor >= 1.8x faster than serial on 2
cores, and its time <= 0.9x the best of ProcessPoolExecutor (with the best
chunksize of a calibration round), multiprocessing.Pool.map and joblib's loky
backend. Every pool is started and warmed before timing, so the figures
compare steady-state throughput. The default executor (``executor=None``,
which measures the first chunk and moves the rest to processes) is timed too.

Usage: python benches/python/bench_cpu.py [--items N] [--n 22] [--repeat R]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import multiprocessing
import os
import time

from _harness import cores, header, measure, median, report

import vedart as veda


def fib(n: int) -> int:
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_ratio(items: list[int]) -> float:
    """CPU seconds one process map costs in all, over those of ``list(map)``."""
    from vedart import _process

    pids = _process.current_pool().pids()
    before = sum(_cpu_seconds(pid) for pid in pids)
    parent = time.process_time()
    veda.par_iter(items, executor="process").map(fib).collect()
    spent = time.process_time() - parent + sum(_cpu_seconds(pid) for pid in pids) - before
    started = time.process_time()
    list(map(fib, items))
    return spent / (time.process_time() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--n", type=int, default=22)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    header(__file__)
    workers = cores()
    items = [args.n] * args.items
    expected = [fib(args.n)] * args.items

    veda.init(veda.Config(num_threads=workers, num_processes=workers))
    veda.par_iter(items[:50], executor="process").map(fib).collect()  # start the pool

    ctx = multiprocessing.get_context("fork")
    ppe = concurrent.futures.ProcessPoolExecutor(workers, mp_context=ctx)
    best_chunk, best_time = 1, float("inf")
    for chunk in (1, 4, 16, 64, max(1, args.items // (4 * workers))):
        started = time.perf_counter()
        list(ppe.map(fib, items[: args.items // 4], chunksize=chunk))
        spent = time.perf_counter() - started
        if spent < best_time:
            best_chunk, best_time = chunk, spent
    print(f"ProcessPoolExecutor: chunksize {best_chunk} was fastest in calibration")
    pool = ctx.Pool(workers)
    pool.map(fib, items[:50])

    def check(name: str, result: object) -> None:
        if list(result) != expected:  # type: ignore[call-overload]
            raise AssertionError(f"{name} returned a wrong result")

    adaptive = veda.par_iter(items).map(fib)
    contestants = {
        "serial list(map)": lambda: list(map(fib, items)),
        'vedart executor="process"': lambda: (
            veda.par_iter(items, executor="process").map(fib).collect()
        ),
        "vedart default (adaptive)": adaptive.collect,
        f"ProcessPoolExecutor.map(chunksize={best_chunk})": lambda: list(
            ppe.map(fib, items, chunksize=best_chunk)
        ),
        "multiprocessing Pool.map": lambda: pool.map(fib, items),
    }
    try:
        import joblib

        loky = joblib.Parallel(n_jobs=workers, backend="loky")
        loky(joblib.delayed(fib)(x) for x in items[:50])  # start its workers
        contestants["joblib loky"] = lambda: loky(joblib.delayed(fib)(x) for x in items)
    except ImportError:
        print("(joblib not installed: skipped; pip install joblib)")

    times = measure(contestants, args.repeat, check)
    report(
        f"fib({args.n}) x {args.items:,} items, {workers} processes",
        times,
        "serial list(map)",
    )
    serial = median(times, "serial list(map)")
    ours = median(times, 'vedart executor="process"')
    auto = median(times, "vedart default (adaptive)")
    others = {
        name: median(times, name) for name in times if not name.startswith(("vedart", "serial"))
    }
    best_name = min(others, key=others.__getitem__)
    print(
        f"\nvedart speedup over serial (medians): {serial / ours:.2f}x (target >= 1.8x on 2 cores)"
    )
    print(f"vedart default executor speedup over serial: {serial / auto:.2f}x")
    print(
        f"vedart time / best other ({best_name}): {ours / others[best_name]:.2f}x (target <= 0.9x)"
    )
    print(f"the default executor chose: {adaptive.explain()}")
    print(
        "CPU time of vedart's run (children + parent) / CPU time of the serial run: "
        f"{cpu_ratio(items):.3f}x (its overhead, whatever the machine's load)"
    )
    ppe.shutdown()
    pool.close()
    pool.join()
    veda.shutdown()


if __name__ == "__main__":
    main()

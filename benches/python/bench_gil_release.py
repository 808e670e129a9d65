"""GIL-releasing work: ``hashlib.sha256`` over 2,000 blocks of 256 KiB.

hashlib releases the interpreter while it hashes a large buffer, so threads run
truly in parallel. Targets (issue 4): vedart speedup >= 1.8x over serial on 2
cores, and at least the throughput of ThreadPoolExecutor.

Usage: python benches/python/bench_gil_release.py [--blocks N] [--repeat R]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import multiprocessing.pool
import os

from _harness import cores, header, measure, median, report

import vedart as veda


def digest(block: bytes) -> bytes:
    return hashlib.sha256(block).digest()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--blocks", type=int, default=2000)
    parser.add_argument("--block-size", type=int, default=256 * 1024)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    header(__file__)
    workers = cores()
    # Distinct blocks, so no cache effect favours anyone.
    seed = os.urandom(args.block_size)
    blocks = [bytes([i % 256]) + seed[1:] for i in range(args.blocks)]
    expected = [digest(b) for b in blocks]

    veda.init(veda.Config(num_threads=workers))
    tpe = concurrent.futures.ThreadPoolExecutor(workers)
    tpool = multiprocessing.pool.ThreadPool(workers)

    def check(name, result):
        if list(result) != expected:
            raise AssertionError(f"{name} returned a wrong result")

    contestants = {
        "serial list(map)": lambda: list(map(digest, blocks)),
        "vedart par_iter().map().collect()": lambda: veda.par_iter(blocks).map(digest).collect(),
        "ThreadPoolExecutor.map": lambda: list(tpe.map(digest, blocks)),
        "multiprocessing ThreadPool.map": lambda: tpool.map(digest, blocks),
    }
    try:
        import joblib

        parallel = joblib.Parallel(n_jobs=workers, prefer="threads")
        contestants["joblib threading"] = lambda: parallel(
            joblib.delayed(digest)(b) for b in blocks
        )
    except ImportError:
        print("(joblib not installed: skipped)")
    veda.par_iter(blocks[:100]).map(digest).collect()  # warm the pool
    times = measure(contestants, args.repeat, check)
    mib = args.blocks * args.block_size / 2**20
    report(
        f"sha256 of {args.blocks:,} x {args.block_size // 1024} KiB ({mib:.0f} MiB), {workers} threads",
        times,
        "serial list(map)",
    )
    ours = median(times, "vedart par_iter().map().collect()")
    print(
        f"\nvedart speedup over serial (medians): {median(times, 'serial list(map)') / ours:.2f}x"
        " (target >= 1.8x on 2 cores)"
    )
    print(
        "vedart throughput vs ThreadPoolExecutor (medians): "
        f"{median(times, 'ThreadPoolExecutor.map') / ours:.2f}x (target >= 1.0x)"
    )
    tpe.shutdown()
    tpool.close()
    veda.shutdown()


if __name__ == "__main__":
    main()

"""Telemetry on vs off: what counting costs (target, issue 6: <= 3% on the
trivial-map benchmark).

Three workloads, each timed with telemetry on and off, interleaved:

* the trivial map of ``bench_trivial_map.py`` (1,000,000 items, ``x * 2``,
  adaptive chunks): the issue's target;
* the same map with ``chunk_size=1000`` (1,000 thread-pool tasks), where the
  per-task counting is not hidden by the engine running cheap items inline;
* 20,000 ``veda.spawn(f).result()`` round trips: one task per call, the
  worst case for per-task overhead.

Usage: python benches/python/bench_telemetry_overhead.py [--items N] [--repeat R]
"""

from __future__ import annotations

import argparse
import statistics

from _harness import cores, header, measure, report

import vedart as veda


def double(x):
    return x * 2


def nothing():
    return None


def switched(enabled: bool, fn):
    def run():
        veda.telemetry.set_enabled(enabled)
        return fn()

    return run


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--spawns", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    header(__file__)
    workers = cores()
    data = range(args.items)
    expected = [x * 2 for x in data]
    veda.init(veda.Config(num_threads=workers))

    def check(name, result):
        if "map" in name and result != expected:
            raise AssertionError(f"{name} returned a wrong result")

    def trivial():
        return veda.par_iter(data).map(double).collect()

    def chunked():
        return veda.par_iter(data, chunk_size=1000).map(double).collect()

    def spawns():
        for _ in range(args.spawns):
            veda.spawn(nothing).result()

    for title, fn, note in (
        (f"{args.items:,} items, x * 2 (trivial map)", trivial, "target: on <= 1.03x off"),
        (f"{args.items:,} items, x * 2, chunk_size=1000 (1,000 tasks)", chunked, ""),
        (f"{args.spawns:,} spawn(f).result() round trips", spawns, ""),
    ):
        fn()  # warm the pool
        before = veda.telemetry.snapshot().executors["thread"]["tasks"]["spawned"]
        fn()
        tasks = veda.telemetry.snapshot().executors["thread"]["tasks"]["spawned"] - before
        contestants = {
            "telemetry off": switched(False, fn),
            "telemetry on": switched(True, fn),
        }
        times = measure(contestants, args.repeat, check)
        report(title, times, next(iter(contestants)), note)
        # Each round ran off then on back to back: the ratio within a round
        # cancels slow drifts of background load.
        paired = [on / off for off, on in zip(times["telemetry off"], times["telemetry on"])]
        print(
            f"paired ratio on/off: median {statistics.median(paired):.3f}x over {len(paired)} "
            f"rounds; {tasks:,} thread-pool tasks per run"
        )
    veda.telemetry.set_enabled(True)
    veda.shutdown()


if __name__ == "__main__":
    main()

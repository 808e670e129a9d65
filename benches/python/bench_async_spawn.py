"""``await veda.spawn(f)`` round trip against ``await asyncio.to_thread(f)``.

Both hand a trivial function to a thread pool and resume the awaiting
coroutine when it returns. Target (issue 4): vedart <= 0.5x the time of
``asyncio.to_thread``.

Usage: python benches/python/bench_async_spawn.py [--calls N] [--repeat R]
"""

from __future__ import annotations

import argparse
import asyncio

from _harness import cores, header, measure, median, report

import vedart as veda


def noop() -> int:
    return 1


async def via_vedart(calls: int) -> int:
    total = 0
    for _ in range(calls):
        total += await veda.spawn(noop)
    return total


async def via_to_thread(calls: int) -> int:
    total = 0
    for _ in range(calls):
        total += await asyncio.to_thread(noop)
    return total


async def via_run_in_executor(calls: int) -> int:
    loop = asyncio.get_running_loop()
    total = 0
    for _ in range(calls):
        total += await loop.run_in_executor(None, noop)
    return total


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    header(__file__)
    veda.init(veda.Config(num_threads=cores()))
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(via_vedart(100))  # warm both pools
        loop.run_until_complete(via_to_thread(100))

        def check(name, result):
            if result != args.calls:
                raise AssertionError(name)

        contestants = {
            "await asyncio.to_thread(f)": lambda: loop.run_until_complete(
                via_to_thread(args.calls)
            ),
            "await loop.run_in_executor(None, f)": lambda: loop.run_until_complete(
                via_run_in_executor(args.calls)
            ),
            "await veda.spawn(f)": lambda: loop.run_until_complete(via_vedart(args.calls)),
        }
        times = measure(contestants, args.repeat, check)
        report(
            f"{args.calls:,} sequential awaits of a trivial function",
            times,
            "await asyncio.to_thread(f)",
        )
        for name in times:
            print(f"  {name}: {median(times, name) / args.calls * 1e6:.1f} us per round trip")
        ratio = median(times, "await veda.spawn(f)") / median(times, "await asyncio.to_thread(f)")
        print(f"\nvedart / to_thread (medians): {ratio:.2f}x (target <= 0.5x)")
    finally:
        loop.close()
        veda.shutdown()


if __name__ == "__main__":
    main()

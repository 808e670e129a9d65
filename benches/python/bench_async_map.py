"""10,000 coroutines of ``asyncio.sleep(0.01)`` with at most 1,000 in flight.

The ideal time is 10 waves of 10 ms: 0.1 s. Targets (issue 5): vedart's
``async_map`` <= 1.3x the ideal, and no slower than ``asyncio.gather`` of all
coroutines under an ``asyncio.Semaphore``. Every contestant is timed inside a
running event loop (no loop start-up in the figures), except "from sync code",
which uses VedaRT's background loop.

"Plain asyncio lanes" (tasks pulling from a deque, no threads, unordered) is
the floor of what asyncio itself costs, for reference.

Usage: python benches/python/bench_async_map.py [--items N] [--concurrency C] [--repeat R]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import statistics
import time

from _harness import header

import vedart as veda

DELAY = 0.01


async def nap(x: int) -> int:
    await asyncio.sleep(DELAY)
    return x


async def plain_lanes(items: range, limit: int) -> list[int]:
    """The floor: ``limit`` tasks pulling items from a deque, in one loop, no
    threads, no ordering work (what asyncio itself costs per coroutine)."""
    queue = collections.deque(items)
    out: list[int] = [0] * len(items)

    async def lane() -> None:
        while queue:
            i = queue.popleft()
            out[i] = await nap(i)

    await asyncio.gather(*(lane() for _ in range(limit)))
    return out


async def gather_with_semaphore(items: range, limit: int) -> list[int]:
    semaphore = asyncio.Semaphore(limit)

    async def one(x: int) -> int:
        async with semaphore:
            return await nap(x)

    return await asyncio.gather(*(one(x) for x in items))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=9)
    args = parser.parse_args()
    header(__file__)
    items = range(args.items)
    expected = list(items)
    limit = args.concurrency
    ideal = DELAY * args.items / limit
    times: dict[str, list[float]] = {
        "vedart async_map, awaited": [],
        "vedart async_map, from sync code": [],
        "asyncio.gather + Semaphore": [],
        "plain asyncio lanes (floor)": [],
    }

    async def awaited() -> list[int]:
        return await veda.par_iter(items).async_map(nap, concurrency=limit).collect()

    async def round_in_loop() -> None:
        for name, make in (
            ("vedart async_map, awaited", awaited),
            ("asyncio.gather + Semaphore", lambda: gather_with_semaphore(items, limit)),
            ("plain asyncio lanes (floor)", lambda: plain_lanes(items, limit)),
        ):
            started = time.perf_counter()
            result = await make()
            times[name].append(time.perf_counter() - started)
            if list(result) != expected:
                raise AssertionError(f"{name} returned a wrong result")

    loop = asyncio.new_event_loop()
    veda.par_iter(range(10)).async_map(nap).collect()  # start the background loop
    loop.run_until_complete(awaited())  # warm
    for _ in range(args.repeat):
        loop.run_until_complete(round_in_loop())
        started = time.perf_counter()
        result = veda.par_iter(items).async_map(nap, concurrency=limit).collect()
        times["vedart async_map, from sync code"].append(time.perf_counter() - started)
        if result != expected:
            raise AssertionError("sync async_map returned a wrong result")
    loop.close()

    print(
        f"\n{args.items:,} x asyncio.sleep({DELAY}) with concurrency {limit}: "
        f"ideal {ideal * 1000:.0f} ms"
    )
    print(f"{'contestant':<36} {'median':>10} {'best':>10} {'median / ideal':>15}")
    for name, values in times.items():
        med = statistics.median(values)
        print(f"{name:<36} {med * 1000:7.1f} ms {min(values) * 1000:7.1f} ms {med / ideal:>14.2f}x")
    ours = statistics.median(times["vedart async_map, awaited"])
    gather = statistics.median(times["asyncio.gather + Semaphore"])
    print(f"\nvedart (awaited) / ideal: {ours / ideal:.2f}x (target <= 1.3x)")
    print(f"vedart (awaited) / gather + Semaphore: {ours / gather:.2f}x (target <= 1.0x)")
    floor = statistics.median(times["plain asyncio lanes (floor)"])
    print(f"plain asyncio lanes / ideal: {floor / ideal:.2f}x (what asyncio costs here)")


if __name__ == "__main__":
    main()

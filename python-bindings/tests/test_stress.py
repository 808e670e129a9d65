"""Stress: many threads driving every executor at once, and many awaited
``async_map`` pipelines on one loop. A hang fails within the watchdog's bound
with every thread's stack (pytest-timeout), never hangs the run.

``VEDART_STRESS_SECONDS`` sets how long the mixed-executor run lasts (20 s by
default, the figure the reliability issue asks for).
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from typing import Any, Callable

import pytest

import vedart as veda

STRESS_SECONDS = float(os.environ.get("VEDART_STRESS_SECONDS", "20"))
THREADS = 8
#: A thread that finishes no operation for this long is reported as hung.
STALL_SECONDS = 30.0


async def _double(x: int) -> int:
    await asyncio.sleep(0)
    return 2 * x


def _square(x: int) -> int:
    return x * x


def _operations() -> list[tuple[str, Callable[[], Any], Any]]:
    """``(name, run, expected)`` for each executor path under test."""
    xs = range(300)
    squares = [x * x for x in xs]
    doubles = [2 * x for x in range(1000)]

    def scoped() -> list[int]:
        with veda.scope() as s:
            futures = [s.spawn(_square, i) for i in range(20)]
        return [f.result() for f in futures]

    return [
        ("thread", lambda: veda.par_iter(xs, executor="thread").map(_square).collect(), squares),
        ("process", lambda: veda.par_iter(xs, executor="process").map(_square).collect(), squares),
        ("auto", lambda: veda.par_iter(xs).map(_square).sum(), sum(squares)),
        ("serial", lambda: veda.par_iter(xs, executor="serial").map(_square).collect(), squares),
        (
            "async",
            lambda: veda.par_iter(range(1000), executor="async").map(_double).collect(),
            doubles,
        ),
        (
            "async_map",
            lambda: veda.par_iter(range(1000)).async_map(_double, concurrency=64).collect(),
            doubles,
        ),
        (
            "thread+async_map",
            lambda: veda.par_iter(range(1000))
            .map(lambda x: x)
            .async_map(_double, concurrency=16)
            .collect(),
            doubles,
        ),
        ("scope", scoped, [i * i for i in range(20)]),
        ("spawn", lambda: veda.spawn(_square, 12).result(timeout=60), 144),
    ]


@pytest.mark.timeout(STRESS_SECONDS + 120)
def test_eight_threads_mix_every_executor_without_a_hang() -> None:
    operations = _operations()
    deadline = time.monotonic() + STRESS_SECONDS
    last_progress = [time.monotonic()] * THREADS
    done = [0] * THREADS
    errors: list[str] = []
    stop = threading.Event()

    def driver(index: int) -> None:
        step = index
        try:
            while time.monotonic() < deadline and not stop.is_set():
                name, run, expected = operations[step % len(operations)]
                step += 1
                result = run()
                if result != expected:
                    errors.append(f"thread {index}: {name} returned a wrong result")
                    return
                done[index] += 1
                last_progress[index] = time.monotonic()
        except BaseException as exc:  # reported below, with the thread's index
            errors.append(f"thread {index}: {exc!r}")

    def cpu_hog() -> None:
        # A Python thread that never waits: it competes for the GIL with the
        # callbacks async_map's loop must run (one of the original hangs).
        x = 0
        while not stop.is_set():
            x = (x * 31 + 7) % 1_000_003

    threads = [threading.Thread(target=driver, args=(i,), daemon=True) for i in range(THREADS)]
    hog = threading.Thread(target=cpu_hog, daemon=True)
    hog.start()
    for thread in threads:
        thread.start()
    try:
        while any(thread.is_alive() for thread in threads):
            time.sleep(0.5)
            stalled = [
                i
                for i, thread in enumerate(threads)
                if thread.is_alive() and time.monotonic() - last_progress[i] > STALL_SECONDS
            ]
            if stalled:
                import faulthandler
                import sys

                faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
                pytest.fail(f"threads {stalled} made no progress for {STALL_SECONDS} s")
    finally:
        stop.set()
        hog.join(timeout=5)
    assert not errors, errors
    assert all(count > 0 for count in done), done


@pytest.mark.timeout(180)
def test_gather_of_a_hundred_awaited_async_map_pipelines() -> None:
    async def main() -> list[list[int]]:
        pipelines = [
            veda.par_iter(range(300)).async_map(_double, concurrency=16).collect()
            for _ in range(100)
        ]
        return await asyncio.wait_for(asyncio.gather(*pipelines), timeout=120)

    for _ in range(3):
        results = asyncio.run(main())
        assert results == [[2 * x for x in range(300)]] * 100


@pytest.mark.timeout(180)
def test_async_map_from_several_threads_with_a_busy_thread() -> None:
    stop = threading.Event()
    errors: list[str] = []

    def busy() -> None:
        x = 0
        while not stop.is_set():
            x += 1

    def maps() -> None:
        try:
            for _ in range(40):
                result = veda.par_iter(range(1000)).async_map(_double, concurrency=64).collect()
                if result != [2 * x for x in range(1000)]:
                    errors.append("wrong result")
        except BaseException as exc:
            errors.append(repr(exc))

    hog = threading.Thread(target=busy, daemon=True)
    hog.start()
    threads = [threading.Thread(target=maps, daemon=True) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=150)
    stop.set()
    assert not any(thread.is_alive() for thread in threads), "async_map hung"
    assert not errors, errors

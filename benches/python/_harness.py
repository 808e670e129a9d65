"""Timing helpers shared by the Python benchmark scripts.

Contestants are timed *interleaved* (A, B, C, A, B, C, ...) so that a burst of
background load hits all of them alike, and each reports the median of its
repetitions. Scripts print ratios measured in the same run, never absolute
targets from elsewhere.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from typing import Callable, Optional


def cores() -> int:
    """CPUs this process may run on."""
    return len(os.sched_getaffinity(0))


def measure(
    contestants: dict[str, Callable[[], object]],
    repeat: int,
    check: Optional[Callable[[str, object], None]] = None,
) -> dict[str, list[float]]:
    """Wall times in seconds of each contestant over ``repeat`` interleaved rounds."""
    times: dict[str, list[float]] = {name: [] for name in contestants}
    for _ in range(repeat):
        for name, fn in contestants.items():
            started = time.perf_counter()
            result = fn()
            times[name].append(time.perf_counter() - started)
            if check is not None:
                check(name, result)
    return times


def median(times: dict[str, list[float]], name: str) -> float:
    """The median of one contestant's times."""
    return statistics.median(times[name])


def report(title: str, times: dict[str, list[float]], baseline: str, note: str = "") -> None:
    """Prints one table: median and best time of each contestant, and both as
    ratios to ``baseline`` (the best times show the cost without background noise)."""
    base_median = statistics.median(times[baseline])
    base_best = min(times[baseline])
    print(f"\n{title}")
    if note:
        print(note)
    print(
        f"{'contestant':<44} {'median':>10} {'best':>10} {'ratio (median)':>15} {'ratio (best)':>13}"
    )
    for name, values in times.items():
        med, best = statistics.median(values), min(values)
        print(
            f"{name:<44} {med * 1000:>7.1f} ms {best * 1000:>7.1f} ms "
            f"{med / base_median:>14.2f}x {best / base_best:>12.2f}x"
        )
    sys.stdout.flush()


def header(script: str) -> None:
    """Prints the interpreter and machine the figures come from."""
    import platform

    print(
        f"{script}: Python {platform.python_version()}, {cores()} usable cores, "
        f"{platform.machine()}"
    )

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
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS
        return os.cpu_count() or 1


def measure(
    contestants: dict[str, Callable[[], object]],
    repeat: int,
    check: Optional[Callable[[str, object], None]] = None,
) -> dict[str, float]:
    """Median wall time in seconds of each contestant over ``repeat`` interleaved rounds."""
    times: dict[str, list[float]] = {name: [] for name in contestants}
    for _ in range(repeat):
        for name, fn in contestants.items():
            started = time.perf_counter()
            result = fn()
            times[name].append(time.perf_counter() - started)
            if check is not None:
                check(name, result)
    return {name: statistics.median(values) for name, values in times.items()}


def report(title: str, medians: dict[str, float], baseline: str, note: str = "") -> None:
    """Prints one table: time and ratio to ``baseline`` for each contestant."""
    base = medians[baseline]
    print(f"\n{title}")
    if note:
        print(note)
    print(f"{'contestant':<44} {'median':>10} {'vs ' + baseline:>22}")
    for name, seconds in medians.items():
        print(f"{name:<44} {seconds * 1000:>8.1f} ms {seconds / base:>21.2f}x")
    sys.stdout.flush()


def header(script: str) -> None:
    import platform

    print(
        f"{script}: Python {platform.python_version()}, {cores()} usable cores, {platform.machine()}"
    )

"""`python -m vedart demo`, the README's first command, runs and says what it measured."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest


@pytest.mark.timeout(120)
def test_demo_runs_each_part_with_its_explanation() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "vedart", "demo"],
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for part in ("1. CPU-heavy map", "2. I/O-bound map", "3. asyncio pipeline"):
        assert part in out
    # Each part prints where it ran and why, and both sides of every comparison are timed.
    assert out.count("explain(): ") == 3
    assert len(re.findall(r"serial loop +\d+\.\d ms", out)) == 2
    assert len(re.findall(r"vedart par_iter +\d+\.\d ms", out)) == 2
    # The default configuration: a pool no larger than the machine's cores.
    header = re.search(r"(\d+) CPUs, thread pool of up to (\d+) threads", out)
    assert header is not None
    assert int(header.group(2)) == int(header.group(1))

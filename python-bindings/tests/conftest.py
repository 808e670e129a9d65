"""Shared fixtures of the vedart test suite.

Tests never assert a speed: time bounds only catch hangs and are generous,
because the suite must pass on a loaded two-core machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from typing import Any, Callable, Iterator

import pytest

import vedart as veda

#: Generous bound for "this must not hang" checks, in seconds.
HANG_TIMEOUT = 60.0


def run_in_threads(
    target: Callable[[int], Any], count: int, timeout: float = HANG_TIMEOUT
) -> None:
    """Calls ``target(i)`` for ``i`` in ``range(count)``, each in a thread of
    its own, all at once; fails if one raised or has not ended within
    ``timeout`` seconds of the join (a hang fails instead of hanging)."""
    errors: list[BaseException] = []

    def guarded(i: int) -> None:
        try:
            target(i)
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=guarded, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    assert not [thread for thread in threads if thread.is_alive()], "a thread hung"
    assert not errors, errors


def process_running(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie (an orphan is reaped by init)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.fixture
def runtime_config() -> Iterator[object]:
    """Starts a runtime from a config for the duration of a test.

    Usage: ``runtime_config(veda.Config(num_threads=2))``; the runtime is shut
    down afterwards so later tests get the default one again.
    """
    started = []

    def start(config: veda.Config) -> veda.Runtime:
        veda.shutdown()
        runtime = veda.init(config)
        started.append(runtime)
        return runtime

    yield start
    veda.shutdown()


@pytest.fixture
def two_threads(runtime_config: object) -> veda.Runtime:
    """A runtime with exactly two worker threads (the tightest realistic pool)."""
    return runtime_config(veda.Config(num_threads=2, min_workers=0))  # type: ignore[operator]


def run_python(
    code: str, *, timeout: float = HANG_TIMEOUT, env: dict | None = None
) -> subprocess.CompletedProcess:
    """Runs ``code`` in a fresh interpreter with the same ``sys.path``."""
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    if env:
        full_env.update(env)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )

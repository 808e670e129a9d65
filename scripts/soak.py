"""Soak and fault run: many threads driving every executor while a chaos thread
kills worker processes, cancels pipelines and lets deadlines expire, with
``init``/``shutdown`` cycles between rounds.

It samples this process's RSS, threads, open file descriptors and child
processes after a warm-up round (``start``), half-way (``middle``) and at the
end, prints them as a table and fails (exit status 1) when any of them grew
beyond a small allowance, when a child process is left after ``shutdown``, when
an operation returned a wrong result or raised an error that is not one of the
faults the run provokes, or when a thread stalls (every stack is dumped).

Usage: python scripts/soak.py [--seconds 480] [--threads 8] [--seed 1]
``make soak`` runs it for 8 minutes; ``make test`` runs a 45-second version
(python-bindings/tests/test_soak.py).
"""

from __future__ import annotations

import argparse
import asyncio
import faulthandler
import os
import random
import signal
import sys
import threading
import time
from typing import Any, Callable, Optional

import vedart as veda
from vedart import _process

#: Errors the run provokes on purpose: a killed worker, a cancelled pipeline,
#: an expired deadline, and a chunk that was running on a killed worker.
EXPECTED_ERRORS: tuple[type[BaseException], ...] = tuple(
    cls
    for cls in (
        veda.WorkerCrashedError,
        veda.CancelledError,
        veda.TimeoutError,
        getattr(veda, "ChunkInterruptedError", None),
    )
    if cls is not None
)

#: Allowed growth between the start and the end sample.
RSS_ALLOWANCE_BYTES = 24 * 1024 * 1024
THREAD_ALLOWANCE = 4
FD_ALLOWANCE = 8
#: A driver thread that finishes no operation for this long is reported hung.
STALL_SECONDS = 60.0


class Failure(Exception):
    """The soak found a problem; the message says which."""


# -- what the process holds ----------------------------------------------------------


def _children() -> list[int]:
    pids: list[int] = []
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/children") as file:
                pids.extend(int(pid) for pid in file.read().split())
        except OSError:  # the thread ended while we looked
            pass
    return pids


def sample() -> dict[str, int]:
    """RSS (bytes), threads, open fds and child processes of this process."""
    with open("/proc/self/statm") as file:
        rss_pages = int(file.read().split()[1])
    return {
        "rss": rss_pages * os.sysconf("SC_PAGE_SIZE"),
        "threads": len(os.listdir("/proc/self/task")),
        "fds": len(os.listdir("/proc/self/fd")),
        "children": len(_children()),
    }


def table(rows: list[tuple[str, dict[str, int]]]) -> str:
    lines = [f"{'sample':<8} {'RSS MiB':>9} {'threads':>8} {'fds':>5} {'children':>9}"]
    for name, s in rows:
        lines.append(
            f"{name:<8} {s['rss'] / 2**20:>9.1f} {s['threads']:>8} {s['fds']:>5} "
            f"{s['children']:>9}"
        )
    return "\n".join(lines)


# -- the operations -----------------------------------------------------------------


def square(x: int) -> int:
    return x * x


def slow_square(x: int) -> int:
    time.sleep(0.002)
    return x * x


async def double(x: int) -> int:
    await asyncio.sleep(0)
    return 2 * x


def fail_at_7(x: int) -> int:
    if x == 7:
        raise ValueError("soak: item 7")
    time.sleep(0.001)
    return x


def _scope_with_failure() -> str:
    try:
        with veda.scope() as s:
            for i in range(10):
                s.spawn(time.sleep, 0.01 * i)
            s.spawn(fail_at_7, 7)
    except ValueError:
        return "cancelled"
    raise Failure("a scope whose child failed did not raise")


def _process_fail_fast() -> str:
    try:
        veda.par_iter(range(200), executor="process").map(fail_at_7).collect()
    except ValueError:
        return "raised"
    raise Failure("a process map whose item failed did not raise")


async def nap(x: float) -> float:
    await asyncio.sleep(x)
    return x


#: Pipelines whose deadline (0.2 s) expires: sleeps of up to 3 s.
DEADLINES: list[Callable[[], Any]] = [
    lambda: veda.par_iter(range(4), executor="process").map(time.sleep).collect(timeout=0.2),
    lambda: veda.par_iter(range(4), executor="thread").map(time.sleep).collect(timeout=0.2),
    lambda: veda.par_iter(range(4)).async_map(nap).collect(timeout=0.2),
    lambda: list(veda.par_iter(range(4), executor="process").map(time.sleep).iter(timeout=0.2)),
    lambda: veda.spawn(time.sleep, 3).result(timeout=0.2),
]


def _with_deadline(which: int) -> str:
    try:
        DEADLINES[which % len(DEADLINES)]()
    except veda.TimeoutError:
        return "expired"
    raise Failure(f"deadline {which % len(DEADLINES)}: 0.2 s on sleeps of up to 3 s did not expire")


def operations() -> list[tuple[str, Callable[[], Any], Any]]:
    xs = range(400)
    squares = [x * x for x in xs]
    doubles = [2 * x for x in range(500)]

    def scoped() -> list[int]:
        with veda.scope() as s:
            futures = [s.spawn(square, i) for i in range(16)]
        return [f.result() for f in futures]

    async def gathered() -> list[list[int]]:
        return await asyncio.gather(
            *[veda.par_iter(range(100)).async_map(double, concurrency=8).collect() for _ in range(8)]
        )

    return [
        ("thread", lambda: veda.par_iter(xs, executor="thread").map(square).collect(), squares),
        ("process", lambda: veda.par_iter(xs, executor="process").map(slow_square).sum(),
         sum(squares)),
        ("auto", lambda: veda.par_iter(xs).map(square).collect(), squares),
        ("async_map", lambda: veda.par_iter(range(500)).async_map(double).collect(), doubles),
        ("async", lambda: veda.par_iter(range(500), executor="async").map(double).collect(),
         doubles),
        ("asyncio", lambda: asyncio.run(gathered()), [[2 * x for x in range(100)]] * 8),
        ("scope", scoped, [i * i for i in range(16)]),
        ("spawn", lambda: veda.spawn(square, 9).result(timeout=60), 81),
        ("early stop", lambda: veda.par_iter(xs, executor="process").map(square).take(5).collect(),
         squares[:5]),
        ("scope failure", _scope_with_failure, "cancelled"),
        ("process failure", _process_fail_fast, "raised"),
    ]


# -- the run --------------------------------------------------------------------------


class Soak:
    def __init__(self, seconds: float, threads: int, seed: int) -> None:
        self.seconds = seconds
        self.threads = threads
        self.random = random.Random(seed)
        self.ops = operations()
        self.completed = 0
        self.provoked = 0
        self.kills = 0
        self.cycles = 0
        self.errors: list[str] = []
        self.lock = threading.Lock()

    def _drive(self, index: int, until: float, progress: list[float]) -> None:
        rng = random.Random(index * 7919 + self.random.random())
        while time.monotonic() < until and not self.errors:
            name, run, expected = rng.choice(self.ops)
            try:
                result = run()
            except EXPECTED_ERRORS:
                with self.lock:
                    self.provoked += 1
            except BaseException as exc:  # anything else is a finding
                self.errors.append(f"{name}: {type(exc).__name__}: {exc}")
                return
            else:
                if result != expected:
                    self.errors.append(f"{name}: wrong result {result!r:.200}")
                    return
                with self.lock:
                    self.completed += 1
            progress[index] = time.monotonic()

    def _chaos(self, until: float, stop: threading.Event) -> None:
        rng = random.Random(self.random.random())
        while time.monotonic() < until and not stop.wait(rng.uniform(0.2, 0.6)):
            action = rng.random()
            if action < 0.5:
                pool = _process.current_pool()
                pids = pool.pids() if pool is not None else []
                if pids:
                    try:
                        os.kill(rng.choice(pids), signal.SIGKILL)
                        self.kills += 1
                    except ProcessLookupError:
                        pass
            else:
                try:
                    _with_deadline(rng.randrange(len(DEADLINES)))
                except Failure as failure:
                    self.errors.append(str(failure))

    def round(self, seconds: float) -> dict[str, int]:
        """Drivers and chaos for ``seconds``, then ``init``/``shutdown`` cycles;
        returns the sample taken when the drivers are done (pools still up)."""
        until = time.monotonic() + seconds
        progress = [time.monotonic()] * self.threads
        stop = threading.Event()
        drivers = [
            threading.Thread(target=self._drive, args=(i, until, progress), daemon=True)
            for i in range(self.threads)
        ]
        chaos = threading.Thread(target=self._chaos, args=(until, stop), daemon=True)
        for thread in drivers + [chaos]:
            thread.start()
        while any(thread.is_alive() for thread in drivers):
            time.sleep(0.25)
            now = time.monotonic()
            stalled = [
                i for i, t in enumerate(drivers) if t.is_alive() and now - progress[i] > STALL_SECONDS
            ]
            if stalled:
                faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
                raise Failure(f"driver threads {stalled} made no progress for {STALL_SECONDS} s")
        stop.set()
        chaos.join(timeout=STALL_SECONDS)
        if self.errors:
            raise Failure("; ".join(self.errors[:5]))
        held = sample()
        for _ in range(5):
            veda.shutdown()
            veda.init(veda.Config(num_threads=2))
            if veda.par_iter(range(100)).map(square).sum() != sum(x * x for x in range(100)):
                raise Failure("a map after init returned a wrong result")
            self.cycles += 1
        return held

    def run(self) -> list[tuple[str, dict[str, int]]]:
        rounds = max(4, int(self.seconds // 10))
        per_round = self.seconds / rounds
        # The first round is a warm-up: pools, loops and caches reach their size.
        samples = [("start", self.round(per_round))]
        for i in range(1, rounds):
            held = self.round(per_round)
            if i == rounds // 2:
                samples.append(("middle", held))
        samples.append(("end", held))
        veda.shutdown()
        _process.shutdown_pool()
        deadline = time.monotonic() + 10
        while _children() and time.monotonic() < deadline:
            time.sleep(0.05)
        samples.append(("shutdown", sample()))
        return samples


def check(samples: list[tuple[str, dict[str, int]]]) -> list[str]:
    """What grew or was left behind."""
    by_name = dict(samples)
    start, end = by_name["start"], by_name["end"]
    problems = []
    if end["rss"] - start["rss"] > RSS_ALLOWANCE_BYTES:
        grew = (end["rss"] - start["rss"]) / 2**20
        problems.append(f"RSS grew by {grew:.1f} MiB (allowed {RSS_ALLOWANCE_BYTES / 2**20:.0f})")
    if end["threads"] - start["threads"] > THREAD_ALLOWANCE:
        problems.append(f"threads grew from {start['threads']} to {end['threads']}")
    if end["fds"] - start["fds"] > FD_ALLOWANCE:
        problems.append(f"open fds grew from {start['fds']} to {end['fds']}")
    if end["children"] > max(start["children"], 1) + 1:
        problems.append(f"child processes grew from {start['children']} to {end['children']}")
    left: Optional[int] = by_name["shutdown"]["children"]
    if left:
        problems.append(f"{left} child process(es) left after shutdown: {_children()}")
    return problems


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=480.0)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    faulthandler.enable()
    # The whole run's own watchdog: a hang anywhere dumps every stack and fails.
    faulthandler.dump_traceback_later(args.seconds * 2 + 120, exit=True)
    soak = Soak(args.seconds, args.threads, args.seed)
    started = time.monotonic()
    try:
        samples = soak.run()
    except Failure as failure:
        print(f"soak FAILED: {failure}", file=sys.stderr)
        return 1
    print(table(samples))
    print(
        f"{time.monotonic() - started:.0f} s, {args.threads} threads: {soak.completed} operations "
        f"right, {soak.provoked} provoked faults raised as expected, {soak.kills} workers "
        f"killed, {soak.cycles} init/shutdown cycles"
    )
    problems = check(samples)
    for problem in problems:
        print(f"soak FAILED: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

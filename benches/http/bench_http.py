#!/usr/bin/env python3
"""`make bench-http`: the hello-world hyper server on vedart vs the same server on
tokio (`benches/src/bin/http_hello.rs`, both with 2 worker threads), loaded by
`wrk -t2 -c64 -d10s --latency` against 127.0.0.1, alternating servers, 5 rounds.

Prints requests/s and p99 latency per runtime (medians over the rounds) and the
vedart/tokio ratios (median of the per-round ratios: each round runs both
servers back to back, so a noisy minute moves both). Targets: requests/s
>= 1.0x tokio, p99 <= 1.0x tokio.

Installs wrk with apt-get when it is missing (Debian's `wrk` package).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import time

UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    print("wrk is missing: installing it with apt-get (Debian package wrk)", flush=True)
    prefix = [] if os.geteuid() == 0 else ["sudo", "-n"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "wrk"]):
        result = subprocess.run(prefix + command, env=env)
        if result.returncode != 0:
            sys.exit(f"bench-http: `{' '.join(prefix + command)}` failed; install wrk by hand")
    found = shutil.which("wrk")
    if not found:
        sys.exit("bench-http: apt-get installed no wrk binary")
    return found


def start(server: str, runtime: str, workers: int) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [server, runtime, "127.0.0.1:0", str(workers)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.match(r"listening on (\S+)", line)
    if not match:
        proc.kill()
        sys.exit(f"bench-http: the {runtime} server did not start (said {line!r})")
    return proc, match.group(1)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk(binary: str, addr: str, seconds: int, threads: int, connections: int) -> tuple[float, float]:
    """Runs wrk; returns (requests/s, p99 latency in ms)."""
    out = subprocess.run(
        [binary, f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", f"http://{addr}/"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: .*", out)
    if not rps or not p99:
        sys.exit(f"bench-http: could not read wrk's output:\n{out}")
    if errors:
        print(f"  warning: {errors.group(0)}")
    return float(rps.group(1)), float(p99.group(1)) * UNITS[p99.group(2)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default="target/release/http_hello")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()
    binary = ensure_wrk()
    results: dict[str, list[tuple[float, float, float]]] = {"vedart": [], "tokio": []}
    print(
        f"wrk -t{args.threads} -c{args.connections} -d{args.seconds}s, "
        f"servers with {args.workers} worker threads, {args.rounds} rounds"
    )
    for round_ in range(args.rounds):
        order = ["vedart", "tokio"] if round_ % 2 == 0 else ["tokio", "vedart"]
        for runtime in order:
            proc, addr = start(args.server, runtime, args.workers)
            try:
                wrk(binary, addr, 1, args.threads, args.connections)  # warm-up
                before = cpu_seconds(proc.pid)
                rps, p99 = wrk(binary, addr, args.seconds, args.threads, args.connections)
                # The server's CPU time per request: what the runtime costs,
                # steadier than throughput on a machine others load too.
                cpu_us = (cpu_seconds(proc.pid) - before) * 1e6 / (rps * args.seconds)
            finally:
                proc.kill()
                proc.wait()
            results[runtime].append((rps, p99, cpu_us))
            print(
                f"  round {round_ + 1} {runtime:>6}: {rps:>10,.0f} req/s  p99 {p99:.2f} ms"
                f"  server CPU {cpu_us:.2f} us/request",
                flush=True,
            )
            time.sleep(0.5)
    pairs = list(zip(results["vedart"], results["tokio"]))
    ratio = [statistics.median(v[i] / t[i] for v, t in pairs) for i in range(3)]
    med = {rt: [statistics.median(r[i] for r in rs) for i in range(3)] for rt, rs in results.items()}
    print()
    print("| metric | vedart | tokio | vedart/tokio | target |")
    print("| --- | --- | --- | --- | --- |")
    print(f"| requests/s | {med['vedart'][0]:,.0f} | {med['tokio'][0]:,.0f} | {ratio[0]:.2f}x | >= 1.0x |")
    print(f"| p99 latency | {med['vedart'][1]:.2f} ms | {med['tokio'][1]:.2f} ms | {ratio[1]:.2f}x | <= 1.0x |")
    print(f"| server CPU per request | {med['vedart'][2]:.2f} us | {med['tokio'][2]:.2f} us | {ratio[2]:.2f}x | |")
    print("(medians over the rounds; ratios: median of the per-round ratios)")


if __name__ == "__main__":
    main()

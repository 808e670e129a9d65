"""``python -m vedart demo``: a short tour of real work, showing what ran where.

1. A CPU-heavy map (``zlib`` compression, which releases the interpreter) on
   the thread executor, against a serial loop.
2. An I/O-bound map: HTTP requests to a local server that answers after 20 ms.
3. An asyncio pipeline: coroutines fetch over the network on the event loop,
   a thread stage parses, ``await`` gives the result without blocking the loop.
"""

from __future__ import annotations

import asyncio
import collections
import http.server
import os
import threading
import time
import urllib.request
import zlib
from typing import Any, Callable

import vedart as veda

#: Simulated service latency of the local HTTP server, seconds.
LATENCY = 0.02


class _Server(http.server.ThreadingHTTPServer):
    request_queue_size = 256  # 50 clients connect at once
    daemon_threads = True


class _SlowHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        time.sleep(LATENCY)
        body = f"item {self.path.rsplit('/', 1)[-1]}\n".encode() * 50
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:  # keep the demo quiet
        pass


def _where(log: collections.Counter, fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
    lock = threading.Lock()

    def wrapped(x: Any) -> Any:
        with lock:
            log[threading.current_thread().name] += 1
        return fn(x)

    return wrapped


def _show(log: collections.Counter) -> str:
    return ", ".join(f"{name} x{count}" for name, count in sorted(log.items()))


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - started


def run_demo() -> int:
    cpus = os.cpu_count() or 1
    veda.init(veda.Config(num_threads=max(8, cpus)))
    runtime = veda.get_runtime()
    print(
        f"vedart {veda.__version__}: {cpus} CPUs, thread pool of up to "
        f"{runtime.config.max_workers} threads\n"
    )

    # 1. CPU-heavy map --------------------------------------------------------
    # Random DNA-like text: compressible, and different in every block.
    to_acgt = bytes(b"acgt"[i % 4] for i in range(256))
    blocks = [os.urandom(256 * 1024).translate(to_acgt) for _ in range(64)]
    print("1. CPU-heavy map: zlib.compress of 64 blocks of 256 KiB")
    _, serial = _timed(lambda: [zlib.compress(b, 1) for b in blocks])
    where: collections.Counter = collections.Counter()
    sizes, parallel = _timed(
        lambda: (
            veda.par_iter(blocks)
            .map(_where(where, lambda b: zlib.compress(b, 1)))
            .map(len)
            .collect()
        )
    )
    print(f"   serial loop         {serial * 1000:7.1f} ms")
    print(f"   vedart par_iter     {parallel * 1000:7.1f} ms  ({serial / parallel:.1f}x)")
    print(f"   ran on: {_show(where)}")
    print(f"   compressed {sum(len(b) for b in blocks) >> 20} MiB to {sum(sizes) >> 20} MiB\n")

    # 2. I/O-bound map ---------------------------------------------------------
    server = _Server(("127.0.0.1", 0), _SlowHandler)
    threading.Thread(target=server.serve_forever, name="demo-http-server", daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    urls = [f"{base}/{i}" for i in range(40)]

    def fetch(url: str) -> int:
        with urllib.request.urlopen(url, timeout=10) as response:
            return len(response.read())

    print(
        f"2. I/O-bound map: 40 HTTP requests to a local server answering in {LATENCY * 1000:.0f} ms"
    )
    _, serial = _timed(lambda: [fetch(u) for u in urls[:10]])
    serial *= len(urls) / 10  # ten are enough to know the serial cost
    where = collections.Counter()
    total, parallel = _timed(lambda: veda.par_iter(urls).map(_where(where, fetch)).sum())
    print(f"   serial (estimated)  {serial * 1000:7.1f} ms")
    print(f"   vedart par_iter     {parallel * 1000:7.1f} ms  ({serial / parallel:.1f}x)")
    print(f"   ran on: {_show(where)}")
    print(f"   downloaded {total} bytes\n")

    # 3. asyncio pipeline ------------------------------------------------------
    async def fetch_async(i: int) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.server_address[1])
        writer.write(f"GET /{i} HTTP/1.0\r\nHost: demo\r\n\r\n".encode())
        await writer.drain()
        data = await reader.read()
        writer.close()
        await writer.wait_closed()
        fetched_on[threading.current_thread().name] += 1
        return data

    def parse(response: bytes) -> int:
        parsed_on[threading.current_thread().name] += 1
        return response.split(b"\r\n\r\n", 1)[1].count(b"\n")

    fetched_on: collections.Counter = collections.Counter()
    parsed_on: collections.Counter = collections.Counter()

    async def main() -> tuple[int, int]:
        ticks = 0

        async def heartbeat() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.005)
                ticks += 1

        beat = asyncio.create_task(heartbeat())
        lines = await (
            veda.par_iter(range(200)).async_map(fetch_async, concurrency=50).map(parse).sum()
        )
        beat.cancel()
        return lines, ticks

    print("3. asyncio pipeline: 200 requests (50 in flight) on the event loop, parsed on threads")
    (lines, ticks), elapsed = _timed(lambda: asyncio.run(main()))
    print(
        f"   awaited pipeline    {elapsed * 1000:7.1f} ms  (serial would take "
        f"~{200 * LATENCY * 1000:.0f} ms)"
    )
    print(f"   fetched on: {_show(fetched_on)}")
    print(f"   parsed on:  {_show(parsed_on)}")
    print(f"   {lines} lines; the event loop kept ticking meanwhile ({ticks} heartbeats)")

    server.shutdown()
    stats = runtime.stats()
    print(
        f"\npool: {stats.threads} threads alive, {stats.jobs_completed} jobs run, "
        f"bounds [{stats.min_workers}, {stats.max_workers}]"
    )
    veda.shutdown()
    return 0

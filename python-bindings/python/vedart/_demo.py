"""``python -m vedart demo``: a short tour of real work, showing what ran where.

1. A CPU-heavy map (``zlib`` compression, which releases the interpreter),
   against a serial loop.
2. An I/O-bound map: HTTP requests to a local server that answers after 20 ms,
   against the same requests made one after another.
3. An asyncio pipeline: coroutines fetch over the network on the event loop,
   a thread stage parses, ``await`` gives the result without blocking the loop.

Every part runs with the default configuration (a thread pool as large as the
machine has cores), times both sides for real, and prints the pipeline's
``explain()``: where it ran and why.

``python -m vedart demo --cluster local`` (or ``--cluster tcp://host:8786``)
instead runs a CPU-heavy map on a Dask cluster (``executor="dask"``) and
shows which worker ran how many items.
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


def _explain(pipeline: Any) -> None:
    lines = str(pipeline.explain()).splitlines()
    print("   explain(): " + "\n              ".join(lines))


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - started


def run_demo() -> int:
    cpus = os.cpu_count() or 1
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
    compress = veda.par_iter(blocks).map(_where(where, lambda b: zlib.compress(b, 1))).map(len)
    sizes, parallel = _timed(compress.collect)
    print(f"   serial loop         {serial * 1000:7.1f} ms")
    print(f"   vedart par_iter     {parallel * 1000:7.1f} ms  ({serial / parallel:.1f}x)")
    print(f"   ran on: {_show(where)}")
    _explain(compress)
    print(f"   compressed {sum(len(b) for b in blocks) >> 20} MiB to {sum(sizes) >> 20} MiB\n")

    # 2. I/O-bound map ---------------------------------------------------------
    server = _Server(("127.0.0.1", 0), _SlowHandler)
    threading.Thread(target=server.serve_forever, name="demo-http-server", daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    urls = [f"{base}/{i}" for i in range(24)]

    def fetch(url: str) -> int:
        with urllib.request.urlopen(url, timeout=10) as response:
            return len(response.read())

    print(
        f"2. I/O-bound map: {len(urls)} HTTP requests to a local server answering in "
        f"{LATENCY * 1000:.0f} ms"
    )
    _, serial = _timed(lambda: [fetch(u) for u in urls])
    where = collections.Counter()
    download = veda.par_iter(urls).map(_where(where, fetch))
    total, parallel = _timed(download.sum)
    print(f"   serial loop         {serial * 1000:7.1f} ms")
    print(f"   vedart par_iter     {parallel * 1000:7.1f} ms  ({serial / parallel:.1f}x)")
    print(f"   ran on: {_show(where)}")
    _explain(download)
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

    pipeline = veda.par_iter(range(200)).async_map(fetch_async, concurrency=50).map(parse)

    async def main() -> tuple[int, int]:
        ticks = 0

        async def heartbeat() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.005)
                ticks += 1

        beat = asyncio.create_task(heartbeat())
        lines = await pipeline.sum()
        beat.cancel()
        return lines, ticks

    print("3. asyncio pipeline: 200 requests (50 in flight) on the event loop, parsed on threads")
    (lines, ticks), elapsed = _timed(lambda: asyncio.run(main()))
    print(
        f"   awaited pipeline    {elapsed * 1000:7.1f} ms  (one request after another "
        f"would wait 200 x {LATENCY * 1000:.0f} ms = {200 * LATENCY:.1f} s)"
    )
    print(f"   fetched on: {_show(fetched_on)}")
    print(f"   parsed on:  {_show(parsed_on)}")
    print(f"   {lines} lines; the event loop kept ticking meanwhile ({ticks} heartbeats)")
    _explain(pipeline)

    server.shutdown()
    stats = runtime.stats()
    print(
        f"\npool: {stats.threads} threads alive, {stats.jobs_completed} jobs run, "
        f"bounds [{stats.min_workers}, {stats.max_workers}]"
    )
    veda.shutdown()
    return 0


def _fib(n: int) -> int:
    return n if n < 2 else _fib(n - 1) + _fib(n - 2)


def _fib_where(n: int) -> tuple[int, str]:
    """``fib(n)`` and where it ran: the Dask worker's address and pid."""
    from distributed import get_worker

    return _fib(n), f"{get_worker().address} (pid {os.getpid()})"


def run_cluster_demo(cluster: str) -> int:
    """``python -m vedart demo --cluster ADDRESS``: a CPU-heavy map on a Dask
    cluster (``"local"`` starts one on this machine), against a serial loop."""
    veda.init(cluster=cluster)
    items = [24] * 200
    print(f"vedart {veda.__version__}: a map on the Dask cluster {cluster!r}")
    # A first small map connects (and starts the cluster, for "local").
    _, connect = _timed(lambda: veda.par_iter(items[:2], executor="dask").map(_fib).collect())
    print(f"   connected in {connect:.1f} s")
    print(f"CPU-heavy map on the cluster: fib(24) x {len(items)}")
    _, serial = _timed(lambda: [_fib(n) for n in items])
    pipeline = veda.par_iter(items, executor="dask").map(_fib_where)
    results, parallel = _timed(pipeline.collect)
    where = collections.Counter(place for _, place in results)
    print(f"   serial loop         {serial * 1000:7.1f} ms")
    print(f"   vedart on cluster   {parallel * 1000:7.1f} ms  ({serial / parallel:.1f}x)")
    print(f"   ran on: {_show(where)}")
    _explain(pipeline)
    figures = veda.telemetry.snapshot().executors["dask"]
    print(
        f"   telemetry: {figures['tasks']['completed']} tasks, {figures['bytes_sent']} bytes "
        f"sent, {figures['bytes_received']} received, {figures['workers']} worker threads"
    )
    veda.shutdown()  # closes the connection, and the cluster "local" started
    return 0

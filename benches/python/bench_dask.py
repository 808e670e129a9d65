"""``executor="dask"`` on a two-worker LocalCluster (processes, one thread each).

1. fib(22) x 2,000 items: vedart on the cluster against the same loop run
   serially in this process. Target (issue 10): speedup >= 1.7x.
2. 10,000 tiny items (``x * 2``): vedart against ``client.map(f, items)`` +
   ``client.gather`` (one task per item; target: vedart <= 0.2x its time) and
   against ``dask.bag.from_sequence(items).map(f).compute()`` with its default
   partitions (target: <= 1.0x).
3. Time to the first result of a 10,000-item streaming map: vedart's first
   item of ``for x in par_iter(...)`` against ``client.gather(client.map(...))``
   (all results at once; target: vedart <= 0.2x).

Every contestant runs on the same cluster, warmed first, interleaved.

The fib part also times a hand-chunked ``client.map`` (50 items per task):
what Dask itself reaches on the same cores, under the same load.

Usage: python benches/python/bench_dask.py [--repeat R] [--items N] [--parts 123]
"""

from __future__ import annotations

import argparse
import logging
import time
from typing import Any

from _harness import cores, header, measure, median, report

import vedart as veda


def fib(n: int) -> int:
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def double(x: int) -> int:
    return x * 2


def fib_all(ns: list[int]) -> list[int]:
    return [fib(n) for n in ns]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--fib-items", type=int, default=2000)
    parser.add_argument("--parts", default="123", help="which parts to run, e.g. 1 or 23")
    args = parser.parse_args()

    import dask
    import distributed

    header("bench_dask.py")
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        cluster = distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
            silence_logs=logging.ERROR,
        )
    client = distributed.Client(cluster, set_as_default=False)
    veda.init(cluster=cluster.scheduler_address)
    print(f"LocalCluster: 2 worker processes x 1 thread; {cores()} usable cores here")
    try:
        if "1" in args.parts:
            fib_part(args, client)
        if "2" in args.parts:
            tiny_part(args, client)
        if "3" in args.parts:
            first_part(args, client)
    finally:
        veda.shutdown()
        client.close()
        cluster.close()
        time.sleep(0.1)


def fib_part(args: argparse.Namespace, client: Any) -> None:
    fibs = [22] * args.fib_items
    expected = [fib(22)] * args.fib_items
    chunks = [fibs[i : i + 50] for i in range(0, len(fibs), 50)]

    def check(name: str, result: object) -> None:
        assert result == expected, name

    def hand_chunked() -> list[int]:
        parts = client.gather(client.map(fib_all, chunks, pure=False))
        return [value for part in parts for value in part]

    times = measure(
        {
            "serial loop (this process)": lambda: [fib(n) for n in fibs],
            "client.map over 50-item chunks (by hand)": hand_chunked,
            'vedart par_iter(executor="dask")': lambda: veda.par_iter(fibs, executor="dask")
            .map(fib)
            .collect(),
        },
        args.repeat,
        check,
    )
    report(
        f"1. fib(22) x {args.fib_items}",
        times,
        "serial loop (this process)",
        "speedup = 1 / ratio; target >= 1.7x",
    )
    serial = median(times, "serial loop (this process)")
    for name in ('vedart par_iter(executor="dask")', "client.map over 50-item chunks (by hand)"):
        print(f"{name}: speedup over serial {serial / median(times, name):.2f}x (medians)")


def tiny_part(args: argparse.Namespace, client: Any) -> None:
    import dask.bag

    items = list(range(args.items))
    expected = [x * 2 for x in items]

    def check(name: str, result: object) -> None:
        assert list(result) == expected, name  # type: ignore[call-overload]

    def client_map() -> list[int]:
        return client.gather(client.map(double, items, pure=False))  # type: ignore[no-any-return]

    def bag() -> list[int]:
        return dask.bag.from_sequence(items).map(double).compute(  # type: ignore[no-any-return]
            scheduler=client.get
        )

    def vedart() -> list[int]:
        return veda.par_iter(items, executor="dask").map(double).collect()

    for warm in (client_map, bag, vedart):
        warm()
    times = measure(
        {
            "client.map + client.gather": client_map,
            "dask.bag (default partitions)": bag,
            'vedart par_iter(executor="dask")': vedart,
        },
        args.repeat,
        check,
    )
    report(
        f"2. {args.items} tiny items (x * 2)",
        times,
        "client.map + client.gather",
        "targets: vedart <= 0.2x client.map, <= 1.0x dask.bag",
    )
    ours = median(times, 'vedart par_iter(executor="dask")')
    print(
        f"vedart / client.map: {ours / median(times, 'client.map + client.gather'):.3f}x; "
        f"vedart / dask.bag: {ours / median(times, 'dask.bag (default partitions)'):.2f}x"
    )


def first_part(args: argparse.Namespace, client: Any) -> None:
    items = list(range(args.items))

    def first_vedart() -> int:
        for value in veda.par_iter(items, executor="dask").map(double):
            return value  # type: ignore[no-any-return]
        raise AssertionError("no result")

    def first_gather() -> int:
        return client.gather(client.map(double, items, pure=False))[0]  # type: ignore[no-any-return]

    def check(name: str, result: object) -> None:
        assert result == 0, name

    times = measure(
        {"client.gather(client.map(...))": first_gather, "vedart first item": first_vedart},
        args.repeat,
        check,
    )
    report(
        f"3. time to first result, {args.items}-item streaming map",
        times,
        "client.gather(client.map(...))",
        "target: vedart <= 0.2x",
    )


if __name__ == "__main__":
    main()

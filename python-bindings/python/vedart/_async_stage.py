"""``async_map``: coroutines over a stream, with bounded concurrency, in order.

The stage runs in the thread that drives the pipeline. Items are grouped into
batches of ``2 * concurrency``; each batch becomes one coroutine submitted to
the target loop (the awaiting caller's loop when the pipeline is awaited, else
VedaRT's background loop), where a semaphore shared by the whole stage keeps at
most ``concurrency`` item coroutines in flight. Two batches are in flight at
once, so the loop always has the next batch ready; results come back in input
order. Closing the stream (an early stop, an error, Ctrl+C, or cancellation of
the awaiting task) cancels the coroutines still running.
"""

from __future__ import annotations

import asyncio
import collections
from typing import Any, Awaitable, Callable, Iterable, Iterator, Optional

from ._asyncio import background_loop, submit_coroutine, target_loop, wait_concurrent
from ._stages import chunked

#: Coroutines in flight when ``async_map`` is given no ``concurrency``.
DEFAULT_CONCURRENCY = 64

#: Batches submitted to the loop ahead of the one being consumed.
BATCHES_IN_FLIGHT = 2


async def _run_batch(
    fn: Callable[[Any], Awaitable[Any]], block: list[Any], shared: dict[str, Any], concurrency: int
) -> list[Any]:
    sem = shared.get("sem")
    if sem is None:  # created on the loop, on first use
        sem = shared["sem"] = asyncio.Semaphore(concurrency)

    async def one(item: Any) -> Any:
        async with sem:
            return await fn(item)

    tasks = [asyncio.ensure_future(one(item)) for item in block]
    try:
        return await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        raise


def async_map_items(
    items: Iterable[Any], fn: Callable[[Any], Awaitable[Any]], concurrency: Optional[int]
) -> Iterator[Any]:
    """``await fn(x)`` for each item, in order (see the module documentation)."""
    limit = concurrency or DEFAULT_CONCURRENCY
    loop = target_loop.get() or background_loop()
    shared: dict[str, Any] = {}
    pending: collections.deque[Any] = collections.deque()
    try:
        for block in chunked(items, 2 * limit):
            pending.append(submit_coroutine(_run_batch(fn, block, shared, limit), loop))
            while len(pending) >= BATCHES_IN_FLIGHT:
                yield from wait_concurrent(pending.popleft())
        while pending:
            yield from wait_concurrent(pending.popleft())
    finally:
        for future in pending:
            future.cancel()

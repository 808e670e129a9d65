"""``async_map``: coroutines over a stream, with bounded concurrency, in order
(or, after ``unordered()``, as they finish).

The stage runs in the thread that drives the pipeline (the *feeder*); its
coroutines run on the target loop: the awaiting caller's loop when the
pipeline is awaited, else VedaRT's background loop ``veda-async-loop``.

1. The feeder hands the loop *blocks* of items: each chunk of the upstream
   parallel segment as soon as that chunk is done (so items enter the stage
   while the upstream stage is still working), or consecutive items of a plain
   source. A block holds at most ``2 * concurrency`` items.
2. On the loop, :class:`_Lanes` keeps a FIFO of waiting items and at most
   ``concurrency`` *lane* tasks; a lane awaits ``fn(item)`` for one item after
   another until the FIFO is empty. There is no task and no semaphore per
   item: per item the loop only runs the coroutine itself. The number of
   live lanes is a counter that a lane decrements itself, in the same step in
   which it finds the FIFO empty (no ``await`` in between, and everything runs
   on the loop's thread): a block added later always sees the true count and
   starts the lanes it needs. Counting finished *tasks* instead (a done
   callback) left a window in which a lane had returned but still counted,
   and items added then waited for ever.
3. Each block has a :class:`concurrent.futures.Future`, completed with the
   block's results in order once its last item is done, or with the first
   exception (the block's other items are then skipped).
4. The feeder keeps at most ``4 * concurrency`` items submitted and not yet
   consumed (bounded buffering), takes the blocks in order and yields their
   results; blocks already done are yielded without waiting.
5. Closing the stream (an early stop, an error, Ctrl+C, or cancellation of
   the awaiting task, noticed within 50 ms) cancels the lanes: the coroutines
   in flight get :class:`asyncio.CancelledError`. So does the pipeline's
   ``timeout=``: the feeder's waits end at its deadline with
   :class:`vedart.TimeoutError`.
6. Unordered (the pipeline's ``unordered()``): instead of a future per block,
   the lanes put each outcome on one :class:`_Completions` queue the moment
   its coroutine finishes, and the feeder yields results in that order (step
   4's bound counts the items not yet taken from it). The first failure taken
   is raised at once and step 5 cancels the rest.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import queue
from typing import Any, Awaitable, Callable, Generator, Iterable, Iterator, Optional

from ._asyncio import background_loop, target_loop, wait_concurrent, wait_polling
from ._deadline import Deadline
from ._stages import chunked
from .telemetry import _count_coroutines

#: Coroutines in flight when ``async_map`` is given no ``concurrency``.
DEFAULT_CONCURRENCY = 64

#: Items per block, in multiples of the concurrency (step 1).
BLOCK_FACTOR = 2

#: Items submitted and not yet consumed, in multiples of the concurrency (step 4).
BUFFER_FACTOR = 4


class _Block:
    """Step 3: one block's results and the future that delivers them."""

    __slots__ = ("future", "results", "remaining", "failed")

    def __init__(self, size: int) -> None:
        self.future: concurrent.futures.Future[list[Any]] = concurrent.futures.Future()
        self.results: list[Any] = [None] * size
        self.remaining = size
        #: Set on the loop when an item failed: the block's other items are
        #: skipped (a plain flag: the future's ``done()`` takes a lock).
        self.failed = False

    def open(self) -> bool:
        """Whether the block's items are to run (the feeder did not cancel it)."""
        if not self.future.set_running_or_notify_cancel():
            return False
        if self.remaining == 0:
            self.future.set_result([])
            return False
        return True

    def done(self, index: int, value: Any) -> None:
        self.results[index] = value
        self.remaining -= 1
        if self.remaining == 0 and not self.failed:
            self.future.set_result(self.results)

    def fail(self, exc: BaseException) -> None:
        if not self.failed:
            self.failed = True
            if not self.future.done():  # (the feeder may have cancelled it)
                self.future.set_exception(exc)


class _Completions:
    """Step 6: the outcomes of an unordered stage, in the order they finish,
    shared by all the blocks (``failed`` is never set: the feeder stops at
    the first failure and closes the lanes)."""

    __slots__ = ("outcomes",)

    failed = False

    def __init__(self) -> None:
        #: ``(True, result)`` or ``(False, exception)``, put on the loop's thread.
        self.outcomes: queue.SimpleQueue[tuple[bool, Any]] = queue.SimpleQueue()

    def open(self) -> bool:
        return True

    def done(self, index: int, value: Any) -> None:
        self.outcomes.put((True, value))

    def fail(self, exc: BaseException) -> None:
        self.outcomes.put((False, exc))

    def take(self, deadline: Optional[Deadline]) -> Any:
        """The next result to finish (waiting for it), or its exception raised."""
        ok, value = wait_polling(self._take_within, deadline)
        if ok:
            return value
        raise value

    def _take_within(self, seconds: float) -> tuple[bool, Any]:
        try:
            return self.outcomes.get(timeout=seconds)
        except queue.Empty:
            raise TimeoutError from None


class _Lanes:
    """Step 2. Created by the feeder, then used only on the loop's thread."""

    __slots__ = ("fn", "limit", "queue", "active", "tasks", "closed")

    def __init__(self, fn: Callable[[Any], Awaitable[Any]], limit: int) -> None:
        self.fn = fn
        self.limit = limit
        self.queue: collections.deque[tuple[Any, int, Any]] = collections.deque()
        #: Lanes started and not yet out of their loop; only a lane lowers it.
        self.active = 0
        #: The lane tasks, for :meth:`close` only (never to decide anything).
        self.tasks: set[asyncio.Task[None]] = set()
        self.closed = False

    def add(self, block: Any, items: list[Any]) -> None:
        """Queues ``items`` of ``block`` (a :class:`_Block`, or the
        :class:`_Completions` of an unordered stage)."""
        if self.closed or not block.open():
            return
        self.queue.extend((block, i, item) for i, item in enumerate(items))
        starts = min(self.limit - self.active, len(self.queue))
        if starts <= 0:
            return
        loop = asyncio.get_running_loop()
        for _ in range(starts):
            self.active += 1
            task = loop.create_task(self._lane())
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _lane(self) -> None:
        queue, fn = self.queue, self.fn
        # Coroutines started, returned, raised, cancelled: counted here on the
        # loop's thread, handed to telemetry once when the lane ends.
        started = returned = raised = cancelled = 0
        try:
            while queue:
                block, index, item = queue.popleft()
                if block.failed:  # an earlier item of the block failed
                    continue
                started += 1
                try:
                    value = await fn(item)
                except asyncio.CancelledError as exc:
                    cancelled += 1
                    if self.closed:
                        raise
                    block.fail(exc)  # the coroutine cancelled itself
                except BaseException as exc:  # delivered in order by the feeder
                    raised += 1
                    block.fail(exc)
                else:
                    returned += 1
                    block.done(index, value)
        finally:
            # Reached in the step that saw the FIFO empty (or on cancellation):
            # from here on ``add`` knows this lane is gone.
            self.active -= 1
            _count_coroutines(started, returned, raised, cancelled)

    def close(self) -> None:
        self.closed = True
        self.queue.clear()
        for task in list(self.tasks):
            task.cancel()


def _blocks(
    items: Iterable[Any], batches: Optional[Iterator[list[Any]]], size: int
) -> Iterator[list[Any]]:
    """Step 1: upstream chunks as they complete, split to at most ``size``."""
    if batches is None:
        yield from chunked(items, size)
        return
    for batch in batches:
        if len(batch) <= size:
            yield batch
        else:
            for start in range(0, len(batch), size):
                yield batch[start : start + size]


class AsyncMapStream:
    """The results of ``async_map``, in input order, or as they finish when
    ``unordered`` (see the module docs)."""

    __slots__ = ("fn", "limit", "loop", "deadline", "unordered", "_results")

    def __init__(
        self,
        items: Iterable[Any],
        fn: Callable[[Any], Awaitable[Any]],
        concurrency: Optional[int],
        batches: Optional[Iterator[list[Any]]] = None,
        deadline: Optional[Deadline] = None,
        unordered: bool = False,
    ) -> None:
        self.fn = fn
        self.limit = concurrency or DEFAULT_CONCURRENCY
        self.loop = target_loop.get()
        self.deadline = deadline
        self.unordered = unordered
        feed = self._feed_unordered if unordered else self._feed
        self._results = feed(items, batches)

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        return next(self._results)

    def close(self) -> None:
        """Cancels the coroutines still in flight (step 5)."""
        self._results.close()

    def explain(self) -> tuple[str, str]:
        """``(executor, reason)`` for ``ParallelIterator.explain``."""
        where = (
            "the awaiting caller's event loop"
            if self.loop is not None
            else (
                "VedaRT's background loop (veda-async-loop), the pipeline being run from "
                "synchronous code"
            )
        )
        name = getattr(self.fn, "__qualname__", None) or repr(self.fn)
        return (
            "async",
            f"{name} is a coroutine function: awaited on {where}, at most "
            f"{self.limit} at once, results "
            + ("as they finish" if self.unordered else "in input order"),
        )

    def _feed_unordered(
        self, items: Iterable[Any], batches: Optional[Iterator[list[Any]]]
    ) -> Generator[Any, None, None]:
        """Step 6."""
        loop = self.loop or background_loop()
        lanes = _Lanes(self.fn, self.limit)
        completions = _Completions()
        outcomes = completions.outcomes
        in_flight = 0
        budget = BUFFER_FACTOR * self.limit
        deadline = self.deadline
        try:
            for block_items in _blocks(items, batches, BLOCK_FACTOR * self.limit):
                while in_flight and in_flight + len(block_items) > budget:
                    in_flight -= 1
                    yield completions.take(deadline)
                if block_items:
                    loop.call_soon_threadsafe(lanes.add, completions, block_items)
                    in_flight += len(block_items)
                while in_flight and not outcomes.empty():
                    in_flight -= 1
                    yield completions.take(deadline)
            while in_flight:
                in_flight -= 1
                yield completions.take(deadline)
        finally:
            try:
                loop.call_soon_threadsafe(lanes.close)
            except RuntimeError:  # the loop is closed: its tasks are gone already
                pass

    def _feed(
        self, items: Iterable[Any], batches: Optional[Iterator[list[Any]]]
    ) -> Generator[Any, None, None]:
        loop = self.loop or background_loop()
        limit = self.limit
        lanes = _Lanes(self.fn, limit)
        pending: collections.deque[tuple[_Block, int]] = collections.deque()
        in_flight = 0
        budget = BUFFER_FACTOR * limit
        deadline = self.deadline
        try:
            for block_items in _blocks(items, batches, BLOCK_FACTOR * limit):
                while pending and in_flight + len(block_items) > budget:
                    block, size = pending.popleft()
                    in_flight -= size
                    yield from wait_concurrent(block.future, deadline)
                block = _Block(len(block_items))
                loop.call_soon_threadsafe(lanes.add, block, block_items)
                pending.append((block, len(block_items)))
                in_flight += len(block_items)
                while pending and pending[0][0].future.done():
                    block, size = pending.popleft()
                    in_flight -= size
                    yield from block.future.result()
            while pending:
                block, size = pending.popleft()
                in_flight -= size
                yield from wait_concurrent(block.future, deadline)
        finally:
            for block, _ in pending:
                block.future.cancel()
            try:
                loop.call_soon_threadsafe(lanes.close)
            except RuntimeError:  # the loop is closed: its tasks are gone already
                pass


def async_map_items(
    items: Iterable[Any],
    fn: Callable[[Any], Awaitable[Any]],
    concurrency: Optional[int],
    batches: Optional[Iterator[list[Any]]] = None,
    deadline: Optional[Deadline] = None,
    unordered: bool = False,
) -> AsyncMapStream:
    """``await fn(x)`` for each item, in order (see the module documentation).
    ``batches``, when given, are the upstream segment's chunks (step 1);
    ``deadline``, the pipeline's ``timeout=`` (step 5); ``unordered``, results
    as they finish (step 6)."""
    return AsyncMapStream(items, fn, concurrency, batches, deadline, unordered)

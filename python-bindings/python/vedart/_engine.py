"""The engine: runs a pipeline's parallel segments chunk by chunk, in order.

How a terminal operation runs (see :func:`partials`):

1. The stages are split into *segments*: runs of per-item stages, fused into
   one chunk function, separated by sequential stages that the caller applies
   to the ordered stream (:mod:`vedart._stages`). A ``take`` right after 1:1
   stages is pushed down to the source, so ``map(f).take(2)`` calls ``f`` twice.
2. Each segment reads its input lazily from a :class:`Source` (slices of a
   sequence, or ``islice`` of an iterator) in chunks whose size adapts to the
   measured cost per item (:class:`ChunkSizer`): probes of one item first, then
   chunks sized to take about :data:`TARGET_CHUNK_SECONDS`, growing at most
   4x per step and capped so the tail still spreads over the workers.
3. At most a window of chunks is in flight (look-ahead bounded by
   ``2 * workers + 2``), so a 10-million-item generator never sits in memory.
4. Results are taken in input order; the first error cancels what is
   outstanding (fail-fast) or, when the consumer may stop early (streaming,
   ``take``, ``any``/``all``), only what lies after it.
5. Work too fine-grained for threads to help runs on the calling thread:
   when a chunk of at least :data:`INLINE_PROBE_ITEMS` items costs less per
   item than the executor's ``inline_per_item`` (about a microsecond for the
   thread executor: less than handing the interpreter between threads), the
   items hold the interpreter anyway and the caller runs the rest itself, in
   large chunks, going back to the workers if items become expensive.
6. Whatever happens (early stop, error, Ctrl+C), every run started for the
   operation is stopped when the operation ends (:class:`Execution`): after
   an error or an interrupt it is cancelled; when the consumer merely stopped
   early (``take``, ``any``, a ``break``) it is *released*, which lets an
   executor finish short work in flight rather than kill it (the process
   executor; for the others it is the same as cancelling).
7. A run may set the chunk duration it wants (``target_chunk_seconds``: tens
   of milliseconds for worker processes, whose hand-off costs more) and the
   most bytes a chunk should move (``target_chunk_bytes``, with the bytes each
   chunk moved in its handle's ``nbytes``: worker processes, so that chunks of
   large items stay far below what a message may hold), and is told how many
   items to expect (``expect``), when that is known.
8. A ``timeout=`` of the operation is a :class:`~vedart._deadline.Deadline`
   shared by all its segments: every wait for a chunk is bounded by the time
   left (a run whose ``result`` takes no ``timeout`` waits in full), and
   nothing new starts once it has passed. The first wait that finds it passed
   raises :class:`vedart.TimeoutError`, and step 6 cancels what is running.
9. ``unordered()`` (:attr:`Execution.unordered`): step 4 takes results in the
   order their chunks finish instead, from runs that can tell
   (``in_completion_order``/``completed``, see :class:`vedart.Run`); others
   are read in input order. ``async_map`` stages hand on results as their
   coroutines finish. A failure is raised as soon as its chunk is
   taken, so an unordered run is fail-fast by nature.
"""

from __future__ import annotations

import collections
import inspect
import itertools
import math
import sys
import time
from collections.abc import Sequence
from typing import Any, Callable, Iterable, Iterator, Optional

from . import _context, _trace
from ._async_stage import async_map_items
from ._deadline import Deadline, WaitExpired
from ._executors import Executor, Run
from ._stages import (
    ASYNC_MAP,
    CHUNK,
    ENUMERATE,
    MAP,
    PER_ITEM,
    SKIP,
    TAKE,
    ZIP,
    Reducer,
    Stage,
    chunked,
    make_chunk_fn,
)

#: How long one chunk should take, in seconds: long enough that the per-chunk
#: cost (a pool hand-off, taking the interpreter once) is noise, short enough
#: that work spreads evenly and cancellation is prompt.
TARGET_CHUNK_SECONDS = 0.002

#: The largest adaptive chunk, in items.
MAX_CHUNK_ITEMS = 1 << 16

#: How much a chunk may grow over the previous one.
GROWTH_LIMIT = 4

#: Step 5: once a chunk of at least this many items shows a cost per item
#: below the executor's ``inline_per_item``, the caller runs the rest itself.
INLINE_PROBE_ITEMS = 256

#: Size of the caller's own chunks in step 5, in seconds of estimated work (it
#: re-checks the cost after each, and hands work back to the pool if items got
#: more than ``INLINE_EXIT_FACTOR`` times dearer than the threshold).
INLINE_CHUNK_SECONDS = 0.01
INLINE_EXIT_FACTOR = 4
MAX_INLINE_CHUNK_ITEMS = 1 << 16


class Source:
    """The input of a parallel segment, read one chunk at a time."""

    def take(self, n: int) -> Optional[Any]:
        """The next ``n`` items (fewer at the end), or ``None`` when exhausted."""
        raise NotImplementedError

    def remaining(self) -> Optional[int]:
        """How many items are left, if known."""
        return None

    def iterate(self) -> Iterator[Any]:
        """The remaining items as an iterator (for sequential stages)."""
        raise NotImplementedError


class SeqSource(Source):
    """A sized, sliceable sequence (list, tuple, range, str, array): chunks are
    slices, so nothing is copied up front; a range's chunks are ranges."""

    __slots__ = ("seq", "pos", "stop")

    def __init__(self, seq: Any, start: int = 0, stop: Optional[int] = None) -> None:
        self.seq = seq
        self.pos = start
        self.stop = len(seq) if stop is None else stop

    def take(self, n: int) -> Optional[Any]:
        pos = self.pos
        if pos >= self.stop:
            return None
        end = min(pos + n, self.stop)
        self.pos = end
        return self.seq[pos:end]

    def remaining(self) -> Optional[int]:
        return max(0, self.stop - self.pos)

    def iterate(self) -> Iterator[Any]:
        if self.pos == 0 and self.stop == len(self.seq):
            return iter(self.seq)
        return iter(self.seq[self.pos : self.stop])

    def limit(self, n: int) -> SeqSource:
        return SeqSource(self.seq, self.pos, min(self.stop, self.pos + n))

    def skip(self, n: int) -> SeqSource:
        return SeqSource(self.seq, min(self.stop, self.pos + n), self.stop)


class IterSource(Source):
    """Any iterable, read lazily with ``islice``."""

    __slots__ = ("it",)

    def __init__(self, items: Iterable[Any]) -> None:
        self.it = iter(items)

    def take(self, n: int) -> Optional[Any]:
        chunk = list(itertools.islice(self.it, n))
        return chunk if chunk else None

    def iterate(self) -> Iterator[Any]:
        return self.it


class BatchSource(IterSource):
    """The output of a parallel segment: its chunks' result lists, in order,
    flattened lazily. ``async_map`` reads the lists themselves, so that items
    enter it as soon as their chunk is done."""

    __slots__ = ("batches",)

    def __init__(self, batches: Iterator[list[Any]]) -> None:
        self.batches = batches
        super().__init__(itertools.chain.from_iterable(batches))


def make_source(items: Any) -> Source:
    """A :class:`SeqSource` for sliceable sequences, else an :class:`IterSource`."""
    if isinstance(items, (list, tuple, range, str, bytes)) or (
        isinstance(items, Sequence) and not isinstance(items, (bytearray, memoryview))
    ):
        return SeqSource(items)
    if hasattr(items, "__array__") and hasattr(items, "shape") and hasattr(items, "__len__"):
        try:
            if len(items.shape) >= 1:  # a NumPy-like array: slices are views
                return SeqSource(items)
        except TypeError:
            pass
    return IterSource(items)


class ChunkSizer:
    """Picks chunk sizes from measured per-item cost (see the module docs)."""

    __slots__ = (
        "fixed",
        "workers",
        "per_item",
        "last",
        "target",
        "bytes_per_item",
        "target_bytes",
    )

    def __init__(self, fixed: Optional[int], workers: int) -> None:
        self.fixed = fixed
        self.workers = max(1, workers)
        self.per_item: Optional[float] = None
        self.last = 1
        #: Seconds one chunk should take (the run's ``target_chunk_seconds``).
        self.target = TARGET_CHUNK_SECONDS
        #: Bytes moved per item, when the run reports them (step 7).
        self.bytes_per_item: Optional[float] = None
        #: Most bytes one chunk should move (the run's ``target_chunk_bytes``).
        self.target_bytes: Optional[int] = None

    def next(self, remaining: Optional[int]) -> int:
        if self.fixed is not None:
            return self.fixed
        if self.per_item is None:
            return 1
        if self.per_item <= 0.0:
            ideal = MAX_CHUNK_ITEMS
        else:
            ideal = int(self.target / self.per_item)
        if self.target_bytes and self.bytes_per_item:
            ideal = min(ideal, int(self.target_bytes / self.bytes_per_item))
        size = max(1, min(ideal, self.last * GROWTH_LIMIT, MAX_CHUNK_ITEMS))
        if remaining is not None:
            size = min(size, max(1, math.ceil(remaining / (2 * self.workers))))
        self.last = size
        return size

    def observe(self, items: int, seconds: float, nbytes: Optional[int] = None) -> None:
        if self.fixed is not None or items <= 0:
            return
        cost = seconds / items
        if self.per_item is None:
            self.per_item = cost
        else:
            self.per_item = 0.5 * self.per_item + 0.5 * cost
        if nbytes:
            size = nbytes / items
            if self.bytes_per_item is None:
                self.bytes_per_item = size
            else:
                self.bytes_per_item = 0.5 * self.bytes_per_item + 0.5 * size


class Execution:
    """Everything one terminal operation started; :meth:`close` cancels what is
    still running, however the operation ends.

    ``progress`` (a :class:`vedart._progress.Progress`), when given, counts the
    items of the first parallel segment as their chunks' results come back.
    """

    __slots__ = (
        "executor",
        "chunk_size",
        "runs",
        "progress",
        "segments",
        "deadline",
        "unordered",
    )

    def __init__(
        self,
        executor: Executor,
        chunk_size: Optional[int],
        progress: Optional[Any] = None,
        deadline: Optional[Deadline] = None,
        unordered: bool = False,
    ) -> None:
        self.executor = executor
        #: Step 9: results in the order their chunks finish.
        self.unordered = unordered
        #: The operation's ``timeout=`` (step 8), if it has one.
        self.deadline = deadline
        if chunk_size is None:
            chunk_size = getattr(executor, "default_chunk_size", None)
        self.chunk_size = chunk_size
        self.runs: list[Run] = []
        self.progress = progress
        #: ``(label, run)`` of every parallel segment and ``(label, choice)`` of
        #: every ``async_map``, in pipeline order: what ``explain()`` reports.
        self.segments: list[tuple[str, Any]] = []

    def start(self, mode: str) -> Run:
        run = self.executor.start(mode)
        self.runs.append(run)
        return run

    def close(self) -> None:
        runs, self.runs = self.runs, []
        for run in runs:
            stop_run(run)

    def parallel(
        self, source: Source, chunk_fn: Callable[[Any], Any], mode: str, label: str = "chunk"
    ) -> Iterator[Any]:
        """``chunk_fn`` of each chunk of ``source``, in order (steps 2 to 5).
        ``label`` names the work (``"map(f).sum()"``) for traces. The run starts
        (and is recorded for ``explain()``) at once, the chunks when iterated."""
        run = self.start(mode)
        run.describe(label)
        self.segments.append((label, run))
        return self._chunks(run, source, chunk_fn, label)

    def _chunks(
        self, run: Run, source: Source, chunk_fn: Callable[[Any], Any], label: str
    ) -> Iterator[Any]:
        expect = getattr(run, "expect", None)
        if expect is not None:
            expect(source.remaining())
        sizer = ChunkSizer(self.chunk_size, self.executor.workers)
        sizer.target = _target_of(run)
        sizer.target_bytes = getattr(run, "target_chunk_bytes", None)
        window = 2 * self.executor.workers + 2
        hook = _context.chunk_hook.get()
        # Spans of chunks that run in other processes could not come back.
        tracer = _trace.recorder if self.executor.name not in ("process", "dask") else None
        progress = self.progress
        if progress is not None and not progress.attach(source):
            progress = None  # only the first segment counts
        inline_below = None if self.chunk_size is not None else self.executor.inline_per_item
        inline = False
        inflight: collections.deque[tuple[Any, int]] = collections.deque()
        exhausted = False
        index = 0
        deadline = self.deadline
        timed = deadline is not None and _takes_timeout(run)
        in_completion_order = getattr(run, "in_completion_order", None)
        completed = getattr(run, "completed", None)
        unordered = (
            self.unordered
            and in_completion_order is not None
            and completed is not None
            and in_completion_order()
        )
        try:
            while True:
                if deadline is not None:
                    deadline.check()
                while not exhausted and not inline and len(inflight) < window:
                    chunk = source.take(sizer.next(source.remaining()))
                    if chunk is None:
                        exhausted = True
                        break
                    fn = chunk_fn if hook is None else hook(chunk_fn, index)
                    if tracer is not None:
                        fn = tracer.wrap(fn, label, "chunk", index, self.executor.name)
                    inflight.append((run.submit(fn, chunk), len(chunk)))
                    index += 1
                if inflight:
                    if unordered and len(inflight) > 1:
                        handles = [entry[0] for entry in inflight]
                        assert completed is not None
                        try:
                            if timed:
                                assert deadline is not None
                                position = completed(handles, deadline.left())
                            else:
                                position = completed(handles)
                        except WaitExpired:
                            assert deadline is not None  # only a timed wait expires
                            raise deadline.error() from None
                        del handles
                        handle, size = inflight[position]
                        del inflight[position]
                    else:
                        handle, size = inflight.popleft()
                    if timed:
                        assert deadline is not None
                        try:
                            value = run.result(handle, deadline.left())
                        except WaitExpired:
                            raise deadline.error() from None
                    else:
                        value = run.result(handle)
                    if progress is not None:
                        progress.advance(size)
                    elapsed = handle.elapsed
                    sizer.target = _target_of(run)
                    sizer.target_bytes = getattr(run, "target_chunk_bytes", None)
                    sizer.observe(size, elapsed, getattr(handle, "nbytes", None))
                    if (
                        inline_below is not None
                        and size >= INLINE_PROBE_ITEMS
                        and elapsed < inline_below * size
                    ):
                        inline = True
                    yield value
                    continue
                if exhausted:
                    return
                # Step 5: items too cheap for threads to help run right here.
                size = max(
                    INLINE_PROBE_ITEMS, int(INLINE_CHUNK_SECONDS / max(sizer.per_item or 0.0, 1e-9))
                )
                chunk = source.take(min(size, MAX_INLINE_CHUNK_ITEMS))
                if chunk is None:
                    return
                fn = chunk_fn if hook is None else hook(chunk_fn, index)
                if tracer is not None:
                    fn = tracer.wrap(fn, label, "chunk", index, "inline")
                index += 1
                started = time.perf_counter()
                value = fn(chunk)
                elapsed = time.perf_counter() - started
                if progress is not None:
                    progress.advance(len(chunk))
                sizer.observe(len(chunk), elapsed)
                assert inline_below is not None
                if elapsed > INLINE_EXIT_FACTOR * inline_below * len(chunk):
                    inline = False  # the items got expensive: back to the workers
                yield value
        finally:
            if inflight:
                stop_run(run)


_TAKES_TIMEOUT: dict[type, bool] = {}


def _takes_timeout(run: Any) -> bool:
    """Whether ``run.result`` accepts ``timeout`` (step 8); a
    :class:`vedart.Run` written before timeouts existed may not."""
    kind = type(run)
    known = _TAKES_TIMEOUT.get(kind)
    if known is None:
        try:
            known = "timeout" in inspect.signature(run.result).parameters
        except (TypeError, ValueError):
            known = False
        _TAKES_TIMEOUT[kind] = known
    return known


def _target_of(run: Any) -> float:
    """The chunk duration ``run`` asks for (step 7), else the engine's default."""
    return getattr(run, "target_chunk_seconds", None) or TARGET_CHUNK_SECONDS


def stop_run(run: Any) -> None:
    """Step 6: cancels ``run`` while an error or interrupt propagates, else
    releases it (the consumer stopped early; ``run.release`` if it has one)."""
    error = sys.exc_info()[1]
    if error is None or isinstance(error, GeneratorExit):
        release = getattr(run, "release", None)
        if release is not None:
            release()
            return
    run.cancel()


def with_plan(
    chunk_fn: Callable[[Any], Any], stages: tuple[Stage, ...], finish: Callable[[Any], Any]
) -> Callable[[Any], Any]:
    """Marks ``chunk_fn`` with what it runs (``veda_plan``: the fused stages and
    the reducer step), so that an executor that cannot ship the function itself
    (the process executor) can rebuild it elsewhere."""
    chunk_fn.veda_plan = (stages, finish)  # type: ignore[attr-defined]
    return chunk_fn


def _pushdown_take(pending: list[Stage], source: Source, n: int) -> Optional[Source]:
    """``take(n)`` applied before ``pending`` when every pending stage is 1:1."""
    if any(stage.kind != MAP for stage in pending):
        return None
    if isinstance(source, SeqSource):
        return source.limit(n)
    return IterSource(itertools.islice(source.iterate(), n))


def partials(
    execution: Execution,
    items: Any,
    stages: tuple[Stage, ...],
    reducer: Reducer,
    stream_mode: bool = False,
) -> Iterator[Any]:
    """The partial results of ``reducer`` over the pipeline, in input order
    (step 1). With ``stream_mode`` the consumer may stop early, so errors are
    delivered in order rather than fail-fast."""
    source: Source = items if isinstance(items, Source) else make_source(items)
    pending: list[Stage] = []
    # Whether something after position i may stop consuming before the end.
    limited_after = [False] * (len(stages) + 1)
    for i in range(len(stages) - 1, -1, -1):
        limited_after[i] = limited_after[i + 1] or stages[i].kind in (TAKE, ZIP)
    final_mode_ordered = stream_mode or not reducer.consumes_all

    for i, stage in enumerate(stages):
        if stage.kind in PER_ITEM:
            pending.append(stage)
            continue
        if stage.kind == TAKE:
            pushed = _pushdown_take(pending, source, stage.arg)
            if pushed is not None:
                source = pushed
                continue
        if pending:
            mode = "ordered" if (final_mode_ordered or limited_after[i]) else "fail_fast"
            stages_run = tuple(pending)
            batches = execution.parallel(
                source,
                with_plan(make_chunk_fn(stages_run, list), stages_run, list),
                mode,
                _label(pending),
            )
            source = BatchSource(batches)
            pending = []
        source = _apply_sequential(stage, source, execution)

    if pending or reducer.calls_user_code:
        mode = "ordered" if final_mode_ordered else "fail_fast"
        stages_run = tuple(pending)
        return execution.parallel(
            source,
            with_plan(make_chunk_fn(stages_run, reducer.chunk), stages_run, reducer.chunk),
            mode,
            _label(pending, reducer),
        )
    if stream_mode:
        # Streaming what sequential stages produce: hand items on as they come.
        return _stream(source, execution.deadline)
    # Nothing of the user's runs any more: reduce right here.
    return iter((reducer.chunk(source.iterate()),))


#: Items per list when streaming a sequence that no parallel stage processes.
STREAM_SLICE_ITEMS = 4096


def _stream(source: Source, deadline: Optional[Deadline] = None) -> Iterator[list[Any]]:
    if isinstance(source, SeqSource):
        while True:
            if deadline is not None:
                deadline.check()
            chunk = source.take(STREAM_SLICE_ITEMS)
            if chunk is None:
                return
            yield list(chunk)
    for item in source.iterate():
        if deadline is not None:
            deadline.check()
        yield [item]


def _label(stages: list[Stage], reducer: Optional[Reducer] = None) -> str:
    """What a segment does, for traces: ``"map(f).filter(g).sum()"``."""
    parts = [repr(stage) for stage in stages]
    if reducer is not None:
        parts.append(f"{type(reducer).__name__.lower()}()")
    return ".".join(parts) or "chunk"


def _apply_sequential(stage: Stage, source: Source, execution: Execution) -> Source:
    kind = stage.kind
    if kind == TAKE:
        if isinstance(source, SeqSource):
            return source.limit(stage.arg)
        return IterSource(itertools.islice(source.iterate(), stage.arg))
    if kind == SKIP:
        if isinstance(source, SeqSource):
            return source.skip(stage.arg)
        return IterSource(itertools.islice(source.iterate(), stage.arg, None))
    if kind == ENUMERATE:
        return IterSource(enumerate(source.iterate(), stage.arg))
    if kind == ZIP:
        return IterSource(zip(source.iterate(), _other_items(stage.arg)))
    if kind == CHUNK:
        return IterSource(chunked(source.iterate(), stage.arg))
    if kind == ASYNC_MAP:
        fn, concurrency = stage.fn, stage.arg
        assert fn is not None
        batches = source.batches if isinstance(source, BatchSource) else None
        stream = async_map_items(
            source.iterate(),
            fn,
            concurrency,
            batches=batches,
            deadline=execution.deadline,
            unordered=execution.unordered,
        )
        execution.segments.append((repr(stage), stream))
        return IterSource(stream)
    raise AssertionError(f"unknown stage {kind}")  # pragma: no cover


def _other_items(other: Any) -> Iterator[Any]:
    # A ParallelIterator streams its own results (with its own execution).
    return iter(other)

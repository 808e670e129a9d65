"""``vedart.par_iter`` and :class:`ParallelIterator`: lazy parallel pipelines."""

from __future__ import annotations

import threading
from typing import (
    Any,
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Generator,
    Generic,
    Iterable,
    Iterator,
    NamedTuple,
    Optional,
    TypeVar,
    Union,
    overload,
)

from . import _asyncio, _deterministic, _progress
from ._deadline import Deadline, check_timeout
from ._engine import Execution, partials
from ._adaptive import executor_for, explain, explained, stages_for
from ._gpu import as_gpu_function
from ._config import check_process_options
from ._process import ProcessExecutor, ProcessOptions
from .exceptions import ConfigError
from ._executors import THREAD_POOL, Executor, check_executor_spec
from ._runtime import get_runtime
from ._stages import (
    ASYNC_MAP,
    CHUNK,
    ENUMERATE,
    FILTER,
    FLAT_MAP,
    GPU_MAP,
    MAP,
    SKIP,
    TAKE,
    ZIP,
    _MISSING,
    AnyAll,
    Collect,
    Count,
    Fold,
    ForEach,
    MinMax,
    Reduce,
    Reducer,
    Stage,
    Sum,
    ToDict,
)

__all__ = ["par_iter", "ParallelIterator"]

T = TypeVar("T")
U = TypeVar("U")

#: ``progress=`` of terminal operations: off, on, or on with this description.
Progress = Union[None, bool, str]

_END: Any = object()


def _check_callable(name: str, fn: Any) -> None:
    if not callable(fn):
        raise TypeError(f"{name}() expects a callable, got {type(fn).__name__}")


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return value


def _check_iterable(name: str, items: Any) -> None:
    if isinstance(items, ParallelIterator):
        return
    try:
        iter(items)
    except TypeError:
        raise TypeError(f"{name} expects an iterable, got {type(items).__name__}") from None


def _check_not_async(name: str, fn: Any) -> None:
    if _asyncio.is_coroutine_function(fn):
        raise TypeError(
            f"{name}() expects a plain callable, got the coroutine function "
            f"{getattr(fn, '__qualname__', fn)!r}; await it in an async_map() stage first"
        )


def _check_terminal(progress: Progress, timeout: Optional[float]) -> Optional[float]:
    """Checks a terminal operation's ``progress`` and ``timeout``; the timeout
    in seconds."""
    if progress is not False:
        _progress.check(progress)
    return check_timeout(timeout)


def par_iter(
    iterable: Iterable[T],
    chunk_size: Optional[int] = None,
    *,
    executor: Union[None, str, Executor] = None,
    initializer: Optional[Callable[..., Any]] = None,
    initargs: tuple[Any, ...] = (),
    max_tasks_per_child: Optional[int] = None,
) -> ParallelIterator[T]:
    """A lazy parallel pipeline over ``iterable``; nothing runs until a terminal
    operation (``collect``, ``sum``, iteration, ...).

    Args:
        iterable: any iterable. Lists, tuples, ranges and arrays are sliced into
            chunks; other iterables (generators) are read lazily with bounded
            look-ahead.
        chunk_size: items per chunk; default adapts to the measured cost per
            item so that a chunk takes a few milliseconds.
        executor: ``"auto"``/``None`` (chosen by the runtime's scheduling
            policy; by default from the measured cost of the first chunk, see
            :meth:`ParallelIterator.explain`), ``"thread"``, ``"process"``,
            ``"async"``, ``"gpu"``, ``"serial"``, or a :class:`vedart.Executor`.
            Side effects of your functions (globals, mutated arguments) are
            only visible to the caller with ``"thread"`` and ``"serial"``:
            ``"process"`` runs them in other processes, and ``"auto"`` may.
        initializer, initargs: for work in worker processes, like
            ``ProcessPoolExecutor``'s: ``initializer(*initargs)`` runs once
            in each worker process before the first chunk it runs (once per
            worker for a given initializer and arguments, however many
            pipelines name them). One that raises fails the operation with
            :class:`vedart.BrokenProcessPoolError`. Overrides
            :attr:`vedart.Config.initializer`.
        max_tasks_per_child: a worker process is retired (it finishes its
            chunks and exits) and replaced after this many chunks, like
            ``ProcessPoolExecutor(max_tasks_per_child=)``; chunks still run
            at most once. Overrides :attr:`vedart.Config.max_tasks_per_child`.
            These three options are process work: with ``executor`` left to
            ``"auto"`` they make it ``"process"``; with another executor
            they are an error.

    Raises:
        TypeError: ``iterable`` is not iterable.
        ValueError: ``chunk_size`` < 1 or an unknown executor name.
        vedart.ConfigError: a bad ``initializer``, ``initargs`` or
            ``max_tasks_per_child``, or one given with an executor that is not
            ``"process"``.

    Examples:
        >>> import vedart as veda
        >>> veda.par_iter(range(10)).map(lambda x: x * x).filter(lambda x: x % 2).collect()
        [1, 9, 25, 49, 81]
    """
    _check_iterable("par_iter()", iterable)
    if chunk_size is not None:
        _check_int("chunk_size", chunk_size, 1)
    check_executor_spec(executor)
    process = None
    if initializer is not None or initargs != () or max_tasks_per_child is not None:
        check_process_options(initializer, initargs, max_tasks_per_child)
        if executor is None or executor == "auto":
            executor = "process"
        elif executor != "process":
            raise ConfigError(
                "initializer" if initializer is not None else "max_tasks_per_child",
                f'is for work in worker processes (executor="process"), not executor={executor!r}',
            )
        process = ProcessOptions(initializer, initargs, max_tasks_per_child)
    return ParallelIterator(iterable, (), chunk_size, executor, _Options(False, process))


class _Options(NamedTuple):
    """How a pipeline runs, besides its stages."""

    #: ``unordered()``: results in the order their chunks finish.
    unordered: bool = False
    #: Worker process settings given to ``par_iter`` (else the Config's).
    process: Optional[ProcessOptions] = None


_DEFAULT_OPTIONS = _Options()


class ParallelIterator(Generic[T]):
    """A lazy pipeline: stages return a new pipeline; terminal operations run it.

    Stages apply in the order written. ``collect()`` always returns results in
    input order. On a thread whose asyncio event loop is running, terminal
    operations return an awaitable instead of blocking
    (``await veda.par_iter(xs).map(f).collect()``), and each has an explicit
    async form typed as what it returns (``await p.acollect()``, ``asum()``,
    ...); iteration works with both ``for`` and ``async for``.

    Errors raised by your functions reach the caller with their original type,
    message and traceback; the first one cancels the work still outstanding.
    """

    __slots__ = ("_source", "_stages", "_chunk_size", "_executor", "_explained", "_options")

    def __init__(
        self,
        source: Any,
        stages: tuple[Stage, ...],
        chunk_size: Optional[int],
        executor: Union[None, str, Executor],
        options: Optional[_Options] = None,
    ) -> None:
        self._source = source
        self._stages = stages
        self._chunk_size = chunk_size
        self._executor = executor
        self._options = options or _DEFAULT_OPTIONS
        #: What the last run of this pipeline ran where (see ``explain``).
        self._explained: Any = None

    def _then(self, stage: Stage) -> ParallelIterator[Any]:
        return ParallelIterator(
            self._source, self._stages + (stage,), self._chunk_size, self._executor, self._options
        )

    def _start(self, runtime: Any, chunk_size: Optional[int], **kwargs: Any) -> Execution:
        """The :class:`Execution` of one run of the pipeline."""
        process = self._options.process
        spec: Union[None, str, Executor] = self._executor
        if process is not None:
            spec = ProcessExecutor(
                runtime, 'executor="process" (par_iter was given process options)', process
            )
        executor = executor_for(spec, runtime)
        return Execution(executor, chunk_size, unordered=self._options.unordered, **kwargs)

    # -- stages ---------------------------------------------------------------

    @overload
    def map(self, fn: Callable[[T], Coroutine[Any, Any, U]]) -> ParallelIterator[U]: ...

    @overload
    def map(self, fn: Callable[[T], U]) -> ParallelIterator[U]: ...

    def map(self, fn: Callable[[T], Any]) -> ParallelIterator[Any]:
        """Applies ``fn`` to every item. A coroutine function is awaited on an
        event loop, as by :meth:`async_map` (the pipeline then carries what
        the coroutines return)."""
        _check_callable("map", fn)
        if _asyncio.is_coroutine_function(fn):
            return self._then(Stage(ASYNC_MAP, fn, None))
        return self._then(Stage(MAP, fn))

    def filter(self, pred: Callable[[T], Any]) -> ParallelIterator[T]:
        """Keeps the items for which ``pred`` is true, in order."""
        _check_callable("filter", pred)
        _check_not_async("filter", pred)
        return self._then(Stage(FILTER, pred))

    def flat_map(self, fn: Callable[[T], Iterable[U]]) -> ParallelIterator[U]:
        """Replaces every item by the items of the iterable ``fn(item)``."""
        _check_callable("flat_map", fn)
        _check_not_async("flat_map", fn)
        return self._then(Stage(FLAT_MAP, fn))

    def enumerate(self, start: int = 0) -> ParallelIterator[tuple[int, T]]:
        """Pairs each item with its position: ``(start + i, item)``."""
        if isinstance(start, bool) or not isinstance(start, int):
            raise TypeError(f"start must be an int, got {type(start).__name__}")
        return self._then(Stage(ENUMERATE, arg=start))

    def zip(self, other: Iterable[U]) -> ParallelIterator[tuple[T, U]]:
        """Pairs items with those of ``other`` (an iterable or a pipeline),
        stopping at the shorter."""
        _check_iterable("zip()", other)
        return self._then(Stage(ZIP, arg=other))

    def take(self, n: int) -> ParallelIterator[T]:
        """The first ``n`` items; work past them is not scheduled (or is cancelled)."""
        return self._then(Stage(TAKE, arg=_check_int("n", n, 0)))

    def skip(self, n: int) -> ParallelIterator[T]:
        """All but the first ``n`` items."""
        return self._then(Stage(SKIP, arg=_check_int("n", n, 0)))

    def chunk(self, size: int) -> ParallelIterator[list[T]]:
        """Groups consecutive items into lists of ``size`` (the last may be shorter)."""
        return self._then(Stage(CHUNK, arg=_check_int("size", size, 1)))

    @overload
    def async_map(
        self, fn: Callable[[T], Coroutine[Any, Any, U]], *, concurrency: Optional[int] = None
    ) -> ParallelIterator[U]: ...

    @overload
    def async_map(
        self, fn: Callable[[T], U], *, concurrency: Optional[int] = None
    ) -> ParallelIterator[U]: ...

    def async_map(
        self, fn: Callable[[T], Any], *, concurrency: Optional[int] = None
    ) -> ParallelIterator[Any]:
        """Awaits ``fn(item)`` for every item, at most ``concurrency`` at once
        (default 64), results in input order; the pipeline carries what the
        coroutines return (``async def f(x: int) -> str`` makes a
        ``ParallelIterator[str]``).

        Coroutines run on the caller's event loop when the pipeline is awaited,
        and on VedaRT's background loop when it is run from synchronous code;
        cancelling the awaiting task cancels the coroutines in flight. Items
        enter the stage as soon as the chunk of the stage before it is done. A
        plain (non-``async``) callable runs in the thread pool like ``map``,
        never on the event loop.
        """
        _check_callable("async_map", fn)
        if concurrency is not None:
            _check_int("concurrency", concurrency, 1)
        if not _asyncio.is_coroutine_function(fn):
            return self._then(Stage(MAP, fn, THREAD_POOL))
        return self._then(Stage(ASYNC_MAP, fn, concurrency))

    def gpu_map(self, fn: Callable[[T], U]) -> ParallelIterator[U]:
        """Applies ``fn`` to every item on the GPU: with CuPy and a CUDA
        device, NumPy arrays among ``fn``'s arguments move to the device on a
        stream of VedaRT's stream pool and results come back as NumPy arrays
        (see :func:`vedart.gpu`). Without either, ``fn`` runs on the CPU, with
        one warning per process."""
        _check_callable("gpu_map", fn)
        return self._then(Stage(GPU_MAP, as_gpu_function(fn)))

    def unordered(self) -> ParallelIterator[T]:
        """Hands results on in the order they finish instead of input order:
        ``collect()`` lists them as their chunks complete, and iteration
        yields the first result as soon as any chunk is done, so one slow
        item no longer holds back the rest (``imap_unordered``,
        ``as_completed``).

        Every parallel segment of the pipeline runs this way, on the thread
        and process executors and the adaptive choice between them (others
        keep input order); order-sensitive stages after it (``enumerate``,
        ``take``, ``zip``, and which of equal items ``min``/``max`` pick) see the
        completion order. ``timeout=`` and errors work as for ordered runs:
        the first error is raised as soon as its chunk finishes, and the work
        still running is cancelled.
        """
        return ParallelIterator(
            self._source,
            self._stages,
            self._chunk_size,
            self._executor,
            self._options._replace(unordered=True),
        )

    def explain(self) -> Any:
        """Where each part of the pipeline runs and why, as a
        :class:`vedart.Explanation` (its ``str()`` is a readable summary).

        After a terminal operation of this pipeline object, it reports what that
        run chose, including the adaptive executor's measurements; before,
        what the executor and policy say in advance.

        Examples:
            >>> import vedart as veda
            >>> veda.par_iter(range(3), executor="thread").map(str).explain().executor
            'thread'
        """
        return explain(self)

    # -- terminal operations --------------------------------------------------

    def _run(
        self, reducer: Reducer, progress: Progress = False, deadline: Optional[Deadline] = None
    ) -> Any:
        """Runs the pipeline to completion on this thread."""
        runtime = get_runtime()
        chunk_size = self._chunk_size or runtime.config.chunk_size
        with _progress.tracking(progress, self._source) as bar:
            execution = self._start(runtime, chunk_size, progress=bar, deadline=deadline)
            executor = execution.executor
            try:
                return reducer.combine(
                    partials(execution, self._source, stages_for(self._stages, executor), reducer)
                )
            finally:
                execution.close()
                self._explained = explained(execution)

    def _terminal(
        self, name: str, reducer: Reducer, progress: Progress, timeout: Optional[float]
    ) -> Any:
        """Runs the operation, or returns its awaitable on a thread whose event
        loop is running (the context-sensitive form)."""
        seconds = _check_terminal(progress, timeout)
        if _asyncio.running_loop() is None:
            return self._run(reducer, progress, Deadline.start(seconds, self._describe(name)))
        return self._awaitable(name, reducer, progress, seconds)

    async def _aterminal(
        self, name: str, reducer: Reducer, progress: Progress, timeout: Optional[float]
    ) -> Any:
        """The explicit async form of a terminal operation (``acollect()``...)."""
        seconds = _check_terminal(progress, timeout)
        return await self._awaitable(name, reducer, progress, seconds)

    def _awaitable(
        self, name: str, reducer: Reducer, progress: Progress, seconds: Optional[float]
    ) -> Awaitable[Any]:
        if seconds is None:
            return _deterministic.awaitable_terminal(  # type: ignore[no-any-return]
                self._run, reducer, progress
            )
        return self._awaited(name, reducer, progress, seconds)

    async def _awaited(
        self, name: str, reducer: Reducer, progress: Progress, timeout: float
    ) -> Any:
        """An awaited terminal operation with a timeout: the deadline counts
        from the ``await``; it bounds the work's waits on its thread and, as a
        backstop, the awaiting coroutine's wait for that thread."""
        deadline = Deadline(timeout, self._describe(name))
        work = _deterministic.awaitable_terminal(self._run, reducer, progress, deadline)
        return await _asyncio.within(work, deadline)

    def _describe(self, name: str) -> Any:
        """What the operation is called in a timeout's message (built only then)."""
        return lambda: f"{self!r}.{name}()"

    # Every terminal operation takes ``progress``: ``True`` shows a progress bar
    # (tqdm when installed, else a text bar on stderr), a string also names it;
    # and ``timeout``: seconds for the whole operation, after which it raises
    # vedart.TimeoutError and cancels the work still running (``None``: no limit).

    def collect(self, *, progress: Progress = False, timeout: Optional[float] = None) -> list[T]:
        """All results, in input order. ``progress=True`` shows a progress bar
        (as do the other terminal operations).

        ``timeout`` (seconds, as for every terminal operation) bounds the whole
        operation: when it passes, :class:`vedart.TimeoutError` is raised and
        the work still running is cancelled (worker processes running a chunk
        are killed and replaced; a function already running on a thread runs
        until it returns, its result dropped).

        Raises:
            vedart.TimeoutError: ``timeout`` passed first.
            TypeError, ValueError: ``timeout`` is not a non-negative number.
        """
        return self._terminal(  # type: ignore[no-any-return]
            "collect", Collect(), progress, timeout
        )

    def sum(
        self, start: Any = 0, *, progress: Progress = False, timeout: Optional[float] = None
    ) -> Any:
        """``start + x0 + x1 + ...``; works for any type supporting ``+``."""
        return self._terminal("sum", Sum(start), progress, timeout)

    def count(self, *, progress: Progress = False, timeout: Optional[float] = None) -> int:
        """The number of items."""
        return self._terminal("count", Count(), progress, timeout)  # type: ignore[no-any-return]

    def min(
        self,
        *,
        key: Optional[Callable[[T], Any]] = None,
        default: Any = None,
        progress: Progress = False,
        timeout: Optional[float] = None,
    ) -> Any:
        """The smallest item (the first of equals), or ``default`` when empty."""
        if key is not None:
            _check_callable("min", key)
        return self._terminal("min", MinMax(min, key, default), progress, timeout)

    def max(
        self,
        *,
        key: Optional[Callable[[T], Any]] = None,
        default: Any = None,
        progress: Progress = False,
        timeout: Optional[float] = None,
    ) -> Any:
        """The largest item (the first of equals), or ``default`` when empty."""
        if key is not None:
            _check_callable("max", key)
        return self._terminal("max", MinMax(max, key, default), progress, timeout)

    def reduce(
        self,
        op: Callable[[Any, Any], Any],
        initial: Any = _MISSING,
        *,
        progress: Progress = False,
        timeout: Optional[float] = None,
    ) -> Any:
        """Combines the items with the associative ``op``; ``initial`` (if given)
        comes first. ``None`` when empty without ``initial``."""
        _check_callable("reduce", op)
        return self._terminal("reduce", Reduce(op, initial), progress, timeout)

    def fold(
        self,
        identity: Any,
        op: Callable[[Any, T], Any],
        combine: Optional[Callable[[Any, Any], Any]] = None,
        *,
        progress: Progress = False,
        timeout: Optional[float] = None,
    ) -> Any:
        """Folds each chunk from a fresh ``identity`` with ``op(acc, item)``, then
        merges the per-chunk results with ``combine`` (default ``op``).

        ``identity`` may be a zero-argument callable (called per chunk: use it for
        mutable accumulators like ``list``) or a value (shallow-copied per chunk).
        """
        _check_callable("fold", op)
        if combine is not None:
            _check_callable("fold", combine)
        return self._terminal("fold", Fold(identity, op, combine), progress, timeout)

    def any(
        self,
        pred: Optional[Callable[[T], Any]] = None,
        *,
        progress: Progress = False,
        timeout: Optional[float] = None,
    ) -> bool:
        """Whether some item (or ``pred(item)``) is true; stops once one is."""
        if pred is not None:
            _check_callable("any", pred)
        return self._terminal(  # type: ignore[no-any-return]
            "any", AnyAll(True, pred), progress, timeout
        )

    def all(
        self,
        pred: Optional[Callable[[T], Any]] = None,
        *,
        progress: Progress = False,
        timeout: Optional[float] = None,
    ) -> bool:
        """Whether every item (or ``pred(item)``) is true; stops once one is not."""
        if pred is not None:
            _check_callable("all", pred)
        return self._terminal(  # type: ignore[no-any-return]
            "all", AnyAll(False, pred), progress, timeout
        )

    def for_each(
        self,
        fn: Callable[[T], Any],
        *,
        progress: Progress = False,
        timeout: Optional[float] = None,
    ) -> None:
        """Calls ``fn`` on every item for its side effects."""
        _check_callable("for_each", fn)
        return self._terminal(  # type: ignore[no-any-return]
            "for_each", ForEach(fn), progress, timeout
        )

    def to_dict(
        self,
        key: Callable[[T], Any],
        value: Optional[Callable[[T], Any]] = None,
        *,
        progress: Progress = False,
        timeout: Optional[float] = None,
    ) -> dict[Any, Any]:
        """``{key(x): value(x)}`` (``value`` defaults to the item); on equal keys
        the later item wins."""
        _check_callable("to_dict", key)
        if value is not None:
            _check_callable("to_dict", value)
        return self._terminal(  # type: ignore[no-any-return]
            "to_dict", ToDict(key, value), progress, timeout
        )

    # -- async terminal operations -------------------------------------------
    #
    # Each terminal operation has an explicit async form, to be awaited on an
    # event loop, typed as what it returns (``await p.acollect()`` is a
    # ``list[T]``), where the context-sensitive ``await p.collect()`` can only
    # be typed as the blocking form's result. Same arguments, same behaviour.

    async def acollect(
        self, *, progress: Progress = False, timeout: Optional[float] = None
    ) -> list[T]:
        """``await``-able :meth:`collect`."""
        return await self._aterminal(  # type: ignore[no-any-return]
            "collect", Collect(), progress, timeout
        )

    async def asum(
        self, start: Any = 0, *, progress: Progress = False, timeout: Optional[float] = None
    ) -> Any:
        """``await``-able :meth:`sum`."""
        return await self._aterminal("sum", Sum(start), progress, timeout)

    async def acount(self, *, progress: Progress = False, timeout: Optional[float] = None) -> int:
        """``await``-able :meth:`count`."""
        return await self._aterminal(  # type: ignore[no-any-return]
            "count", Count(), progress, timeout
        )

    async def amin(
        self,
        *,
        key: Optional[Callable[[T], Any]] = None,
        default: Any = None,
        progress: Progress = False,
        timeout: Optional[float] = None,
    ) -> Any:
        """``await``-able :meth:`min`."""
        if key is not None:
            _check_callable("amin", key)
        return await self._aterminal("min", MinMax(min, key, default), progress, timeout)

    async def amax(
        self,
        *,
        key: Optional[Callable[[T], Any]] = None,
        default: Any = None,
        progress: Progress = False,
        timeout: Optional[float] = None,
    ) -> Any:
        """``await``-able :meth:`max`."""
        if key is not None:
            _check_callable("amax", key)
        return await self._aterminal("max", MinMax(max, key, default), progress, timeout)

    async def areduce(
        self,
        op: Callable[[Any, Any], Any],
        initial: Any = _MISSING,
        *,
        progress: Progress = False,
        timeout: Optional[float] = None,
    ) -> Any:
        """``await``-able :meth:`reduce`."""
        _check_callable("areduce", op)
        return await self._aterminal("reduce", Reduce(op, initial), progress, timeout)

    async def afold(
        self,
        identity: Any,
        op: Callable[[Any, T], Any],
        combine: Optional[Callable[[Any, Any], Any]] = None,
        *,
        progress: Progress = False,
        timeout: Optional[float] = None,
    ) -> Any:
        """``await``-able :meth:`fold`."""
        _check_callable("afold", op)
        if combine is not None:
            _check_callable("afold", combine)
        return await self._aterminal("fold", Fold(identity, op, combine), progress, timeout)

    async def aany(
        self,
        pred: Optional[Callable[[T], Any]] = None,
        *,
        progress: Progress = False,
        timeout: Optional[float] = None,
    ) -> bool:
        """``await``-able :meth:`any`."""
        if pred is not None:
            _check_callable("aany", pred)
        return await self._aterminal(  # type: ignore[no-any-return]
            "any", AnyAll(True, pred), progress, timeout
        )

    async def aall(
        self,
        pred: Optional[Callable[[T], Any]] = None,
        *,
        progress: Progress = False,
        timeout: Optional[float] = None,
    ) -> bool:
        """``await``-able :meth:`all`."""
        if pred is not None:
            _check_callable("aall", pred)
        return await self._aterminal(  # type: ignore[no-any-return]
            "all", AnyAll(False, pred), progress, timeout
        )

    async def afor_each(
        self,
        fn: Callable[[T], Any],
        *,
        progress: Progress = False,
        timeout: Optional[float] = None,
    ) -> None:
        """``await``-able :meth:`for_each`."""
        _check_callable("afor_each", fn)
        await self._aterminal("for_each", ForEach(fn), progress, timeout)

    async def ato_dict(
        self,
        key: Callable[[T], Any],
        value: Optional[Callable[[T], Any]] = None,
        *,
        progress: Progress = False,
        timeout: Optional[float] = None,
    ) -> dict[Any, Any]:
        """``await``-able :meth:`to_dict`."""
        _check_callable("ato_dict", key)
        if value is not None:
            _check_callable("ato_dict", value)
        return await self._aterminal(  # type: ignore[no-any-return]
            "to_dict", ToDict(key, value), progress, timeout
        )

    # -- streaming ------------------------------------------------------------

    def _batches(self, deadline: Optional[Deadline] = None) -> Generator[list[Any], None, None]:
        runtime = get_runtime()
        chunk_size = self._chunk_size or runtime.config.chunk_size
        execution = self._start(runtime, chunk_size, deadline=deadline)
        executor = execution.executor
        try:
            yield from partials(
                execution,
                self._source,
                stages_for(self._stages, executor),
                Collect(),
                stream_mode=True,
            )
        finally:
            execution.close()
            self._explained = explained(execution)

    def __iter__(self) -> Iterator[T]:
        """Yields results in input order as they are ready, reading the input
        lazily with bounded look-ahead."""
        for batch in self._batches():
            yield from batch

    def iter(self, *, timeout: Optional[float] = None) -> Iterator[T]:
        """Iteration (``for x in pipeline``) with a deadline: ``timeout``
        seconds for the whole stream, counted from the first ``next()``.

        Once it has passed, the next result that must be waited for raises
        :class:`vedart.TimeoutError` and the work still running is cancelled,
        as for terminal operations. Time the consumer spends between items
        counts too.

        Raises:
            TypeError, ValueError: ``timeout`` is not a non-negative number.
        """
        seconds = check_timeout(timeout)
        if seconds is None:
            return iter(self)
        return self._iterate(seconds)

    def _iterate(self, timeout: float) -> Iterator[T]:
        for batch in self._batches(Deadline(timeout, self._describe("iter"))):
            yield from batch

    def __aiter__(self) -> AsyncIterator[T]:
        """``async for``: like iteration, without blocking the event loop."""
        return self._async_items(None)

    def aiter(self, *, timeout: Optional[float] = None) -> AsyncIterator[T]:
        """``async for`` with a deadline: :meth:`iter` for coroutines; the
        coroutines of ``async_map`` stages are cancelled when it passes.

        Raises:
            TypeError, ValueError: ``timeout`` is not a non-negative number.
        """
        return self._async_items(check_timeout(timeout))

    async def _async_items(self, timeout: Optional[float]) -> AsyncIterator[T]:
        deadline = Deadline.start(timeout, self._describe("aiter"))
        batches = self._batches(deadline)
        # A step cancelled from the loop may still be running on its thread
        # when the generator is closed: the lock makes the close wait for it.
        steps = threading.Lock()

        def step() -> Any:
            with steps:
                return next(batches, _END)

        def close() -> None:
            with steps:
                batches.close()

        abandoned = False
        try:
            while True:
                if deadline is None:
                    batch = await _asyncio.run_blocking(step)
                else:
                    try:
                        batch = await _asyncio.within(_asyncio.run_blocking(step), deadline)
                    except TimeoutError:
                        abandoned = not steps.acquire(blocking=False)
                        if not abandoned:
                            steps.release()
                        raise
                if batch is _END:
                    return
                for item in batch:
                    yield item
        finally:
            if abandoned:
                # The step is still running (a chunk its own thread took on
                # while it waited, or a slow source): the stream is closed, its
                # work cancelled, as soon as the step returns.
                get_runtime()._root.submit(close, ())
            else:
                await _asyncio.run_blocking(close)

    def __repr__(self) -> str:
        source = self._source
        try:
            described = f"{type(source).__name__}[{len(source)}]"
        except TypeError:
            described = type(source).__name__
        stages = ".".join(repr(s) for s in self._stages)
        return f"par_iter({described}){'.' + stages if stages else ''}"

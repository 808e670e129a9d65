"""Pipeline stages, their fusion into one chunk function, and the reducers of
terminal operations.

Per-item stages (``map``, ``filter``, ``flat_map``, and ``gpu_map`` while it runs
on the CPU) are *fused*: consecutive ones become a single function that a
worker runs over a whole chunk as a chain of C-level iterators
(``map``/``filter``/``chain.from_iterable``), so the per-item path never
re-enters VedaRT. A reducer's ``chunk`` step is fused onto the end of the chain
and runs in the worker too; only the per-chunk partial results come back to the
caller, which combines them with ``combine``.

Sequential stages (``enumerate``, ``zip``, ``take``, ``skip``, ``chunk``,
``async_map``) depend on an item's position in the whole stream; the caller
applies them to the ordered stream between parallel segments.
"""

from __future__ import annotations

import collections
import copy
import functools
import itertools
import os
import threading
from typing import Any, Callable, Iterable, Iterator, Optional

from ._worker import _MISSING, reducer_step
from .exceptions import _attach_note

MAP = "map"
FILTER = "filter"
FLAT_MAP = "flat_map"
GPU_MAP = "gpu_map"
ENUMERATE = "enumerate"
ZIP = "zip"
TAKE = "take"
SKIP = "skip"
CHUNK = "chunk"
ASYNC_MAP = "async_map"

#: Stages applied to each item independently (fused and run in workers).
PER_ITEM = frozenset({MAP, FILTER, FLAT_MAP, GPU_MAP})

_chain = itertools.chain.from_iterable
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


class Stage:
    """One pipeline stage: its kind and arguments."""

    __slots__ = ("kind", "fn", "arg")

    def __init__(self, kind: str, fn: Optional[Callable[..., Any]] = None, arg: Any = None):
        self.kind = kind
        self.fn = fn
        self.arg = arg

    def __repr__(self) -> str:
        if self.fn is not None:
            name = getattr(self.fn, "__qualname__", None) or repr(self.fn)
            return f"{self.kind}({name})"
        if self.arg is not None:
            return f"{self.kind}({self.arg!r})"
        return f"{self.kind}()"


def chain_items(stages: tuple[Stage, ...]) -> Callable[[Iterable[Any]], Iterable[Any]]:
    """The fused per-item chain of ``stages`` as one function of an iterable."""
    if not stages:
        return iter
    steps: list[tuple[Any, Any]] = []
    for stage in stages:
        if stage.kind in (MAP, GPU_MAP):
            steps.append((map, stage.fn))
        elif stage.kind == FILTER:
            steps.append((filter, stage.fn))
        elif stage.kind == FLAT_MAP:
            steps.append((_flat_map, stage.fn))
        else:  # pragma: no cover - guarded by the planner
            raise AssertionError(f"not a per-item stage: {stage.kind}")
    if len(steps) == 1:
        ((builder, fn),) = steps
        return functools.partial(_one_step, builder, fn)
    return functools.partial(_many_steps, tuple(steps))


def _flat_map(fn: Callable[[Any], Iterable[Any]], items: Iterable[Any]) -> Iterator[Any]:
    return _chain(map(fn, items))


def _one_step(builder: Any, fn: Any, items: Iterable[Any]) -> Iterable[Any]:
    return builder(fn, items)


def _many_steps(steps: tuple[Any, ...], items: Iterable[Any]) -> Iterable[Any]:
    it = items
    for builder, fn in steps:
        it = builder(fn, it)
    return it


def make_chunk_fn(
    stages: tuple[Stage, ...], finish: Callable[[Iterable[Any]], Any]
) -> Callable[[Iterable[Any]], Any]:
    """The function a worker runs on one chunk: the fused chain of ``stages``
    followed by the reducer step ``finish``. Exceptions leave it with a note
    naming the worker thread and with VedaRT's own frames trimmed from the
    traceback, so the first frame shown is the caller's function."""
    if len(stages) == 1 and stages[0].kind in (MAP, GPU_MAP) and finish is list:
        fn = stages[0].fn

        def run_map(chunk: Iterable[Any]) -> Any:
            try:
                return list(map(fn, chunk))  # type: ignore[arg-type]
            except BaseException as exc:
                _annotate(exc)
                raise

        return run_map

    chain = chain_items(stages)

    def run_chunk(chunk: Iterable[Any]) -> Any:
        try:
            return finish(chain(chunk))
        except BaseException as exc:
            _annotate(exc)
            raise

    return run_chunk


_NOTE_PREFIX = "vedart: raised in thread"


def _annotate(exc: BaseException) -> None:
    """Notes where ``exc`` was raised and trims VedaRT frames off its traceback."""
    if any(str(note).startswith(_NOTE_PREFIX) for note in getattr(exc, "__notes__", ())):
        return  # already annotated by an inner pipeline
    tb = exc.__traceback__
    while (
        tb is not None
        and os.path.dirname(os.path.abspath(tb.tb_frame.f_code.co_filename)) == _PACKAGE_DIR
    ):
        tb = tb.tb_next
    if tb is not None:
        exc.__traceback__ = tb
    worker = threading.current_thread().name
    _attach_note(exc, f"{_NOTE_PREFIX} {worker!r}")


# ---------------------------------------------------------------------------
# Reducers: the per-chunk step (runs in workers) and the combination of the
# partial results in input order (runs in the caller). The per-chunk steps live
# in ``vedart._worker`` (:func:`~vedart._worker.reducer_step`), the one copy
# that threads run here and worker processes run without importing vedart.


class Reducer:
    """A terminal operation. ``chunk`` turns one chunk's items into a partial
    result; ``combine`` folds the partials, in input order, into the answer and
    may stop early (short-circuit), which cancels the work still outstanding.

    ``spec`` is the per-chunk step as data (see
    :func:`vedart._worker.reducer_step`), ``chunk`` the step built from it."""

    #: Whether the terminal operation needs every item (then the first error
    #: anywhere fails it at once); ``False`` for short-circuiting operations.
    consumes_all = True

    #: Whether ``chunk`` calls the user's functions, so that it is worth running
    #: in the workers even when the pipeline has no per-item stage.
    calls_user_code = False

    def __init__(self, *spec: Any) -> None:
        self.spec: tuple[Any, ...] = spec
        self.chunk: Callable[[Iterable[Any]], Any] = reducer_step(spec)

    def combine(self, partials: Iterator[Any]) -> Any:
        raise NotImplementedError


class Collect(Reducer):
    """``collect()``: every item, in input order."""

    def __init__(self) -> None:
        super().__init__("collect")

    def combine(self, partials: Iterator[list[Any]]) -> list[Any]:
        out: list[Any] = []
        extend = out.extend
        for part in partials:
            extend(part)
        return out


class Count(Reducer):
    """``count()``."""

    def __init__(self) -> None:
        super().__init__("count")

    def combine(self, partials: Iterator[int]) -> int:
        return sum(partials)


class Sum(Reducer):
    """``sum(start)``: ``start + x0 + x1 + ...`` for any type supporting ``+``."""

    def __init__(self, start: Any) -> None:
        super().__init__("sum")
        self.start = start

    def combine(self, partials: Iterator[Any]) -> Any:
        total = self.start
        for part in partials:
            if part is not _MISSING:
                total = total + part
        return total


class MinMax(Reducer):
    """``min()`` / ``max()`` with ``key`` and ``default``."""

    def __init__(self, pick: Callable[..., Any], key: Optional[Callable[[Any], Any]], default: Any):
        if pick is not min and pick is not max:
            raise ValueError(f"MinMax picks with min or max, not {pick!r}")
        super().__init__(pick.__name__, key)
        self.pick = pick
        self.key = key
        self.default = default
        self.calls_user_code = key is not None

    def combine(self, partials: Iterator[Any]) -> Any:
        values = [p for p in partials if p is not _MISSING]
        if not values:
            return self.default
        return self.pick(values, key=self.key)


class Reduce(Reducer):
    """``reduce(op, initial)``."""

    calls_user_code = True

    def __init__(self, op: Callable[[Any, Any], Any], initial: Any) -> None:
        super().__init__("reduce", op)
        self.op = op
        self.initial = initial

    def combine(self, partials: Iterator[Any]) -> Any:
        values = [p for p in partials if p is not _MISSING]
        if self.initial is not _MISSING:
            return functools.reduce(self.op, values, self.initial)
        if not values:
            return None
        return functools.reduce(self.op, values)


class Fold(Reducer):
    """``fold(identity, op, combine)``: each chunk folds from a fresh identity
    with ``op``; the partials are combined with ``combine`` (default ``op``)."""

    def __init__(
        self,
        identity: Any,
        op: Callable[[Any, Any], Any],
        merge: Optional[Callable[[Any, Any], Any]],
    ) -> None:
        super().__init__("fold", identity, op)
        self.identity = identity
        self.op = op
        self.merge = merge if merge is not None else op
        self.calls_user_code = True

    def fresh(self) -> Any:
        if callable(self.identity):
            return self.identity()
        return copy.copy(self.identity)

    def combine(self, partials: Iterator[Any]) -> Any:
        it = iter(partials)
        first = next(it, _MISSING)
        if first is _MISSING:
            return self.fresh()
        return functools.reduce(self.merge, it, first)


class AnyAll(Reducer):
    """``any(pred)`` / ``all(pred)``: stops scheduling work once decided."""

    consumes_all = False

    def __init__(self, want: bool, pred: Optional[Callable[[Any], Any]]) -> None:
        super().__init__("any" if want else "all", pred)
        self.want = want  # True for any(), False for all()
        self.pred = pred
        self.calls_user_code = pred is not None

    def combine(self, partials: Iterator[bool]) -> bool:
        for part in partials:
            if part == self.want:
                return self.want
        return not self.want


class ForEach(Reducer):
    """``for_each(f)``: calls ``f`` on every item for its effect."""

    calls_user_code = True

    def __init__(self, fn: Callable[[Any], Any]) -> None:
        super().__init__("for_each", fn)
        self.fn = fn

    def combine(self, partials: Iterator[None]) -> None:
        collections.deque(partials, maxlen=0)


class ToDict(Reducer):
    """``to_dict(key, value)``: ``{key(x): value(x)}``, later items winning."""

    calls_user_code = True

    def __init__(self, key: Callable[[Any], Any], value: Optional[Callable[[Any], Any]]) -> None:
        super().__init__("to_dict", key, value)
        self.key = key
        self.value = value

    def combine(self, partials: Iterator[dict[Any, Any]]) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        for part in partials:
            out.update(part)
        return out


def chunked(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """Consecutive lists of ``size`` items (the last may be shorter)."""
    it = iter(items)
    while True:
        block = list(itertools.islice(it, size))
        if not block:
            return
        yield block

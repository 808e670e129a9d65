"""The worker process of the process executor.

Each child of the process pool runs this file (``python .../vedart/_worker.py``,
or ``python -m vedart._worker``) and answers the frames of the pool's wire
protocol (``executors/src/process/README.md``) on its stdin and stdout:

1. Start-up: ``sys.path`` becomes the parent's (``VEDART_WORKER_SYS_PATH``);
   the protocol pipes move to private descriptors, fd 0 becomes ``/dev/null``
   and fd 1 becomes stderr, so that ``print``, ``input()`` and C libraries
   writing to stdout cannot corrupt the stream.
2. ``Control``/``Install`` frames carry a pickled *plan*: the fused stage chain
   of one pipeline segment and its reducer step, as plain data and the user's
   callables (see ``vedart._process``). It is unpickled and built into a chunk
   function on first use, then kept until ``Control``/``Release``.
3. A ``Request`` payload is ``[context id: u64 LE][pickled chunk]`` (context id
   0: ``[pickled (plan, chunk)]``). The answer is a ``Response`` whose payload
   is ``[run time: f64 LE][flags: u8][pickled result]`` (flag 1: the reducer
   found no item), or an ``Error`` whose payload is a pickled dict describing
   the exception (the exception itself when it pickles, its type, message and
   traceback text).
4. Before a request runs, a ``Started`` frame with its id is written (with
   the answers held so far, in one ``write``): the parent then knows that the
   request may have run, and never sends it to another child when this one
   dies (chunks run at most once). Answers of requests that took less than
   :data:`BATCH_BELOW_SECONDS` are held while further requests are already
   buffered (at most :data:`MAX_HELD_ANSWERS`), so they leave with the next
   acknowledgement. At EOF on stdin the worker exits with status 0.
5. A payload longer than the pool's maximum frame size (``VEDART_MAX_FRAME_SIZE``,
   set by the pool) travels as ``Part`` frames followed by the last frame of
   its kind, in both directions: answers are split here (without copying the
   pickled bytes), requests are joined.

Start-up is kept short, because the first result of the first process map
waits for it: this module imports nothing from ``vedart`` (importing the
package costs about a hundred milliseconds) and only a few small standard
modules. A function that cloudpickle would send *by value* (a lambda, a
closure, a function of ``__main__``) is sent by the parent as its code
(``marshal``), the globals it names, its defaults and its closure, and rebuilt
here by :func:`make_function` and :func:`set_function_state` (see "Functions
sent by value" below): only stable CPython interfaces, nothing of
cloudpickle's, so no cloudpickle upgrade can break the worker, and a child
needs neither cloudpickle nor vedart for such functions. Anything else that
cloudpickle sent by value (classes of ``__main__``, say) names cloudpickle's
own reconstructors, and :func:`pickle.loads` imports cloudpickle (some 30 ms)
for it then, and only then. Results and exceptions are pickled with
:mod:`pickle` and, when that fails, with cloudpickle, whose class tracking
gives the parent back its own classes.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs milliseconds at start-up: annotations only
    from typing import Any, Callable, Iterable, Optional


def _adopt_parent_path() -> None:
    """Step 1: the parent's ``sys.path`` replaces ours before any import that a
    module of this directory could shadow (run as a script, the directory of
    this file is ``sys.path[0]``)."""
    path = os.environ.get("VEDART_WORKER_SYS_PATH")
    if path is not None:
        sys.path[:] = [entry for entry in path.split(os.pathsep) if entry]
    elif sys.path and os.path.abspath(sys.path[0] or ".") == os.path.dirname(
        os.path.abspath(__file__)
    ):
        del sys.path[0]


if __name__ == "__main__":
    _adopt_parent_path()

import builtins  # noqa: E402
import itertools  # noqa: E402
import marshal  # noqa: E402
import pickle  # noqa: E402
import struct  # noqa: E402
import time  # noqa: E402

#: Frame header: payload length (u32), id (u64), kind (u8), little-endian.
_HEADER = struct.Struct("<IQB")
_REQUEST, _RESPONSE, _ERROR, _CONTROL, _STARTED, _PART = 1, 2, 3, 4, 5, 6
#: Step 5: the largest frame payload the pool accepts.
_MAX_FRAME = max(1, int(os.environ.get("VEDART_MAX_FRAME_SIZE") or 256 << 20))
_INSTALL, _RELEASE = 1, 2
#: Response payload prefix: run time in seconds (f64), flags (u8).
_ANSWER = struct.Struct("<dB")
#: Response flag: the reducer step found no item (the parent's ``_MISSING``).
_FLAG_MISSING = 1
_CONTEXT_ID = struct.Struct("<Q")
#: Step 4: answers of requests faster than this may wait for the next ones.
BATCH_BELOW_SECONDS = 0.0002
#: Step 4: at most this many answers wait.
MAX_HELD_ANSWERS = 64
#: Most buffers handed to one ``writev``.
_MAX_IOV = 512
_READ_SIZE = 1 << 16

_MISSING: Any = object()
_cloudpickle: Any = None


def _reduce_items(op: Callable[[Any, Any], Any], items: Iterable[Any], start: Any) -> Any:
    from functools import reduce

    return reduce(op, items, start)


# -- Functions sent by value -------------------------------------------------------
#
# The parent's pickler (``vedart._process._make_pickler``) reduces a function
# that cannot be imported by name to ``make_function(code, base_globals, name,
# cells)`` with the state ``set_function_state`` applies: the function is made
# first and filled in after, so a function that refers to itself (through its
# globals or its closure) gets itself. Functions of one module share one
# ``base_globals`` dict per message, as they share their module's globals.
# Modules the function names travel by name (``import_module``).
#
# These functions, and the few other objects of this module that the parent
# pickles by reference (see "calls of a concurrent.futures executor" below),
# are pickled under the module name ``_vedart_worker``, which both the parent
# (``vedart._process``) and every child register in ``sys.modules`` for this
# module: such a pickle loads in a child without importing the vedart package.

#: The name these objects are pickled under.
MODULE_ALIAS = "_vedart_worker"

_FunctionType: Any = type(_reduce_items)
_CellType: Any = type((lambda value: lambda: value)(None).__closure__[0])  # type: ignore[index]


def make_function(code: bytes, base_globals: dict, name: str, cells: int) -> Any:
    """A function of the marshalled ``code``, the module globals
    ``base_globals`` and ``cells`` empty closure cells (see
    :func:`set_function_state`)."""
    base_globals["__builtins__"] = builtins.__dict__
    closure = tuple(_CellType() for _ in range(cells)) if cells else None
    return _FunctionType(marshal.loads(code), base_globals, name, None, closure)


def set_function_state(fn: Any, state: dict) -> None:
    """Fills in a function :func:`make_function` made: the globals it names,
    defaults, names, documentation, attributes and closure values
    (``(True, value)``, or ``(False, None)`` for an empty cell)."""
    fn.__globals__.update(state["globals"])
    fn.__defaults__ = state["defaults"]
    fn.__kwdefaults__ = state["kwdefaults"]
    fn.__qualname__ = state["qualname"]
    fn.__module__ = state["module"]
    fn.__doc__ = state["doc"]
    fn.__annotations__ = state["annotations"]
    fn.__dict__.update(state["dict"])
    for cell, (full, value) in zip(fn.__closure__ or (), state["closure"]):
        if full:
            cell.cell_contents = value


def import_module(name: str) -> Any:
    """The module ``name``, imported if need be."""
    __import__(name)
    return sys.modules[name]


for _reconstructor in (make_function, set_function_state, import_module):
    _reconstructor.__module__ = MODULE_ALIAS


def register_alias() -> None:
    """Makes this module importable as :data:`MODULE_ALIAS`."""
    sys.modules.setdefault(MODULE_ALIAS, sys.modules[__name__])


# -- the plan: building a chunk function from plain data ---------------------


def _flat_map(fn: Callable[[Any], Iterable[Any]], items: Iterable[Any]) -> Iterable[Any]:
    return itertools.chain.from_iterable(map(fn, items))


_BUILDERS: dict[str, Callable[[Any, Iterable[Any]], Iterable[Any]]] = {
    "map": map,
    "gpu_map": map,
    "filter": filter,
    "flat_map": _flat_map,
}


def _count(items: Iterable[Any]) -> int:
    return len(list(items))


def _sum(items: Iterable[Any]) -> Any:
    it = iter(items)
    first = next(it, _MISSING)
    if first is _MISSING:
        return _MISSING
    if isinstance(first, (str, bytes, bytearray)):  # sum() refuses strings as start
        return _reduce_items(lambda a, b: a + b, it, first)
    return sum(it, first)


def _reduce(op: Callable[[Any, Any], Any]) -> Callable[[Iterable[Any]], Any]:
    def finish(items: Iterable[Any]) -> Any:
        it = iter(items)
        first = next(it, _MISSING)
        if first is _MISSING:
            return _MISSING
        return _reduce_items(op, it, first)

    return finish


def _fold(identity: Any, op: Callable[[Any, Any], Any]) -> Callable[[Iterable[Any]], Any]:
    import copy

    def finish(items: Iterable[Any]) -> Any:
        start = identity() if callable(identity) else copy.copy(identity)
        return _reduce_items(op, items, start)

    return finish


def _pick(pick: Any, key: Any) -> Callable[[Iterable[Any]], Any]:
    return lambda items: pick(items, key=key, default=_MISSING)


def _any_all(want: bool, pred: Any) -> Callable[[Iterable[Any]], bool]:
    test = any if want else all

    def finish(items: Iterable[Any]) -> bool:
        return test(items if pred is None else map(pred, items))

    return finish


def _for_each(fn: Callable[[Any], Any]) -> Callable[[Iterable[Any]], None]:
    def finish(items: Iterable[Any]) -> None:
        for _ in map(fn, items):
            pass

    return finish


def _to_dict(key: Any, value: Any) -> Callable[[Iterable[Any]], dict]:
    if value is None:
        return lambda items: {key(x): x for x in items}
    return lambda items: {key(x): value(x) for x in items}


def reducer_step(spec: tuple) -> Callable[[Iterable[Any]], Any]:
    """The per-chunk step of a terminal operation, from its ``spec`` (the
    reducer step of a plan, e.g. ``("fold", identity, op)``): the one home of
    these steps, which ``vedart._stages``'s reducers run on threads and this
    worker runs in processes. The step carries its spec as ``veda_spec``
    (``list``, the step of ``("collect",)``, excepted), so that
    ``vedart._process`` can send it as data."""
    step = _make_step(spec)
    if step is not list:
        step.veda_spec = spec  # type: ignore[attr-defined]
    return step


def _make_step(spec: tuple) -> Callable[[Iterable[Any]], Any]:
    tag = spec[0]
    if tag == "collect":
        return list
    if tag == "count":
        return _count
    if tag == "sum":
        return _sum
    if tag == "min":
        return _pick(min, spec[1])
    if tag == "max":
        return _pick(max, spec[1])
    if tag == "reduce":
        return _reduce(spec[1])
    if tag == "fold":
        return _fold(spec[1], spec[2])
    if tag == "any":
        return _any_all(True, spec[1])
    if tag == "all":
        return _any_all(False, spec[1])
    if tag == "for_each":
        return _for_each(spec[1])
    if tag == "to_dict":
        return _to_dict(spec[1], spec[2])
    raise ValueError(f"vedart worker: unknown reducer step {tag!r}")


def build(plan: tuple) -> Callable[[Any], Any]:
    """The chunk function of a plan: ``("call", fn)`` is ``fn`` itself;
    ``("chain", ((kind, fn), ...), reducer_spec)`` is the fused chain;
    ``("setup", setup, plan)`` runs the pipeline's initializer (see
    :func:`_setup`) before ``plan``'s function, once per process."""
    if plan[0] == "setup":
        setup, inner = plan[1], build(plan[2])

        def set_up_first(chunk: Any) -> Any:
            _setup(setup)
            return inner(chunk)

        return set_up_first
    if plan[0] == "call":
        return plan[1]  # type: ignore[no-any-return]
    _, stages, finish_spec = plan
    finish = reducer_step(finish_spec)
    if len(stages) == 1 and stages[0][0] in ("map", "gpu_map") and finish is list:
        fn = stages[0][1]
        return lambda chunk: list(map(fn, chunk))
    steps = tuple((_BUILDERS[kind], fn) for kind, fn in stages)

    def run(chunk: Iterable[Any]) -> Any:
        it = chunk
        for builder, fn in steps:
            it = builder(fn, it)
        return finish(it)

    return run


# -- calls of a concurrent.futures executor --------------------------------------
#
# ``vedart.VedaExecutor`` (and the joblib backend built on it) sends a
# submitted call as the plan ``("call", partial(run_call, setup, fn))`` with
# the chunk ``(args, kwargs)``, and the items of a ``map`` through a ``map``
# stage of ``partial(run_item, setup, fn)``. These functions are pickled by
# reference under :data:`MODULE_ALIAS`, so a child needs nothing more to run
# them. ``setup`` is ``None`` or ``(token, initializer, initargs)``: the
# executor's ``initializer``, run once per process before its first call.

#: Tokens of the executors whose initializer ran in this process.
_set_up: set = set()


class InitializerFailed(Exception):
    """An executor's initializer raised in this process; ``payload`` is that
    error's ``Error`` payload (see :func:`_describe_error`)."""

    def __init__(self, payload: bytes) -> None:
        super().__init__(payload)
        self.payload = payload


class Raised:
    """What an item of an executor's ``map`` returns in place of a result
    when it raised, so that the items after it still run and the error is
    raised in order. It holds the exception; pickled (to cross to the parent)
    it becomes the exception's ``Error`` payload and this process's pid."""

    __slots__ = ("exc", "payload", "pid")

    def __init__(
        self, exc: Optional[BaseException], payload: Optional[bytes] = None, pid: Any = None
    ) -> None:
        self.exc = exc
        self.payload = payload
        self.pid = pid

    def __reduce__(self) -> Any:
        if self.exc is None:
            return (Raised, (None, self.payload, self.pid))
        return (Raised, (None, _describe_error(self.exc), os.getpid()))


def _setup(setup: tuple) -> None:
    token, initializer, initargs = setup
    if token in _set_up:
        return
    try:
        initializer(*initargs)
    except Exception as exc:
        raise InitializerFailed(_describe_error(exc)) from None
    _set_up.add(token)


def run_call(setup: Optional[tuple], fn: Callable[..., Any], job: tuple) -> Any:
    """A submitted call: ``fn(*args, **kwargs)`` for ``job = (args, kwargs)``."""
    if setup is not None:
        _setup(setup)
    args, kwargs = job
    return fn(*args, **kwargs)


def run_item(setup: Optional[tuple], fn: Callable[..., Any], args: tuple) -> Any:
    """One item of a ``map``: ``fn(*args)``, or a :class:`Raised` holding the
    exception it raised."""
    if setup is not None:
        _setup(setup)
    try:
        return fn(*args)
    except Exception as exc:
        return Raised(exc)


for _shared in (InitializerFailed, Raised, run_call, run_item):
    _shared.__module__ = MODULE_ALIAS


# -- pickling -----------------------------------------------------------------


def _dump(value: Any) -> bytes:
    """``value`` pickled (protocol 5), with cloudpickle as the fallback."""
    global _cloudpickle
    try:
        return pickle.dumps(value, protocol=5)
    except Exception as plain_error:
        if _cloudpickle is None:
            try:
                import cloudpickle  # type: ignore[import-untyped]
            except ImportError:
                raise plain_error from None
            _cloudpickle = cloudpickle
        try:
            return _cloudpickle.dumps(value, protocol=5)  # type: ignore[no-any-return]
        except Exception:
            raise plain_error from None


def _portable(value: Any) -> Optional[bytes]:
    """``value`` pickled, if it pickles and unpickles again; else ``None``."""
    try:
        data = _dump(value)
        pickle.loads(data)
    except Exception:
        return None
    return data


def _describe_error(exc: BaseException) -> bytes:
    """The ``Error`` payload for ``exc``: see step 3 of the module docs."""
    import traceback

    tb = exc.__traceback__
    # The first frames are this module's: the user's code starts after them.
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    text = "".join(traceback.format_exception(type(exc), exc, tb))
    cls = type(exc)
    exc_bytes = _portable(exc)
    type_bytes = args_bytes = state_bytes = None
    if exc_bytes is None:
        # It does not survive pickling (an ``__init__`` whose parameters are
        # not its ``args``): send its type, args and attributes, which the
        # parent puts together without calling ``__init__``.
        type_bytes = _portable(cls)
        args_bytes = _portable(exc.args)
        state = {}
        for key, value in getattr(exc, "__dict__", {}).items():
            if _portable(value) is not None:
                state[key] = value
        state_bytes = _portable(state)
    try:
        message = str(exc)
    except Exception:
        message = f"<{cls.__name__}: str() failed>"
    return pickle.dumps(
        {
            "exc": exc_bytes,
            "type_bytes": type_bytes,
            "args": args_bytes,
            "state": state_bytes,
            "type": f"{cls.__module__}.{cls.__qualname__}",
            "message": message,
            "traceback": text,
        },
        protocol=5,
    )


# -- the frame loop -----------------------------------------------------------


class _Reader:
    """Frames from a pipe, read in large pieces (step 4 needs to know whether
    another frame is already buffered)."""

    __slots__ = ("fd", "buf", "pos")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buf = bytearray()
        self.pos = 0

    def _fill(self, need: int) -> bool:
        while len(self.buf) - self.pos < need:
            if self.pos:
                del self.buf[: self.pos]
                self.pos = 0
            piece = os.read(self.fd, max(need - len(self.buf), _READ_SIZE))
            if not piece:
                return False
            self.buf += piece
        return True

    def has_frame(self) -> bool:
        """Whether a whole frame is buffered."""
        available = len(self.buf) - self.pos
        if available < _HEADER.size:
            return False
        (length,) = struct.unpack_from("<I", self.buf, self.pos)
        return available >= _HEADER.size + length

    def next_frame(self) -> Optional[tuple[int, int, Any]]:
        """``(id, kind, payload)``, or ``None`` at EOF; a message split into
        ``Part`` frames (step 5) comes back whole, with its real kind."""
        frame = self._next_raw()
        if frame is None or frame[1] != _PART:
            return frame
        frame_id, _, first = frame
        message = first if isinstance(first, bytearray) else bytearray(first)
        while True:
            frame = self._next_raw()
            if frame is None:
                return None
            message += frame[2]
            if frame[1] != _PART:
                return frame_id, frame[1], message

    def _next_raw(self) -> Optional[tuple[int, int, Any]]:
        """One frame as it came, or ``None`` at EOF."""
        if not self._fill(_HEADER.size):
            return None
        length, frame_id, kind = _HEADER.unpack_from(self.buf, self.pos)
        start = self.pos + _HEADER.size
        available = len(self.buf) - start
        if available >= length:
            payload: Any = bytes(self.buf[start : start + length])
            self.pos = start + length
            return frame_id, kind, payload
        # A large payload: read the rest straight into its own buffer.
        payload = bytearray(length)
        payload[:available] = self.buf[start:]
        self.buf.clear()
        self.pos = 0
        view = memoryview(payload)
        got = available
        while got < length:
            n = os.readv(self.fd, [view[got:]])
            if n == 0:
                return None
            got += n
        view.release()
        return frame_id, kind, payload


def _frames(frame_id: int, kind: int, parts: list) -> list:
    """The buffers of a message of ``kind`` whose payload is ``parts`` joined:
    one frame, or ``Part`` frames of at most :data:`_MAX_FRAME` bytes and a
    last one of ``kind`` (step 5), cut from ``parts`` without copying them."""
    total = sum(len(part) for part in parts)
    if total <= _MAX_FRAME:
        return [_HEADER.pack(total, frame_id, kind), *parts]
    out: list = []
    frame: list = []
    room = _MAX_FRAME
    for part in parts:
        view = memoryview(part)
        while len(view):
            piece, view = view[:room], view[room:]
            frame.append(piece)
            room -= len(piece)
            total -= len(piece)
            if room == 0 and total:
                out.append(_HEADER.pack(_MAX_FRAME, frame_id, _PART))
                out.extend(frame)
                frame, room = [], _MAX_FRAME
    out.append(_HEADER.pack(_MAX_FRAME - room, frame_id, kind))
    out.extend(frame)
    return out


def _write_all(fd: int, parts: list) -> None:
    index = 0
    while index < len(parts):
        written = os.writev(fd, parts[index : index + _MAX_IOV])
        while written:
            size = len(parts[index])
            if written >= size:
                written -= size
                index += 1
            else:
                parts[index] = memoryview(parts[index])[written:]
                written = 0


class _Worker:
    """Step 2 and 3: installed plans and the answer to one request."""

    __slots__ = ("contexts",)

    def __init__(self) -> None:
        #: Context id -> pickled plan (bytes) until first used, then its chunk function.
        self.contexts: dict[int, Any] = {}

    def control(self, frame_id: int, payload: Any) -> None:
        op = payload[0] if payload else 0
        if op == _INSTALL:
            self.contexts[frame_id] = bytes(payload[1:])
        elif op == _RELEASE:
            self.contexts.pop(frame_id, None)

    def _function(self, context_id: int) -> Callable[[Any], Any]:
        fn = self.contexts[context_id]
        if isinstance(fn, bytes):
            fn = build(pickle.loads(fn))
            self.contexts[context_id] = fn
        return fn  # type: ignore[no-any-return]

    def answer(self, request_id: int, payload: Any) -> list:
        started = time.perf_counter()
        try:
            (context_id,) = _CONTEXT_ID.unpack_from(payload)
            body = memoryview(payload)[_CONTEXT_ID.size :]
            if context_id:
                fn = self._function(context_id)
                chunk = pickle.loads(body)
            else:
                plan, chunk = pickle.loads(body)
                fn = build(plan)
            del body
            value = fn(chunk)
            del chunk
            elapsed = time.perf_counter() - started
            flags = 0
            if value is _MISSING or value is _parent_missing():
                flags, value = _FLAG_MISSING, None
            try:
                data = _dump(value)
            except Exception as error:
                raise _unpicklable_result(value, error) from None
        except BaseException as exc:  # reported to the parent, never fatal here
            error_payload = _describe_error(exc)
            return _frames(request_id, _ERROR, [error_payload])
        head = _ANSWER.pack(elapsed, flags)
        return _frames(request_id, _RESPONSE, [head, data])


def _unpicklable_result(value: Any, error: Exception) -> TypeError:
    """The error for a result that does not pickle, naming the culprit."""
    culprit = value
    if isinstance(value, (list, tuple)):
        for item in value:
            try:
                _dump(item)
            except Exception:
                culprit = item
                break
    return TypeError(
        f"a result ({short_repr(culprit)}) cannot be sent back from the worker process: {error}"
    )


def short_repr(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters, for error messages that
    name a value that does not pickle (here and in the parent)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _parent_missing() -> Any:
    """``vedart._stages._MISSING`` if a ``("call", fn)`` plan imported it."""
    stages = sys.modules.get("vedart._stages")
    return getattr(stages, "_MISSING", _MISSING) if stages is not None else _MISSING


def serve(in_fd: int, out_fd: int) -> int:
    """Answers frames from ``in_fd`` on ``out_fd`` until EOF; returns 0."""
    reader = _Reader(in_fd)
    worker = _Worker()
    pending: list = []
    held = 0
    clock = time.perf_counter
    while True:
        frame = reader.next_frame()
        if frame is None:
            break
        frame_id, kind, payload = frame
        if kind == _REQUEST:
            # Step 4: the acknowledgement is out before anything of the request runs.
            pending.append(_HEADER.pack(0, frame_id, _STARTED))
            _write_all(out_fd, pending)
            pending = []
            held = 0
            started = clock()
            pending.extend(worker.answer(frame_id, payload))
            held += 1
            quick = clock() - started < BATCH_BELOW_SECONDS
        elif kind == _CONTROL:
            worker.control(frame_id, payload)
            quick = True
        del frame, payload
        if pending and not (quick and held < MAX_HELD_ANSWERS and reader.has_frame()):
            _write_all(out_fd, pending)
            pending = []
            held = 0
    if pending:
        _write_all(out_fd, pending)
    return 0


def main() -> int:
    """Step 1, then :func:`serve`."""
    _adopt_parent_path()
    register_alias()
    in_fd = os.dup(0)
    out_fd = os.dup(1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    try:
        return serve(in_fd, out_fd)
    except BrokenPipeError:  # the parent went away
        return 0


if __name__ == "__main__":
    sys.exit(main())

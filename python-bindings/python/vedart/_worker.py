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
6. Large buffers (NumPy arrays and anything else that pickles protocol 5
   out-of-band buffers, of at least :data:`SHM_MIN_BYTES`) do not go through
   the pipes: see "Shared memory" below.

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


def _dump(value: Any, shared: Optional[SharedBuffers] = None) -> bytes:
    """``value`` pickled (protocol 5), with cloudpickle as the fallback;
    ``shared`` takes its large buffers (see "Shared memory")."""
    global _cloudpickle
    try:
        return pickle.dumps(value, protocol=5, buffer_callback=shared)
    except Exception as plain_error:
        if shared is not None:
            shared.discard()
        if _cloudpickle is None:
            try:
                import cloudpickle  # type: ignore[import-untyped]
            except ImportError:
                raise plain_error from None
            _cloudpickle = cloudpickle
        try:
            return _cloudpickle.dumps(  # type: ignore[no-any-return]
                value, protocol=5, buffer_callback=shared
            )
        except Exception:
            if shared is not None:
                shared.discard()
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


# -- Shared memory ------------------------------------------------------------
#
# A request's chunk and an answer's result are pickled with protocol 5 and a
# ``buffer_callback`` (:class:`SharedBuffers`): each out-of-band buffer of at
# least SHM_MIN_BYTES is written into a POSIX shared memory segment of its own
# (mode 0600) and only its name travels in the frame; smaller ones, and all of
# them when a segment cannot be made (no /dev/shm, or it is full), stay in the
# pickle. The receiver maps the segments (no copy: the unpickled arrays are
# views of the mappings, freed with them) and unlinks their names at once, so
# that a name lives only until both sides hold the memory:
#
# - parent -> child: the child unlinks after mapping, unless the pipeline may
#   run a chunk again (``Config.retries``: the envelope's flag then says keep),
#   and the parent unlinks whatever is left when the call resolves, however it
#   resolves (a chunk cancelled before a child read it, a child that died);
# - child -> parent: the parent unlinks on decoding the answer; an answer that
#   is never decoded (a run cancelled or left to finish in the background) is
#   reaped by the parent when its call resolves (``vedart._process``).
#
# Names are ``vedart-<parent pid>-<creator pid>-<random>``: every segment of
# one parent and its workers shares the *family* prefix ``vedart-<parent
# pid>-`` (``VEDART_SHM_FAMILY``, set by the parent). A *janitor* (this file
# run with ``--janitor``, see :func:`janitor`; detached, not a child of the
# parent) sweeps the family's leftovers once the parent and every worker have
# exited, whatever killed them: it holds the read end of a pipe whose write
# end only the parent and its workers hold.

#: Out-of-band buffers of at least this many bytes travel in shared memory.
SHM_MIN_BYTES = 64 << 10
#: The family prefix of segment names, set in the workers' environment.
SHM_FAMILY_VARIABLE = "VEDART_SHM_FAMILY"
#: Where Linux keeps POSIX shared memory segments (for the janitor's sweep).
SHM_DIR = "/dev/shm"
#: First byte of a payload with segments (a protocol 5 pickle starts with 0x80).
_SHM_MARK = 1
#: Envelope flag: the receiver unlinks the segments once it has mapped them.
SHM_UNLINK_ON_RECEIPT = 1
#: Envelope head: mark (u8), flags (u8), segment count (u16); then per segment
#: its size (u64) and name length (u8) and name; then the pickle.
_SHM_HEAD = struct.Struct("<BBH")
_SHM_ENTRY = struct.Struct("<QB")
_posixshmem: Any = None
_mmap: Any = None


def _shm_modules() -> tuple[Any, Any]:
    """``_posixshmem`` and ``mmap``, imported on first use (start-up stays short)."""
    global _posixshmem, _mmap
    if _mmap is None:
        import _posixshmem as posixshmem  # type: ignore[import-not-found]
        import mmap

        _posixshmem, _mmap = posixshmem, mmap
    return _posixshmem, _mmap


def shm_unlink(name: str) -> None:
    """Removes the segment ``name``; one already gone is no error."""
    posixshmem, _ = _shm_modules()
    try:
        posixshmem.shm_unlink("/" + name)
    except OSError:  # gone already (the other side, the janitor)
        pass


class SharedBuffers:
    """The ``buffer_callback`` of one message's pickler (see "Shared memory"):
    writes each large out-of-band buffer into a new segment named
    ``prefix`` + random and keeps the buffer out of the pickle; the rest stay
    in it. :meth:`envelope` then makes the payload, or :meth:`discard` removes
    the segments of a message that will not be sent."""

    __slots__ = ("prefix", "names", "sizes")

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.names: list[str] = []
        self.sizes: list[int] = []

    def __call__(self, buffer: Any) -> bool:
        try:
            view = buffer.raw()
        except BufferError:  # not contiguous: pickled in-band
            return True
        size = view.nbytes
        if size < SHM_MIN_BYTES or len(self.names) >= 0xFFFF:
            return True
        name = f"{self.prefix}{os.urandom(8).hex()}"
        # Named before it exists: a discard (even from a signal handler)
        # while it is being written unlinks it too.
        self.names.append(name)
        try:
            _write_segment(name, view)
        except OSError:  # no shared memory here, or it is full: in-band
            self.names.pop()
            shm_unlink(name)
            return True
        self.sizes.append(size)
        return False

    @property
    def nbytes(self) -> int:
        """Bytes placed in segments."""
        return sum(self.sizes)

    def envelope(self, data: Any, flags: int) -> list[Any]:
        """The payload for the pickle ``data``: ``[data]`` when no buffer went
        into a segment, else the envelope head and ``data``."""
        if not self.names:
            return [data]
        head = bytearray(_SHM_HEAD.pack(_SHM_MARK, flags, len(self.names)))
        for name, size in zip(self.names, self.sizes):
            encoded = name.encode("ascii")
            head += _SHM_ENTRY.pack(size, len(encoded))
            head += encoded
        return [bytes(head), data]

    def discard(self) -> None:
        """Unlinks the segments made so far (the message is not sent)."""
        names, self.names, self.sizes = self.names, [], []
        for name in names:
            shm_unlink(name)


def _write_segment(name: str, view: Any) -> None:
    """A new segment ``name`` (mode 0600, failing if it exists) holding
    ``view``. Written with ``write`` rather than through a mapping: one copy,
    pages not zeroed first, and a full /dev/shm is an ``OSError``, not a
    SIGBUS."""
    posixshmem, _ = _shm_modules()
    fd = posixshmem.shm_open("/" + name, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    try:
        done, size = 0, view.nbytes
        while done < size:
            done += os.write(fd, view[done:])
    except BaseException:
        shm_unlink(name)
        raise
    finally:
        os.close(fd)


def _parse_envelope(data: Any) -> tuple[list[str], list[int], int, Any]:
    """``(names, sizes, flags, pickle)`` of an envelope."""
    view = memoryview(data)
    _, flags, count = _SHM_HEAD.unpack_from(view)
    offset = _SHM_HEAD.size
    names: list[str] = []
    sizes: list[int] = []
    for _ in range(count):
        size, length = _SHM_ENTRY.unpack_from(view, offset)
        offset += _SHM_ENTRY.size
        names.append(bytes(view[offset : offset + length]).decode("ascii"))
        sizes.append(size)
        offset += length
    return names, sizes, flags, view[offset:]


def shared_names(data: Any) -> list[str]:
    """The segment names of a payload (none for a plain pickle)."""
    if not len(data) or data[0] != _SHM_MARK:
        return []
    return _parse_envelope(data)[0]


def shared_nbytes(data: Any) -> int:
    """The bytes a payload's segments hold (0 for a plain pickle)."""
    if not len(data) or data[0] != _SHM_MARK:
        return 0
    return sum(_parse_envelope(data)[1])


def load(data: Any) -> Any:
    """A payload unpickled: a plain pickle, or an envelope whose buffers are
    mapped from their segments (unlinked once mapped when its flags say so)."""
    if not len(data) or data[0] != _SHM_MARK:
        return pickle.loads(data)
    names, sizes, flags, body = _parse_envelope(data)
    _, mmap = _shm_modules()
    posixshmem = _posixshmem
    mapping = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
    buffers = []
    try:
        for name, size in zip(names, sizes):
            fd = posixshmem.shm_open("/" + name, os.O_RDWR, 0o600)
            try:
                buffers.append(mmap.mmap(fd, size, flags=mapping))
            finally:
                os.close(fd)
    finally:
        if flags & SHM_UNLINK_ON_RECEIPT:
            for name in names:
                shm_unlink(name)
    return pickle.loads(body, buffers=buffers)


def sweep(prefix: str) -> int:
    """Unlinks every segment whose name starts with ``prefix``; returns how many."""
    try:
        names = os.listdir(SHM_DIR)
    except OSError:
        return 0
    swept = 0
    for name in names:
        if name.startswith(prefix):
            try:
                os.unlink(os.path.join(SHM_DIR, name))
                swept += 1
            except OSError:
                pass
    return swept


def janitor(prefix: str, lifeline: int) -> int:
    """The janitor's life: reads ``lifeline`` until EOF, which comes once the
    parent and all its workers have exited, then sweeps ``prefix``. Terminal
    signals are ignored: it outlives a Ctrl+C of the parent's group to clean
    up after it."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    # Hold nothing else the parent left inheritable: someone may wait for EOF on it.
    os.closerange(3, lifeline)
    os.closerange(lifeline + 1, os.sysconf("SC_OPEN_MAX"))
    while os.read(lifeline, 4096):
        pass
    sweep(prefix)
    return 0


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
        shared = None
        if _ANSWER_PREFIX:
            shared = SharedBuffers(_ANSWER_PREFIX)
            _unsent.append(shared)
        try:
            (context_id,) = _CONTEXT_ID.unpack_from(payload)
            body = memoryview(payload)[_CONTEXT_ID.size :]
            if context_id:
                fn = self._function(context_id)
                chunk = load(body)
            else:
                plan, chunk = load(body)
                fn = build(plan)
            del body
            value = fn(chunk)
            del chunk
            elapsed = time.perf_counter() - started
            flags = 0
            if value is _MISSING or value is _parent_missing():
                flags, value = _FLAG_MISSING, None
            try:
                data = _dump(value, shared)
            except Exception as error:
                raise _unpicklable_result(value, error) from None
        except BaseException as exc:  # reported to the parent, never fatal here
            if shared is not None:
                shared.discard()
            error_payload = _describe_error(exc)
            return _frames(request_id, _ERROR, [error_payload])
        head = _ANSWER.pack(elapsed, flags)
        if shared is None:
            return _frames(request_id, _RESPONSE, [head, data])
        # From here the parent owns the segments (it unlinks them on decoding).
        payload_parts = shared.envelope(data, SHM_UNLINK_ON_RECEIPT)
        return _frames(request_id, _RESPONSE, [head, *payload_parts])


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
            _unsent.clear()
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
            _unsent.clear()
            pending = []
            held = 0
    if pending:
        _write_all(out_fd, pending)
        _unsent.clear()
    return 0


#: Step 6: this worker's segment name prefix, ``vedart-<parent>-<self>-``;
#: ``None`` (results in the pipes) when the parent set no family.
_ANSWER_PREFIX: Optional[str] = None
#: Step 6: the segments of answers not yet written to the parent (the parent
#: owns them once they are): what a SIGTERM (a cancellation) unlinks.
_unsent: list = []


def _on_terminate(signum: int, frame: Any) -> None:
    """SIGTERM: the segments of answers not yet sent are unlinked, then the
    signal's default action ends the process, as it would have at once."""
    import signal

    for shared in _unsent:
        shared.discard()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def main() -> int:
    """Step 1, then :func:`serve`."""
    global _ANSWER_PREFIX
    family = os.environ.get(SHM_FAMILY_VARIABLE)
    if family:
        import signal

        _ANSWER_PREFIX = f"{family}{os.getpid()}-"
        signal.signal(signal.SIGTERM, _on_terminate)
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
    if sys.argv[1:2] == ["--janitor"]:
        sys.exit(janitor(sys.argv[2], int(sys.argv[3])))
    sys.exit(main())

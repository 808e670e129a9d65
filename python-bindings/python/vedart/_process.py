"""The process executor (``executor="process"``, ``SchedulingPolicy.PROCESS_ONLY``).

Chunks run in warm worker processes of the Rust process pool
(``_vedart.ProcessPool``, see ``python-bindings/src/process.rs``); each child
runs :mod:`vedart._worker`.

How a pipeline segment runs on it (:class:`_ProcessRun`):

1. The pool is started on first use (one per process, ``num_processes``
   children: ``sys.executable .../vedart/_worker.py``, fork+exec, never a bare
   fork of this threaded process) and kept warm until the interpreter exits.
   Children get the parent's ``sys.path`` (``VEDART_WORKER_SYS_PATH``) and
   ``OMP_NUM_THREADS`` and friends set to ``cores // children`` (at least 1),
   so that NumPy and other BLAS users in several children do not
   oversubscribe the machine.
2. The segment's *plan* (its fused stages and reducer step, see
   :func:`plan_of`) is pickled once with cloudpickle (lambdas and closures
   work) and becomes a pool *context*: each child receives it once, before the
   first chunk it runs.
3. Each chunk is pickled (protocol 5) and sent as one request; the child
   answers with the pickled partial result and the time the chunk took, which
   the engine's chunk sizer uses with the bytes the chunk moved (chunks aim at
   :data:`TARGET_CHUNK_SECONDS`, like joblib's auto batching, and at most
   :data:`TARGET_CHUNK_BYTES`). A request or answer longer than a frame
   travels as several (the pool's ``Part`` frames), so one item's result may
   be as large as the pool's maximum message size
   (``Config.max_message_bytes``, 4 GiB by default); past it the chunk fails
   with :class:`~vedart.ExecutorError` naming the limit.

   Large buffers (NumPy arrays, anything with protocol 5 out-of-band
   buffers of at least ``_worker.SHM_MIN_BYTES``) travel in POSIX shared
   memory instead, both ways: the sender writes each into a segment of its
   own (mode 0600), only names cross the pipe, and the receiver maps them
   (the unpickled arrays are views of the mappings) and unlinks the names.
   The protocol, and why no segment outlives its use even when the parent is
   killed, are described in :mod:`vedart._worker` ("Shared memory"); here,
   :func:`shm_family` starts the family's janitor, the parent unlinks a
   request's segments when its call resolves, and the answers of calls that
   were never read (a cancelled or released run) are reaped when their calls
   resolve (:func:`_reap_orphans`).
4. Failures: an exception in the child is re-raised here with its own type and
   message and the child's traceback attached (a note, and
   ``exc.veda_remote_traceback``); a child that dies raises
   :class:`~vedart.WorkerCrashedError` naming its pid and exit code or signal
   and the chunks it took down, once per death (the pool replaces it); a
   callable or an item that cannot be pickled raises :class:`TypeError`
   naming it, before anything runs.

   Chunks run at most once (the pool's rule, see
   ``executors/src/process/README.md``): the worker acknowledges each chunk
   before it runs it, and when a worker dies or is terminated, the chunks it
   had not acknowledged go to another worker, while an acknowledged one fails
   (:class:`~vedart.WorkerCrashedError`, or
   :class:`~vedart.ChunkInterruptedError` when the worker was terminated to
   cancel another pipeline's chunk) unless ``Config.retries`` allows it to
   run again.
5. Cancellation (Ctrl+C, an error, a cancelled caller) cancels the calls in
   flight: the children running them get SIGTERM, then SIGKILL after the grace
   period, and are replaced; a child that has not reached a cancelled chunk
   yet first finishes the chunks ahead of it (of other pipelines too). When
   the consumer merely stops early (``take``, ``any``), chunks in flight that
   are short are left to finish and their results dropped, which is cheaper
   than restarting children.

Memory model: the work runs in other processes, so its side effects (globals,
mutated arguments, ``print`` goes to stderr) never reach this process; only
results do.
"""

from __future__ import annotations

import atexit
import hashlib
import io
import marshal
import os
import pickle
import struct
import sys
import threading
import time
import types
from typing import Any, Callable, NamedTuple, Optional

from . import _runtime, _stages, _vedart, _worker
from ._deadline import WaitExpired
from ._executors import Executor, Run
from .exceptions import TimeoutError as VedaTimeoutError
from .exceptions import (
    BrokenProcessPoolError,
    CancelledError,
    ChunkInterruptedError,
    ExecutorError,
    WorkerCrashedError,
    _attach_note,
    _attach_others,
)

__all__ = ["ProcessExecutor", "get_pool", "shutdown_pool", "plan_of"]

#: How long one chunk should take in a worker process, in seconds: a process
#: hand-off (pickling, two pipe transfers) costs tens of microseconds, so
#: chunks are longer than the thread executor's.
TARGET_CHUNK_SECONDS = 0.02

#: Step 3: the most bytes (request and answer) one chunk should move: large
#: items make small chunks, far below what a message may hold.
TARGET_CHUNK_BYTES = 16 << 20

#: Step 3: the default largest request or answer (``Config.max_message_bytes``).
DEFAULT_MAX_MESSAGE_BYTES = 4 << 30

#: Step 5: chunks in flight are left to finish when an early stop happens and
#: chunks have taken at most this long on average.
RELEASE_MAX_CHUNK_SECONDS = 0.25

#: Time between SIGTERM and SIGKILL for a child being terminated.
GRACE_PERIOD_SECONDS = 1.0

#: How long the exit hook waits for children to exit on EOF.
EXIT_TIMEOUT_SECONDS = 2.0

#: Distinct chunk functions per run that get a context of their own; beyond
#: (a chunk hook making one function per chunk) each request carries its plan.
MAX_CONTEXTS_PER_RUN = 8

#: Environment variables that cap the threads of numeric libraries.
THREAD_LIMIT_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)

#: Set in every child: VedaRT inside a worker never starts processes on its own.
WORKER_MARKER = "VEDART_WORKER"

_ANSWER = struct.Struct("<dB")
_FLAG_MISSING = 1

_pickler_class: Any = None


def _make_pickler() -> Any:
    """cloudpickle's pickler, except for two kinds of objects, which it sends
    in a form a worker rebuilds without cloudpickle:

    - a function that cannot be imported by name (a lambda, a closure, a
      function of ``__main__`` or of a module registered with
      ``cloudpickle.register_pickle_by_value``) goes as its code
      (``marshal``, so tracebacks from workers name the user's files), the
      globals it names, its defaults and its closure, to
      :func:`vedart._worker.make_function` (see "Functions sent by value"
      there);
    - a module in ``sys.modules`` goes by name, to
      :func:`vedart._worker.import_module`.

    Only cloudpickle's public interface is used (its pickler's
    ``reducer_override`` and its registry of modules pickled by value), so no
    cloudpickle upgrade can break the workers.
    """
    import cloudpickle  # type: ignore[import-untyped]

    # The worker's reconstructors, and what the workers send back by
    # reference (``InitializerFailed``), are named by the alias.
    _worker.register_alias()
    registry = getattr(cloudpickle, "list_registry_pickle_by_value", lambda: ())

    def by_value(module_name: str) -> bool:
        if module_name == "__main__":
            return True
        return any(module_name == name or module_name.startswith(name + ".") for name in registry())

    def importable(fn: types.FunctionType) -> bool:
        name = fn.__module__
        module = sys.modules.get(name) if isinstance(name, str) else None
        if module is None or by_value(name):
            return False
        target: Any = module
        for part in fn.__qualname__.split("."):
            target = getattr(target, part, None)
        return target is fn

    class Pickler(cloudpickle.Pickler):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            #: ``id(module globals)`` -> (those globals, the base globals sent).
            self._veda_globals: dict[int, tuple[dict[str, Any], dict[str, Any]]] = {}

        def reducer_override(self, obj: Any) -> Any:
            kind = type(obj)
            if kind is types.FunctionType and not importable(obj):
                return self._veda_function(obj)
            if kind is types.ModuleType:
                name: Any = getattr(obj, "__name__", None)
                if sys.modules.get(name) is obj and not by_value(name):
                    return _worker.import_module, (name,)
            return super().reducer_override(obj)

        def _veda_function(self, fn: types.FunctionType) -> Any:
            module_globals = fn.__globals__
            entry = self._veda_globals.get(id(module_globals))
            if entry is None:
                base: dict[str, Any] = {
                    key: module_globals[key]
                    for key in ("__package__", "__name__", "__path__", "__file__")
                    if key in module_globals
                }
                entry = self._veda_globals[id(module_globals)] = (module_globals, base)
            closure = []
            for cell in fn.__closure__ or ():
                try:
                    closure.append((True, cell.cell_contents))
                except ValueError:  # an empty cell
                    closure.append((False, None))
            state = {
                "globals": {
                    name: module_globals[name]
                    for name in _global_names(fn.__code__)
                    if name in module_globals
                },
                "defaults": fn.__defaults__,
                "kwdefaults": fn.__kwdefaults__,
                "qualname": fn.__qualname__,
                "module": fn.__module__,
                "doc": fn.__doc__,
                "annotations": fn.__annotations__,
                "dict": dict(fn.__dict__),
                "closure": tuple(closure),
            }
            args = (marshal.dumps(fn.__code__), entry[1], fn.__name__, len(closure))
            return _worker.make_function, args, state, None, None, _worker.set_function_state

    return Pickler


def _global_names(code: types.CodeType) -> set[str]:
    """The names ``code`` (and the code nested in it) may read as globals."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _global_names(const)
    return names


def _dumps(value: Any, buffer_callback: Optional[Callable[[Any], Any]] = None) -> bytes:
    """``value`` pickled with cloudpickle (protocol 5); see :func:`_make_pickler`.
    ``buffer_callback`` decides which out-of-band buffers stay in the pickle."""
    global _pickler_class
    if _pickler_class is None:
        _pickler_class = _make_pickler()
    buffer = io.BytesIO()
    _pickler_class(buffer, protocol=5, buffer_callback=buffer_callback).dump(value)
    return buffer.getvalue()


def in_worker() -> bool:
    """Whether this process is a worker of a VedaRT process pool."""
    return os.environ.get(WORKER_MARKER) == "1"


# -- the pool -------------------------------------------------------------------


def _cores() -> int:
    return len(os.sched_getaffinity(0))


def worker_command() -> tuple[str, list[str]]:
    """The children's program and arguments (step 1).

    The worker file is run by path: ``python -m vedart._worker`` would import
    the whole package first (about a hundred milliseconds per child), and the
    worker needs none of it. Where the file is not on disk (a zip import), the
    module is run with ``-m``.
    """
    executable = sys.executable
    if not executable:
        raise ExecutorError("the process executor needs sys.executable, which is empty here")
    return executable, _worker_script()


def _worker_script() -> list[str]:
    """The interpreter's arguments that run :mod:`vedart._worker`."""
    worker = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_worker.py")
    if os.path.isfile(worker):
        return [worker]
    return ["-m", "vedart._worker"]


def worker_env(workers: int) -> list[tuple[str, str]]:
    """The variables added to the children's environment (step 1)."""
    threads = str(max(1, _cores() // max(1, workers)))
    env = [(name, threads) for name in THREAD_LIMIT_VARIABLES]
    env.append(("VEDART_WORKER_SYS_PATH", os.pathsep.join(p for p in sys.path if p)))
    env.append((WORKER_MARKER, "1"))
    family = shm_family()
    if family is not None:
        env.append((_worker.SHM_FAMILY_VARIABLE, family))
    return env


# -- shared memory (step 3) ---------------------------------------------------------

_shm_lock = threading.Lock()
#: ``vedart-<pid>-``, the prefix of this process's segments and its workers',
#: once its janitor runs (``None``: no shared memory here).
_family: Optional[str] = None
_family_pid = 0
#: The write end of the janitor's lifeline: inherited by every worker (and
#: held by nothing else), so the janitor sees EOF once all of them are gone.
_lifeline: Optional[int] = None
#: The janitor's lifeline descriptor number in the janitor.
_JANITOR_FD = 3
#: Starts the janitor detached: the shell puts it in the background and
#: exits, so it is not a child of this process (nothing of ours is left for
#: ``shutdown`` to wait for) and outlives it; the lifeline is on fd 3.
_DETACH = '"$@" &'


def shm_family() -> Optional[str]:
    """The segment name prefix of this process and its workers, starting the
    janitor that sweeps it after them on first use (see
    :func:`vedart._worker.janitor`); ``None`` where there is no shared memory
    or the janitor cannot start (large buffers then go through the pipes)."""
    global _family, _family_pid, _lifeline
    if _family_pid == os.getpid():
        return _family
    with _shm_lock:
        if _family_pid == os.getpid():
            return _family
        family: Optional[str] = f"vedart-{os.getpid()}-"
        try:
            read, write = os.pipe()
        except OSError:
            # No descriptor to spare (EMFILE): no shared memory here; starting
            # the pool reports what is wrong, if it fails too.
            _family, _family_pid = None, os.getpid()
            return None
        try:
            if not os.path.isdir(_worker.SHM_DIR) or not sys.executable:
                raise OSError(f"no {_worker.SHM_DIR} or no sys.executable")
            janitor = [sys.executable, *_worker_script(), "--janitor", str(family)]
            shell = os.posix_spawn(
                "/bin/sh",
                ["/bin/sh", "-c", _DETACH, "sh", *janitor, str(_JANITOR_FD)],
                os.environ,
                file_actions=[
                    (os.POSIX_SPAWN_DUP2, read, _JANITOR_FD),
                    (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
                ],
                # Its own session: a terminal's Ctrl+C or hang-up spares it.
                setsid=True,
            )
            status = _reap_shell(shell)
            if not os.WIFEXITED(status) or os.WEXITSTATUS(status) != 0:
                raise OSError("the janitor did not start")
            # Inheritable from now on (it was not for the janitor): the
            # workers spawned later hold it.
            os.set_inheritable(write, True)
            _lifeline = write
        except BaseException as error:
            # Closing the lifeline ends a janitor that did start.
            os.close(write)
            if not isinstance(error, OSError):
                raise  # Ctrl+C: the next pool start tries again
            family = None
        finally:
            os.close(read)
        _family, _family_pid = family, os.getpid()
        return family


def _reap_shell(pid: int) -> int:
    """The exit status of the shell that starts the janitor in the background
    (it exits at once). A Ctrl+C during the wait still reaps it (within a
    second), or it would stay a zombie child of this process, then goes on."""
    try:
        return os.waitpid(pid, 0)[1]
    except ChildProcessError:  # SIGCHLD ignored here: reaped already
        return 0
    except BaseException:
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            try:
                if os.waitpid(pid, os.WNOHANG)[0] == pid:
                    break
            except ChildProcessError:
                break
            time.sleep(0.001)
        raise


class _Orphan(NamedTuple):
    """A call whose answer nobody will read, with its request's segments."""

    call: Any
    names: tuple[str, ...]


_orphans_lock = threading.Lock()
_orphans: list[_Orphan] = []


def _unlink_all(names: Any) -> None:
    for name in names:
        _worker.shm_unlink(name)


def _sweep_exited_workers() -> None:
    """Unlinks the segments made by workers of this process that have
    exited. An answer that arrives for a call already cancelled is dropped
    by the pool unread (its worker is being terminated), so its segments
    are known to no one: they go here, once the pools are shut down, or
    with the janitor's sweep."""
    family = _family if _family_pid == os.getpid() else None
    if family is None:
        return
    try:
        names = os.listdir(_worker.SHM_DIR)
    except OSError:
        return
    own = str(os.getpid())
    for name in names:
        if not name.startswith(family):
            continue
        creator = name[len(family) :].split("-", 1)[0]
        if creator != own and creator.isdigit() and not _alive(int(creator)):
            _worker.shm_unlink(name)


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _reap_orphans() -> None:
    """Unlinks the segments of orphaned calls that have resolved: their
    request's and, for an answer, the answer's."""
    if not _orphans:
        return
    with _orphans_lock:
        waiting = []
        for orphan in _orphans:
            if not orphan.call.done:
                waiting.append(orphan)
                continue
            outcome = orphan.call.outcome()
            if outcome is not None and outcome[0] == "ok":
                _unlink_all(_worker.shared_names(memoryview(outcome[1])[_ANSWER.size :]))
            _unlink_all(orphan.names)
        _orphans[:] = waiting


_lock = threading.Lock()
_pool: Optional[Any] = None
_pool_pid = 0
# Pools inherited across fork(): never used nor dropped in the child.
_inherited: list[Any] = []


#: Pools whose children retire after ``max_tasks_per_child`` chunks, by
#: ``(workers, max_message_size, max_tasks_per_child)``: kept beside the main
#: pool, so that pipelines with and without the option do not restart each
#: other's children.
_recycling: dict[tuple[int, int, int], Any] = {}


def get_pool(
    workers: int,
    max_message_bytes: Optional[int] = None,
    max_tasks_per_child: Optional[int] = None,
) -> Any:
    """The process pool with ``workers`` children, started on first use;
    ``max_message_bytes`` (default :data:`DEFAULT_MAX_MESSAGE_BYTES`) bounds
    one request or answer; with ``max_tasks_per_child`` a child is retired
    and replaced after that many chunks (a pool of its own)."""
    global _pool, _pool_pid
    limit = max_message_bytes or DEFAULT_MAX_MESSAGE_BYTES
    if max_tasks_per_child is not None:
        return _recycling_pool(workers, limit, max_tasks_per_child)
    pool = _pool
    if pool is not None and _pool_pid == os.getpid() and pool.workers == workers:
        if not pool.closed and pool.max_message_size == limit:
            return pool
    with _lock:
        pool = _pool
        if pool is not None and _pool_pid != os.getpid():
            _inherited.append(pool)
            pool = _pool = None
        if pool is not None and (
            pool.closed or pool.workers != workers or pool.max_message_size != limit
        ):
            _pool = None
            pool.shutdown(EXIT_TIMEOUT_SECONDS)
            pool = None
        if pool is None:
            pool = _start_pool(workers, limit)
            _pool, _pool_pid = pool, os.getpid()
        return pool


def _start_pool(workers: int, limit: int, tasks: Optional[int] = None) -> Any:
    """A new pool of ``workers`` children running :mod:`vedart._worker`, each
    retired after ``tasks`` calls when given (step 1)."""
    program, args = worker_command()
    return _vedart.ProcessPool(
        program,
        args,
        worker_env(workers),
        workers,
        GRACE_PERIOD_SECONDS,
        max_message_size=limit,
        max_tasks_per_child=tasks,
    )


def _recycling_pool(workers: int, limit: int, tasks: int) -> Any:
    # A forked child finds this empty (see _after_fork_in_child).
    key = (workers, limit, tasks)
    with _lock:
        pool = _recycling.get(key)
        if pool is None or pool.closed:
            pool = _start_pool(workers, limit, tasks)
            _recycling[key] = pool
        return pool


def current_pool() -> Optional[Any]:
    """The running pool of this process, if one was started."""
    pool = _pool
    if pool is None or _pool_pid != os.getpid() or pool.closed:
        return None
    return pool


def shutdown_pool(timeout: Optional[float] = EXIT_TIMEOUT_SECONDS) -> None:
    """Stops the worker processes: they exit at EOF once their calls are done;
    after ``timeout`` seconds the rest are terminated. The next process map
    starts a new pool."""
    global _pool
    with _lock:
        pool, _pool = _pool, None
        recycling = list(_recycling.values())
        _recycling.clear()
    if pool is not None and _pool_pid == os.getpid():
        pool.shutdown(timeout)
    for each in recycling:
        each.shutdown(timeout)
    _reap_orphans()
    _sweep_exited_workers()


# The pool stops with the runtime (the next process map starts a new one).
_runtime.on_shutdown(after=shutdown_pool)


def _after_fork_in_child() -> None:
    global _pool, _lock, _lifeline, _shm_lock, _orphans_lock
    _lock = threading.Lock()
    _shm_lock = threading.Lock()
    _orphans_lock = threading.Lock()
    # The parent's calls and lifeline are not this process's: a child that
    # uses worker processes starts a family (and a janitor) of its own.
    _orphans.clear()
    if _lifeline is not None:
        os.close(_lifeline)
        _lifeline = None
    if _pool is not None:
        _inherited.append(_pool)
    _pool = None
    _inherited.extend(_recycling.values())
    _recycling.clear()


atexit.register(shutdown_pool)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


# -- plans: what a child runs (step 2) --------------------------------------------


def _finish_spec(finish: Callable[[Any], Any]) -> Optional[tuple[Any, ...]]:
    """The reducer step as data the worker understands (see
    :func:`vedart._worker.reducer_step`), or ``None``."""
    if finish is list:
        return ("collect",)
    return getattr(finish, "veda_spec", None)


_PORTABLE_KINDS = frozenset({_stages.MAP, _stages.FILTER, _stages.FLAT_MAP, _stages.GPU_MAP})


def plan_of(fn: Callable[[Any], Any]) -> tuple[Any, ...]:
    """What a child needs to run ``fn`` over a chunk: the stages and reducer
    step (``("chain", ((kind, fn), ...), spec)``) when the engine marked ``fn``
    with them, so the child never imports vedart; else ``("call", fn)``."""
    plan = getattr(fn, "veda_plan", None)
    if plan is not None:
        stages, finish = plan
        spec = _finish_spec(finish)
        if spec is not None and all(stage.kind in _PORTABLE_KINDS for stage in stages):
            return ("chain", tuple((stage.kind, stage.fn) for stage in stages), spec)
    return ("call", fn)


def _describe(fn: Any) -> str:
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    return name if isinstance(name, str) else repr(fn)


def dumps_plan(plan: tuple[Any, ...]) -> bytes:
    """``plan`` pickled with cloudpickle.

    Raises:
        TypeError: a callable of the plan cannot be pickled; the message names it.
    """
    try:
        return _dumps(plan)
    except Exception as error:
        if plan[0] == "setup":  # the initializer pickled (see setup_of): the rest did not
            plan = plan[2]
        culprit = None
        if plan[0] == "chain":
            for kind, stage_fn in plan[1]:
                try:
                    _dumps(stage_fn)
                except Exception:
                    culprit = f"{kind}({_describe(stage_fn)})"
                    break
            else:
                culprit = f"the reducer step {plan[2][0]}()"
        else:
            culprit = _describe(plan[1])
        raise TypeError(
            f"{culprit} cannot be sent to a worker process (it does not pickle: {error}); "
            'use executor="thread" for work that cannot leave this process'
        ) from error


def dumps_chunk(
    chunk: Any, offset: int, shared: Optional[_worker.SharedBuffers] = None, flags: int = 0
) -> bytes:
    """``chunk`` pickled (protocol 5); with ``shared``, its large buffers go
    into shared memory segments and the payload is an envelope with
    ``flags`` (see :mod:`vedart._worker`).

    Raises:
        TypeError: an item cannot be pickled; the message names it and its
            position in the input (``offset`` is that of the chunk's first item).
    """
    try:
        data = _dumps(chunk, shared)
        if shared is None or not shared.names:
            return data
        return b"".join(shared.envelope(data, flags))
    except Exception as error:
        if shared is not None:
            shared.discard()
        for position, item in enumerate(chunk):
            try:
                _dumps(item)
            except Exception as item_error:
                raise TypeError(
                    f"item {offset + position} of the input ({_worker.short_repr(item)}) "
                    "cannot be sent to a "
                    f"worker process (it does not pickle: {item_error})"
                ) from item_error
        raise TypeError(
            f"a chunk of the input cannot be sent to a worker process: {error}"
        ) from error


# -- answers (step 4) -------------------------------------------------------------


def decode_answer(data: bytes) -> tuple[Any, float]:
    """``(partial result, seconds the chunk took)`` from a child's answer."""
    elapsed, flags = _ANSWER.unpack_from(data)
    if flags & _FLAG_MISSING:
        return _stages._MISSING, elapsed
    return _worker.load(memoryview(data)[_ANSWER.size :]), elapsed


def remote_error(payload: bytes, pid: Optional[int]) -> BaseException:
    """The exception a child reported, rebuilt here with its traceback text."""
    info = pickle.loads(payload)
    exc: Optional[BaseException] = None
    if info.get("exc") is not None:
        try:
            exc = pickle.loads(info["exc"])
        except Exception:
            exc = None
    if exc is None and info.get("type_bytes") is not None:
        # Put together without calling ``__init__`` (see vedart._worker).
        try:
            cls = pickle.loads(info["type_bytes"])
            args = pickle.loads(info["args"]) if info.get("args") else (info["message"],)
            exc = cls.__new__(cls, *args)
            exc.args = tuple(args)
            if info.get("state"):
                exc.__dict__.update(pickle.loads(info["state"]))
        except Exception:
            exc = None
    if not isinstance(exc, BaseException):
        exc = ExecutorError(f"{info['type']}: {info['message']}")
    text = info.get("traceback", "")
    try:
        exc.veda_remote_traceback = text  # type: ignore[attr-defined]
        exc.veda_worker_pid = pid  # type: ignore[attr-defined]
    except (AttributeError, TypeError):  # pragma: no cover - exotic exception types
        pass
    _attach_note(exc, f"vedart: raised in worker process {pid}; its traceback:\n{text.rstrip()}")
    return exc


def crash_error(
    outcome: tuple[Any, ...], chunks: tuple[int, ...] = (), running: Optional[str] = None
) -> WorkerCrashedError:
    """:class:`~vedart.WorkerCrashedError` from a ``("died", ...)`` outcome;
    ``chunks`` are the positions of the chunks that failed with the child,
    ``running`` names the work when it was not a pipeline's chunk (a call
    submitted to :class:`vedart.VedaExecutor`)."""
    _, message, pid, exit_code, signal, tail = outcome
    if signal is not None:
        how = f"was killed by signal {signal}"
    elif exit_code is not None:
        how = f"exited with status {exit_code}"
    else:
        how = "died (exit status unknown)"
    if running is None and len(chunks) == 1:
        running = f"chunk {chunks[0]} of the pipeline"
    elif running is None and chunks:
        running = "chunks " + ", ".join(str(index) for index in chunks) + " of the pipeline"
    elif running is None:
        running = "a chunk of the pipeline"
    text = f"worker process {pid} {how} while running {running}; the pool started a replacement"
    if tail:
        text += "\nits last stderr lines:\n" + "\n".join(f"  {line}" for line in tail)
    return WorkerCrashedError(
        text,
        pid=pid,
        exit_code=exit_code,
        signal=signal,
        stderr_tail=tuple(tail),
        chunks=chunks,
    )


def interrupted_error(outcome: tuple[Any, ...], chunks: tuple[int, ...] = ()) -> BaseException:
    """:class:`~vedart.ChunkInterruptedError` from an ``("interrupted", ...)``
    outcome; ``chunks`` are the positions of the chunks it interrupted."""
    pid = outcome[2]
    which = ", ".join(str(index) for index in chunks)
    running = f"chunk{'s' if len(chunks) > 1 else ''} {which}" if chunks else "a chunk"
    return ChunkInterruptedError(
        f"worker process {pid} was terminated to cancel another pipeline's work while it "
        f"ran {running} of this pipeline; chunks run at most once, so it was not run again "
        "(it may have run in part). Work that may run twice can allow it with "
        "veda.Config(retries=N).",
        pid=pid,
        chunks=chunks,
    )


#: Outcomes that one event on one child gives to every call it takes down.
_SHARED_FATE = {"died": crash_error, "interrupted": interrupted_error}


def failure_errors(calls: list[Any]) -> list[BaseException]:
    """One exception per failure of ``calls`` (failed ``ProcessCall`` objects, first
    failure first): the calls that one worker death (or termination) took down
    become a single :class:`~vedart.WorkerCrashedError` (or
    :class:`~vedart.ChunkInterruptedError`) that lists their chunks."""
    errors: list[Any] = []
    shared: dict[Any, list[Any]] = {}
    for call in calls:
        outcome = call.outcome()
        if outcome[0] in _SHARED_FATE:
            key = (outcome[0], outcome[2])
            fate = shared.get(key)
            if fate is None:
                fate = shared[key] = [outcome]
                errors.append(fate)
            fate.append(call.index)
        else:
            errors.append(outcome_error(outcome))
    return [
        _SHARED_FATE[error[0][0]](error[0], tuple(sorted(error[1:])))
        if isinstance(error, list)
        else error
        for error in errors
    ]


def outcome_error(outcome: tuple[Any, ...]) -> BaseException:
    """The exception for a failed call's outcome."""
    kind = outcome[0]
    if kind == "remote":
        error = remote_error(outcome[1], outcome[2])
        if isinstance(error, _worker.InitializerFailed):
            return initializer_error(remote_error(error.payload, outcome[2]), outcome[2])
        return error
    if kind == "died":
        return crash_error(outcome)
    if kind == "interrupted":
        return interrupted_error(outcome)
    if kind == "cancelled":
        return CancelledError("the pipeline was cancelled")
    if kind == "closed":
        return ExecutorError("the process pool was shut down while the pipeline ran")
    if kind == "too_large":
        return too_large_error(outcome)
    if kind == "timeout":
        _, _, pid, seconds = outcome
        where = (
            f"in worker process {pid}, which was terminated and replaced"
            if pid is not None
            else "before a worker process took it"
        )
        return VedaTimeoutError(
            f"a chunk did not finish within {seconds:g} s {where}", timeout=seconds
        )
    return ExecutorError(f"process executor: {outcome[1]}")


def initializer_error(error: BaseException, pid: Any) -> BrokenProcessPoolError:
    """The error of a pipeline whose process ``initializer`` raised ``error``
    in worker process ``pid`` (the cause)."""
    broken = BrokenProcessPoolError(
        f"the process initializer raised {type(error).__name__}: {error} (in worker "
        f"process {pid}); no chunk ran in that worker"
    )
    broken.__cause__ = error
    return broken


def too_large_error(outcome: tuple[Any, ...]) -> ExecutorError:
    """The error of a ``("too_large", message, pid, size, max)`` outcome: a
    chunk's request or result over the pool's maximum message size."""
    _, _, pid, size, limit = outcome
    what = (
        f"a chunk's result from worker process {pid}" if pid is not None else "a chunk of the input"
    )
    return ExecutorError(
        f"{what} is {size} bytes, over the process executor's maximum message size of "
        f"{limit} bytes; raise it with veda.init(veda.Config(max_message_bytes=...)), or "
        "return smaller results (split the work into more items)"
    )


# -- the executor -------------------------------------------------------------------


class ProcessOptions(NamedTuple):
    """Per-pipeline settings of the worker processes (``par_iter(...,
    initializer=, initargs=, max_tasks_per_child=)``); each overrides the
    :class:`vedart.Config` field of the same name."""

    initializer: Optional[Callable[..., Any]] = None
    initargs: tuple[Any, ...] = ()
    max_tasks_per_child: Optional[int] = None


def setup_of(
    initializer: Optional[Callable[..., Any]], initargs: tuple[Any, ...]
) -> Optional[tuple[Any, ...]]:
    """``(token, initializer, initargs)`` for :func:`vedart._worker._setup`,
    which runs it once per worker process and token. The token is a digest of
    the pickled pair, so the same initializer and arguments run once per
    worker however many pipelines name them.

    Raises:
        TypeError: they do not pickle; the message names the initializer.
    """
    if initializer is None:
        return None
    try:
        data = _dumps((initializer, initargs))
    except Exception as error:
        raise TypeError(
            f"the initializer {_describe(initializer)} or its initargs cannot be sent to a "
            f"worker process (they do not pickle: {error})"
        ) from error
    return (hashlib.sha256(data).hexdigest(), initializer, initargs)


class _ProcessHandle:
    __slots__ = ("call", "elapsed", "nbytes", "names")

    def __init__(self, call: Any, request_bytes: int, names: tuple[str, ...] = ()) -> None:
        self.call = call
        self.elapsed = 0.0
        #: Bytes the chunk moved (in shared memory too): its request, then
        #: also its answer (step 3).
        self.nbytes = request_bytes
        #: The request's shared memory segments (step 3).
        self.names = names


class _ProcessRun(Run):
    """One segment's chunks on the pool; see the module documentation."""

    target_chunk_seconds = TARGET_CHUNK_SECONDS
    target_chunk_bytes = TARGET_CHUNK_BYTES

    __slots__ = (
        "_pool",
        "_batch",
        "_fail_fast",
        "_contexts",
        "_items",
        "_chunk_seconds",
        "_chunks_done",
        "_reason",
        "_retries",
        "_setup",
        "_resolved",
        "_shm_prefix",
        "_shm_flags",
        "_outstanding",
    )

    def __init__(
        self,
        pool: Any,
        mode: str,
        reason: str,
        retries: int = 0,
        setup: Optional[tuple[Any, ...]] = None,
    ) -> None:
        self._pool = pool
        self._batch = pool.batch()
        #: The initializer, run before a worker's first chunk (see setup_of).
        self._setup = setup
        #: Indices of resolved calls not yet taken with ``result``, in the
        #: order they resolved; ``None`` until :meth:`in_completion_order`.
        self._resolved: Optional[dict[int, None]] = None
        self._fail_fast = mode == "fail_fast"
        #: Step 4: runs a chunk may have after a started one was lost.
        self._retries = retries
        self._contexts: dict[int, tuple[Any, Any]] = {}
        self._items = 0
        self._chunk_seconds = 0.0
        self._chunks_done = 0
        self._reason = reason
        family = shm_family()
        #: Step 3: names of this process's segments (``None``: no shared memory).
        self._shm_prefix = None if family is None else f"{family}{os.getpid()}-"
        # A chunk that may run again must find its segments again.
        self._shm_flags = _worker.SHM_UNLINK_ON_RECEIPT if retries == 0 else 0
        #: Submitted handles whose outcome was not taken, by call index.
        self._outstanding: dict[int, _ProcessHandle] = {}
        _reap_orphans()

    def _context(self, fn: Callable[[Any], Any]) -> Optional[Any]:
        entry = self._contexts.get(id(fn))
        if entry is not None and entry[0] is fn:
            return entry[1]
        if len(self._contexts) >= MAX_CONTEXTS_PER_RUN:
            return None
        context = self._pool.context(dumps_plan(self._plan(fn)))
        self._contexts[id(fn)] = (fn, context)
        return context

    def _plan(self, fn: Callable[[Any], Any]) -> tuple[Any, ...]:
        plan = plan_of(fn)
        return plan if self._setup is None else ("setup", self._setup, plan)

    def in_completion_order(self) -> bool:
        """The engine hands results on as chunks finish (``unordered()``):
        called before the first ``submit``; calls then resolve into a queue
        that :meth:`completed` reads."""
        self._batch = self._pool.batch(completions=True)
        self._resolved = {}
        return True

    def completed(self, handles: Any, timeout: Optional[float] = None) -> int:
        """The position in ``handles`` of one whose chunk has resolved, the
        first to resolve first; waits for one at most ``timeout`` seconds
        (raising ``WaitExpired``)."""
        assert self._resolved is not None
        positions = {handle.call.index: i for i, handle in enumerate(handles)}
        resolved = self._resolved
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            for index in resolved:
                position = positions.get(index)
                if position is not None:
                    return position
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            calls = self._batch.take_completed(left)
            if not calls:
                raise WaitExpired
            resolved.update((call.index, None) for call in calls)

    def submit(self, fn: Callable[[Any], Any], chunk: Any) -> Any:
        context = self._context(fn)
        prefix = self._shm_prefix
        shared = None if prefix is None else _worker.SharedBuffers(prefix)
        flags = self._shm_flags
        if context is None:
            request = dumps_chunk((self._plan(fn), chunk), self._items, shared, flags)
        else:
            request = dumps_chunk(chunk, self._items, shared, flags)
        self._items += len(chunk)
        try:
            call = self._batch.submit(request, context, retries=self._retries)
        except BaseException:
            if shared is not None:
                shared.discard()
            raise
        if shared is None or not shared.names:
            handle = _ProcessHandle(call, len(request))
        else:
            handle = _ProcessHandle(call, len(request) + shared.nbytes, tuple(shared.names))
        self._outstanding[call.index] = handle
        return handle

    def _settle(self, handle: _ProcessHandle, answered: bool) -> None:
        """Step 3: the outcome of ``handle`` is taken; its request's segments
        go unless the child that answered unlinked them already."""
        self._outstanding.pop(handle.call.index, None)
        if handle.names and not (answered and self._shm_flags):
            _unlink_all(handle.names)

    def _orphan_outstanding(self) -> None:
        """Step 3: calls whose outcome will not be taken go to the reaper."""
        if not self._outstanding:
            return
        handles = list(self._outstanding.values())
        self._outstanding.clear()
        with _orphans_lock:
            _orphans.extend(_Orphan(handle.call, handle.names) for handle in handles)
        _reap_orphans()

    def result(self, handle: Any, timeout: Optional[float] = None) -> Any:
        call = handle.call
        if self._resolved is not None:
            self._resolved.pop(call.index, None)
        if not call.done:
            status = self._batch.wait(call, self._fail_fast, timeout)
            if status == "timeout":
                # The engine cancels the batch: children running its calls
                # are killed and replaced (step 5).
                raise WaitExpired
            if status == "failed":
                raise self._first_failure()
            if status == "cancelled":
                self._batch.cancel()
                raise CancelledError("the pipeline was cancelled")
        outcome = call.outcome()
        self._settle(handle, outcome[0] == "ok")
        if outcome[0] == "ok":
            answer = outcome[1]
            # Nothing else holds the answer: it is freed once decoded, so a
            # large result is in memory twice only while it is unpickled.
            del outcome, call
            handle.call = None
            handle.nbytes += len(answer) + _worker.shared_nbytes(
                memoryview(answer)[_ANSWER.size :]
            )
            value, elapsed = decode_answer(answer)
            del answer
            handle.elapsed = elapsed
            self._chunk_seconds += elapsed
            self._chunks_done += 1
            return value
        failures = self._batch.failures()
        if outcome[0] == "cancelled" and failures:
            raise self._first_failure()
        index = call.index
        errors = failure_errors([call] + [c for c in failures if c.index != index])
        self._batch.cancel()
        raise _attach_others(errors[0], errors[1:])

    def _first_failure(self) -> BaseException:
        failures = self._batch.failures()
        self._batch.cancel()
        errors = failure_errors(failures)
        return _attach_others(errors[0], errors[1:])

    def cancel(self) -> None:
        self._batch.cancel()
        self._orphan_outstanding()

    def release(self) -> None:
        """Step 5: short chunks in flight finish in the background."""
        if self._chunks_done == 0 or (
            self._chunk_seconds / self._chunks_done > RELEASE_MAX_CHUNK_SECONDS
        ):
            self._batch.cancel()
        self._orphan_outstanding()

    def explain(self) -> tuple[str, str]:
        return ("process", self._reason)


class ProcessExecutor(Executor):
    """Runs chunks in the worker processes of the process pool."""

    name = "process"
    #: Never run work on the calling thread: its side effects would be visible.
    inline_per_item = None

    def __init__(
        self,
        runtime: Any,
        reason: str = 'executor="process" was requested',
        options: Optional[ProcessOptions] = None,
    ) -> None:
        config = runtime.config
        workers = config.num_processes
        self.workers = int(workers) if workers else _cores()
        self.retries = int(getattr(config, "retries", 0))
        self.max_message_bytes = getattr(config, "max_message_bytes", None)
        self.reason = reason
        if options is None:
            options = ProcessOptions(
                getattr(config, "initializer", None),
                getattr(config, "initargs", ()),
                getattr(config, "max_tasks_per_child", None),
            )
        self.options = options
        self.setup = setup_of(options.initializer, options.initargs)

    def start(self, mode: str) -> Run:
        pool = get_pool(self.workers, self.max_message_bytes, self.options.max_tasks_per_child)
        return _ProcessRun(pool, mode, self.reason, self.retries, self.setup)

"""The Dask engine (``executor="dask"``): pipelines and spawns on a Dask cluster.

VedaRT's engine (:mod:`vedart._engine`) drives a :class:`_DaskRun` like the
process executor's run; only where chunks run differs. See
:mod:`vedart._cluster` for the seam every engine plugs into.

1. Connection: ``Config(cluster="tcp://host:8786")`` connects a
   ``distributed.Client`` on first use (one per address and security, kept
   until :func:`vedart.shutdown` or exit); ``cluster="local"`` first starts a
   ``LocalCluster`` (one single-threaded worker process per core). Failing to
   reach the scheduler, or to find a worker there, within
   ``cluster_connect_timeout`` raises :class:`~vedart.ExecutorError` naming
   the address.
2. Plans: a segment's fused stages and reducer step (``_process.plan_of``)
   are cloudpickled once and *scattered* to every worker (``broadcast``),
   keyed by the digest of their bytes; each chunk task refers to that key, so
   a plan crosses the network once per worker, not once per chunk, and a
   worker builds it into a chunk function once (:func:`_run_chunk` caches it).
3. Chunks: pickled here (an item that does not pickle is a
   :class:`TypeError` naming it before anything runs) and submitted as one
   task each, sized by the engine to take about :data:`TARGET_CHUNK_SECONDS`
   on a worker (a task costs a scheduler round trip of about a millisecond)
   and to move at most :data:`TARGET_CHUNK_BYTES`. At most ``2 * threads + 2``
   chunks are in flight (the engine's look-ahead), so a long generator
   streams in bounded memory. A result is fetched as soon as its task ends
   (and its key released), and handed on in input order.
4. Failures: an exception in a task comes back as its type, message and the
   worker's traceback (a note and ``exc.veda_remote_traceback``;
   ``exc.veda_worker_address`` names the worker). In a fail-fast run the first
   failure cancels the rest at once.
5. At most once: a chunk whose worker died while it held it is not run again
   unless ``Config.retries`` allows it; then vedart submits it again. Past
   that, :class:`~vedart.WorkerCrashedError` names the worker's address. This
   needs the scheduler not to reschedule such tasks by itself: the embedded
   cluster is started with ``distributed.scheduler.allowed-failures`` at 0, and
   a scheduler you start needs ``DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES=0``
   (vedart warns once when it finds another value).
6. Cancellation (Ctrl+C, an error, ``timeout=``, a cancelled awaiting task, an
   early stop) cancels the run's Dask futures: tasks not started never run;
   Dask cannot interrupt a task already running, which finishes on its worker
   and its result is dropped.

What is shipped: the pipeline's callables (by value when cloudpickle must,
e.g. lambdas and functions of ``__main__``, else by reference: their modules
must be importable on the workers, and so must vedart itself, which runs
each chunk) and the items. Side effects stay on the workers.
"""

from __future__ import annotations

import atexit
import collections
import functools
import hashlib
import logging
import os
import pickle
import struct
import threading
import time
import uuid
import warnings
from typing import Any, Callable, Optional

import dask
import distributed
from distributed.scheduler import KilledWorker

from . import _cluster, _process, _stages, _vedart, _worker
from ._deadline import poll_pause
from ._executors import Executor, Run
from .exceptions import (
    CancelledError,
    ConfigError,
    ExecutorError,
    WorkerCrashedError,
    _attach_others,
)
from .telemetry import _register_source

__all__ = ["ClusterExecutor", "submit_call", "shutdown", "connection"]

#: Step 3: how long a chunk should take on a worker, in seconds. A task costs
#: a scheduler round trip and the scheduler's bookkeeping (milliseconds on a
#: busy machine, where a LocalCluster's scheduler shares the cores): fib(22)
#: x 2,000 on two local workers ran 1.33x faster than serial with 50 ms
#: chunks, 1.68x with 100 ms. The engine's tail cap keeps workers even.
TARGET_CHUNK_SECONDS = 0.1

#: Step 3: most bytes a chunk's request and result should move (they travel
#: through the scheduler as task arguments, which Dask wants small).
TARGET_CHUNK_BYTES = 4 << 20

#: Step 2: plans a worker keeps built, and plans a connection keeps scattered.
MAX_PLANS = 32

#: Distinct chunk functions per run that get a scattered plan; beyond (a chunk
#: hook making one function per chunk) each task carries its plan.
MAX_PLANS_PER_RUN = 8

#: Longest single sleep of a wait, so that Ctrl+C and cancellation are seen.
POLL_SECONDS = 0.1

#: Most worker threads the embedded cluster starts (one per core below it).
MAX_LOCAL_WORKERS = 64

_ANSWER = struct.Struct("<dB")
_FLAG_MISSING = 1

# -- telemetry ------------------------------------------------------------------

_SPAWNED, _COMPLETED, _FAILED, _CANCELLED, _SENT, _RECEIVED, _RETRIED = (
    _vedart.Counter() for _ in range(7)
)
#: Worker threads of the cluster at the last run's start.
_workers_seen = 0


def _count(counter: Any, n: int = 1) -> None:
    if n and _vedart.telemetry_is_enabled():
        counter.add(n)


def _telemetry() -> dict[str, Any]:
    spawned, completed, failed, cancelled = (
        c.value for c in (_SPAWNED, _COMPLETED, _FAILED, _CANCELLED)
    )
    finished = completed + failed + cancelled
    return {
        "tasks": {
            "spawned": spawned,
            "completed": completed,
            "failed": failed,
            "cancelled": cancelled,
            "live": max(0, spawned - finished),
        },
        "retried": _RETRIED.value,
        "bytes_sent": _SENT.value,
        "bytes_received": _RECEIVED.value,
        "workers": _workers_seen,
    }


# -- on the worker ----------------------------------------------------------------

_built: collections.OrderedDict[str, Callable[[Any], Any]] = collections.OrderedDict()
_built_lock = threading.Lock()


def _chunk_function(plan: Optional[bytes], digest: str) -> Callable[[Any], Any]:
    with _built_lock:
        fn = _built.get(digest)
        if fn is not None:
            _built.move_to_end(digest)
            return fn
    assert plan is not None
    fn = _worker.build(pickle.loads(plan))
    with _built_lock:
        _built[digest] = fn
        while len(_built) > MAX_PLANS:
            _built.popitem(last=False)
    return fn


def _run_chunk(plan: Optional[bytes], digest: str, request: bytes) -> tuple[Any, ...]:
    """A chunk task, run by a Dask worker: ``("ok", answer)`` with the
    process executor's answer layout (``_process.decode_answer`` reads it), or
    ``("error", payload, pid, address)`` describing the exception (never
    raised: an exception's own pickling may fail, and Dask would retry it)."""
    _worker.register_alias()  # plans refer to vedart._worker under its alias
    started = time.perf_counter()
    try:
        if plan is None:
            inline_plan, chunk = pickle.loads(request)
            fn = _worker.build(inline_plan)
        else:
            fn = _chunk_function(plan, digest)
            chunk = pickle.loads(request)
        value = fn(chunk)
        del chunk
        elapsed = time.perf_counter() - started
        flags = 0
        if value is _worker._MISSING or value is _worker._parent_missing():
            flags, value = _FLAG_MISSING, None
        try:
            data = _worker._dump(value)
        except Exception as error:
            raise _worker._unpicklable_result(value, error) from None
    except Exception as exc:
        if exc.__traceback__ is not None:  # the user's frames start below this one
            exc.__traceback__ = exc.__traceback__.tb_next
        return ("error", _worker._describe_error(exc), os.getpid(), _worker_address())
    return ("ok", _ANSWER.pack(elapsed, flags) + data)


def _worker_address() -> Optional[str]:
    try:
        return str(distributed.get_worker().address)
    except ValueError:  # not in a worker (a test calling it directly)
        return None


def _allowed_failures(dask_scheduler: Any) -> int:
    return int(dask_scheduler.allowed_failures)


# -- connections (step 1) -----------------------------------------------------------


class _Connection:
    """A client of one cluster, and the plans scattered through it."""

    def __init__(self, client: Any, cluster: Any, address: str) -> None:
        self.client = client
        #: The embedded LocalCluster, when ``cluster="local"`` started one.
        self.cluster = cluster
        #: What the user configured (``"local"`` or the scheduler address).
        self.address = address
        self.pid = os.getpid()
        self.plans: collections.OrderedDict[str, Any] = collections.OrderedDict()
        self.lock = threading.Lock()

    def threads(self) -> int:
        """Worker threads of the cluster now (at least 1)."""
        global _workers_seen
        try:
            count = sum(self.client.nthreads().values())
        except Exception:
            count = 0
        _workers_seen = count
        return max(1, count)

    def scattered(self, plan: bytes, digest: str) -> Any:
        """The Dask future of ``plan`` on every worker (step 2)."""
        with self.lock:
            future = self.plans.get(digest)
            if future is not None:
                self.plans.move_to_end(digest)
                return future
        future = self.client.scatter(plan, broadcast=True, hash=True)
        _count(_SENT, len(plan))
        with self.lock:
            self.plans[digest] = future
            while len(self.plans) > MAX_PLANS:
                _, old = self.plans.popitem(last=False)
                old.release()
        return future

    def close(self) -> None:
        with self.lock:
            plans = list(self.plans.values())
            self.plans.clear()
        for future in plans:
            try:
                future.release()
            except Exception:
                pass
        try:
            self.client.close(timeout=_cluster.DEFAULT_CONNECT_TIMEOUT)
        finally:
            if self.cluster is not None:
                self.cluster.close(timeout=_cluster.DEFAULT_CONNECT_TIMEOUT)


_lock = threading.Lock()
_connections: dict[tuple[str, int], _Connection] = {}


def connection(config: Any) -> _Connection:
    """The connection for ``config.cluster``, made on first use (step 1).

    Raises:
        ConfigError: no cluster is configured.
        ExecutorError: the scheduler is unreachable, refuses the connection
            or has no worker, within ``config.cluster_connect_timeout``.
    """
    address = config.cluster
    if address is None:
        raise ConfigError(
            "cluster",
            'executor="dask" needs a cluster: veda.init(cluster="tcp://host:8786") for a '
            'running Dask scheduler, or cluster="local" for one on this machine',
        )
    security = config.cluster_security
    key = (address, id(security))
    with _lock:
        conn = _connections.get(key)
        if conn is not None and conn.pid == os.getpid():
            if conn.client.status == "running":
                return conn
            _connections.pop(key)
            _close_quietly(conn)
        conn = _connect(address, security, float(config.cluster_connect_timeout))
        _connections[key] = conn
    _register_source("dask", _telemetry)
    return conn


def _connect(address: str, security: Any, timeout: float) -> _Connection:
    cluster = None
    target: Any = address
    if address == _cluster.LOCAL:
        cores = max(1, min(len(os.sched_getaffinity(0)), MAX_LOCAL_WORKERS))
        options: dict[str, Any] = {}
        if security is not None:
            options = {"security": security, "protocol": "tls://"}
        try:
            with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
                cluster = distributed.LocalCluster(
                    n_workers=cores,
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=":0",
                    # Its workers' complaints while it closes are not the user's.
                    silence_logs=logging.CRITICAL,
                    **options,
                )
        except Exception as error:
            raise ExecutorError(f"could not start the local Dask cluster: {error}") from error
        target = cluster
    try:
        client = _open_client(target, security, timeout)
    except Exception as error:
        if cluster is not None:
            cluster.close()
        hint = ""
        if address.startswith("tls://") and security is None:
            hint = (
                "; a tls:// scheduler needs the client's certificates: "
                "veda.Config(cluster_security=distributed.Security(...))"
            )
        raise ExecutorError(
            f"could not connect to the Dask scheduler at {address} within {timeout:g} s: "
            f"{type(error).__name__}: {error}{hint}"
        ) from error
    try:
        client.wait_for_workers(1, timeout=timeout)
    except Exception as error:
        client.close()
        if cluster is not None:
            cluster.close()
        raise ExecutorError(
            f"the Dask scheduler at {address} has no worker (none joined within "
            f"{timeout:g} s); start one with: dask worker {client.scheduler.address}"
        ) from error
    if cluster is None:
        _check_rescheduling(client, address)
    return _Connection(client, cluster, address)


def _open_client(target: Any, security: Any, timeout: float) -> Any:
    """A ``distributed.Client`` on ``target``, its handshake retried while
    another client's cancel request gets in its way (until ``timeout``).

    The client's handshake expects the scheduler's first batch to hold only
    its greeting, but the scheduler tells every client of each cancel
    request, and a client still in its handshake gets that news in the same
    batch: ``AssertionError`` from distributed. A fresh attempt does not meet
    the same message again.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            return distributed.Client(
                target, security=security, timeout=timeout, set_as_default=False
            )
        except AssertionError:
            if time.monotonic() >= deadline:
                raise


_warned: set[str] = set()


def _check_rescheduling(client: Any, address: str) -> None:
    """Step 5: warns once per address when the scheduler itself reruns tasks
    whose worker died."""
    try:
        allowed = client.run_on_scheduler(_allowed_failures)
    except Exception:
        return  # the scheduler does not run client functions: nothing to check
    if allowed and address not in _warned:
        _warned.add(address)
        warnings.warn(
            f"the Dask scheduler at {address} reruns a task up to {allowed} times when its "
            "worker dies (distributed.scheduler.allowed-failures), so vedart cannot keep "
            "chunks to at most one run; start the scheduler with "
            "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES=0 and use veda.Config(retries=N)",
            RuntimeWarning,
            stacklevel=4,
        )


def _close_quietly(conn: _Connection) -> None:
    try:
        conn.close()
    except Exception:
        pass


def shutdown() -> None:
    """Closes every connection of this process, and the embedded cluster."""
    with _lock:
        conns = [c for c in _connections.values() if c.pid == os.getpid()]
        _connections.clear()
    for conn in conns:
        _close_quietly(conn)


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.Lock()
    _connections.clear()  # the parent's: its threads do not exist here


atexit.register(shutdown)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


# -- outcomes (step 4, 5) -------------------------------------------------------------


def _landed_outcome(future: Any) -> tuple[Any, ...]:
    """What became of a finished Dask future, its result fetched."""
    try:
        status = future.status
        if status == "finished":
            return future.result()  # type: ignore[no-any-return]
        if status == "cancelled":
            return ("cancelled",)
        exc = future.exception()
    except BaseException as error:  # the client closed under us, a comm error
        exc = error
    if isinstance(exc, KilledWorker):
        return ("died", str(exc.last_worker.address))
    return ("exception", exc)


def _remote_error(outcome: tuple[Any, ...]) -> BaseException:
    _, payload, pid, address = outcome
    error = _process.remote_error(payload, pid)
    try:
        error.veda_worker_address = address  # type: ignore[attr-defined]
        notes = error.__notes__
        # remote_error's note names the process; on a cluster, the worker too.
        notes[-1] = notes[-1].replace(
            f"worker process {pid}", f"Dask worker {address} (process {pid})", 1
        )
    except (AttributeError, TypeError, IndexError):  # pragma: no cover - exotic types
        pass
    return error


def _crash_error(address: str, running: str, runs: int) -> WorkerCrashedError:
    if runs <= 1:
        why = (
            "work runs at most once, so it was not run again (work that may run twice can "
            "allow it with veda.Config(retries=N))"
        )
    else:
        why = f"that was run {runs}, the last that veda.Config(retries={runs - 1}) allows"
    return WorkerCrashedError(
        f"Dask worker {address} died while running {running}; {why}", address=address
    )


def _outcome_error(outcome: tuple[Any, ...], running: str, runs: int) -> BaseException:
    kind = outcome[0]
    if kind == "error":
        return _remote_error(outcome)
    if kind == "died":
        return _crash_error(outcome[1], running, runs)
    if kind == "cancelled":
        return CancelledError("the work was cancelled on the Dask cluster")
    error = outcome[1]
    wrapped = ExecutorError(f"the Dask cluster failed {running}: {type(error).__name__}: {error}")
    wrapped.__cause__ = error
    return wrapped


# -- runs (steps 2 to 6) ----------------------------------------------------------------


class _Task:
    """One submission to the cluster (a chunk, or a spawned call), resubmitted
    on a worker's death while retries last (step 5)."""

    __slots__ = (
        "index",
        "request",
        "plan",
        "digest",
        "future",
        "runs",
        "outcome",
        "elapsed",
        "nbytes",
    )

    def __init__(self, index: int, plan: Any, digest: str, request: bytes) -> None:
        self.index = index
        self.plan = plan
        self.digest = digest
        self.request: Optional[bytes] = request
        self.future: Any = None
        self.runs = 0
        self.outcome: Optional[tuple[Any, ...]] = None
        self.elapsed = 0.0
        #: Bytes the chunk moved: its request, then also its answer.
        self.nbytes = len(request)


class _Submitter:
    """Submits :class:`_Task` objects and records their outcomes under one
    condition (shared by a run's chunks, or owned by one spawned call)."""

    def __init__(self, conn: _Connection, retries: int, prefix: str) -> None:
        self.conn = conn
        self.retries = retries
        self.prefix = f"{prefix}-{uuid.uuid4().hex[:12]}"
        self.cond = threading.Condition(threading.Lock())
        self.live: dict[int, _Task] = {}
        self.cancelled = False
        #: Indices of tasks that landed, in landing order (unordered runs).
        self.landed: Optional[dict[int, None]] = None
        #: The first task that failed, for fail-fast waits.
        self.failure: Optional[_Task] = None

    def launch(self, task: _Task) -> None:
        with self.cond:
            if self.cancelled:
                task.outcome = ("cancelled",)
                return
            self.live[task.index] = task
        task.runs += 1
        key = f"{self.prefix}-{task.index}-{task.runs}"
        assert task.request is not None
        future = self.conn.client.submit(
            _run_chunk, task.plan, task.digest, task.request, key=key, pure=False
        )
        task.future = future
        if self.cancelled:  # cancel() ran while this was being submitted
            self.conn.client.cancel([future])
        if task.runs == 1:
            _count(_SPAWNED)
            _count(_SENT, len(task.request))
        else:
            _count(_RETRIED)
        future.add_done_callback(functools.partial(self._landed, task))

    def _landed(self, task: _Task, future: Any) -> None:
        outcome = _landed_outcome(future)
        try:
            future.release()  # the result is here: the cluster need not keep it
        except Exception:
            pass
        if outcome[0] == "died" and task.runs <= self.retries and not self.cancelled:
            try:
                self.launch(task)
                return
            except Exception as error:
                outcome = ("exception", error)
        if outcome[0] == "ok":
            _count(_COMPLETED)
            _count(_RECEIVED, len(outcome[1]))
        elif outcome[0] == "cancelled":
            _count(_CANCELLED)
        else:
            _count(_FAILED)
        with self.cond:
            task.outcome = outcome
            task.request = None
            self.live.pop(task.index, None)
            if outcome[0] not in ("ok", "cancelled") and self.failure is None:
                self.failure = task
            if self.landed is not None:
                self.landed[task.index] = None
            self.cond.notify_all()

    def wait(self, task: _Task, deadline: Optional[float], fail_fast: bool) -> None:
        """Waits until ``task`` landed (or, with ``fail_fast``, any task
        failed), raising ``WaitExpired`` at ``deadline`` (monotonic), and
        :class:`~vedart.CancelledError` when the VedaRT task waiting is
        cancelled (an awaiting coroutine cancelled, its scope failed)."""
        with self.cond:
            while task.outcome is None:
                if fail_fast and self.failure is not None:
                    return
                if self.cancelled:
                    return
                if _vedart.cancelled():
                    raise CancelledError("the work was cancelled")
                self.cond.wait(poll_pause(POLL_SECONDS, deadline))

    def cancel(self) -> None:
        with self.cond:
            if self.cancelled:
                # Once: Dask tells every client of the scheduler about each
                # cancel request, even one that names no live task.
                return
            self.cancelled = True
            futures = [t.future for t in self.live.values() if t.future is not None]
            self.cond.notify_all()
        if futures:
            try:
                self.conn.client.cancel(futures)
            except Exception:
                pass  # the client is closing: its futures go with it


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class _DaskRun(Run):
    """One segment's chunks on the cluster; see the module documentation."""

    target_chunk_seconds = TARGET_CHUNK_SECONDS
    target_chunk_bytes = TARGET_CHUNK_BYTES

    def __init__(self, conn: _Connection, mode: str, reason: str, retries: int) -> None:
        self._tasks = _Submitter(conn, retries, "vedart_chunk")
        self._fail_fast = mode == "fail_fast"
        self._reason = reason
        self._plans: dict[int, tuple[Any, Any, str]] = {}
        self._items = 0
        self._submitted = 0

    def _plan(self, fn: Callable[[Any], Any]) -> Optional[tuple[Any, str]]:
        entry = self._plans.get(id(fn))
        if entry is not None and entry[0] is fn:
            return entry[1], entry[2]
        if len(self._plans) >= MAX_PLANS_PER_RUN:
            return None
        data = _process.dumps_plan(_process.plan_of(fn))
        digest = _digest(data)
        future = self._tasks.conn.scattered(data, digest)
        self._plans[id(fn)] = (fn, future, digest)
        return future, digest

    def submit(self, fn: Callable[[Any], Any], chunk: Any) -> Any:
        plan = self._plan(fn)
        if plan is None:
            request = _process.dumps_chunk((_process.plan_of(fn), chunk), self._items)
            plan = (None, "")
        else:
            request = _process.dumps_chunk(chunk, self._items)
        self._items += len(chunk)
        task = _Task(self._submitted, plan[0], plan[1], request)
        self._submitted += 1
        self._tasks.launch(task)
        return task

    def in_completion_order(self) -> bool:
        self._tasks.landed = {}
        return True

    def completed(self, handles: Any, timeout: Optional[float] = None) -> int:
        tasks = self._tasks
        positions = {task.index: i for i, task in enumerate(handles)}
        deadline = None if timeout is None else time.monotonic() + timeout
        with tasks.cond:
            while True:
                assert tasks.landed is not None
                for index in tasks.landed:
                    position = positions.get(index)
                    if position is not None:
                        return position
                if tasks.cancelled:
                    return 0
                tasks.cond.wait(poll_pause(POLL_SECONDS, deadline))

    def result(self, handle: Any, timeout: Optional[float] = None) -> Any:
        task: _Task = handle
        tasks = self._tasks
        deadline = None if timeout is None else time.monotonic() + timeout
        tasks.wait(task, deadline, self._fail_fast)
        with tasks.cond:
            outcome = task.outcome
            if tasks.landed is not None:
                tasks.landed.pop(task.index, None)
            failure = tasks.failure
        if outcome is None:
            if failure is not None:
                raise self._failure_of(failure)
            raise CancelledError("the pipeline was cancelled")
        if outcome[0] == "ok":
            answer = outcome[1]
            task.outcome = None
            task.nbytes += len(answer)
            value, elapsed = _process.decode_answer(answer)
            task.elapsed = elapsed
            return value
        if outcome[0] == "cancelled" and failure is not None and failure is not task:
            raise self._failure_of(failure)
        raise self._failure_of(task)

    def _failure_of(self, task: _Task) -> BaseException:
        tasks = self._tasks
        tasks.cancel()
        assert task.outcome is not None
        error = _outcome_error(task.outcome, f"chunk {task.index} of the pipeline", task.runs)
        if isinstance(error, WorkerCrashedError):
            error.chunks = (task.index,)
        return _attach_others(error, [])

    def cancel(self) -> None:
        self._tasks.cancel()

    def explain(self) -> tuple[str, str]:
        return ("dask", self._reason)


class ClusterExecutor(Executor):
    """Runs chunks as tasks on the configured Dask cluster."""

    name = "dask"
    #: Never on the calling thread: the work is meant for the cluster.
    inline_per_item = None

    def __init__(self, runtime: Any, reason: str = 'executor="dask" was requested') -> None:
        config = runtime.config
        self._conn = connection(config)
        self.retries = int(config.retries)
        self.workers = self._conn.threads()
        self.reason = f"{reason}; the cluster at {config.cluster} has {self.workers} worker threads"

    def start(self, mode: str) -> Run:
        return _DaskRun(self._conn, mode, self.reason, self.retries)


# -- spawned calls ----------------------------------------------------------------------


class RemoteCall:
    """One ``spawn(fn, ..., executor="dask")``: pickled at once (a
    :class:`TypeError` names what does not pickle), submitted when a pool
    thread runs :meth:`run`, which waits for it and cancels it if the spawning
    task is cancelled."""

    def __init__(self, config: Any, fn: Callable[..., Any], args: tuple, kwargs: dict) -> None:
        if config.cluster is None:
            connection(config)  # raises the ConfigError that says what to set
        self._config = config
        self._name = _process._describe(fn)
        plan = ("call", functools.partial(_worker.run_call, None, fn))
        try:
            self._request = _process._dumps((plan, (args, kwargs)))
        except Exception as error:
            _process.dumps_plan(("call", fn))  # raises naming fn when fn is the culprit
            raise TypeError(
                f"the arguments of spawn({self._name}) cannot be sent to a Dask worker "
                f"(they do not pickle: {error})"
            ) from error

    def run(self) -> Any:
        conn = connection(self._config)
        calls = _Submitter(conn, int(self._config.retries), "vedart_call")
        request, self._request = self._request, b""
        task = _Task(0, None, "", request)
        calls.launch(task)
        try:
            calls.wait(task, None, False)
        except BaseException:  # cancelled, or Ctrl+C: the cluster need not run it
            calls.cancel()
            raise
        outcome = task.outcome
        assert outcome is not None
        if outcome[0] == "ok":
            value, _ = _process.decode_answer(outcome[1])
            return None if value is _stages._MISSING else value
        raise _outcome_error(outcome, f"spawn({self._name})", task.runs)


def submit_call(config: Any, fn: Callable[..., Any], args: tuple, kwargs: dict) -> RemoteCall:
    """A spawned call of ``fn`` for the cluster of ``config``; see :class:`RemoteCall`."""
    return RemoteCall(config, fn, args, kwargs)


"""The process-wide runtime: created lazily, or by :func:`init`; ended by :func:`shutdown`.

One :class:`Runtime` exists at a time. Its thread pool lives in Rust
(``_vedart.Runtime``, threads named ``veda-blocking-{i}``) and grows and shrinks
within ``[min_workers, max_workers]``. The first use of VedaRT creates a runtime
from the default :class:`~vedart.Config`; :func:`init` creates one from yours.
After :func:`shutdown` the next use starts a fresh one.

Creation is guarded by a lock, so ten threads making their very first call at
the same moment all get the same runtime. An ``atexit`` hook shuts the runtime
down before the interpreter finalizes, and a child created by ``os.fork``
starts a fresh runtime, with the configuration of the parent's, on first use
(the parent's threads do not exist in the child).
"""

from __future__ import annotations

import atexit
import dataclasses
import os
import threading
from typing import Any, Callable, Optional

from . import _cluster, _vedart
from ._config import Config, SchedulingPolicy
from .exceptions import ConfigError, RuntimeStateError

__all__ = ["Runtime", "RuntimeStats", "init", "shutdown", "get_runtime"]

#: How long the exit hook waits for running tasks before the interpreter goes on
#: finalizing (tasks still running then are abandoned).
EXIT_TIMEOUT_SECONDS = 2.0


@dataclasses.dataclass(frozen=True)
class RuntimeStats:
    """A snapshot of the thread pool, from :meth:`Runtime.stats`."""

    #: Worker threads alive.
    threads: int
    #: Threads parked with nothing to do.
    idle_threads: int
    #: Jobs waiting for a thread.
    queue_depth: int
    #: Lower bound of the pool.
    min_workers: int
    #: Upper bound of the pool.
    max_workers: int
    #: The Little's-law target size (arrival rate x mean service time).
    target_workers: int
    #: Jobs run to the end.
    jobs_completed: int
    #: Jobs that panicked in Rust (not Python exceptions, which are results).
    jobs_panicked: int
    #: Smoothed arrival rate, jobs per second.
    arrival_rate: float
    #: Smoothed mean job run time, seconds.
    mean_service_time: float

    def to_dict(self) -> dict[str, Any]:
        """The snapshot as a plain dict."""
        return dataclasses.asdict(self)


class Runtime:
    """The running VedaRT runtime; get it with :func:`vedart.get_runtime`.

    Holds the thread pool and the :class:`~vedart.Config` it was made from.
    """

    __slots__ = ("_config", "_pool", "_root", "_telemetry", "__weakref__")

    def __init__(self, config: Config) -> None:
        resolved = config.resolved()
        self._config = resolved
        assert resolved.min_workers is not None and resolved.max_workers is not None
        try:
            self._pool = _vedart.Runtime(
                resolved.min_workers,
                resolved.max_workers,
                resolved.adaptive_interval_ms / 1000.0,
            )
        except ValueError as exc:  # the pool names the field first
            field, _, message = str(exc).partition(": ")
            raise ConfigError(field, message) from None
        # Tasks spawned outside any scope: independent of each other.
        self._root = _vedart.Group(self._pool, "independent")
        self._telemetry: Any = None

    @property
    def config(self) -> Config:
        """The configuration, with defaults resolved."""
        return self._config

    @property
    def num_workers(self) -> int:
        """How many tasks the thread executor runs at once (``num_threads``)."""
        return self._config.num_threads  # type: ignore[return-value]

    @property
    def closed(self) -> bool:
        """Whether the runtime has been shut down."""
        return bool(self._pool.closed)

    # pyveda 1.0's attributes of the runtime (see vedart._pyveda).

    @property
    def telemetry(self) -> Any:
        """pyveda 1.0's telemetry system (``runtime.telemetry.snapshot()``):
        a :class:`vedart.telemetry.metrics.TelemetrySystem` over
        :mod:`vedart.telemetry`, or ``None`` when the configuration turned
        telemetry off, as in pyveda."""
        if not self._config.enable_telemetry:
            return None
        if self._telemetry is None:
            self._telemetry = _compat_view("telemetry", self)
        return self._telemetry

    @property
    def gpu(self) -> Any:
        """pyveda 1.0's GPU runtime (:class:`vedart.gpu.GPURuntime`) when the
        configuration enables the GPU and a GPU can run GPU functions here,
        else ``None``, as in pyveda."""
        return _compat_view("gpu", self)

    @property
    def scheduler(self) -> Any:
        """pyveda 1.0's scheduler: a view of this runtime (policy, config,
        ``get_stats()``); VedaRT has no scheduler object of its own."""
        return _compat_view("scheduler", self)

    def stats(self) -> RuntimeStats:
        """A snapshot of the thread pool: its size, bounds, queue and load."""
        return RuntimeStats(**self._pool.stats())

    def set_bounds(self, min_workers: int, max_workers: int) -> None:
        """Changes the pool's ``[min_workers, max_workers]`` while it runs.

        Raises:
            ConfigError: ``max_workers`` is 0 or ``min_workers > max_workers``.
        """
        try:
            self._pool.set_bounds(min_workers, max_workers)
        except ValueError as exc:
            field, _, message = str(exc).partition(": ")
            raise ConfigError(field, message) from None

    def _shutdown(self, timeout: Optional[float]) -> bool:
        self._root.cancel()
        return bool(self._pool.shutdown(timeout))

    def __repr__(self) -> str:
        state = "closed" if self.closed else "running"
        return (
            f"<vedart.Runtime {state} threads={self._pool.stats()['threads']} "
            f"workers=[{self._config.min_workers}, {self._config.max_workers}] "
            f"policy={self._config.scheduling_policy.name}>"  # type: ignore[union-attr]
        )


#: pyveda 1.0's views of a runtime (``telemetry``, ``gpu``, ``scheduler``) by
#: name. The compatibility layer (:mod:`vedart._pyveda`) sits above this module
#: and provides them when it is imported (:func:`provide_compat_views`).
_compat_views: dict[str, Callable[[Runtime], Any]] = {}

#: What the layers above do when the runtime shuts down, added as they are
#: imported (:func:`on_shutdown`), so that this module imports none of them.
#: Hooks *before* get the runtime while it still runs (deterministic mode runs
#: the spawned tasks still queued); hooks *after* get the shutdown's timeout
#: once it stopped (the process pool, the metrics endpoints).
_before_shutdown: list[Callable[[Runtime], None]] = []
_after_shutdown: list[Callable[[Optional[float]], None]] = []

_lock = threading.Lock()
_current: Optional[Runtime] = None
# Runtimes inherited across fork: never dropped in the child (their threads do
# not exist there, and dropping would try to stop them).
_inherited: list[Runtime] = []
# The configuration of the runtime that was current when this process was
# forked: the child's first runtime is made from it, as the parent's would be.
_fork_config: Optional[Config] = None


def init(config: Optional[Config] = None, **fields: Any) -> Runtime:
    """Starts the runtime with ``config`` (default: ``Config()``) and returns it.

    Keyword arguments set fields of the config (``init(cluster="local")`` is
    ``init(Config(cluster="local"))``), and override ``config``'s.

    Raises:
        RuntimeStateError: a runtime is already running (made by an earlier
            ``init`` or by a first use of VedaRT); call :func:`shutdown` first.
        TypeError: ``config`` is not a :class:`~vedart.Config`.
        ConfigError: a keyword is not a field of :class:`~vedart.Config`, or
            its value is invalid.
    """
    global _current, _fork_config
    if config is None:
        config = Config()
    if not isinstance(config, Config):
        raise TypeError(f"init() expects a vedart.Config, got {type(config).__name__}")
    if fields:
        known = {field.name for field in dataclasses.fields(Config)}
        for name in fields:
            if name not in known:
                raise ConfigError(name, "is not a field of vedart.Config")
        config = dataclasses.replace(config, **fields)
    with _lock:
        if _current is not None and not _current.closed:
            raise RuntimeStateError(
                "vedart is already initialized; call vedart.shutdown() before init() again"
            )
        _current = Runtime(config)
        _fork_config = None
    _vedart.telemetry_set_enabled(config.enable_telemetry)
    return _current


def get_runtime() -> Runtime:
    """The running runtime, started with the default configuration if needed."""
    runtime = _current
    if runtime is not None and not runtime._pool.closed:
        return runtime
    return _start_default()


def _start_default() -> Runtime:
    global _current, _fork_config
    with _lock:
        if _current is None or _current.closed:
            _current = Runtime(_fork_config or Config())
            _fork_config = None
        return _current


def shutdown(timeout: Optional[float] = None) -> None:
    """Stops the runtime: queued work is cancelled, running tasks are asked to
    stop (``vedart.cancelled()``) and waited for, at most ``timeout`` seconds
    (``None``: until they finish), and the worker processes of the process
    executor exit. Idempotent; the next use of VedaRT starts a fresh runtime
    (and a fresh process pool when a pipeline needs one). The
    :func:`vedart.telemetry.serve_metrics` endpoints stop too, and the
    connections to clusters close (a ``cluster="local"`` one stops).
    """
    global _current, _fork_config
    try:
        if _current is not None:
            _run_hooks(_before_shutdown, _current)
    finally:
        with _lock:
            runtime, _current = _current, None
            _fork_config = None
        if runtime is not None:
            runtime._shutdown(timeout)
        try:
            _run_hooks(_after_shutdown, timeout)
        finally:
            _cluster.shutdown_all()


def on_shutdown(
    *,
    before: Optional[Callable[[Runtime], None]] = None,
    after: Optional[Callable[[Optional[float]], None]] = None,
) -> None:
    """Adds work to every shutdown (and to the one at interpreter exit):
    ``before(runtime)`` while the runtime still runs, ``after(timeout)`` once
    it stopped. For the modules above this one; see ``_before_shutdown``."""
    if before is not None:
        _before_shutdown.append(before)
    if after is not None:
        _after_shutdown.append(after)


def provide_compat_views(**views: Callable[[Runtime], Any]) -> None:
    """Registers pyveda 1.0's views of a runtime (see ``_compat_views``)."""
    _compat_views.update(views)


def _compat_view(name: str, runtime: Runtime) -> Any:
    try:
        view = _compat_views[name]
    except KeyError:
        raise RuntimeStateError(
            f"runtime.{name} is pyveda 1.0's view, provided by vedart._pyveda, "
            "which `import vedart` loads; it was not loaded here"
        ) from None
    return view(runtime)


def _run_hooks(hooks: list[Callable[[Any], None]], argument: Any) -> None:
    # Every hook runs even if one fails; the first failure is raised after.
    failure: Optional[BaseException] = None
    for hook in list(hooks):
        try:
            hook(argument)
        except BaseException as error:  # noqa: BLE001 - re-raised below
            if failure is None:
                failure = error
    if failure is not None:
        raise failure


def _policy() -> SchedulingPolicy:
    return get_runtime().config.scheduling_policy  # type: ignore[return-value]


def _at_exit() -> None:
    global _current
    try:
        if _current is not None:
            _run_hooks(_before_shutdown, _current)
    finally:
        runtime, _current = _current, None
        try:
            if runtime is not None:
                runtime._shutdown(EXIT_TIMEOUT_SECONDS)
        finally:
            _vedart._mark_interpreter_exiting()


def _after_fork_in_child() -> None:
    global _current, _lock, _fork_config
    _lock = threading.Lock()
    if _current is not None:
        _inherited.append(_current)
        if not _current.closed:
            _fork_config = _current.config
    _current = None


atexit.register(_at_exit)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)

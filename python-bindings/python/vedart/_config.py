"""Runtime configuration: :class:`Config`, its builder and :class:`SchedulingPolicy`."""

from __future__ import annotations

import dataclasses
import enum
import os
from typing import Any, Callable, Optional, Union

from ._cluster import DEFAULT_CONNECT_TIMEOUT, check_cluster, check_connect_timeout, check_security
from .exceptions import ConfigError

__all__ = ["Config", "ConfigBuilder", "SchedulingPolicy"]

#: Upper bound accepted for thread and process counts (matches the Rust pool).
MAX_WORKERS_LIMIT = 10_000

#: Default adaptation period in milliseconds (see :attr:`Config.adaptive_interval_ms`).
DEFAULT_ADAPTIVE_INTERVAL_MS = 1000

#: Upper bound of :attr:`Config.retries` (a chunk that keeps killing its worker
#: should fail, not loop).
MAX_RETRIES = 100


class SchedulingPolicy(enum.Enum):
    """How VedaRT chooses an executor for work that does not name one."""

    #: Choose per pipeline from what the work is and what it costs (the default).
    ADAPTIVE = "adaptive"
    #: Always use the thread executor.
    THREAD_ONLY = "thread_only"
    #: Always use the process executor.
    PROCESS_ONLY = "process_only"
    #: Always use the async executor.
    ASYNC_ONLY = "async_only"
    #: Deterministic, seed-driven scheduling (see ``deterministic_seed``).
    DETERMINISTIC = "deterministic"


def _check_count(field: str, value: Any, *, minimum: int) -> Optional[int]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(field, f"must be an int or None, got {type(value).__name__}")
    if value < minimum or value > MAX_WORKERS_LIMIT:
        raise ConfigError(field, f"must be between {minimum} and {MAX_WORKERS_LIMIT}, got {value}")
    return value


def _check_bool(field: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(field, f"must be a bool, got {type(value).__name__}")
    return value


def check_process_options(
    initializer: Any, initargs: Any, max_tasks_per_child: Any
) -> None:
    """Validates ``initializer``, ``initargs`` and ``max_tasks_per_child`` (of
    :class:`Config` and of ``par_iter``), raising :class:`ConfigError`."""
    if initializer is not None and not callable(initializer):
        raise ConfigError(
            "initializer", f"must be callable or None, got {type(initializer).__name__}"
        )
    if not isinstance(initargs, tuple):
        raise ConfigError("initargs", f"must be a tuple, got {type(initargs).__name__}")
    if initargs and initializer is None:
        raise ConfigError("initargs", "given without an initializer")
    tasks = max_tasks_per_child
    if tasks is not None:
        if isinstance(tasks, bool) or not isinstance(tasks, int):
            raise ConfigError(
                "max_tasks_per_child", f"must be an int or None, got {type(tasks).__name__}"
            )
        if tasks < 1:
            raise ConfigError("max_tasks_per_child", f"must be at least 1, got {tasks}")


def _check_policy(value: Any) -> SchedulingPolicy:
    if isinstance(value, SchedulingPolicy):
        return value
    if isinstance(value, str):
        for policy in SchedulingPolicy:
            if value.lower() in (policy.value, policy.name.lower()):
                return policy
    names = ", ".join(p.name for p in SchedulingPolicy)
    raise ConfigError("scheduling_policy", f"must be one of {names}, got {value!r}")


@dataclasses.dataclass(frozen=True)
class Config:
    """Settings of the VedaRT runtime; pass one to :func:`vedart.init`.

    Every field is validated on construction: an invalid value raises
    :class:`vedart.ConfigError` (a ``ValueError``) whose message starts with the
    field's name. ``None`` means "choose for me" and is resolved when the runtime
    starts (see :meth:`resolved`).

    Examples:
        >>> import vedart as veda
        >>> veda.Config(num_threads=4).resolved().max_workers
        4
        >>> veda.Config.builder().num_threads(2).chunk_size(64).build().chunk_size
        64
    """

    #: Threads of the thread executor; default: the number of CPUs.
    num_threads: Optional[int] = None
    #: Worker processes of the process executor; default: the number of CPUs.
    num_processes: Optional[int] = None
    #: How executors are chosen.
    scheduling_policy: Union[SchedulingPolicy, str] = SchedulingPolicy.ADAPTIVE
    #: Allow the GPU executor when a device is present.
    enable_gpu: bool = False
    #: Count tasks, queue waits and run times (:mod:`vedart.telemetry`); on by
    #: default, it costs a few atomic increments per task. :func:`vedart.init`
    #: applies it process-wide.
    enable_telemetry: bool = True
    #: Seed for deterministic scheduling; ``None`` for normal scheduling.
    deterministic_seed: Optional[int] = None
    #: Threads kept alive even when idle; default 1.
    min_workers: Optional[int] = None
    #: Most threads the pool may run; default ``num_threads``.
    max_workers: Optional[int] = None
    #: Items per chunk for every pipeline; ``None`` adapts to measured item cost.
    chunk_size: Optional[int] = None
    #: Adaptation period of the pool in milliseconds: idle threads above the
    #: pool's target size retire after this long.
    adaptive_interval_ms: int = DEFAULT_ADAPTIVE_INTERVAL_MS
    #: Process executor: how many times a chunk may run again after the worker
    #: process running it died or was terminated to cancel other work. Chunks
    #: run at most once by default (0); allow retries only for work that may
    #: run twice (or in part, then again). Chunks a worker had not started yet
    #: always go to another worker.
    retries: int = 0
    #: Process executor: the largest chunk request or result, in bytes (one
    #: item's result, at least); ``None`` means 4 GiB. Larger ones fail with
    #: :class:`vedart.ExecutorError` naming this field.
    max_message_bytes: Optional[int] = None
    #: Process executor: called as ``initializer(*initargs)`` once in each
    #: worker process before the first chunk it runs, like
    #: ``ProcessPoolExecutor(initializer=...)``. One that raises fails the
    #: pipeline with :class:`vedart.BrokenProcessPoolError`.
    initializer: Optional[Callable[..., Any]] = None
    #: Arguments of :attr:`initializer`.
    initargs: tuple[Any, ...] = ()
    #: Process executor: a worker process is retired (it finishes its chunks
    #: and exits) and replaced after running this many chunks; ``None``: never.
    max_tasks_per_child: Optional[int] = None
    #: Where ``executor="dask"`` runs: a scheduler address
    #: (``"tcp://host:8786"``, ``"tls://host:8786"``), ``"local"`` for a
    #: cluster on this machine started on first use (one worker process per
    #: core, closed by :func:`vedart.shutdown`), or ``None``: no cluster (the
    #: automatic choice then never leaves this machine).
    cluster: Optional[str] = None
    #: A ``distributed.Security`` (TLS certificates, ``require_encryption``)
    #: for the connection to :attr:`cluster`, and for the embedded cluster
    #: that ``cluster="local"`` starts.
    cluster_security: Optional[Any] = None
    #: Seconds to reach the scheduler (and find a worker there) before
    #: failing with :class:`vedart.ExecutorError` naming the address.
    cluster_connect_timeout: float = DEFAULT_CONNECT_TIMEOUT

    def __post_init__(self) -> None:
        _check_count("num_threads", self.num_threads, minimum=1)
        _check_count("num_processes", self.num_processes, minimum=1)
        object.__setattr__(self, "scheduling_policy", _check_policy(self.scheduling_policy))
        _check_bool("enable_gpu", self.enable_gpu)
        _check_bool("enable_telemetry", self.enable_telemetry)
        seed = self.deterministic_seed
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ConfigError(
                "deterministic_seed", f"must be an int or None, got {type(seed).__name__}"
            )
        if seed is not None and not 0 <= seed < 2**64:
            raise ConfigError("deterministic_seed", f"must be in [0, 2**64), got {seed}")
        _check_count("min_workers", self.min_workers, minimum=0)
        _check_count("max_workers", self.max_workers, minimum=1)
        chunk = self.chunk_size
        if chunk is not None:
            if isinstance(chunk, bool) or not isinstance(chunk, int):
                raise ConfigError(
                    "chunk_size", f"must be an int or None, got {type(chunk).__name__}"
                )
            if chunk < 1:
                raise ConfigError("chunk_size", f"must be at least 1, got {chunk}")
        interval = self.adaptive_interval_ms
        if isinstance(interval, bool) or not isinstance(interval, int):
            raise ConfigError(
                "adaptive_interval_ms", f"must be an int, got {type(interval).__name__}"
            )
        if not 1 <= interval <= 3_600_000:
            raise ConfigError(
                "adaptive_interval_ms", f"must be between 1 and 3600000, got {interval}"
            )
        retries = self.retries
        if isinstance(retries, bool) or not isinstance(retries, int):
            raise ConfigError("retries", f"must be an int, got {type(retries).__name__}")
        if not 0 <= retries <= MAX_RETRIES:
            raise ConfigError("retries", f"must be between 0 and {MAX_RETRIES}, got {retries}")
        limit = self.max_message_bytes
        if limit is not None:
            if isinstance(limit, bool) or not isinstance(limit, int):
                raise ConfigError(
                    "max_message_bytes", f"must be an int or None, got {type(limit).__name__}"
                )
            if limit < 1:
                raise ConfigError("max_message_bytes", f"must be at least 1, got {limit}")
        check_process_options(self.initializer, self.initargs, self.max_tasks_per_child)
        check_cluster(self.cluster)
        check_security(self.cluster_security)
        check_connect_timeout(self.cluster_connect_timeout)
        resolved_max = self._max_workers()
        resolved_min = self._min_workers(resolved_max)
        if resolved_min > resolved_max:
            raise ConfigError(
                "min_workers",
                f"must not exceed max_workers ({resolved_max}), got {resolved_min}",
            )
        if (
            self.max_workers is not None
            and self.num_threads is not None
            and self.max_workers < self.num_threads
        ):
            raise ConfigError(
                "max_workers",
                f"must be at least num_threads ({self.num_threads}), got {self.max_workers}",
            )

    @staticmethod
    def builder() -> ConfigBuilder:
        """A :class:`ConfigBuilder` with chainable setters; ``build()`` validates."""
        return ConfigBuilder()

    @classmethod
    def default(cls) -> Config:
        """``Config()``: every field at its default (pyveda 1.0's name)."""
        return cls()

    @classmethod
    def thread_only(cls) -> Config:
        """The defaults with ``scheduling_policy=THREAD_ONLY``: every pipeline
        on the thread executor (pyveda 1.0's name)."""
        return cls(scheduling_policy=SchedulingPolicy.THREAD_ONLY)

    def _max_workers(self) -> int:
        if self.max_workers is not None:
            return self.max_workers
        if self.num_threads is not None:
            return self.num_threads
        return os.cpu_count() or 1

    def _min_workers(self, max_workers: int) -> int:
        if self.min_workers is not None:
            return self.min_workers
        return min(1, max_workers)

    def resolved(self) -> Config:
        """This configuration with every ``None`` count replaced by its default."""
        max_workers = self._max_workers()
        cpus = os.cpu_count() or 1
        return dataclasses.replace(
            self,
            num_threads=self.num_threads if self.num_threads is not None else max_workers,
            num_processes=self.num_processes if self.num_processes is not None else cpus,
            max_workers=max_workers,
            min_workers=self._min_workers(max_workers),
        )

    def to_dict(self) -> dict[str, Any]:
        """The fields as a plain dict (the policy as its name)."""
        fields = dataclasses.asdict(self)
        fields["scheduling_policy"] = self.scheduling_policy.name  # type: ignore[union-attr]
        return fields


class ConfigBuilder:
    """Builds a :class:`Config` with chainable setters, one per field.

    Examples:
        >>> from vedart import Config, SchedulingPolicy
        >>> cfg = (Config.builder()
        ...        .num_threads(4)
        ...        .scheduling_policy(SchedulingPolicy.THREAD_ONLY)
        ...        .build())
        >>> cfg.num_threads, cfg.scheduling_policy.name
        (4, 'THREAD_ONLY')
    """

    def __init__(self) -> None:
        self._fields: dict[str, Any] = {}

    def _set(self, name: str, value: Any) -> ConfigBuilder:
        self._fields[name] = value
        return self

    # pyveda 1.0's setter names, each an alias of the setter it names.

    def threads(self, count: Optional[int]) -> ConfigBuilder:
        """pyveda 1.0's name of :meth:`num_threads`."""
        return self.num_threads(count)

    def processes(self, count: Optional[int]) -> ConfigBuilder:
        """pyveda 1.0's name of :meth:`num_processes`."""
        return self.num_processes(count)

    def policy(self, policy: Union[SchedulingPolicy, str]) -> ConfigBuilder:
        """pyveda 1.0's name of :meth:`scheduling_policy`."""
        return self.scheduling_policy(policy)

    def gpu(self, enabled: bool = True) -> ConfigBuilder:
        """pyveda 1.0's name of :meth:`enable_gpu`."""
        return self.enable_gpu(enabled)

    def telemetry(self, enabled: bool = True) -> ConfigBuilder:
        """pyveda 1.0's name of :meth:`enable_telemetry`."""
        return self.enable_telemetry(enabled)

    def deterministic(self, seed: int) -> ConfigBuilder:
        """Sets :attr:`Config.deterministic_seed` and the ``DETERMINISTIC``
        policy, as pyveda 1.0's ``deterministic(seed)`` did."""
        return self.deterministic_seed(seed).scheduling_policy(SchedulingPolicy.DETERMINISTIC)

    def worker_limits(
        self, min_workers: Optional[int], max_workers: Optional[int]
    ) -> ConfigBuilder:
        """Sets :attr:`Config.min_workers` and :attr:`Config.max_workers`
        (pyveda 1.0's name)."""
        return self.min_workers(min_workers).max_workers(max_workers)

    def adaptive_interval(self, ms: int) -> ConfigBuilder:
        """pyveda 1.0's name of :meth:`adaptive_interval_ms`."""
        return self.adaptive_interval_ms(ms)

    def num_threads(self, value: Optional[int]) -> ConfigBuilder:
        """Sets :attr:`Config.num_threads`."""
        return self._set("num_threads", value)

    def num_processes(self, value: Optional[int]) -> ConfigBuilder:
        """Sets :attr:`Config.num_processes`."""
        return self._set("num_processes", value)

    def scheduling_policy(self, value: Union[SchedulingPolicy, str]) -> ConfigBuilder:
        """Sets :attr:`Config.scheduling_policy`."""
        return self._set("scheduling_policy", value)

    def enable_gpu(self, value: bool = True) -> ConfigBuilder:
        """Sets :attr:`Config.enable_gpu`."""
        return self._set("enable_gpu", value)

    def enable_telemetry(self, value: bool = True) -> ConfigBuilder:
        """Sets :attr:`Config.enable_telemetry`."""
        return self._set("enable_telemetry", value)

    def deterministic_seed(self, value: Optional[int]) -> ConfigBuilder:
        """Sets :attr:`Config.deterministic_seed`."""
        return self._set("deterministic_seed", value)

    def min_workers(self, value: Optional[int]) -> ConfigBuilder:
        """Sets :attr:`Config.min_workers`."""
        return self._set("min_workers", value)

    def max_workers(self, value: Optional[int]) -> ConfigBuilder:
        """Sets :attr:`Config.max_workers`."""
        return self._set("max_workers", value)

    def chunk_size(self, value: Optional[int]) -> ConfigBuilder:
        """Sets :attr:`Config.chunk_size`."""
        return self._set("chunk_size", value)

    def adaptive_interval_ms(self, value: int) -> ConfigBuilder:
        """Sets :attr:`Config.adaptive_interval_ms`."""
        return self._set("adaptive_interval_ms", value)

    def retries(self, value: int) -> ConfigBuilder:
        """Sets :attr:`Config.retries`."""
        return self._set("retries", value)

    def max_message_bytes(self, value: Optional[int]) -> ConfigBuilder:
        """Sets :attr:`Config.max_message_bytes`."""
        return self._set("max_message_bytes", value)

    def initializer(
        self, initializer: Optional[Callable[..., Any]], *initargs: Any
    ) -> ConfigBuilder:
        """Sets :attr:`Config.initializer` and :attr:`Config.initargs`."""
        self._set("initializer", initializer)
        return self._set("initargs", tuple(initargs))

    def max_tasks_per_child(self, value: Optional[int]) -> ConfigBuilder:
        """Sets :attr:`Config.max_tasks_per_child`."""
        return self._set("max_tasks_per_child", value)

    def cluster(self, value: Optional[str]) -> ConfigBuilder:
        """Sets :attr:`Config.cluster`."""
        return self._set("cluster", value)

    def cluster_security(self, value: Optional[Any]) -> ConfigBuilder:
        """Sets :attr:`Config.cluster_security`."""
        return self._set("cluster_security", value)

    def cluster_connect_timeout(self, seconds: float) -> ConfigBuilder:
        """Sets :attr:`Config.cluster_connect_timeout`."""
        return self._set("cluster_connect_timeout", seconds)

    def build(self) -> Config:
        """Validates the settings and returns the :class:`Config`.

        Raises:
            ConfigError: a setting is invalid; the message names it.
        """
        return Config(**self._fields)

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self._fields.items())
        return f"ConfigBuilder({inner})"

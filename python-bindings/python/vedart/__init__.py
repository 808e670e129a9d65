"""VedaRT: an async-first parallel runtime for Python, with a Rust core.

::

    import vedart as veda

    squares = veda.par_iter(range(1000)).map(lambda x: x * x).collect()

    with veda.scope() as s:
        a = s.spawn(download, url1)
        b = s.spawn(download, url2)
    print(a.result(), b.result())

    async def main():
        total = await veda.par_iter(paths).map(checksum).sum()

Pipelines (:func:`par_iter`) are lazy until a terminal operation; ``collect``
returns results in input order. Scopes (:func:`scope`) wait for every child
and cancel the rest when one fails. Configure the runtime with :class:`Config`
and :func:`init`, or let the first use start it with defaults.
"""

from typing import TYPE_CHECKING

from . import telemetry  # noqa: F401  (the public submodule vedart.telemetry)
from ._config import Config, ConfigBuilder, SchedulingPolicy
from ._deterministic import ExecutionTrace, TraceEvent, replay
from ._adaptive import Explanation
from ._cf_executor import VedaExecutor
from ._executors import Executor, Run
from ._future import Future
from ._gpu import gpu_available
from ._par_iter import ParallelIterator, par_iter
from ._runtime import Runtime, RuntimeStats, get_runtime, init, shutdown
from ._scope import Scope, cancelled, scope, spawn
# pyveda 1.0's modules vedart.gpu and vedart.deterministic are VedaRT's
# functions too: the modules call them (vedart._pyveda.CallableModule).
# Imported here so that veda.gpu is the same object before and after a
# program imports vedart.gpu; type checkers see the functions.
if TYPE_CHECKING:
    from ._deterministic import deterministic
    from ._gpu import gpu
else:
    from . import deterministic, gpu
del TYPE_CHECKING
from .exceptions import (
    BrokenProcessPoolError,
    BrokenThreadPoolError,
    CancelledError,
    ChunkInterruptedError,
    ConfigError,
    ExecutorError,
    MetricsServerError,
    ReplayError,
    RuntimeStateError,
    ScopeClosedError,
    TimeoutError,
    VedaError,
    WorkerCrashedError,
)

__version__ = "0.1.0"

__all__ = [
    "__version__",
    # pipelines
    "par_iter",
    "ParallelIterator",
    "Explanation",
    # GPU
    "gpu",
    "gpu_available",
    # structured concurrency
    "scope",
    "Scope",
    "spawn",
    "Future",
    "cancelled",
    # runtime
    "Config",
    "ConfigBuilder",
    "SchedulingPolicy",
    "init",
    "shutdown",
    "get_runtime",
    "Runtime",
    "RuntimeStats",
    "Executor",
    "Run",
    # concurrent.futures
    "VedaExecutor",
    # deterministic mode
    "deterministic",
    "replay",
    "ExecutionTrace",
    "TraceEvent",
    # errors
    "VedaError",
    "ConfigError",
    "RuntimeStateError",
    "ScopeClosedError",
    "CancelledError",
    "ExecutorError",
    "WorkerCrashedError",
    "ChunkInterruptedError",
    "ReplayError",
    "MetricsServerError",
    "TimeoutError",
    "BrokenProcessPoolError",
    "BrokenThreadPoolError",
]

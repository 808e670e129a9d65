"""The seam between VedaRT and distributed engines (``executor="dask"``).

VedaRT does not run clusters of its own: work that outgrows one machine goes
to an existing engine. Each engine is one module, named in :data:`ENGINES`,
that provides:

* ``ClusterExecutor(runtime, reason)``: a :class:`vedart.Executor` whose runs
  send a pipeline segment's chunks to the cluster (the engine of
  :mod:`vedart._engine` drives it like the process executor);
* ``submit_call(fn, args, kwargs) -> handle`` with ``handle.wait(poll)``
  and ``handle.cancel()``: one call of ``veda.spawn(..., executor=name)``;
* ``shutdown()``: closes its connections (and the clusters it started);
  called by :func:`vedart.shutdown` and at exit.

A second engine (Ray, say) is one more module and one more entry here. This
module also validates the engine-agnostic settings of :class:`vedart.Config`
(``cluster``, ``cluster_security``, ``cluster_connect_timeout``) without
importing any engine, so a bad address is a :class:`~vedart.ConfigError` at
once.
"""

from __future__ import annotations

import importlib
import math
import sys
from types import ModuleType
from typing import Any

from .exceptions import ConfigError

__all__ = ["ENGINES", "engine", "check_cluster", "check_security", "shutdown_all"]

#: Executor name -> (module, pip extra that brings the engine's package).
ENGINES: dict[str, tuple[str, str]] = {"dask": ("vedart._dask", "dask")}

#: ``cluster=`` value that starts an embedded cluster on this machine.
LOCAL = "local"

#: URL schemes a scheduler address may have (what the engines' clients accept).
SCHEMES = ("tcp", "tls")

#: Default of ``Config.cluster_connect_timeout``, in seconds.
DEFAULT_CONNECT_TIMEOUT = 10.0


def engine(name: str) -> ModuleType:
    """The module of engine ``name`` (imported on first use).

    Raises:
        ConfigError: the engine's package is not installed; the message names
            the pip extra that installs it.
    """
    module, extra = ENGINES[name]
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ConfigError(
            "executor",
            f'executor="{name}" needs the {name} package, which is not installed here '
            f"({error}); install it with: pip install 'vedart[{extra}]'",
        ) from error


def check_cluster(value: Any) -> None:
    """Validates ``Config.cluster``: ``None``, ``"local"``, or a scheduler
    address ``scheme://host:port`` (scheme in :data:`SCHEMES`).

    Raises:
        ConfigError: anything else; the message says what is wrong.
    """
    if value is None or value == LOCAL:
        return
    if not isinstance(value, str):
        raise ConfigError(
            "cluster",
            f'must be "local" or a scheduler address such as "tcp://host:8786", '
            f"got {type(value).__name__}",
        )
    scheme, sep, rest = value.partition("://")
    if not sep or scheme not in SCHEMES:
        raise ConfigError(
            "cluster",
            f'must be "local" or a scheduler address "tcp://host:port" or "tls://host:port", '
            f"got {value!r}",
        )
    host, colon, port = rest.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not colon or not host or "/" in rest or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(
            "cluster",
            f"a scheduler address needs a host and a port between 1 and 65535 "
            f"(\"{scheme}://host:8786\"), got {value!r}",
        )


def check_security(value: Any) -> None:
    """Validates ``Config.cluster_security``: ``None`` or a
    ``distributed.Security`` (checked by type name, so that validating a
    config does not import Dask)."""
    if value is None:
        return
    kind = type(value)
    if not any(
        cls.__name__ == "Security" and cls.__module__.startswith("distributed")
        for cls in kind.__mro__
    ):
        raise ConfigError(
            "cluster_security",
            f"must be a distributed.Security or None, got {kind.__name__}",
        )


def check_connect_timeout(value: Any) -> None:
    """Validates ``Config.cluster_connect_timeout`` (seconds, positive)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(
            "cluster_connect_timeout", f"must be a number of seconds, got {type(value).__name__}"
        )
    if not (value > 0 and math.isfinite(value)):
        raise ConfigError("cluster_connect_timeout", f"must be positive and finite, got {value}")


def shutdown_all() -> None:
    """Closes every engine's connections and embedded clusters. Engines never
    imported have nothing to close, and are not imported for it."""
    first: BaseException | None = None
    for module, _ in ENGINES.values():
        loaded = sys.modules.get(module)
        if loaded is None:
            continue
        try:
            loaded.shutdown()
        except Exception as error:  # close the others first
            first = first or error
    if first is not None:
        raise first

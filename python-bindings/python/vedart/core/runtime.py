"""pyveda 1.0's ``vedart.core.runtime``: aliases of :class:`vedart.Runtime`,
:func:`vedart.init`, :func:`vedart.shutdown` and :func:`vedart.get_runtime`."""

from .._runtime import Runtime, get_runtime, init, shutdown

__all__ = ["Runtime", "get_runtime", "init", "shutdown"]

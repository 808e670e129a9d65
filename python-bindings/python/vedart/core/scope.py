"""pyveda 1.0's ``vedart.core.scope``: aliases of :class:`vedart.Scope`,
:func:`vedart.scope` and :func:`vedart.spawn`."""

from .._scope import Scope, scope, spawn

__all__ = ["Scope", "scope", "spawn"]

"""pyveda 1.0's ``vedart.config``: aliases of :class:`vedart.Config`,
:class:`vedart.ConfigBuilder` and :class:`vedart.SchedulingPolicy` (see
docs/python.md, "Coming from pyveda 1.0")."""

from ._config import Config, ConfigBuilder, SchedulingPolicy

__all__ = ["Config", "ConfigBuilder", "SchedulingPolicy"]

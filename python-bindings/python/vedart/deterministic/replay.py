"""pyveda 1.0's ``vedart.deterministic.replay``: aliases of
:func:`vedart.deterministic`, :func:`vedart.replay`,
:class:`vedart.ExecutionTrace` (with pyveda's ``save_to_file``,
``load_from_file`` and ``get_events``) and :class:`vedart.TraceEvent`, which
is also pyveda's ``TaskScheduledEvent`` (VedaRT's fields: ``task``,
``stage``, ``executor``, ``worker``, ``time``, ``index``)."""

from .._deterministic import ExecutionTrace, TraceEvent, deterministic, replay

#: pyveda's name of :class:`vedart.TraceEvent`.
TaskScheduledEvent = TraceEvent

__all__ = ["deterministic", "replay", "ExecutionTrace", "TraceEvent", "TaskScheduledEvent"]

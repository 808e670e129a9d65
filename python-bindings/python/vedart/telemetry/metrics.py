"""pyveda 1.0's ``vedart.telemetry.metrics``: :class:`Counter`,
:class:`Gauge`, :class:`Histogram` (a program's own figures),
:class:`MetricsSnapshot` (``export_prometheus``, ``export_json``) and
:class:`TelemetrySystem` (``runtime.telemetry``), views over
:func:`vedart.telemetry.snapshot` defined in ``vedart._pyveda``.

Not to be confused with :class:`vedart.telemetry.Histogram`, a distribution
in VedaRT's own snapshot."""

from .._pyveda import Counter, Gauge, Histogram, MetricsSnapshot, TelemetrySystem

__all__ = ["Counter", "Gauge", "Histogram", "MetricsSnapshot", "TelemetrySystem"]

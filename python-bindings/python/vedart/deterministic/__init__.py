"""pyveda 1.0's ``vedart.deterministic`` package, which is also VedaRT's
:func:`vedart.deterministic` context manager: importing it leaves
``veda.deterministic(seed)`` working (the module calls the function).
:mod:`vedart.deterministic.replay` holds the aliases; ``replay`` here is that
submodule, as in pyveda (VedaRT's function is :func:`vedart.replay`)."""

from .._deterministic import ExecutionTrace, TraceEvent, deterministic
from .._pyveda import make_callable

__all__ = ["deterministic", "ExecutionTrace", "TraceEvent"]

make_callable(__name__, deterministic)

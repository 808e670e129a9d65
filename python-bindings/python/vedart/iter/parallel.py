"""pyveda 1.0's ``vedart.iter.parallel``: aliases of :func:`vedart.par_iter`
and :class:`vedart.ParallelIterator`."""

from .._par_iter import ParallelIterator, par_iter

__all__ = ["ParallelIterator", "par_iter"]

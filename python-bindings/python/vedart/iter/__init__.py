"""pyveda 1.0's ``vedart.iter``: see :mod:`vedart.iter.parallel`."""

"""pyveda 1.0's ``vedart.gpu`` module, which is also VedaRT's ``@veda.gpu``
decorator: ``import vedart.gpu`` and ``from vedart.gpu import gpu,
GPURuntime`` work, and ``veda.gpu`` still decorates (``@veda.gpu``,
``@veda.gpu(device=1)``): the module calls :func:`vedart._gpu.gpu`.

``GPURuntime`` is pyveda's GPU runtime object (also ``runtime.gpu``)."""

from ._gpu import gpu, gpu_available
from ._pyveda import GPURuntime, make_callable

__all__ = ["gpu", "gpu_available", "GPURuntime"]

make_callable(__name__, gpu)

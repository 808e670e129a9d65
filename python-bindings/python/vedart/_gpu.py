"""The GPU executor: ``@veda.gpu``, ``gpu_map``, ``veda.gpu_available()``.

With CuPy and a CUDA device, a call of a GPU function runs like this
(:func:`run_on_device`):

1. A stream is taken from the device's stream pool in Rust
   (``_vedart.GpuStream``, see ``python-bindings/src/gpu.rs``) and wrapped in
   ``cupy.cuda.ExternalStream``, which becomes CuPy's current stream.
2. NumPy arrays among the arguments (also inside lists, tuples and dicts) are
   copied to the device on that stream; other arguments pass unchanged.
3. The function runs; CuPy queues its kernels on the stream.
4. CuPy arrays in the result (also inside lists, tuples and dicts) are copied
   back into NumPy arrays on the stream, and the thread waits for the stream
   with the interpreter released (a CUDA host callback completes a Rust
   future; Ctrl+C is honoured). The stream goes back to the pool.

Called on a thread whose event loop is running, a GPU function returns an
awaitable instead and runs on the thread pool, so awaiting it never blocks the
loop (the convention of VedaRT's terminal operations). ``gpu_map`` stages and
``executor="gpu"`` pipelines run their items this way on the thread pool.

Without a device or without CuPy the function runs on the CPU with its NumPy
arguments: one :class:`RuntimeWarning` per process says why, and every such
call is counted (:func:`fallback_count`, and ``_vedart.record_gpu_fallback``
for telemetry).
"""

from __future__ import annotations

import functools
import importlib
import os
import sys
import threading
import warnings
from typing import Any, Callable, Optional, TypeVar, overload

from . import _vedart
from ._asyncio import run_blocking, running_loop
from ._executors import ThreadExecutor
from ._stages import GPU_MAP, MAP, Stage

__all__ = ["gpu", "gpu_available", "GpuFunction", "fallback_count", "GpuExecutor"]

F = TypeVar("F", bound=Callable[..., Any])

_state_lock = threading.Lock()
_fallbacks = 0
_warned = False
_cupy_module: Any = None
_cupy_error: Optional[str] = None
_cupy_checked = False


def _after_fork_in_child() -> None:
    # Another thread may have held the lock (importing CuPy) when this process
    # forked.
    global _state_lock
    _state_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _cupy() -> Any:
    """CuPy, or ``None`` when it cannot be imported (checked once)."""
    global _cupy_module, _cupy_error, _cupy_checked
    if not _cupy_checked:
        with _state_lock:
            if not _cupy_checked:
                try:
                    _cupy_module = importlib.import_module("cupy")
                except Exception as error:  # ImportError, or a broken CUDA install
                    _cupy_error = f"{type(error).__name__}: {error}"
                _cupy_checked = True
    return _cupy_module


def _unavailable_reason() -> Optional[str]:
    """Why GPU functions run on the CPU here, or ``None`` if they need not."""
    if not _vedart.gpu_available():
        return "no CUDA driver or device was found"
    if _cupy() is None:
        return f"CuPy is not installed or does not load ({_cupy_error})"
    return None


def gpu_available() -> bool:
    """Whether GPU functions run on a GPU here: a CUDA device is present and
    CuPy imports. When false they run on the CPU instead.

    Examples:
        >>> import vedart as veda
        >>> isinstance(veda.gpu_available(), bool)
        True
    """
    return _unavailable_reason() is None


def fallback_count() -> int:
    """How many GPU function calls ran on the CPU because no GPU could be used,
    in this process."""
    return _fallbacks


def _fell_back(reason: str, name: str) -> None:
    global _fallbacks, _warned
    with _state_lock:
        _fallbacks += 1
        warn = not _warned
        _warned = True
    record = getattr(_vedart, "record_gpu_fallback", None)
    if record is not None:
        record()
    if warn:
        warnings.warn(
            f"vedart: {reason}; GPU functions such as {name} run on the CPU "
            "(warned once per process)",
            RuntimeWarning,
            stacklevel=4,
        )


def _to_device(value: Any, cupy: Any, numpy: Any) -> Any:
    if isinstance(value, numpy.ndarray):
        return cupy.asarray(value)
    if isinstance(value, (list, tuple)):
        items = [_to_device(item, cupy, numpy) for item in value]
        return type(value)(items) if type(value) in (list, tuple) else items
    if isinstance(value, dict):
        return {key: _to_device(item, cupy, numpy) for key, item in value.items()}
    return value


def _to_host(value: Any, cupy: Any, stream: Any) -> Any:
    if isinstance(value, cupy.ndarray):
        return value.get(stream=stream)
    if isinstance(value, (list, tuple)):
        items = [_to_host(item, cupy, stream) for item in value]
        return type(value)(items) if type(value) in (list, tuple) else items
    if isinstance(value, dict):
        return {key: _to_host(item, cupy, stream) for key, item in value.items()}
    return value


def run_on_device(fn: Callable[..., Any], args: tuple, kwargs: dict, device: int) -> Any:
    """Steps 1 to 4 of the module documentation."""
    cupy = _cupy()
    import numpy

    stream = _vedart.GpuStream(device)
    try:
        with cupy.cuda.Device(device):
            external = cupy.cuda.ExternalStream(stream.handle, device)
            with external:
                result = fn(*_to_device(args, cupy, numpy), **_to_device(kwargs, cupy, numpy))
                host = _to_host(result, cupy, external)
        stream.synchronize()
        return host
    finally:
        stream.release()


def run(fn: Callable[..., Any], args: tuple, kwargs: dict, device: int = 0) -> Any:
    """``fn(*args, **kwargs)`` on the GPU, or on the CPU when there is none."""
    reason = _unavailable_reason()
    if reason is None:
        return run_on_device(fn, args, kwargs, device)
    _fell_back(reason, getattr(fn, "__qualname__", None) or repr(fn))
    return fn(*args, **kwargs)


class GpuFunction:
    """A function marked with :func:`vedart.gpu`; calling it runs it on the GPU
    (or on the CPU when there is none). See :func:`vedart.gpu`."""

    #: Read by the adaptive executor: this work belongs on the GPU executor.
    __veda_gpu__ = True

    def __init__(self, fn: Callable[..., Any], device: int = 0) -> None:
        if not callable(fn):
            raise TypeError(f"gpu() expects a callable, got {type(fn).__name__}")
        if isinstance(device, bool) or not isinstance(device, int) or device < 0:
            raise ValueError(f"device must be a non-negative int, got {device!r}")
        functools.update_wrapper(self, fn)
        self.fn = fn
        self.device = device

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if running_loop() is not None:
            return run_blocking(functools.partial(run, self.fn, args, kwargs, self.device))
        return run(self.fn, args, kwargs, self.device)

    def __get__(self, instance: Any, owner: Any = None) -> Any:
        if instance is None:
            return self
        return GpuFunction(self.fn.__get__(instance, owner), self.device)

    def __reduce__(self) -> Any:
        # A decorated module-level function is found again by its name; the
        # function it wraps is not (its name now means this object).
        module = sys.modules.get(getattr(self, "__module__", "") or "")
        if module is not None and module.__name__ != "__main__":
            found: Any = module
            for part in str(getattr(self, "__qualname__", "")).split("."):
                found = getattr(found, part, None)
            if found is self:
                return self.__qualname__
        return (GpuFunction, (self.fn, self.device))

    def __repr__(self) -> str:
        name = getattr(self.fn, "__qualname__", None) or repr(self.fn)
        return f"<vedart.gpu function {name} on device {self.device}>"


@overload
def gpu(fn: F) -> F: ...


@overload
def gpu(fn: None = None, *, device: int = 0) -> Callable[[F], F]: ...


def gpu(fn: Optional[Callable[..., Any]] = None, *, device: int = 0) -> Any:
    """Marks ``fn`` as GPU work: ``@veda.gpu`` or ``@veda.gpu(device=1)``.

    Calling the result with NumPy arrays moves them to the device on a stream
    of VedaRT's stream pool, runs ``fn`` there (write it with array operations
    or CuPy), and returns NumPy arrays. Called from a coroutine it returns an
    awaitable and the event loop never blocks (``await f(a, b)``). In a
    pipeline (``map(f)`` or ``gpu_map(g)``) the items run on the thread pool,
    each on the GPU.

    Without a CUDA device or without CuPy, ``fn`` runs on the CPU with the
    NumPy arrays, and VedaRT warns once per process (:func:`gpu_available`
    tells in advance).

    Examples:
        >>> import vedart as veda
        >>> @veda.gpu
        ... def double(x):
        ...     return x * 2
        >>> import warnings
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("ignore")
        ...     double(21)
        42
    """
    if fn is None:
        return lambda inner: GpuFunction(inner, device)
    return GpuFunction(fn, device)


def as_gpu_function(fn: Callable[..., Any]) -> GpuFunction:
    """``fn`` as a :class:`GpuFunction` (unchanged if it is one)."""
    return fn if isinstance(fn, GpuFunction) else GpuFunction(fn)


def is_gpu_function(fn: Any) -> bool:
    """Whether ``fn`` was marked with :func:`gpu`."""
    return getattr(type(fn), "__veda_gpu__", False) is True


class GpuExecutor(ThreadExecutor):
    """``executor="gpu"``: every ``map`` item runs on the GPU (as with
    ``gpu_map``), from the thread pool."""

    name = "gpu"
    inline_per_item: Optional[float] = None

    def __init__(self, runtime: Any, reason: str = 'executor="gpu" was requested') -> None:
        super().__init__(runtime, reason)
        where = "a GPU" if gpu_available() else "the CPU (no GPU here)"
        self.reason = f"{reason}: map items run on {where}, from the thread pool"


def gpu_stages(stages: tuple[Stage, ...]) -> tuple[Stage, ...]:
    """``stages`` with every ``map`` turned into a ``gpu_map`` (``executor="gpu"``)."""
    return tuple(
        Stage(GPU_MAP, as_gpu_function(stage.fn)) if stage.kind == MAP and stage.fn else stage
        for stage in stages
    )

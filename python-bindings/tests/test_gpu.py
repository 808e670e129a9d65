"""The GPU executor: ``@veda.gpu``, ``gpu_map``, ``executor="gpu"``,
``veda.gpu_available()``. Without a device or CuPy (CI) the fallback is
covered; the tests marked ``needs_gpu`` run where both exist."""

from __future__ import annotations

import asyncio
import importlib.util
import pickle
import time
import warnings

import pytest
from conftest import run_python

import vedart as veda
from vedart import _gpu, _vedart

np = pytest.importorskip("numpy")

HAS_GPU = veda.gpu_available()
needs_gpu = pytest.mark.skipif(not HAS_GPU, reason="needs a CUDA device and CuPy")
no_gpu = pytest.mark.skipif(HAS_GPU, reason="covers the CPU fallback")


@veda.gpu
def saxpy(a, x, y):
    return a * x + y


def quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return fn(*args, **kwargs)


def test_gpu_available_needs_a_device_and_cupy():
    has_cupy = importlib.util.find_spec("cupy") is not None
    assert veda.gpu_available() == (_vedart.gpu_available() and has_cupy)
    assert _vedart.gpu_device_count() >= 0
    assert (_vedart.gpu_device_count() > 0) == _vedart.gpu_available()


def test_a_gpu_function_returns_numpy_arrays():
    x = np.arange(1000, dtype=np.float32)
    y = np.ones(1000, dtype=np.float32)
    out = quiet(saxpy, 2.0, x, y)
    assert isinstance(out, np.ndarray)
    np.testing.assert_allclose(out, 2.0 * x + y)
    assert saxpy.__name__ == "saxpy" and saxpy.__veda_gpu__


def test_results_inside_containers_come_back_as_numpy():
    @veda.gpu
    def stats(a):
        return {"sum": a.sum(), "parts": (a[:2], [a[2:]])}

    out = quiet(stats, np.arange(4.0))
    assert float(out["sum"]) == 6.0
    assert isinstance(out["parts"][0], np.ndarray) and isinstance(out["parts"][1][0], np.ndarray)


@no_gpu
def test_without_a_gpu_it_runs_on_the_cpu_warns_once_and_counts():
    code = """
        import warnings
        import numpy as np
        import vedart as veda
        from vedart import _gpu

        @veda.gpu
        def double(a):
            return a * 2

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for _ in range(3):
                assert (double(np.arange(3)) == [0, 2, 4]).all()
            assert veda.par_iter([np.arange(2)] * 4).gpu_map(double).count() == 4
        print(len(caught), caught[0].category.__name__, _gpu.fallback_count())
        print(caught[0].message)
    """
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    first, message = result.stdout.splitlines()[:2]
    assert first == "1 RuntimeWarning 7"
    assert "run on the CPU" in message and "double" in message


def test_gpu_map_and_the_gpu_executor():
    arrays = [np.arange(10.0) * i for i in range(8)]
    before = _gpu.fallback_count()
    out = quiet(lambda: veda.par_iter(arrays).gpu_map(lambda a: a * 3).collect())
    assert all((o == a * 3).all() for o, a in zip(out, arrays))
    pipeline = veda.par_iter(arrays, executor="gpu").map(lambda a: a + 1)
    out = quiet(pipeline.collect)
    assert all((o == a + 1).all() for o, a in zip(out, arrays))
    assert pipeline.explain().executor == "gpu"
    if not HAS_GPU:
        assert _gpu.fallback_count() >= before + 16


def test_awaiting_a_gpu_function_does_not_block_the_loop():
    @veda.gpu
    def slow(a):
        time.sleep(0.3)
        return a + 1

    async def runner():
        ticks = 0
        done = False

        async def ticker():
            nonlocal ticks
            while not done:
                ticks += 1
                await asyncio.sleep(0.005)

        task = asyncio.ensure_future(ticker())
        out = await quiet(slow, np.zeros(3))
        done = True
        await task
        return out, ticks

    out, ticks = asyncio.run(runner())
    assert (out == 1).all()
    assert ticks >= 5  # the loop kept running while the function ran


def test_gpu_functions_work_as_methods_and_pickle():
    class Model:
        def __init__(self, k):
            self.k = k

        @veda.gpu
        def apply(self, a):
            return a * self.k

    assert (quiet(Model(3).apply, np.ones(2)) == 3).all()
    restored = pickle.loads(pickle.dumps(saxpy))
    assert isinstance(restored, _gpu.GpuFunction) and restored.fn is saxpy.fn
    with pytest.raises(TypeError):
        veda.gpu(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        veda.gpu(device=-1)(abs)


@no_gpu
def test_a_stream_cannot_be_taken_without_a_device():
    with pytest.raises(veda.ExecutorError, match="GPU"):
        _vedart.GpuStream(0)


@needs_gpu
def test_a_stream_comes_from_the_pool_and_synchronizes():
    stream = _vedart.GpuStream(0)
    assert stream.handle != 0 and stream.device == 0
    assert stream.synchronize(10.0)
    stream.release()
    assert stream.released
    with pytest.raises(veda.ExecutorError, match="released"):
        stream.synchronize()


@needs_gpu
def test_arrays_move_to_the_device_and_back():
    import cupy

    seen = []

    @veda.gpu
    def kind(a):
        seen.append((type(a), cupy.cuda.get_current_stream().ptr))
        return a * 2

    out = kind(np.arange(100, dtype=np.float64))
    assert isinstance(out, np.ndarray)
    np.testing.assert_allclose(out, np.arange(100) * 2.0)
    assert seen[0][0] is cupy.ndarray
    assert seen[0][1] != 0  # a stream from the pool, not the legacy default stream
    assert _gpu.fallback_count() == 0


@needs_gpu
def test_many_threads_use_the_gpu_at_once():
    arrays = [np.full(10_000, i, dtype=np.float32) for i in range(64)]
    out = veda.par_iter(arrays, chunk_size=1).gpu_map(lambda a: (a * a).sum()).collect()
    assert [float(o) for o in out] == [float(i * i * 10_000) for i in range(64)]

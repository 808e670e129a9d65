"""The public surface: exports, documentation, type stubs."""

from __future__ import annotations

import importlib
import inspect
import os
import shutil
import subprocess
import sys

import pytest

import vedart as veda
from vedart import _vedart

EXPECTED = {
    "__version__",
    "par_iter",
    "ParallelIterator",
    "Explanation",
    "gpu",
    "gpu_available",
    "WorkerCrashedError",
    "ChunkInterruptedError",
    "VedaExecutor",
    "BrokenProcessPoolError",
    "BrokenThreadPoolError",
    "scope",
    "Scope",
    "spawn",
    "Future",
    "cancelled",
    "Config",
    "ConfigBuilder",
    "SchedulingPolicy",
    "init",
    "shutdown",
    "get_runtime",
    "Runtime",
    "RuntimeStats",
    "Executor",
    "Run",
    "VedaError",
    "ConfigError",
    "RuntimeStateError",
    "ScopeClosedError",
    "CancelledError",
    "ExecutorError",
    "ReplayError",
    "MetricsServerError",
    "TimeoutError",
    "deterministic",
    "replay",
    "ExecutionTrace",
    "TraceEvent",
}


def test_all_lists_exactly_the_public_names():
    assert set(veda.__all__) == EXPECTED
    for name in veda.__all__:
        assert hasattr(veda, name), name
    public = {n for n in dir(veda) if not n.startswith("_")}
    # Besides __all__, only the documented submodules are public (vedart.joblib
    # and pyveda 1.0's module paths once something imported them).
    imported_later = {"joblib", "config", "core", "iter"}
    assert public - set(veda.__all__) - imported_later == {"exceptions", "telemetry"}


def test_every_public_item_is_documented():
    for name in veda.__all__:
        if name == "__version__":
            continue
        obj = getattr(veda, name)
        assert inspect.getdoc(obj), f"vedart.{name} has no docstring"
        if inspect.isclass(obj):
            for attr, member in vars(obj).items():
                if attr.startswith("_") or not callable(member):
                    continue
                assert inspect.getdoc(member), f"vedart.{name}.{attr} has no docstring"
    for cls in (veda.ParallelIterator, veda.Scope, veda.Future, veda.Runtime, veda.ConfigBuilder):
        for attr in dir(cls):
            if attr.startswith("_"):
                continue
            assert inspect.getdoc(getattr(cls, attr)), f"{cls.__name__}.{attr} has no docstring"


def test_extension_classes_are_documented_and_frozen():
    for cls in (_vedart.Runtime, _vedart.Group, _vedart.Task):
        assert cls.__doc__
        assert cls.__module__ == "vedart._vedart"
    runtime = veda.get_runtime()
    with pytest.raises(AttributeError):
        runtime._pool.closed = True  # type: ignore[misc]
    for fn in (_vedart.cancelled, _vedart.in_task, _vedart.thread_name):
        assert fn.__doc__


def test_package_ships_type_information():
    package_dir = os.path.dirname(veda.__file__)
    assert os.path.exists(os.path.join(package_dir, "py.typed"))
    assert os.path.exists(os.path.join(package_dir, "_vedart.pyi"))


def test_private_modules_import_cleanly():
    for module in (
        "_config",
        "_engine",
        "_executors",
        "_future",
        "_par_iter",
        "_runtime",
        "_scope",
        "_stages",
        "_asyncio",
        "_async_stage",
        "_context",
        "_process",
        "_worker",
        "_gpu",
        "_adaptive",
        "_deterministic",
        "_deadline",
        "_trace",
        "_progress",
        "_cf_executor",
        "joblib",
        "telemetry",
        "exceptions",
        "_pyveda",
    ):
        importlib.import_module(f"vedart.{module}")


def test_stub_matches_the_extension():
    pytest.importorskip("mypy")
    result = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "vedart._vedart"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.skipif(shutil.which("true") is None, reason="POSIX only")
def test_gil_is_not_required():
    # The module declares free-threading support explicitly (gil_used = false);
    # on GIL builds this is simply importable.
    assert _vedart.SIGNAL_CHECK_INTERVAL <= 0.1


@pytest.mark.parametrize(
    "module",
    ["_config", "_par_iter", "_scope", "_gpu", "_deterministic", "_cf_executor", "telemetry"],
)
def test_docstring_examples_run(module):
    import doctest

    mod = importlib.import_module(f"vedart.{module}")
    failures, tried = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
    assert tried > 0
    assert failures == 0

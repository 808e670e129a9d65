"""Config validation, init/shutdown lifecycle, pool sizing and stats."""

from __future__ import annotations

import threading
import time

import pytest

import vedart as veda


def test_defaults_resolve_from_the_machine():
    import os

    cfg = veda.Config().resolved()
    assert cfg.max_workers == (os.cpu_count() or 1)
    assert cfg.num_threads == cfg.max_workers
    assert cfg.min_workers == 1
    assert cfg.scheduling_policy is veda.SchedulingPolicy.ADAPTIVE
    assert cfg.chunk_size is None


def test_builder_chains_and_validates():
    cfg = (
        veda.Config.builder()
        .num_threads(4)
        .num_processes(2)
        .scheduling_policy("thread_only")
        .enable_gpu()
        .enable_telemetry(False)
        .deterministic_seed(42)
        .min_workers(2)
        .max_workers(8)
        .chunk_size(128)
        .adaptive_interval_ms(250)
        .build()
    )
    assert cfg == veda.Config(
        num_threads=4,
        num_processes=2,
        scheduling_policy=veda.SchedulingPolicy.THREAD_ONLY,
        enable_gpu=True,
        enable_telemetry=False,
        deterministic_seed=42,
        min_workers=2,
        max_workers=8,
        chunk_size=128,
        adaptive_interval_ms=250,
    )
    with pytest.raises(ValueError, match="chunk_size"):
        veda.Config.builder().chunk_size(0).build()


@pytest.mark.parametrize(
    "field, value",
    [
        ("num_threads", 0),
        ("num_threads", -1),
        ("num_threads", 2.5),
        ("num_threads", True),
        ("num_processes", 0),
        ("scheduling_policy", "fastest"),
        ("scheduling_policy", 3),
        ("enable_gpu", "yes"),
        ("enable_telemetry", 1),
        ("deterministic_seed", -5),
        ("deterministic_seed", "42"),
        ("min_workers", -1),
        ("max_workers", 0),
        ("chunk_size", 0),
        ("chunk_size", 1.0),
        ("adaptive_interval_ms", 0),
        ("adaptive_interval_ms", None),
    ],
)
def test_invalid_values_raise_value_error_naming_the_field(field, value):
    with pytest.raises(ValueError, match=f"^{field}") as info:
        veda.Config(**{field: value})
    assert isinstance(info.value, veda.ConfigError)
    assert info.value.field == field


def test_inconsistent_bounds_name_the_field():
    with pytest.raises(ValueError, match="^min_workers"):
        veda.Config(min_workers=5, max_workers=2)
    with pytest.raises(ValueError, match="^max_workers"):
        veda.Config(num_threads=8, max_workers=2)


def test_policy_accepts_names_and_values():
    assert veda.Config(scheduling_policy="PROCESS_ONLY").scheduling_policy is (
        veda.SchedulingPolicy.PROCESS_ONLY
    )
    assert {p.name for p in veda.SchedulingPolicy} == {
        "ADAPTIVE",
        "THREAD_ONLY",
        "PROCESS_ONLY",
        "ASYNC_ONLY",
        "DETERMINISTIC",
    }


def test_init_twice_raises_and_shutdown_is_idempotent(runtime_config):
    runtime = runtime_config(veda.Config(num_threads=2))
    assert veda.get_runtime() is runtime
    assert runtime.config.num_threads == 2
    with pytest.raises(veda.VedaError, match="already initialized"):
        veda.init(veda.Config(num_threads=3))
    veda.shutdown()
    veda.shutdown()
    assert runtime.closed
    # Use after shutdown starts a fresh runtime lazily.
    assert veda.par_iter(range(5)).sum() == 10
    fresh = veda.get_runtime()
    assert fresh is not runtime and not fresh.closed


def test_init_rejects_non_config():
    with pytest.raises(TypeError):
        veda.init({"num_threads": 2})  # type: ignore[arg-type]


def test_pool_grows_to_demand_and_shrinks_back(runtime_config):
    runtime = runtime_config(veda.Config(num_threads=4, min_workers=1, adaptive_interval_ms=50))
    barrier = threading.Barrier(4, timeout=30)
    sizes = []

    def meet(_):
        barrier.wait()
        sizes.append(runtime.stats().threads)

    veda.par_iter(range(4), chunk_size=1).for_each(meet)
    assert max(sizes) == 4
    stats = runtime.stats()
    assert stats.min_workers == 1 and stats.max_workers == 4
    deadline = time.monotonic() + 30
    while runtime.stats().threads > 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert runtime.stats().threads == 1


def test_stats_and_set_bounds(runtime_config):
    runtime = runtime_config(veda.Config(num_threads=2))
    veda.par_iter(range(100)).map(abs).collect()
    stats = runtime.stats()
    assert stats.jobs_completed > 0
    assert 0 < stats.threads <= 2
    assert stats.to_dict()["max_workers"] == 2
    runtime.set_bounds(0, 3)
    assert runtime.stats().max_workers == 3
    with pytest.raises(ValueError, match="^min_workers"):
        runtime.set_bounds(4, 3)
    assert "running" in repr(runtime)


def test_config_chunk_size_is_used(runtime_config):
    runtime_config(veda.Config(chunk_size=10))
    sizes = veda.par_iter(range(100)).chunk(1).map(len).collect()
    assert sizes == [1] * 100
    # Each worker call sees whole chunks of 10 items.
    seen = veda.par_iter(range(100)).fold(list, lambda acc, x: acc + [x], lambda a, b: a + [b])
    assert len(seen) >= 1


def test_every_policy_has_an_executor(runtime_config):
    import os

    runtime_config(veda.Config(scheduling_policy=veda.SchedulingPolicy.PROCESS_ONLY))
    pids = veda.par_iter(range(4)).map(lambda _: os.getpid()).collect()
    assert os.getpid() not in pids
    assert "PROCESS_ONLY" in veda.par_iter([1]).map(abs).explain().reason
    # An explicit executor still wins over the policy.
    assert (
        veda.par_iter([1, 2], executor="thread").map(lambda _: os.getpid()).collect()
        == [os.getpid()] * 2
    )
    runtime_config(veda.Config(scheduling_policy="async_only"))
    names = veda.par_iter(range(4)).map(lambda _: threading.current_thread().name).collect()
    assert all(name.startswith("veda-blocking-") for name in names)


def test_to_dict_of_config():
    d = veda.Config(num_threads=3).to_dict()
    assert d["num_threads"] == 3 and d["scheduling_policy"] == "ADAPTIVE"

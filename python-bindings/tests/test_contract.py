"""The examples of shared/contract/guarantees.md that concern the thread
executor, par_iter, scope, exceptions, resources and thread safety, as tests."""

from __future__ import annotations

import threading

import pytest

import vedart as veda


def process(x):
    return x + 1


def test_collect_preserves_input_order():
    result = veda.par_iter([1, 2, 3, 4, 5]).map(lambda x: x * 2).collect()
    assert result == [2, 4, 6, 8, 10]
    assert veda.par_iter(range(100)).map(process).collect() == [x + 1 for x in range(100)]


def test_filter_preserves_relative_order():
    data = list(range(1000, 0, -1))
    assert veda.par_iter(data).filter(lambda x: x % 7 == 0).collect() == [
        x for x in data if x % 7 == 0
    ]


def test_scope_wait_all_blocks_until_all_tasks_complete():
    done = []

    def task1():
        done.append(1)
        return "one"

    def task2():
        done.append(2)
        return "two"

    with veda.scope() as s:
        s.spawn(task1)
        s.spawn(task2)
        results = s.wait_all()
    assert results == ["one", "two"]
    assert sorted(done) == [1, 2]


def test_thread_executor_side_effects_are_visible():
    shared_list = []

    def append_item(x):
        shared_list.append(x)

    veda.par_iter(range(100)).map(append_item).collect()
    assert sorted(shared_list) == list(range(100))


def test_exceptions_in_child_tasks_are_propagated():
    def failing_task(x):
        if x == 5:
            raise ValueError("Bad value")
        return x * 2

    with pytest.raises(ValueError, match="Bad value"):
        veda.par_iter(range(10)).map(failing_task).collect()

    with pytest.raises(ValueError, match="Bad value"):
        with veda.scope() as s:
            for i in range(10):
                s.spawn(failing_task, i)


def test_executors_are_created_lazily_and_cleaned_up(runtime_config):
    runtime = runtime_config(veda.Config(num_threads=2, min_workers=0))
    assert runtime.stats().threads == 0  # nothing started before the first use
    assert veda.par_iter(range(10)).map(lambda x: x**2).collect() == [x * x for x in range(10)]
    assert runtime.stats().threads >= 1
    veda.shutdown()
    assert runtime.stats().threads == 0


def test_public_api_is_thread_safe():
    errors = []

    def worker():
        try:
            assert veda.par_iter(range(100)).map(lambda x: x**2).sum() == 328350
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors


def test_deterministic_mode_reproduces_scheduling_and_rng():
    import random

    def random_func(x):
        return (x, random.random())

    with veda.deterministic(seed=42):
        result1 = veda.par_iter(range(100)).map(random_func).collect()
    with veda.deterministic(seed=42):
        result2 = veda.par_iter(range(100)).map(random_func).collect()
    assert result1 == result2
    with veda.deterministic(seed=43):
        assert veda.par_iter(range(100)).map(random_func).collect() != result1


def test_deterministic_policy_and_seed_turn_it_on_globally(runtime_config):
    import random

    runs = []
    for config in (
        veda.Config(scheduling_policy="deterministic"),
        veda.Config(scheduling_policy="deterministic"),
        veda.Config(deterministic_seed=42),
    ):
        runtime_config(config)
        runs.append(veda.par_iter(range(50)).map(lambda _: random.random()).collect())
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]

"""par_iter: stages, terminal operations, ordering, laziness and streaming."""

from __future__ import annotations

import fractions
import itertools
import random
import threading
import time

import pytest

import vedart as veda


def test_map_filter_collect_in_input_order():
    assert veda.par_iter(range(10)).map(lambda x: x * x).filter(lambda x: x % 2).collect() == [
        1,
        9,
        25,
        49,
        81,
    ]


def test_collect_keeps_input_order_when_items_finish_out_of_order():
    def slow_first(x):
        time.sleep(0.002 * (20 - x) if x < 20 else 0)
        return x

    assert veda.par_iter(range(200), chunk_size=1).map(slow_first).collect() == list(range(200))


@pytest.mark.parametrize("chunk_size", [None, 1, 7, 1000])
def test_results_do_not_depend_on_chunk_size(chunk_size):
    data = list(range(5000))
    expected = [x * 3 for x in data if x % 7]
    pipeline = veda.par_iter(data, chunk_size).map(lambda x: x * 3).filter(lambda x: x % 7)
    assert pipeline.collect() == expected


def test_stages_apply_in_pipeline_order():
    assert veda.par_iter(range(5)).map(lambda x: x * 10).enumerate().collect() == [
        (0, 0),
        (1, 10),
        (2, 20),
        (3, 30),
        (4, 40),
    ]
    assert veda.par_iter(range(10)).filter(lambda x: x % 2).take(2).collect() == [1, 3]
    assert veda.par_iter(range(10)).chunk(3).map(sum).collect() == [3, 12, 21, 9]
    assert veda.par_iter(range(10)).take(2).filter(lambda x: x % 2).collect() == [1]
    assert veda.par_iter(range(10)).skip(7).collect() == [7, 8, 9]
    assert veda.par_iter(range(10)).filter(lambda x: x % 2).skip(2).collect() == [5, 7, 9]


def test_flat_map_enumerate_start_zip():
    assert veda.par_iter([1, 2, 3]).flat_map(lambda x: [x] * x).collect() == [1, 2, 2, 3, 3, 3]
    assert veda.par_iter("ab").enumerate(start=5).collect() == [(5, "a"), (6, "b")]
    assert veda.par_iter(range(5)).zip("abc").collect() == [(0, "a"), (1, "b"), (2, "c")]
    other = veda.par_iter(range(100)).map(lambda x: -x)
    assert veda.par_iter(range(3)).zip(other).collect() == [(0, 0), (1, -1), (2, -2)]


def test_sequential_stages_between_parallel_segments():
    result = (
        veda.par_iter(range(20))
        .map(lambda x: x + 1)
        .enumerate()
        .map(lambda pair: pair[0] * pair[1])
        .chunk(4)
        .map(sum)
        .collect()
    )
    values = [i * (i + 1) for i in range(20)]
    assert result == [sum(values[i : i + 4]) for i in range(0, 20, 4)]


def test_take_after_map_only_runs_what_it_needs():
    calls = []
    lock = threading.Lock()

    def record(x):
        with lock:
            calls.append(x)
        return x

    assert veda.par_iter(range(1000)).map(record).take(2).collect() == [0, 1]
    assert sorted(calls) == [0, 1]


def test_take_zero_and_empty_inputs():
    assert veda.par_iter(range(10)).take(0).collect() == []
    assert veda.par_iter([]).map(lambda x: 1 / 0).collect() == []
    assert veda.par_iter(iter([])).sum() == 0
    assert veda.par_iter([]).count() == 0


def test_pipelines_are_lazy_and_reusable():
    calls = []
    pipeline = veda.par_iter([1, 2, 3]).map(lambda x: calls.append(x) or x)
    assert calls == []
    assert pipeline.collect() == [1, 2, 3]
    assert pipeline.collect() == [1, 2, 3]
    assert sorted(calls) == [1, 1, 2, 2, 3, 3]


def test_sum_count_min_max():
    assert veda.par_iter(range(1001)).sum() == 500500
    assert veda.par_iter(range(10)).sum(start=100) == 145
    assert veda.par_iter(["a", "b", "c"]).sum("") == "abc"
    assert veda.par_iter([[1], [2], [3]]).sum([]) == [1, 2, 3]
    assert veda.par_iter([fractions.Fraction(1, 3)] * 3).sum() == 1
    assert veda.par_iter(range(1234)).filter(lambda x: x % 3 == 0).count() == 412
    data = [5, 3, 9, 3, 7]
    assert veda.par_iter(data).min() == 3
    assert veda.par_iter(data).max() == 9
    assert veda.par_iter([]).min() is None
    assert veda.par_iter([]).max(default=-1) == -1
    words = ["bb", "a", "cc", "d"]
    assert veda.par_iter(words).max(key=len) == "bb"  # first of equals
    assert veda.par_iter(words).min(key=len) == "a"


def test_sum_of_custom_type_uses_plus_with_start():
    class Vec:
        def __init__(self, x):
            self.x = x

        def __add__(self, other):
            return Vec(self.x + other.x)

    total = veda.par_iter(range(100)).map(Vec).sum(Vec(1000))
    assert total.x == 1000 + sum(range(100))


def test_reduce_and_fold():
    assert veda.par_iter(range(1, 11)).reduce(lambda a, b: a * b) == 3628800
    assert veda.par_iter([]).reduce(lambda a, b: a + b) is None
    assert veda.par_iter([]).reduce(lambda a, b: a + b, 7) == 7
    assert veda.par_iter(range(5)).reduce(lambda a, b: a + b, 10) == 20
    # A mutable accumulator per chunk (callable identity), merged at the end.
    merged = veda.par_iter(range(1000), chunk_size=10).fold(
        list, lambda acc, x: acc + [x] if x % 100 == 0 else acc, lambda a, b: a + b
    )
    assert merged == list(range(0, 1000, 100))
    assert veda.par_iter(range(100)).fold(0, lambda acc, x: acc + x) == 4950
    assert veda.par_iter([]).fold(list, lambda acc, x: acc) == []


def test_any_all_short_circuit():
    seen = []
    lock = threading.Lock()

    def check(x):
        with lock:
            seen.append(x)
        return x == 3

    assert veda.par_iter(range(1_000_000)).any(check) is True
    assert len(seen) < 100_000
    assert veda.par_iter(range(10)).any(lambda x: x > 100) is False
    assert veda.par_iter(range(10)).all(lambda x: x < 100) is True
    assert veda.par_iter(range(10)).all(lambda x: x < 5) is False
    assert veda.par_iter([0, 0, 1]).any() is True
    assert veda.par_iter([]).all() is True


def test_for_each_and_to_dict():
    seen = []
    lock = threading.Lock()

    def record(x):
        with lock:
            seen.append(x)

    assert veda.par_iter(range(100)).for_each(record) is None
    assert sorted(seen) == list(range(100))
    assert veda.par_iter(["apple", "avocado", "banana"]).to_dict(lambda w: w[0]) == {
        "a": "avocado",
        "b": "banana",
    }
    assert veda.par_iter(range(4)).to_dict(str, lambda x: x * x) == {"0": 0, "1": 1, "2": 4, "3": 9}


def test_generator_input_is_read_lazily_with_bounded_look_ahead():
    pulled = 0

    def numbers():
        nonlocal pulled
        for i in range(10_000_000):
            pulled += 1
            yield i

    stream = iter(veda.par_iter(numbers()).map(lambda x: x + 1))
    first = list(itertools.islice(stream, 1000))
    assert first == list(range(1, 1001))
    stream.close()
    assert pulled < 1_000_000


def test_take_from_an_infinite_generator_terminates():
    assert veda.par_iter(itertools.count()).map(lambda x: x * 2).take(5).collect() == [
        0,
        2,
        4,
        6,
        8,
    ]


def test_streaming_iteration_over_ten_million_items_keeps_memory_flat():
    total = 0
    count = 0
    for x in veda.par_iter(x for x in range(10_000_000)).map(lambda x: x & 1):
        total += x
        count += 1
        if count == 200_000:
            break
    assert total == 100_000


def test_iteration_yields_in_input_order():
    data = list(range(3000))
    random.Random(1).shuffle(data)
    assert list(veda.par_iter(data).map(lambda x: -x)) == [-x for x in data]


def test_workers_are_named_threads_with_persistent_thread_locals(two_threads):
    local = threading.local()
    registered = []
    lock = threading.Lock()

    def work(x):
        if not hasattr(local, "token"):
            local.token = object()
            with lock:
                registered.append(threading.current_thread().name)
        return x

    veda.par_iter(range(20_000), chunk_size=10).map(work).collect()
    # One thread state per pool thread for its whole life: thread-local data
    # survives from chunk to chunk (2,000 chunks here, 2 threads).
    assert 1 <= len(registered) <= 2
    assert all(name.startswith("veda-blocking-") for name in registered)


def test_chunks_run_in_parallel(two_threads):
    barrier = threading.Barrier(2, timeout=30)
    assert veda.par_iter(range(2), chunk_size=1).map(lambda _: barrier.wait()).count() == 2


def test_contextvars_of_the_caller_are_visible_in_workers():
    import contextvars

    var = contextvars.ContextVar("var", default="unset")
    token = var.set("caller value")
    try:
        assert set(veda.par_iter(range(100)).map(lambda _: var.get()).collect()) == {"caller value"}
    finally:
        var.reset(token)


def test_nested_par_iter_ten_levels_deep_with_two_threads(two_threads):
    def nest(depth):
        if depth == 0:
            return 1
        return veda.par_iter(range(2)).map(lambda _: nest(depth - 1)).sum()

    done = []
    thread = threading.Thread(target=lambda: done.append(nest(10)))
    thread.start()
    thread.join(120)
    assert done == [1024]


def test_serial_executor_gives_the_same_results():
    pipeline = (
        veda.par_iter(range(100), executor="serial").map(lambda x: x * 2).filter(lambda x: x % 3)
    )
    assert pipeline.collect() == [x * 2 for x in range(100) if (x * 2) % 3]
    assert threading.current_thread().name == "MainThread"


def test_numpy_arrays_are_sliced():
    np = pytest.importorskip("numpy")
    array = np.arange(10_000)
    assert veda.par_iter(array).map(lambda x: int(x) * 2).sum() == int(array.sum()) * 2


def test_repr_names_the_stages():
    text = repr(veda.par_iter([1, 2]).map(abs).take(1))
    assert text == "par_iter(list[2]).map(abs).take(1)"


def test_items_that_cost_microseconds_or_more_run_on_the_workers():
    names = (
        veda.par_iter(range(600))
        .map(lambda _: time.sleep(0.0002) or threading.current_thread().name)
        .collect()
    )
    assert all(name.startswith("veda-blocking-") for name in names)


def test_a_fixed_chunk_size_keeps_trivial_work_on_the_workers():
    names = (
        veda.par_iter(range(5000), chunk_size=100)
        .map(lambda _: threading.current_thread().name)
        .collect()
    )
    assert all(name.startswith("veda-blocking-") for name in names)


def test_trivial_items_give_the_same_results_whichever_thread_runs_them():
    data = range(300_000)
    assert veda.par_iter(data).map(lambda x: x * 2).collect() == [x * 2 for x in data]
    assert veda.par_iter(data).map(lambda x: x * 2).filter(lambda x: x % 3).sum() == sum(
        x * 2 for x in data if (x * 2) % 3
    )
    names = set(veda.par_iter(data).map(lambda _: threading.current_thread().name).collect())
    assert names <= {threading.current_thread().name} | {f"veda-blocking-{i}" for i in range(64)}


def test_chunk_and_spawn_hooks_wrap_every_unit_of_work():
    from vedart import _context

    seen = []
    lock = threading.Lock()

    def hook(fn, index):
        def wrapped(*args, **kwargs):
            with lock:
                seen.append(index)
            return fn(*args, **kwargs)

        return wrapped

    token_chunk = _context.chunk_hook.set(hook)
    token_spawn = _context.spawn_hook.set(hook)
    try:
        assert veda.par_iter(range(10), chunk_size=3).map(lambda x: x + 1).sum() == 55
        assert sorted(seen) == [0, 1, 2, 3]
        seen.clear()
        with veda.scope() as s:
            for i in range(3):
                s.spawn(abs, -i)
        assert sorted(seen) == [0, 1, 2]
    finally:
        _context.chunk_hook.reset(token_chunk)
        _context.spawn_hook.reset(token_spawn)

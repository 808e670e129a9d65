"""Exceptions: original type and message, traceback, notes, fail-fast, bad input."""

from __future__ import annotations

import concurrent.futures
import sys
import threading
import traceback

import pytest

import vedart as veda


class ParseError(Exception):
    def __init__(self, item, reason):
        super().__init__(f"cannot parse {item!r}: {reason}")
        self.item = item
        self.reason = reason


def failing_task(x):
    if x == 5:
        raise ValueError("Bad value")
    return x * 2


def test_original_type_message_and_attributes_reach_the_caller():
    def parse(x):
        if x == 3:
            raise ParseError(x, "odd one out")
        return x

    with pytest.raises(ParseError) as info:
        veda.par_iter(range(10)).map(parse).collect()
    assert info.value.item == 3
    assert info.value.reason == "odd one out"
    assert str(info.value) == "cannot parse 3: odd one out"


def test_traceback_reaches_the_raising_frame_and_a_note_names_the_worker():
    with pytest.raises(ValueError, match="Bad value") as info:
        veda.par_iter(range(10)).map(failing_task).collect()
    frames = traceback.extract_tb(info.value.__traceback__)
    assert frames[-1].name == "failing_task"
    assert 'raise ValueError("Bad value")' in frames[-1].line
    notes = getattr(info.value, "__notes__", [])
    assert any("veda-blocking-" in note for note in notes)
    if sys.version_info >= (3, 11):
        rendered = "".join(traceback.format_exception(info.value))
        assert "failing_task" in rendered and "veda-blocking-" in rendered


def test_the_users_exception_context_is_kept():
    def wraps(x):
        try:
            {}["missing"]
        except KeyError as exc:
            raise RuntimeError("wrapped") from exc

    with pytest.raises(RuntimeError) as info:
        veda.par_iter([1]).map(wraps).collect()
    assert isinstance(info.value.__cause__, KeyError)


def test_fail_fast_runs_far_fewer_items_than_the_input():
    ran = 0
    lock = threading.Lock()

    def fails_at_five(x):
        nonlocal ran
        with lock:
            ran += 1
        if x == 5:
            raise ValueError("item 5")
        return x

    with pytest.raises(ValueError, match="item 5"):
        veda.par_iter(range(10_000)).map(fails_at_five).collect()
    assert ran < 5_000


def test_the_first_of_simultaneous_failures_is_raised(two_threads):
    barrier = threading.Barrier(2, timeout=30)

    def both_fail(x):
        barrier.wait()
        raise KeyError(x)

    with pytest.raises(KeyError) as info:
        veda.par_iter(range(2), chunk_size=1).map(both_fail).collect()
    assert info.value.args[0] in (0, 1)
    # Failures already recorded when it is raised ride along (best effort for
    # pipelines; scopes wait for every child and always attach them).
    for other in getattr(info.value, "veda_other_errors", []):
        assert isinstance(other, KeyError)


def test_errors_after_a_take_are_not_raised():
    def parse(x):
        if x >= 500:
            raise ValueError(f"malformed {x}")
        return x

    assert veda.par_iter(range(1000)).map(parse).take(3).collect() == [0, 1, 2]
    assert veda.par_iter(range(1000)).filter(lambda x: x % 2).map(parse).take(3).collect() == [
        1,
        3,
        5,
    ]
    stream = iter(veda.par_iter(range(1000)).map(parse))
    assert [next(stream) for _ in range(10)] == list(range(10))
    stream.close()


def test_streaming_raises_when_the_failing_item_is_reached():
    got = []
    with pytest.raises(ValueError, match="Bad value"):
        for x in veda.par_iter(range(10), chunk_size=1).map(failing_task):
            got.append(x)
    assert got == [0, 2, 4, 6, 8]


def test_error_from_the_input_iterator_propagates():
    def source():
        yield 1
        yield 2
        raise OSError("disk on fire")

    with pytest.raises(OSError, match="disk on fire"):
        veda.par_iter(source()).map(lambda x: x).collect()


def test_bad_input_is_rejected_at_once():
    with pytest.raises(TypeError, match="iterable"):
        veda.par_iter(5)
    with pytest.raises(TypeError, match="callable"):
        veda.par_iter([1]).map("x")
    with pytest.raises(TypeError, match="callable"):
        veda.par_iter([1]).filter(None)
    with pytest.raises(ValueError, match="size"):
        veda.par_iter([1]).chunk(0)
    with pytest.raises(ValueError, match="n must be"):
        veda.par_iter([1]).take(-1)
    with pytest.raises(ValueError, match="n must be"):
        veda.par_iter([1]).skip(-1)
    with pytest.raises(TypeError):
        veda.par_iter([1]).take(1.5)
    with pytest.raises(ValueError, match="chunk_size"):
        veda.par_iter([1], chunk_size=0)
    with pytest.raises(ValueError, match="executor"):
        veda.par_iter([1], executor="bogus")
    with pytest.raises(TypeError, match="iterable"):
        veda.par_iter([1]).zip(3)
    with pytest.raises(ValueError, match="concurrency"):
        veda.par_iter([1]).async_map(lambda x: x, concurrency=0)


def test_bad_input_leaves_no_work_running(runtime_config):
    # A fresh runtime, so no straggler of an earlier test moves the counters.
    runtime = runtime_config(veda.Config(num_threads=2))
    before = runtime.stats().jobs_completed
    for bad in (
        lambda: veda.par_iter(5),
        lambda: veda.par_iter([1]).map("x"),
        lambda: veda.par_iter([1]).chunk(0),
        lambda: veda.par_iter([1]).take(-1),
    ):
        with pytest.raises((TypeError, ValueError)):
            bad()
    stats = runtime.stats()
    assert stats.jobs_completed == before
    assert stats.queue_depth == 0


def test_unknown_executor_is_refused_clearly():
    with pytest.raises(ValueError, match="process"):
        veda.par_iter([1], executor="processes")  # type: ignore[arg-type]


def test_exception_hierarchy():
    assert issubclass(veda.ConfigError, veda.VedaError)
    assert issubclass(veda.ConfigError, ValueError)
    assert issubclass(veda.CancelledError, veda.VedaError)
    assert issubclass(veda.CancelledError, concurrent.futures.CancelledError)
    for cls in (veda.RuntimeStateError, veda.ScopeClosedError, veda.ExecutorError):
        assert issubclass(cls, veda.VedaError)

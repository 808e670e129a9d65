"""Progress bars of terminal operations: ``collect(progress=True)`` and friends."""

from __future__ import annotations

import asyncio
import io
import threading
import time

import pytest

import vedart as veda
from vedart import _progress


class FakeBar:
    """Records what a tqdm-like bar is told."""

    instances: list[FakeBar] = []

    def __init__(self, total=None, desc=None, unit=None, leave=None):
        self.total = total
        self.desc = desc
        self.updates: list[tuple[float, int]] = []
        self.closed = False
        self.thread_names: set[str] = set()
        FakeBar.instances.append(self)

    @property
    def n(self):
        return sum(n for _, n in self.updates)

    def update(self, n):
        assert not self.closed
        self.updates.append((time.monotonic(), n))
        self.thread_names.add(threading.current_thread().name)

    def close(self):
        self.closed = True


@pytest.fixture
def fake_tqdm(monkeypatch):
    FakeBar.instances = []
    monkeypatch.setattr(_progress, "_tqdm_class", lambda: FakeBar)
    monkeypatch.setattr(_progress, "REFRESH_SECONDS_NOT_A_TTY", 0.01)
    monkeypatch.setattr(_progress, "REFRESH_SECONDS", 0.01)
    return FakeBar


@pytest.fixture
def no_tqdm(monkeypatch):
    monkeypatch.setattr(_progress, "_tqdm_class", lambda: None)


def slow(x):
    time.sleep(0.001)
    return x


def test_collect_shows_a_tqdm_bar_fed_while_it_runs(fake_tqdm):
    result = veda.par_iter(range(400), chunk_size=10).map(slow).collect(progress=True)
    assert result == list(range(400))
    (bar,) = fake_tqdm.instances
    assert bar.total == 400 and bar.desc == "vedart" and bar.closed
    assert bar.n == 400
    # Fed from the counter by the refresher thread during the run, not only
    # at the end: more than one update, the first before the end.
    assert len(bar.updates) >= 2
    assert "veda-progress" in bar.thread_names


def test_a_string_names_the_bar_and_a_generator_has_no_total(fake_tqdm):
    items = (x for x in range(50))
    assert veda.par_iter(items).map(slow).count(progress="parsing") == 50
    (bar,) = fake_tqdm.instances
    assert bar.desc == "parsing" and bar.total is None and bar.n == 50


def test_every_terminal_operation_takes_progress(fake_tqdm):
    p = veda.par_iter(range(100), chunk_size=10).map(lambda x: x + 1)
    assert p.collect(progress=True) == list(range(1, 101))
    assert p.sum(progress=True) == sum(range(1, 101))
    assert p.count(progress=True) == 100
    assert p.min(progress=True) == 1
    assert p.max(key=lambda x: -x, progress=True) == 1
    assert p.reduce(lambda a, b: a + b, progress=True) == 5050
    assert p.fold(0, lambda a, b: a + b, progress=True) == 5050
    assert p.any(lambda x: x > 99, progress=True)
    assert not p.all(lambda x: x > 50, progress=True)
    seen = []
    p.for_each(seen.append, progress=True)
    assert sorted(seen) == list(range(1, 101))
    assert p.to_dict(lambda x: x, progress=True)[7] == 7
    assert len(fake_tqdm.instances) == 11
    assert all(bar.closed for bar in fake_tqdm.instances)
    # Those that consume everything end at the total.
    for bar in fake_tqdm.instances[:7]:
        assert bar.n == bar.total == 100


def test_operations_without_parallel_work_end_full(fake_tqdm):
    assert veda.par_iter(range(30)).collect(progress=True) == list(range(30))
    (bar,) = fake_tqdm.instances
    assert bar.n == bar.total == 30


def test_take_lowers_the_total(fake_tqdm):
    assert veda.par_iter(range(1000)).map(slow).take(10).collect(progress=True) == list(range(10))
    (bar,) = fake_tqdm.instances
    assert bar.total == 10 and bar.n == 10


def test_a_failed_operation_closes_its_bar(fake_tqdm):
    def bad(x):
        if x == 5:
            raise ValueError(x)
        return x

    with pytest.raises(ValueError):
        veda.par_iter(range(100), chunk_size=1).map(bad).collect(progress=True)
    (bar,) = fake_tqdm.instances
    assert bar.closed and bar.n < 100
    assert not any(t.name == "veda-progress" for t in threading.enumerate())


def test_awaited_operations_show_progress(fake_tqdm):
    async def main():
        return await veda.par_iter(range(200), chunk_size=20).map(slow).sum(progress=True)

    assert asyncio.run(main()) == sum(range(200))
    (bar,) = fake_tqdm.instances
    assert bar.closed and bar.n == 200


def test_progress_in_deterministic_mode(fake_tqdm):
    with veda.deterministic(1):
        assert veda.par_iter(range(100)).map(slow).collect(progress=True) == list(range(100))
    (bar,) = fake_tqdm.instances
    assert bar.n == bar.total == 100


def test_plain_bar_on_stderr_without_tqdm(no_tqdm, capsys):
    veda.par_iter(range(200), chunk_size=10).map(slow).collect(progress=True)
    err = capsys.readouterr().err
    last = err.rstrip("\n").split("\r")[-1]
    assert last.startswith("vedart: 100%|")
    assert "200/200" in last and "items/s" in last
    assert err.endswith("\n")
    veda.par_iter(x for x in range(7)).map(slow).collect(progress="gen")
    last = capsys.readouterr().err.rstrip("\n").split("\r")[-1]
    assert last.startswith("gen: 7 items [")


def test_real_tqdm_draws_on_stderr(capsys):
    pytest.importorskip("tqdm")
    veda.par_iter(range(100), chunk_size=10).map(slow).collect(progress="tq")
    err = capsys.readouterr().err
    assert "tq: 100%" in err and "100/100" in err


def test_plain_bar_formatting():
    out = io.StringIO()
    bar = _progress.PlainBar(10, "x", stream=out)
    bar.update(5)
    assert "x:  50%|" in out.getvalue() and "5/10" in out.getvalue()
    bar.update(5)
    bar.close()  # the last count is drawn already: no second drawing
    assert out.getvalue().count("10/10") == 1
    assert out.getvalue().endswith("]\n")
    assert _progress._format_seconds(3725) == "1:02:05"
    assert _progress._format_seconds(65) == "01:05"


def test_invalid_progress_values_are_refused_before_running():
    ran = []
    with pytest.raises(TypeError, match="progress"):
        veda.par_iter(range(5)).map(ran.append).collect(progress=1)  # type: ignore[arg-type]
    assert ran == []
    assert veda.par_iter(range(5)).collect(progress=None) == list(range(5))
    assert veda.par_iter(range(5)).collect(progress=False) == list(range(5))

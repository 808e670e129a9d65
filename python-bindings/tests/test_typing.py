"""The explicit async terminal operations (``acollect()``, ``asum()``...):
what they return, their arguments and timeouts, beside the context-sensitive
``await pipeline.collect()``; and the typed sample of user code
(``tests/typing/sample.py``, checked by ``mypy --strict`` in ``make lint``)
runs as it says."""

from __future__ import annotations

import asyncio
import os
import runpy

import pytest
from conftest import HANG_TIMEOUT

import vedart as veda

SAMPLE = os.path.join(os.path.dirname(__file__), "typing", "sample.py")


def test_the_typed_sample_runs():
    runpy.run_path(SAMPLE, run_name="__main__")


async def double(x: int) -> int:
    await asyncio.sleep(0)
    return 2 * x


@pytest.mark.timeout(120)
def test_every_terminal_has_an_async_form_with_the_same_result():
    async def main() -> None:
        p = veda.par_iter(range(10)).async_map(double)
        assert await p.acollect() == [2 * x for x in range(10)]
        assert await p.asum() == 90 and await p.asum(10) == 100
        assert await p.acount() == 10
        assert await p.amin() == 0 and await p.amax(key=lambda x: -x) == 0
        assert await veda.par_iter([]).amin(default=-1) == -1
        assert await p.areduce(lambda a, b: a + b) == 90
        assert await p.afold(list, lambda acc, x: acc + [x], lambda a, b: a + b) == list(
            range(0, 20, 2)
        )
        assert await p.aany(lambda x: x == 18) and not await p.aall(lambda x: x > 0)
        seen = []
        assert await p.afor_each(seen.append) is None
        assert sorted(seen) == list(range(0, 20, 2))
        assert await p.ato_dict(lambda x: x // 2) == {x: 2 * x for x in range(10)}
        # The context-sensitive form still works, and agrees.
        assert await p.collect() == await p.acollect()
        assert await p.sum() == await p.asum()

    asyncio.run(main())


@pytest.mark.timeout(120)
def test_async_terminals_check_arguments_and_honour_timeouts():
    async def slow(x: int) -> int:
        await asyncio.sleep(30)
        return x

    async def main() -> None:
        with pytest.raises(ValueError):
            await veda.par_iter(range(3)).acollect(timeout=-1)
        with pytest.raises(TypeError):
            await veda.par_iter(range(3)).areduce("not callable")  # type: ignore[arg-type]
        with pytest.raises(veda.TimeoutError):
            await veda.par_iter(range(3)).async_map(slow).acollect(timeout=0.2)
        # Cancelling the awaiting task cancels the work.
        task = asyncio.ensure_future(veda.par_iter(range(3)).async_map(slow).acollect())
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, HANG_TIMEOUT)

    asyncio.run(main())


def test_async_terminals_are_coroutines_even_without_a_loop_running_yet():
    # Made in sync code, awaited later on a loop: nothing runs before.
    calls = []

    def record(x: int) -> int:
        calls.append(x)
        return x

    pending = veda.par_iter(range(3)).map(record).acollect()
    assert calls == []
    assert asyncio.run(pending) == [0, 1, 2]

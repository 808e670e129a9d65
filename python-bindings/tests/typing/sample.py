"""User code, sync and async, checked with ``mypy --strict`` against the
package's annotations (``make lint``) and run by
``python-bindings/tests/test_typing.py``: the types a user sees are the
types the values have.

``assert_type`` fails the check when an inferred type drifts; each
``type: ignore`` marks a line that must stay an error (``--strict`` warns
about an ignore that is no longer needed, so a type that decays to ``Any``
fails too).
"""

from __future__ import annotations

import asyncio
from typing import Any

from typing_extensions import assert_type

import vedart as veda


def square(x: int) -> int:
    return x * x


def describe(x: int) -> str:
    return f"item {x}"


async def fetch(x: int) -> str:
    await asyncio.sleep(0)
    return f"page {x}"


def sync_code() -> list[int]:
    squares: list[int] = veda.par_iter(range(10)).map(square).collect()
    assert_type(veda.par_iter(range(10)).map(square), veda.ParallelIterator[int])
    assert_type(veda.par_iter(range(10)).map(describe).collect(), list[str])
    assert_type(veda.par_iter(range(10)).map(square).count(), int)
    assert_type(veda.par_iter(range(10)).filter(lambda x: x > 2).any(), bool)
    pairs = veda.par_iter(["a", "b"]).enumerate().collect()
    assert_type(pairs, list[tuple[int, str]])
    # A coroutine function's stage carries what the coroutines return.
    assert_type(veda.par_iter(range(3)).async_map(fetch), veda.ParallelIterator[str])
    assert_type(veda.par_iter(range(3)).map(fetch), veda.ParallelIterator[str])
    wrong: list[str] = veda.par_iter(range(3)).map(square).collect()  # type: ignore[assignment]
    del wrong
    return squares


async def async_code() -> list[str]:
    # The mission's headline form, with true types: the explicit async terminals.
    pages = await veda.par_iter(range(5)).async_map(fetch, concurrency=2).acollect()
    assert_type(pages, list[str])
    lengths = await veda.par_iter(pages).map(len).asum()
    total: int = await veda.par_iter(range(5)).map(square).acount()
    flags = await veda.par_iter(range(5)).aall(lambda x: x >= 0)
    assert_type(flags, bool)
    by_key = await veda.par_iter(pages).ato_dict(len)
    assert_type(by_key, dict[Any, Any])
    assert lengths == sum(len(p) for p in pages) and total == 5 and flags
    del by_key
    # The blocking form is typed as its blocking result, so awaiting it is an error.
    await veda.par_iter(range(5)).async_map(fetch).collect()  # type: ignore[misc]
    async for page in veda.par_iter(range(3)).async_map(fetch):
        assert_type(page, str)
    return pages


def main() -> None:
    assert sync_code() == [x * x for x in range(10)]
    assert asyncio.run(async_code()) == [f"page {x}" for x in range(5)]


if __name__ == "__main__":
    main()

"""How a tree runs its work at once (operations/tree: Budget, both): pure logic, no servers."""

from __future__ import annotations

import asyncio

import pytest

from s3ferry.operations.tree import Budget, both, for_each


def _run(weights: list[int], total: int, workers: int) -> tuple[int, list[int]]:
    """Each item (its weight) held for a moment: the most weight ever out at once, and the start order."""
    budget, out, most, started = Budget(total), 0, 0, []

    async def hold(item: tuple[int, int]) -> None:
        nonlocal out, most
        index, weight = item
        started.append(index)
        out += weight
        most = max(most, out)
        await asyncio.sleep(0.01)
        out -= weight

    async def main() -> None:
        await for_each(list(enumerate(weights)), lambda item: budget.lend(lambda i: i[1], hold, item), workers)

    asyncio.run(main())
    return most, started


def test_never_lends_more_than_the_total() -> None:
    most, started = _run([6, 6, 6, 1, 1, 1], total=10, workers=6)
    assert most <= 10
    assert sorted(started) == list(range(6))


def test_small_items_run_many_at_once() -> None:
    most, _ = _run([1] * 40, total=100, workers=32)
    assert most == 32  # the worker count caps them, not the budget


def test_first_come_first_served() -> None:
    # A large item waiting for room is not overtaken by the small ones behind it (it would starve).
    _, started = _run([6, 6, 1, 1], total=10, workers=4)
    assert started == [0, 1, 2, 3]


def test_both_runs_two_at_once_and_keeps_their_order() -> None:
    async def after(seconds: float, value: str) -> str:
        await asyncio.sleep(seconds)
        return value

    async def main() -> tuple[tuple[str, str], float]:
        loop = asyncio.get_running_loop()
        started = loop.time()
        got = await both(after(0.2, "first"), after(0.2, "second"))
        return got, loop.time() - started

    got, took = asyncio.run(main())
    assert got == ("first", "second")
    assert took < 0.35  # at the same time, not one after the other


def test_both_raises_the_first_error_itself_and_cancels_the_other() -> None:
    cancelled = asyncio.Event()

    async def fails() -> None:
        await asyncio.sleep(0.01)
        raise KeyError("listing")

    async def waits() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async def main() -> None:
        await both(fails(), waits())

    with pytest.raises(KeyError):  # not an ExceptionGroup: callers map it as they map one listing's error
        asyncio.run(main())
    assert cancelled.is_set()

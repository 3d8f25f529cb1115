"""The memory budget a tree lends its files in flight (operations/tree.Budget): pure logic, no servers."""

from __future__ import annotations

import asyncio

from s3ferry.operations.tree import Budget, for_each


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

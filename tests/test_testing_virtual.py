"""resilient_mcp.testing's virtual time on asyncio: idle detection."""

from __future__ import annotations

import asyncio

import anyio
import anyio.lowlevel
import pytest

from resilient_mcp.testing import (
    VirtualTimeEventLoop,
    run_virtual,
    wait_all_tasks_blocked,
)


def test_returns_once_the_others_block_without_moving_time(run):
    """wait_all_tasks_blocked lets the others run until they all block."""
    steps = []

    async def worker(n):
        for i in range(n):
            steps.append((n, i))
            await anyio.lowlevel.checkpoint()
        await anyio.sleep(3600)

    async def scenario():
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker, 3)
            tg.start_soon(worker, 5)
            await wait_all_tasks_blocked()
            seen = len(steps)
            now = anyio.current_time()
            tg.cancel_scope.cancel()
        return seen, now

    assert (8, 0.0) == run(scenario)


def test_two_waiters_wake_together():
    """Two tasks waiting at once both wake when everything else blocks."""
    woken = []

    async def waiter(name):
        await wait_all_tasks_blocked()
        woken.append(name)

    async def scenario():
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter, "a")
            tg.start_soon(waiter, "b")
            await anyio.sleep(1)
        return anyio.current_time()

    assert 1.0 == run_virtual(scenario, backend="asyncio")
    assert ["a", "b"] == sorted(woken)


def test_a_cancelled_waiter_leaves_no_trace():
    """A waiter cancelled before the loop idles is forgotten by the loop."""

    async def scenario():
        with anyio.move_on_after(0):
            await wait_all_tasks_blocked()
        await anyio.sleep(5)  # the clock jumps: no stale waiter stops it
        return anyio.current_time()

    assert 5.0 == run_virtual(scenario, backend="asyncio")


def test_without_a_timer_the_waiter_still_wakes():
    """With no timer pending, an idle loop wakes the waiter at once."""

    async def scenario():
        event = asyncio.Event()
        task = asyncio.get_running_loop().create_task(event.wait())
        await wait_all_tasks_blocked()
        event.set()
        await task
        return asyncio.get_running_loop().time()

    with asyncio.Runner(loop_factory=VirtualTimeEventLoop) as runner:
        assert 0.0 == runner.run(scenario())


@pytest.mark.timeout(10)
def test_a_real_asyncio_loop_falls_back_to_anyio():
    """On an ordinary asyncio loop it waits until the other task blocks."""
    steps = []

    async def worker():
        for i in range(3):
            steps.append(i)
            await anyio.lowlevel.checkpoint()
        await anyio.Event().wait()

    async def scenario():
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker)
            await wait_all_tasks_blocked()
            tg.cancel_scope.cancel()
        return len(steps)

    assert 3 == anyio.run(scenario, backend="asyncio")

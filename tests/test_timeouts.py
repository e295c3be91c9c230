"""The event-loop clock that every policy reads, through public APIs only."""

from __future__ import annotations

import asyncio

import trio
import trio.testing

from resilient_mcp import _timeouts


def test_trio_clock_reads_are_trio_current_time():
    """Both readers give trio's own time, on a clock that moves by hand."""
    clock = trio.testing.MockClock(rate=0)

    async def main():
        now = _timeouts.clock()
        for jump in (0.0, 1.5, 3600.0):
            clock.jump(jump)
            expected = trio.current_time()
            assert _timeouts.current_time() == expected
            assert now() == expected

    trio.run(main, clock=clock)


def test_asyncio_clock_reads_are_the_loops_time():
    """On asyncio both readers are the running loop's own clock."""

    async def main():
        loop = asyncio.get_running_loop()
        now = _timeouts.clock()
        assert now == loop.time
        before = loop.time()
        read = _timeouts.current_time()
        assert before <= read <= loop.time()

    asyncio.run(main())


def test_each_trio_run_reads_its_own_clock():
    """A new run's clock is read, not one left from an earlier run."""
    reads = []

    async def main():
        reads.append((_timeouts.clock()(), trio.current_time()))

    for start in (5.0, 100.0, 7.0):
        clock = trio.testing.MockClock(rate=0)
        clock.jump(start)
        trio.run(main, clock=clock)

    assert [(5.0, 5.0), (100.0, 100.0), (7.0, 7.0)] == reads

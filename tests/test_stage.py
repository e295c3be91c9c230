"""Stages of several policies: two (or more) call policies entered as one."""

from __future__ import annotations

import random

import anyio
import pytest
import trio
import trio.testing

from _scenario import Boom, Script, sleep_then
from resilient_mcp import (
    AdaptiveThrottle,
    BulkheadConfig,
    BulkheadError,
    Outcome,
    PolicyBase,
    RateLimitedError,
    RateLimiterConfig,
    ResilienceError,
    ResiliencePipeline,
    ThrottlingConfig,
)


class NeverDrops(random.Random):
    """A source of randomness whose every draw is 1.0."""

    def random(self) -> float:
        return 1.0


class ClosedError(ResilienceError):
    """A gate refused the call at once."""


class Gate(PolicyBase):
    """
    A call policy that admits, refuses, or makes calls wait, and tells all.

    Every step it sees goes into the shared *log*, so that a test can
    check the order in which the pipeline entered and left the policies.
    """

    def __init__(self, name: str, log: list[tuple[str, ...]]) -> None:
        self.name = name
        self.log = log
        self.closed = False
        self.blocked = False
        self.opened = anyio.Event()
        self.withdrawn: list[Exception] = []

    def enter_nowait(self, now: float) -> tuple[str, float]:
        self.log.append((self.name, "enter_nowait"))
        if self.closed:
            raise ClosedError(self.name)
        if self.blocked:
            raise trio.WouldBlock
        return (self.name, now)

    async def enter(self, now: float) -> tuple[str, float]:
        self.log.append((self.name, "enter"))
        await self.opened.wait()
        return (self.name, now)

    def leave(self, permit, now, elapsed, error):  # noqa: ARG002
        assert self.name == permit[0]
        if error is None:
            kind = "ok"
        elif isinstance(error, Exception):
            kind = type(error).__name__
        else:
            kind = "cancelled"
        self.log.append((self.name, "leave", kind, elapsed))

    def withdraw(self, error: Exception) -> None:
        self.withdrawn.append(error)


def gates(*names: str) -> tuple[list[tuple[str, ...]], list[Gate]]:
    log: list[tuple[str, ...]] = []
    return log, [Gate(name, log) for name in names]


def test_two_policies_enter_outermost_first_and_leave_innermost_first(run):
    """Both admit at once: entered in order, left in reverse, one outcome."""

    async def scenario():
        log, (outer, inner) = gates("outer", "inner")
        pipeline = ResiliencePipeline(call_policies=[outer, inner])

        assert "done" == await pipeline.call(sleep_then, 2)
        with pytest.raises(Boom):
            await pipeline.call(Script(Boom()))

        assert [
            ("outer", "enter_nowait"),
            ("inner", "enter_nowait"),
            ("inner", "leave", "ok", 2.0),
            ("outer", "leave", "ok", 2.0),
            ("outer", "enter_nowait"),
            ("inner", "enter_nowait"),
            ("inner", "leave", "Boom", 0.0),
            ("outer", "leave", "Boom", 0.0),
        ] == log
        outcomes = pipeline.metrics().outcomes
        assert 1 == outcomes[Outcome.SUCCESS]
        assert 1 == outcomes[Outcome.ERROR]

    run(scenario)


async def test_admitted_at_once_costs_no_checkpoint():
    """Two policies that admit at once add no checkpoint of their own."""
    _, (outer, inner) = gates("outer", "inner")
    pipeline = ResiliencePipeline(call_policies=[outer, inner])

    async def instant():
        return "ok"

    with trio.testing.assert_no_checkpoints():
        assert "ok" == await pipeline.call(instant)


async def test_a_rejection_by_the_second_leaves_the_first_with_it(
    autojump_clock,
):
    """The second's rejection: one checkpoint, the first left with it."""
    log, (outer, inner) = gates("outer", "inner")
    inner.closed = True
    pipeline = ResiliencePipeline(call_policies=[outer, inner])
    op = Script("never")

    with (
        trio.testing.assert_checkpoints(),
        pytest.raises(ClosedError, match="inner"),
    ):
        await pipeline.call(op)

    assert [
        ("outer", "enter_nowait"),
        ("inner", "enter_nowait"),
        ("outer", "leave", "ClosedError", 0.0),
    ] == log
    assert 0 == op.calls
    assert [] == outer.withdrawn == inner.withdrawn
    assert 1 == pipeline.metrics().outcomes[Outcome.ERROR]


async def test_cancelled_at_the_second_ones_rejection_withdraws_it(
    autojump_clock,
):
    """Cancelled at the second's rejection: it withdraws, the first sees it."""
    log, (outer, inner) = gates("outer", "inner")
    inner.closed = True
    pipeline = ResiliencePipeline(call_policies=[outer, inner])

    with trio.CancelScope() as scope:
        scope.cancel()
        await pipeline.call(Script("never"))

    assert scope.cancelled_caught
    assert 1 == len(inner.withdrawn)
    assert isinstance(inner.withdrawn[0], ClosedError)
    assert [] == outer.withdrawn
    assert ("outer", "leave", "cancelled", 0.0) == log[-1]
    assert 1 == pipeline.metrics().cancelled_requests


async def test_a_rejection_by_the_first_enters_nothing_else(autojump_clock):
    """The first's rejection: the second is never asked; first withdraws."""
    log, (outer, inner) = gates("outer", "inner")
    outer.closed = True
    pipeline = ResiliencePipeline(call_policies=[outer, inner])

    with pytest.raises(ClosedError, match="outer"):
        await pipeline.call(Script("never"))
    with trio.CancelScope() as scope:
        scope.cancel()
        await pipeline.call(Script("never"))

    assert [("outer", "enter_nowait")] * 2 == log
    assert 1 == len(outer.withdrawn)
    assert [] == inner.withdrawn
    metrics = pipeline.metrics()
    assert 1 == metrics.outcomes[Outcome.ERROR]
    assert 1 == metrics.cancelled_requests


def test_the_second_may_wait_holding_the_first(run):
    """The second waits holding the first; elapsed counts from arrival."""

    async def scenario():
        log, (outer, inner) = gates("outer", "inner")
        inner.blocked = True
        pipeline = ResiliencePipeline(call_policies=[outer, inner])
        results = []

        async def caller():
            results.append(await pipeline.call(sleep_then, 1))

        async with anyio.create_task_group() as group:
            group.start_soon(caller)
            await anyio.sleep(4)
            inner.opened.set()

        assert ["done"] == results
        assert [
            ("outer", "enter_nowait"),
            ("inner", "enter_nowait"),
            ("inner", "enter"),
            ("inner", "leave", "ok", 5.0),
            ("outer", "leave", "ok", 5.0),
        ] == log

    run(scenario)


def test_cancelled_while_the_second_waits_leaves_the_first(run):
    """Cancelled in the second's wait: the first is left cancelled."""

    async def scenario():
        log, (outer, inner) = gates("outer", "inner")
        inner.blocked = True
        pipeline = ResiliencePipeline(call_policies=[outer, inner])

        with anyio.move_on_after(3):
            await pipeline.call(sleep_then, 1)

        assert ("outer", "leave", "cancelled", 0.0) == log[-1]
        assert not any(
            entry[0] == "inner" and entry[1] == "leave" for entry in log
        )
        assert 1 == pipeline.metrics().cancelled_requests

    run(scenario)


def test_the_first_may_wait_then_the_second_enters(run):
    """The first waits in its enter(), then the second is entered."""

    async def scenario():
        log, (outer, inner) = gates("outer", "inner")
        outer.blocked = True
        pipeline = ResiliencePipeline(call_policies=[outer, inner])
        results = []

        async def caller():
            results.append(await pipeline.call(sleep_then, 1))

        async with anyio.create_task_group() as group:
            group.start_soon(caller)
            await anyio.sleep(2)
            outer.opened.set()

        assert ["done"] == results
        assert [
            ("outer", "enter_nowait"),
            ("outer", "enter"),
            ("inner", "enter_nowait"),
            ("inner", "leave", "ok", 3.0),
            ("outer", "leave", "ok", 3.0),
        ] == log

    run(scenario)


async def test_three_policies_a_rejection_by_the_third_leaves_both(
    autojump_clock,
):
    """The third's rejection leaves the two before it, innermost first."""
    log, (a, b, c) = gates("a", "b", "c")
    c.closed = True
    pipeline = ResiliencePipeline(call_policies=[a, b, c])

    with pytest.raises(ClosedError, match="c"):
        await pipeline.call(Script("never"))

    assert [
        ("a", "enter_nowait"),
        ("b", "enter_nowait"),
        ("c", "enter_nowait"),
        ("b", "leave", "ClosedError", 0.0),
        ("a", "leave", "ClosedError", 0.0),
    ] == log


def test_three_policies_the_second_waits_then_the_third_enters(run):
    """Three policies: the second waits, then the third is entered."""

    async def scenario():
        log, (a, b, c) = gates("a", "b", "c")
        b.blocked = True
        pipeline = ResiliencePipeline(call_policies=[a, b, c])

        async with anyio.create_task_group() as group:
            group.start_soon(pipeline.call, sleep_then, 1)
            await anyio.sleep(2)
            b.opened.set()

        assert [
            ("a", "enter_nowait"),
            ("b", "enter_nowait"),
            ("b", "enter"),
            ("c", "enter_nowait"),
            ("c", "leave", "ok", 3.0),
            ("b", "leave", "ok", 3.0),
            ("a", "leave", "ok", 3.0),
        ] == log

    run(scenario)


def test_throttle_and_full_bulkhead_count_each_call_once(run):
    """A full bulkhead's rejection: a request, no accept, one outcome."""

    async def scenario():
        # A draw of 1.0 never drops: the bulkhead decides alone.
        throttle = AdaptiveThrottle(ThrottlingConfig(), rng=NeverDrops())
        pipeline = ResiliencePipeline(
            throttling=throttle,
            bulkhead=BulkheadConfig(
                max_concurrent_requests=1, queue_size=0, request_timeout=None
            ),
        )
        rejected = []

        async def second():
            try:
                await pipeline.call(sleep_then, 1)
            except BulkheadError as exc:
                rejected.append(exc)

        async with anyio.create_task_group() as group:
            group.start_soon(pipeline.call, sleep_then, 5)
            await anyio.sleep(1)
            group.start_soon(second)

        assert 1 == len(rejected)
        metrics = throttle.metrics()
        assert (2, 1) == (metrics.total_requests, metrics.total_accepts)
        outcomes = pipeline.metrics().outcomes
        assert 1 == outcomes[Outcome.SUCCESS]
        assert 1 == outcomes[Outcome.BULKHEAD_FULL]
        assert 0 == pipeline.bulkhead.metrics().active_requests

    run(scenario)


def test_rate_limiter_and_bulkhead_a_rejected_turn_takes_no_slot(run):
    """A rate limiter's rejection: one outcome; the bulkhead never sees it."""

    async def scenario():
        pipeline = ResiliencePipeline(
            rate_limit=RateLimiterConfig(rate=1, period=10.0),
            bulkhead=BulkheadConfig(request_timeout=None),
        )

        await pipeline.call(sleep_then, 1)
        with pytest.raises(RateLimitedError):
            await pipeline.call(sleep_then, 1)

        metrics = pipeline.metrics()
        assert 1 == metrics.outcomes[Outcome.RATE_LIMITED]
        assert 1 == metrics.bulkhead.completed_requests
        assert (1, 1) == (
            metrics.rate_limiter.admitted,
            metrics.rate_limiter.rejected,
        )

    run(scenario)

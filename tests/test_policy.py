"""The policy interface: a policy of our own, composed by the pipeline."""

from __future__ import annotations

import anyio
import pytest
import trio
import trio.testing

from _scenario import Boom, Script, sleep_then
from resilient_mcp import (
    BulkheadConfig,
    CallTimeout,
    CircuitBreakerConfig,
    Outcome,
    PolicyBase,
    ResilienceError,
    ResiliencePipeline,
    RetryConfig,
)


class MaintenanceError(ResilienceError):
    """The service is down for maintenance: calls are refused at once."""


class Maintenance(PolicyBase):
    """
    Refuse calls while a maintenance window is open (docs/pipeline.md).

    It admits or refuses at once, never waits, and counts what it saw.
    """

    def __init__(self, name: str, *, time_limit: float | None = None):
        self.name = name
        self.time_limit = time_limit
        self.closed = False
        self.seen: list[tuple[str, float]] = []
        self.expirations = 0
        self.refused = 0

    def enter_nowait(self, now: float) -> float:
        if self.closed:
            self.refused += 1
            raise MaintenanceError(f"{self.name}: down for maintenance")
        return now

    def leave(self, permit, now, elapsed, error):
        kind = (
            "ok"
            if error is None
            else "failed"
            if isinstance(error, Exception)
            else "cancelled"
        )
        assert now - permit == elapsed
        self.seen.append((kind, elapsed))

    def expired(self, permit):
        self.expirations += 1
        return CallTimeout(self.time_limit, f"maintenance {self.name!r}")


def test_a_policy_of_our_own_sees_every_attempt(run):
    """An attempt policy is entered per attempt and told each outcome."""

    async def scenario():
        policy = Maintenance("svc")
        pipeline = ResiliencePipeline(
            retry=RetryConfig(max_attempts=3, initial_delay=1, jitter=False),
            attempt_policies=[policy],
        )

        assert "ok" == await pipeline.call(
            Script(ConnectionError("reset"), "ok")
        )
        assert "done" == await pipeline.call(sleep_then, 2)

        assert [("failed", 0.0), ("ok", 0.0), ("ok", 2.0)] == policy.seen

    run(scenario)


def test_a_rejection_is_a_checkpoint_and_not_retried(autojump_clock):
    """A refusal is raised after a full checkpoint and ends the call."""

    async def scenario():
        policy = Maintenance("svc")
        policy.closed = True
        pipeline = ResiliencePipeline(
            retry=RetryConfig(max_attempts=3, jitter=False),
            call_policies=[policy],
        )
        op = Script("never")

        with (
            trio.testing.assert_checkpoints(),
            pytest.raises(MaintenanceError),
        ):
            await pipeline.call(op)

        assert 0 == op.calls
        assert [] == policy.seen
        assert 1 == pipeline.metrics().outcomes[Outcome.ERROR]

    trio.run(scenario, clock=autojump_clock)


def test_policies_leave_innermost_first_with_the_same_outcome(run):
    """Call policies are left after the attempt's, in reverse order."""

    async def scenario():
        order = []

        class Named(Maintenance):
            def leave(self, permit, now, elapsed, error):
                order.append(self.name)
                super().leave(permit, now, elapsed, error)

        outer, inner, attempt = Named("a"), Named("b"), Named("c")
        pipeline = ResiliencePipeline(
            bulkhead=BulkheadConfig(name="tools"),
            call_policies=[outer, inner],
            attempt_policies=[attempt],
        )

        with pytest.raises(Boom):
            await pipeline.call(Script(Boom()))

        assert ["c", "b", "a"] == order
        assert [("failed", 0.0)] == outer.seen == inner.seen == attempt.seen

    run(scenario)


def test_a_cancelled_call_is_neither_success_nor_failure(run):
    """Cancellation reaches every policy as a cancellation, then goes on."""

    async def scenario():
        call, attempt = Maintenance("call"), Maintenance("attempt")
        pipeline = ResiliencePipeline(
            call_policies=[call], attempt_policies=[attempt]
        )

        with anyio.move_on_after(3):
            await pipeline.call(sleep_then, 10)

        assert [("cancelled", 3.0)] == call.seen == attempt.seen
        assert 1 == pipeline.metrics().cancelled_requests

    run(scenario)


def test_the_earliest_time_limit_wins_and_names_its_policy(run):
    """A policy's time limit ends the call with that policy's error."""

    async def scenario():
        policy = Maintenance("svc", time_limit=2.0)
        pipeline = ResiliencePipeline(
            circuit_breaker=CircuitBreakerConfig(request_timeout=None),
            timeout=5.0,
            attempt_policies=[policy],
        )

        with pytest.raises(CallTimeout, match="maintenance 'svc'"):
            await pipeline.call(sleep_then, 10)

        assert 2.0 == anyio.current_time()
        assert 1 == policy.expirations
        # The breaker saw the timeout as a failure of the attempt.
        assert 1 == pipeline.metrics().circuit_breaker.total_failures

    run(scenario)


def test_a_call_policy_may_wait(run):
    """A policy whose enter_nowait would block is awaited in enter()."""

    async def scenario():
        class Gate(Maintenance):
            def __init__(self):
                super().__init__("gate")
                self.opened = anyio.Event()

            def enter_nowait(self, now):
                if not self.opened.is_set():
                    raise trio.WouldBlock
                return now

            async def enter(self, now):
                await self.opened.wait()
                return now

        gate = Gate()
        pipeline = ResiliencePipeline(
            bulkhead=BulkheadConfig(name="tools"), call_policies=[gate]
        )
        results = []

        async def caller():
            results.append(await pipeline.call(sleep_then, 1))

        async with anyio.create_task_group() as group:
            group.start_soon(caller)
            await anyio.sleep(4)
            gate.opened.set()

        assert ["done"] == results
        # Waited 4 s, ran 1 s: elapsed is counted from arrival.
        assert [("ok", 5.0)] == gate.seen
        assert 1 == pipeline.bulkhead.metrics().completed_requests

    run(scenario)


def test_a_rejection_after_another_policy_leaves_it(run):
    """A refusal by the second policy releases the first, counted once."""

    async def scenario():
        first, second = Maintenance("first"), Maintenance("second")
        second.closed = True
        pipeline = ResiliencePipeline(
            bulkhead=BulkheadConfig(name="tools"),
            call_policies=[first, second],
        )

        with pytest.raises(MaintenanceError, match="second"):
            await pipeline.call(Script("never"))

        assert [("failed", 0.0)] == first.seen
        assert [] == second.seen
        assert 1 == second.refused
        metrics = pipeline.bulkhead.metrics()
        assert 1 == metrics.completed_requests
        assert 0 == metrics.active_requests

    run(scenario)


class Window(Maintenance):
    """A maintenance window with a known end: it foresees its rejections."""

    def __init__(self, name: str, start: float, until: float) -> None:
        super().__init__(name)
        self.start = start
        self.until = until
        self.withdrawn = 0

    def enter_nowait(self, now: float) -> float:
        self.closed = self.start <= now < self.until
        return super().enter_nowait(now)

    def rejection_at(self, now, when):
        if not self.start <= when < self.until:
            return None
        self.refused += 1
        return MaintenanceError(f"{self.name}: down until {self.until:g}")

    def withdraw(self, error):
        self.refused -= 1
        self.withdrawn += 1


def test_12_a_policy_foresees_and_withdraws_its_rejections(run):
    """A policy's rejection_at ends the call, and withdraw un-counts."""

    async def scenario():
        window = Window("svc", start=0.5, until=10.0)
        pipeline = ResiliencePipeline(
            retry=RetryConfig(max_attempts=3, initial_delay=1, jitter=False),
            circuit_breaker=CircuitBreakerConfig(failure_threshold=5),
            attempt_policies=[window],
        )
        last = ConnectionError("reset")

        async def fail_at_half():
            await anyio.sleep(0.5)
            raise last

        with pytest.raises(MaintenanceError) as info:
            await pipeline.call(fail_at_half)  # the retry would be at 1.5
        assert last is info.value.__cause__
        assert 0.5 == anyio.current_time()
        with anyio.CancelScope() as scope:
            scope.cancel()
            await pipeline.call(Script("ok"))  # refused, then cancelled

        assert (1, 1) == (window.refused, window.withdrawn)
        metrics = pipeline.metrics()
        assert (1, 1) == (metrics.failed_requests, metrics.cancelled_requests)

    run(scenario)

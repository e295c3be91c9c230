"""
The circuit breaker against a small reference model of its state machine.

Hypothesis drives the real breaker through its public async API with
sequences of successes, failures, slow calls and clock jumps, and checks
after every step that the breaker's state and counters match the model's.
Each step runs in its own ``trio.run`` sharing one ``MockClock``, so
virtual time carries over from step to step.
"""

from __future__ import annotations

import functools

import pytest
import trio
import trio.testing

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
)

from _scenario import Boom
from resilient_mcp import (
    CircuitBreaker,
    CircuitBreakerConfig,
    CircuitBreakerError,
    CircuitState,
)


class Model:
    """The breaker as the issue describes it, written as plainly as can be."""

    def __init__(self, config: CircuitBreakerConfig) -> None:
        self.config = config
        self.state = CircuitState.CLOSED
        self.failures: list[float] = []
        self.open_until = 0.0
        self.probe_successes = 0
        self.trips = 0
        self.rejected = 0
        self.total_failures = 0
        self.total_successes = 0

    def observe(self, now: float) -> CircuitState:
        if self.state is CircuitState.OPEN and now >= self.open_until:
            self.state = CircuitState.HALF_OPEN
            self.probe_successes = 0
        return self.state

    def open(self, now: float) -> None:
        self.state = CircuitState.OPEN
        self.open_until = now + self.config.recovery_timeout
        self.failures = []
        self.trips += 1

    def call(self, now: float, *, failed: bool) -> bool:
        """Return whether the call was admitted."""
        if self.observe(now) is CircuitState.OPEN:
            self.rejected += 1
            return False
        if failed:
            self.total_failures += 1
        else:
            self.total_successes += 1
        if self.state is CircuitState.CLOSED:
            if failed:
                self.failures.append(now)
                window = self.config.monitoring_window
                recent = [t for t in self.failures if now - t < window]
                if len(recent) >= self.config.failure_threshold:
                    self.open(now)
        elif failed:
            self.open(now)
        else:
            self.probe_successes += 1
            if self.probe_successes >= self.config.success_threshold:
                self.state = CircuitState.CLOSED
                self.failures = []
        return True


SLOW = 5.0  # seconds a "slow" call takes; the threshold is below it


class BreakerMachine(RuleBasedStateMachine):
    """Random walks over the breaker's inputs, checked against Model."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = trio.testing.MockClock(autojump_threshold=0)

    def run(self, fn, *args):
        return trio.run(fn, *args, clock=self.clock)

    @initialize(
        threshold=st.integers(1, 4),
        recovery=st.sampled_from([1.0, 10.0, 30.0]),
        successes=st.integers(1, 3),
        window=st.sampled_from([5.0, 20.0, 120.0]),
    )
    def setup(self, threshold, recovery, successes, window):
        self.config = CircuitBreakerConfig(
            failure_threshold=threshold,
            recovery_timeout=recovery,
            success_threshold=successes,
            monitoring_window=window,
            request_timeout=None,
            slow_call_duration=SLOW - 1,
        )
        self.breaker = CircuitBreaker(self.config)
        self.model = Model(self.config)

    async def _call(self, duration: float, *, failed: bool) -> bool:
        async def op():
            await trio.sleep(duration)
            if failed:
                raise Boom

        try:
            await self.breaker.call(op)
        except CircuitBreakerError:
            return False
        except Boom:
            pass
        return True

    def _step(self, duration: float, *, failed: bool, slow: bool) -> None:
        start = self.clock.current_time()
        admitted = self.run(
            functools.partial(self._call, duration, failed=failed)
        )
        expected = self.model.call(
            start + (duration if admitted else 0), failed=failed or slow
        )
        assert expected == admitted

    @rule()
    def succeed(self):
        self._step(0, failed=False, slow=False)

    @rule()
    def fail(self):
        self._step(0, failed=True, slow=False)

    @rule()
    def slow_success(self):
        # Only admitted calls take time; the model learns the outcome at
        # the end of the call, like the breaker.
        state = self.model.observe(self.clock.current_time())
        duration = 0 if state is CircuitState.OPEN else SLOW
        self._step(duration, failed=False, slow=True)

    @rule(seconds=st.sampled_from([0.5, 1.0, 4.0, 10.0, 19.5, 30.0, 121.0]))
    def wait(self, seconds):
        self.clock.jump(seconds)

    @invariant()
    def matches_model(self):
        if not hasattr(self, "breaker"):
            return

        async def snapshot():
            return self.breaker.metrics()

        metrics = self.run(snapshot)
        now = self.clock.current_time()
        assert self.model.observe(now) == metrics.state
        assert self.model.trips == metrics.trips
        assert self.model.rejected == metrics.rejected_requests
        assert self.model.total_failures == metrics.total_failures
        assert self.model.total_successes == metrics.total_successes
        if metrics.state is CircuitState.CLOSED:
            window = self.config.monitoring_window
            recent = [t for t in self.model.failures if now - t < window]
            assert len(recent) == metrics.current_failures


TestBreakerStateMachine = BreakerMachine.TestCase
TestBreakerStateMachine.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None
)


@pytest.mark.parametrize("seconds", [0.0, 1e-9])
def test_model_open_until_boundary(seconds):
    """The model and breaker agree at the exact recovery instant."""
    config = CircuitBreakerConfig(failure_threshold=1, recovery_timeout=10)
    model = Model(config)
    model.call(0.0, failed=True)

    assert CircuitState.HALF_OPEN == model.observe(10.0 + seconds)

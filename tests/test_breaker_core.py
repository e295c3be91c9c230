"""The breaker's pure state machine, driven directly (no clock, no loop)."""

from __future__ import annotations

import copy

import attrs

from hypothesis import given, settings
from hypothesis import strategies as st

from resilient_mcp import CircuitBreakerConfig, CircuitState, PermanentError
from resilient_mcp._breaker_core import REJECTED, BreakerCore, Transition


CONFIGS = st.builds(
    CircuitBreakerConfig,
    failure_threshold=st.integers(1, 4),
    recovery_timeout=st.sampled_from([1.0, 5.0]),
    success_threshold=st.integers(1, 3),
    half_open_max_calls=st.integers(1, 3),
    monitoring_window=st.sampled_from([2.0, 10.0]),
)
RATE_CONFIGS = st.builds(
    CircuitBreakerConfig,
    failure_rate_threshold=st.sampled_from([0.25, 0.5, 1.0]),
    minimum_calls=st.integers(1, 5),
    monitoring_window=st.sampled_from([2.0, 10.0]),
    recovery_timeout=st.sampled_from([1.0, 5.0]),
    slow_call_duration=st.sampled_from([None, 0.5]),
)
# One step: (seconds to wait, what happens): a call that succeeds, fails,
# fails with an error that does not count, is cancelled, or is slow.
STEPS = st.lists(
    st.tuples(
        st.sampled_from([0.0, 0.25, 1.0, 3.0]),
        st.sampled_from(["ok", "fail", "ignored", "cancel", "slow"]),
    ),
    max_size=40,
)


def drive(core, steps):
    """Run *steps* through *core*; return the transitions it made."""
    now = 0.0
    events = []
    for wait, what in steps:
        now += wait
        events.append(core.tick(now))
        permit = core.admit(now)
        if permit == REJECTED:
            continue
        if what == "ok":
            events.append(core.on_success(permit, now, 0.0))
        elif what == "slow":
            events.append(core.on_success(permit, now, 1.0))
        elif what == "fail":
            events.append(core.on_failure(permit, now, OSError("down")))
        elif what == "ignored":
            events.append(
                core.on_failure(permit, now, PermanentError(1, "bad"))
            )
        else:
            core.on_cancel(permit)
    return now, [e for e in events if e is not None]


@settings(max_examples=200)
@given(config=st.one_of(CONFIGS, RATE_CONFIGS), steps=STEPS)
def test_every_call_is_counted_once(config, steps):
    """Each admitted or rejected call lands in exactly one counter."""
    core = BreakerCore.new(config)

    drive(core, steps)

    ended = (
        core.successes
        + core.failures
        + core.rejected
        + core.ignored
        + core.cancelled
    )
    assert len(steps) == ended
    assert core.slow <= core.failures


@settings(max_examples=200)
@given(config=st.one_of(CONFIGS, RATE_CONFIGS), steps=STEPS)
def test_transitions_chain_and_each_starts_a_generation(config, steps):
    """Each transition leaves the state the one before entered."""
    core = BreakerCore.new(config)

    _, events = drive(core, steps)

    state = CircuitState.CLOSED
    for event in events:
        assert isinstance(event, Transition)
        assert state == event.old
        assert event.old != event.new
        state = event.new
    assert state == core.state
    assert len(events) == core.generation
    assert sum(e.new is CircuitState.OPEN for e in events) == core.trips


@settings(max_examples=200)
@given(
    config=st.one_of(CONFIGS, RATE_CONFIGS),
    steps=STEPS,
    later=st.sampled_from([0.0, 0.5, 5.0, 50.0]),
)
def test_reading_changes_nothing(config, steps, later):
    """effective_state, retry_after and window_counts only read."""
    core = BreakerCore.new(config)
    now, _ = drive(core, steps)
    before = copy.deepcopy(core)

    core.effective_state(now + later)
    core.retry_after(now + later)
    core.window_counts(now + later)
    core.window_counts(None)

    assert attrs.asdict(before) == attrs.asdict(core)


@settings(max_examples=200)
@given(config=CONFIGS, steps=STEPS)
def test_half_open_admits_at_most_its_probes(config, steps):
    """Probes in flight never exceed half_open_max_calls."""
    core = BreakerCore.new(config)
    now, _ = drive(core, steps)
    now += config.recovery_timeout
    core.tick(now)

    admitted = [core.admit(now) for _ in range(5)]

    if core.state is CircuitState.HALF_OPEN:
        expected = min(5, config.half_open_max_calls)
        assert expected == sum(p != REJECTED for p in admitted)
        assert expected == core.probes
    else:
        assert CircuitState.CLOSED == core.state
        assert REJECTED not in admitted


def test_open_reads_half_open_once_its_time_is_up():
    """An open circuit is effectively half-open after recovery_timeout."""
    core = BreakerCore.new(
        CircuitBreakerConfig(failure_threshold=1, recovery_timeout=10)
    )
    permit = core.admit(0.0)
    opened = core.on_failure(permit, 0.0, OSError())

    assert Transition(CircuitState.CLOSED, CircuitState.OPEN, 0.0) == opened
    assert CircuitState.HALF_OPEN == core.effective_state(10.0)
    assert CircuitState.OPEN == core.state
    assert 5.0 == core.retry_after(5.0)
    assert REJECTED == core.admit(5.0)
    assert core.tick(5.0) is None
    assert Transition(
        CircuitState.OPEN, CircuitState.HALF_OPEN, 10.0
    ) == core.tick(10.0)


def test_a_stale_permit_moves_only_the_totals():
    """A call admitted before a change of state counts, but moves nothing."""
    core = BreakerCore.new(CircuitBreakerConfig(failure_threshold=2))
    stale = core.admit(0.0)
    fresh = core.admit(0.0)
    core.on_failure(fresh, 0.0, OSError())
    core.reset(1.0)

    assert core.on_failure(stale, 2.0, OSError()) is None

    assert 2 == core.failures
    assert 0 == core.cur_failures
    assert CircuitState.CLOSED == core.state


def test_forced_open_stays_open_and_says_no_retry_after():
    """force_open(None) holds the circuit open until reset."""
    core = BreakerCore.new(CircuitBreakerConfig(recovery_timeout=1))
    core.force_open(0.0, None)

    assert core.tick(1000.0) is None
    assert CircuitState.OPEN == core.effective_state(1000.0)
    assert core.retry_after(1000.0) is None
    assert REJECTED == core.admit(1000.0)


def test_rejects_at_foresees_the_open_period_only():
    """Only an attempt within the open period is rejected in advance."""
    core = BreakerCore.new(CircuitBreakerConfig(failure_threshold=1))
    assert not core.rejects_at(0.0)  # closed

    core.on_failure(core.admit(0.0), 0.0, OSError())

    assert core.rejects_at(59.9)
    assert not core.rejects_at(60.0)  # a half-open probe
    assert 1 == core.rejected
    core.force_open(0.0, None)
    assert core.rejects_at(1e9)


def test_withdraw_turns_a_rejection_into_a_cancellation():
    """A rejection the caller never got counts as a cancelled call."""
    core = BreakerCore.new(CircuitBreakerConfig(failure_threshold=1))
    core.on_failure(core.admit(0.0), 0.0, OSError())
    assert REJECTED == core.admit(1.0)

    core.withdraw()

    assert (0, 1) == (core.rejected, core.cancelled)

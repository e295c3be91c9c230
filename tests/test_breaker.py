"""The circuit breaker: states, windows, probes, timeouts, cancellation."""

from __future__ import annotations

import functools
import gc
import logging
import subprocess
import sys
import textwrap

import anyio
import pytest
import trio
import trio.testing

from _scenario import Boom, Script, boom, ok, sleep_then
from resilient_mcp import (
    CallTimeout,
    CircuitBreaker,
    CircuitBreakerConfig,
    CircuitBreakerError,
    CircuitState,
    PermanentError,
)
from resilient_mcp.testing import fail_once


async def fail(breaker: CircuitBreaker, times: int = 1) -> None:
    """Make *times* failing calls through *breaker*."""
    for _ in range(times):
        with pytest.raises(Boom):
            await breaker.call(boom)


def test_opens_after_threshold_and_fails_fast(run):
    """After failure_threshold failures calls fail fast without running."""

    async def scenario():
        breaker = CircuitBreaker(
            CircuitBreakerConfig(failure_threshold=3), name="svc"
        )
        op = Script("never")
        await fail(breaker, 2)
        assert CircuitState.CLOSED == breaker.state

        await fail(breaker, 1)
        with pytest.raises(CircuitBreakerError) as info:
            await breaker.call(op)

        assert CircuitState.OPEN == breaker.state
        assert 0 == op.calls
        assert CircuitState.OPEN == info.value.state
        assert 60.0 == info.value.retry_after
        metrics = breaker.metrics()
        assert 3 == metrics.total_failures
        assert 1 == metrics.rejected_requests
        assert 4 == metrics.total_requests
        assert 1 == metrics.trips

    run(scenario)


def test_half_open_after_exactly_recovery_timeout(run):
    """An open breaker turns half-open exactly recovery_timeout later."""

    async def scenario():
        config = CircuitBreakerConfig(failure_threshold=1, recovery_timeout=30)
        breaker = CircuitBreaker(config)
        await fail_once(breaker)

        await anyio.sleep(29.999)
        assert CircuitState.OPEN == breaker.state
        await anyio.sleep(0.001)

        assert CircuitState.HALF_OPEN == breaker.metrics().state
        assert 30.0 == anyio.current_time()

    run(scenario)


def test_success_threshold_probes_close_the_circuit(run):
    """success_threshold successful probes close a half-open circuit."""

    async def scenario():
        config = CircuitBreakerConfig(
            failure_threshold=1, recovery_timeout=10, success_threshold=3
        )
        breaker = CircuitBreaker(config)
        await fail(breaker)
        await anyio.sleep(10)

        for expected in (1, 2):
            await breaker.call(ok)
            assert CircuitState.HALF_OPEN == breaker.state
            assert expected == breaker.metrics().current_successes
        await breaker.call(ok)

        assert CircuitState.CLOSED == breaker.state
        assert 0 == breaker.metrics().current_successes

    run(scenario)


def test_one_probe_failure_reopens(run):
    """A failing probe re-opens the circuit for a fresh recovery_timeout."""

    async def scenario():
        config = CircuitBreakerConfig(failure_threshold=1, recovery_timeout=10)
        breaker = CircuitBreaker(config)
        await fail(breaker)
        await anyio.sleep(10)
        await breaker.call(ok)

        await fail(breaker)

        assert CircuitState.OPEN == breaker.state
        assert 2 == breaker.metrics().trips
        assert 10.0 == breaker.metrics().opened_at
        await anyio.sleep(9.5)
        assert CircuitState.OPEN == breaker.state
        await anyio.sleep(0.5)
        assert CircuitState.HALF_OPEN == breaker.state

    run(scenario)


async def test_failures_outside_the_window_do_not_count(autojump_clock):
    """Failures older than monitoring_window have left the window."""
    config = CircuitBreakerConfig(failure_threshold=3, monitoring_window=60)
    breaker = CircuitBreaker(config)
    await fail(breaker, 2)  # at t=0

    await trio.sleep(60)
    assert 0 == breaker.metrics().current_failures
    await fail(breaker, 2)  # at t=60: the two at t=0 are gone

    assert CircuitState.CLOSED == breaker.state
    assert 2 == breaker.metrics().current_failures
    await trio.sleep(59)
    await fail(breaker)

    assert CircuitState.OPEN == breaker.state
    assert 119.0 == trio.current_time()


async def test_failures_spread_within_the_window_open(autojump_clock):
    """Failures anywhere inside the window add up."""
    config = CircuitBreakerConfig(failure_threshold=3, monitoring_window=60)
    breaker = CircuitBreaker(config)

    for _ in range(3):
        await fail(breaker)
        await trio.sleep(29)

    assert CircuitState.OPEN == breaker.state
    assert 58.0 == breaker.metrics().opened_at


async def test_fresh_window_after_closing(autojump_clock):
    """Failures from before the circuit opened don't count after it closes."""
    config = CircuitBreakerConfig(
        failure_threshold=3,
        recovery_timeout=5,
        success_threshold=1,
        monitoring_window=120,
    )
    breaker = CircuitBreaker(config)
    await fail(breaker, 3)
    await trio.sleep(5)
    await breaker.call(ok)
    assert CircuitState.CLOSED == breaker.state

    await fail(breaker, 2)

    assert CircuitState.CLOSED == breaker.state
    assert 2 == breaker.metrics().current_failures


async def test_calls_in_flight_across_a_state_change_do_not_move_it(
    autojump_clock,
):
    """A call admitted before the circuit opened can't close or reopen it."""
    config = CircuitBreakerConfig(
        failure_threshold=1, recovery_timeout=5, success_threshold=1
    )
    breaker = CircuitBreaker(config)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(breaker.call, functools.partial(sleep_then, 7))
        await trio.testing.wait_all_tasks_blocked()
        await fail(breaker)  # opens at t=0
        await trio.sleep(6)  # half-open at t=5
        assert CircuitState.HALF_OPEN == breaker.state
    # The slow call, admitted while closed, succeeded at t=7.

    metrics = breaker.metrics()
    assert CircuitState.HALF_OPEN == metrics.state
    assert 1 == metrics.total_successes
    assert 0 == metrics.current_successes


async def test_half_open_limits_concurrent_probes(autojump_clock):
    """Beyond half_open_max_calls, probes fail fast while others run."""
    config = CircuitBreakerConfig(
        failure_threshold=1,
        recovery_timeout=5,
        success_threshold=2,
        half_open_max_calls=2,
    )
    breaker = CircuitBreaker(config)
    await fail(breaker)
    await trio.sleep(5)
    results = []

    async def probe():
        results.append(await breaker.call(functools.partial(sleep_then, 1)))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(probe)
        nursery.start_soon(probe)
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(CircuitBreakerError) as info:
            await breaker.call(ok)
        assert CircuitState.HALF_OPEN == info.value.state

    assert ["done", "done"] == results
    assert CircuitState.CLOSED == breaker.state
    assert 1 == breaker.metrics().rejected_requests


async def test_request_timeout_counts_as_failure(autojump_clock):
    """A call over request_timeout is cancelled and counted as a failure."""
    config = CircuitBreakerConfig(failure_threshold=2, request_timeout=3)
    breaker = CircuitBreaker(config)

    with pytest.raises(TimeoutError) as info:
        await breaker.call(functools.partial(sleep_then, 10))

    assert isinstance(info.value, CallTimeout)
    assert 3.0 == trio.current_time()
    assert 1 == breaker.metrics().total_failures
    with pytest.raises(CallTimeout):
        await breaker.call(functools.partial(sleep_then, 10))
    assert CircuitState.OPEN == breaker.state


async def test_no_timeout_when_request_timeout_is_none(autojump_clock):
    """request_timeout=None lets a call run as long as it takes."""
    breaker = CircuitBreaker(CircuitBreakerConfig(request_timeout=None))

    assert "done" == await breaker.call(functools.partial(sleep_then, 3600))
    assert 3600.0 == trio.current_time()


async def test_slow_calls_count_as_failures(autojump_clock):
    """A success slower than slow_call_duration counts as a failure."""
    config = CircuitBreakerConfig(failure_threshold=2, slow_call_duration=1)
    breaker = CircuitBreaker(config)

    await breaker.call(functools.partial(sleep_then, 1))  # not slow
    assert 0 == breaker.metrics().current_failures
    for _ in range(2):
        assert "done" == await breaker.call(functools.partial(sleep_then, 2))

    metrics = breaker.metrics()
    assert CircuitState.OPEN == metrics.state
    assert 2 == metrics.slow_requests
    assert 2 == metrics.total_failures


async def test_is_failure_decides_what_counts(autojump_clock):
    """Errors rejected by is_failure count as neither failure nor success."""
    config = CircuitBreakerConfig(
        failure_threshold=1, is_failure=lambda exc: not isinstance(exc, Boom)
    )
    breaker = CircuitBreaker(config)

    await fail(breaker, 5)

    metrics = breaker.metrics()
    assert CircuitState.CLOSED == metrics.state
    assert 5 == metrics.ignored_requests
    assert 0 == metrics.total_failures
    assert 0 == metrics.total_successes


async def test_permanent_errors_do_not_count_by_default(autojump_clock):
    """A PermanentError says the request was bad, not the service."""
    breaker = CircuitBreaker(CircuitBreakerConfig(failure_threshold=1))

    with pytest.raises(PermanentError):
        await breaker.call(Script(PermanentError(-32602, "bad")))

    assert CircuitState.CLOSED == breaker.state
    assert 1 == breaker.metrics().ignored_requests


async def test_cancellation_is_never_a_failure(autojump_clock):
    """A cancelled caller counts as neither failure nor success."""
    breaker = CircuitBreaker(CircuitBreakerConfig(failure_threshold=1))

    with trio.move_on_after(1):
        await breaker.call(functools.partial(sleep_then, 5))

    metrics = breaker.metrics()
    assert CircuitState.CLOSED == metrics.state
    assert 1 == metrics.cancelled_requests
    assert 0 == metrics.total_failures
    assert 0 == metrics.total_successes


async def test_cancelled_probe_frees_its_slot(autojump_clock):
    """A probe cancelled while half-open gives its probe slot back."""
    config = CircuitBreakerConfig(
        failure_threshold=1, recovery_timeout=1, half_open_max_calls=1
    )
    breaker = CircuitBreaker(config)
    await fail(breaker)
    await trio.sleep(1)

    with trio.move_on_after(1):
        await breaker.call(functools.partial(sleep_then, 5))
    result = await breaker.call(ok)

    assert "ok" == result
    assert CircuitState.HALF_OPEN == breaker.state


async def test_reset_and_force_open(autojump_clock):
    """force_open() isolates the circuit until reset() closes it."""
    breaker = CircuitBreaker(CircuitBreakerConfig(recovery_timeout=1))

    breaker.force_open()
    await trio.sleep(1000)
    with pytest.raises(CircuitBreakerError) as info:
        await breaker.call(ok)
    assert info.value.retry_after is None
    assert CircuitState.OPEN == breaker.state

    breaker.reset()
    assert "ok" == await breaker.call(ok)
    assert CircuitState.CLOSED == breaker.state


async def test_force_open_for_a_duration(autojump_clock):
    """force_open(duration) keeps the circuit open at least that long."""
    breaker = CircuitBreaker(CircuitBreakerConfig(recovery_timeout=5))

    breaker.force_open(90)
    await trio.sleep(89)
    assert CircuitState.OPEN == breaker.state
    await trio.sleep(1)

    assert CircuitState.HALF_OPEN == breaker.state


async def test_state_listeners_and_log_lines(autojump_clock, caplog):
    """State changes call listeners and log the seed's greppable line."""
    changes = []
    breaker = CircuitBreaker(
        CircuitBreakerConfig(
            failure_threshold=1, recovery_timeout=1, success_threshold=1
        ),
        name="search",
        listeners=[lambda b, old, new: changes.append((b.name, old, new))],
    )

    def broken_listener(*_: object) -> None:
        raise RuntimeError("listener bug")

    breaker.add_listener(broken_listener)
    caplog.set_level(logging.INFO, logger="resilient_mcp")
    await fail(breaker)
    await trio.sleep(1)
    await breaker.call(ok)

    assert [
        ("search", CircuitState.CLOSED, CircuitState.OPEN),
        ("search", CircuitState.OPEN, CircuitState.HALF_OPEN),
        ("search", CircuitState.HALF_OPEN, CircuitState.CLOSED),
    ] == changes
    lines = [
        r.getMessage()
        for r in caplog.records
        if "Circuit breaker state changed" in r.getMessage()
    ]
    assert [
        "Circuit breaker state changed: CLOSED -> OPEN (breaker=search)",
        "Circuit breaker state changed: OPEN -> HALF_OPEN (breaker=search)",
        "Circuit breaker state changed: HALF_OPEN -> CLOSED (breaker=search)",
    ] == lines
    failures = [r for r in caplog.records if r.exc_text]
    assert 1 == len(failures)  # three failures, the first one logged
    assert "listener bug" in failures[0].exc_text
    assert "broken_listener" in failures[0].getMessage()


async def test_rate_mode_needs_minimum_calls(autojump_clock):
    """Rate mode opens at the failure ratio once minimum_calls were made."""
    config = CircuitBreakerConfig(
        failure_rate_threshold=0.5, minimum_calls=4, monitoring_window=10
    )
    breaker = CircuitBreaker(config)

    await fail(breaker, 3)
    assert CircuitState.CLOSED == breaker.state
    assert 1.0 == breaker.metrics().failure_rate
    await breaker.call(ok)

    assert CircuitState.OPEN == breaker.state


async def test_rate_mode_window_slides(autojump_clock):
    """Calls older than the window no longer weigh on the rate."""
    config = CircuitBreakerConfig(
        failure_rate_threshold=0.5,
        minimum_calls=4,
        monitoring_window=10,
        window_buckets=10,
    )
    breaker = CircuitBreaker(config)
    await fail(breaker, 3)  # t=0

    await trio.sleep(10)
    metrics = breaker.metrics()
    assert 0 == metrics.current_calls
    for _ in range(3):
        await breaker.call(ok)
    await fail(breaker)  # 1 of 4 failed

    assert CircuitState.CLOSED == breaker.state
    assert 0.25 == breaker.metrics().failure_rate


async def test_open_rejection_cost_does_not_grow(autojump_clock):
    """Each rejection raises a fresh error; tracebacks don't pile up."""
    breaker = CircuitBreaker(CircuitBreakerConfig(failure_threshold=1))
    await fail(breaker)
    errors = []

    for _ in range(50):
        with pytest.raises(CircuitBreakerError) as info:
            await breaker.call(ok)
        errors.append(info.value)

    assert 50 == len({id(e) for e in errors})
    assert errors[0].__traceback__ is not None
    depth = [len(list(_walk(e.__traceback__))) for e in errors]
    assert depth[0] == depth[-1]


def _walk(tb):
    while tb is not None:
        yield tb
        tb = tb.tb_next


async def test_rejection_is_a_cancel_point(autojump_clock):
    """A cancelled caller gets its cancellation, not the rejection."""
    breaker = CircuitBreaker(CircuitBreakerConfig(failure_threshold=1))
    await fail(breaker)

    for _ in range(3):
        with trio.CancelScope() as scope:
            scope.cancel()
            await breaker.call(ok)
        assert scope.cancelled_caught


async def test_every_rejection_is_a_checkpoint(autojump_clock):
    """Each rejection is a cancel point and a schedule point, as in trio."""
    breaker = CircuitBreaker(CircuitBreakerConfig(failure_threshold=1))
    await fail(breaker)

    for _ in range(3):
        with (
            trio.testing.assert_checkpoints(),
            pytest.raises(CircuitBreakerError),
        ):
            await breaker.call(ok)


def test_repr_shows_live_state():
    """The repr names the breaker and its state."""
    breaker = CircuitBreaker(name="svc")

    assert (
        "<CircuitBreaker 'svc' CLOSED, 0 current failures, 0 trips>"
        == repr(breaker)
    )


async def test_reset_while_closed_clears_the_window(autojump_clock):
    """reset() on a closed circuit forgets the failures counted so far."""
    breaker = CircuitBreaker(CircuitBreakerConfig(failure_threshold=3))
    await fail(breaker, 2)

    breaker.reset()
    await fail(breaker, 2)

    assert CircuitState.CLOSED == breaker.state
    assert 2 == breaker.metrics().current_failures


async def test_trip_extends_an_open_circuit(autojump_clock):
    """trip(now, min_open) keeps an open circuit open at least that long."""
    breaker = CircuitBreaker(CircuitBreakerConfig(recovery_timeout=10))
    breaker.trip(trio.current_time())

    breaker.trip(trio.current_time(), 120)  # e.g. a server's Retry-After
    await trio.sleep(119)

    assert CircuitState.OPEN == breaker.state
    assert 1 == breaker.metrics().trips
    await trio.sleep(1)
    assert CircuitState.HALF_OPEN == breaker.state


async def test_removed_listener_is_not_called(autojump_clock):
    """remove_listener stops the notifications."""
    changes = []

    def listener(breaker, old, new):
        changes.append(new)

    breaker = CircuitBreaker(CircuitBreakerConfig(failure_threshold=1))
    breaker.add_listener(listener)
    breaker.remove_listener(listener)

    await fail(breaker)

    assert [] == changes


def test_metrics_outside_an_event_loop():
    """metrics() works without a running loop, as of the last event."""
    breaker = CircuitBreaker(CircuitBreakerConfig(failure_threshold=2))

    async def failing_twice():
        await fail(breaker, 1)

    trio.run(failing_twice)
    metrics = breaker.metrics()

    assert CircuitState.CLOSED == metrics.state
    assert 1 == metrics.current_failures


async def test_listener_may_extend_the_open_time(autojump_clock):
    """A listener sees a whole OPEN state and may lengthen it (#4)."""

    def hold_open(breaker, old, new):
        if new is CircuitState.OPEN:
            breaker.trip(trio.current_time(), 100)

    breaker = CircuitBreaker(
        CircuitBreakerConfig(failure_threshold=1, recovery_timeout=5),
        listeners=[hold_open],
    )
    await fail(breaker)

    await trio.sleep(99)
    assert CircuitState.OPEN == breaker.state
    await trio.sleep(1)
    assert CircuitState.HALF_OPEN == breaker.state


async def test_rejections_leave_no_garbage_cycles(autojump_clock):
    """A rejected call leaves nothing for the cycle collector."""
    breaker = CircuitBreaker(CircuitBreakerConfig(failure_threshold=1))
    await fail(breaker)
    gc.collect()
    gc.disable()
    try:
        for _ in range(100):
            with pytest.raises(CircuitBreakerError):
                await breaker.call(ok)
        unreachable = gc.collect()
    finally:
        gc.enable()

    assert 0 == unreachable


BREAKER_BYTES_AT_MOST = 1_000  # per breaker in count mode, name included


def test_a_breaker_per_tool_is_small():
    """A count-mode breaker allocates its failure log only when it fails."""
    import tracemalloc  # noqa: PLC0415 (only this test traces)

    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        breakers = [CircuitBreaker(name=f"tool-{i:05d}") for i in range(1000)]
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()

    assert 1000 == len(breakers)
    assert held < 1000 * BREAKER_BYTES_AT_MOST


def test_listeners_can_be_added_and_removed(run):
    """add_listener and remove_listener change who hears of transitions."""

    async def scenario():
        heard = []

        def first(_breaker, old, new):
            heard.append(("first", old, new))

        def second(_breaker, old, new):
            heard.append(("second", old, new))

        breaker = CircuitBreaker(
            CircuitBreakerConfig(failure_threshold=1), listeners=[first]
        )
        breaker.add_listener(second)
        breaker.remove_listener(first)
        await fail(breaker)

        assert [("second", CircuitState.CLOSED, CircuitState.OPEN)] == heard
        with pytest.raises(ValueError, match="not in list"):
            breaker.remove_listener(first)

    run(scenario)


def test_14_no_output_without_logging_config(tmp_path):
    """Without logging configured, nothing is printed (a NullHandler)."""
    script = tmp_path / "quiet.py"
    script.write_text(
        textwrap.dedent(
            """
            import trio
            from resilient_mcp import CircuitBreaker, CircuitBreakerConfig

            def broken(breaker, old, new):
                raise RuntimeError("listener bug")

            async def fail():
                raise RuntimeError("down")

            async def main():
                breaker = CircuitBreaker(
                    CircuitBreakerConfig(failure_threshold=1),
                    listeners=[broken],
                )
                try:
                    await breaker.call(fail)
                except RuntimeError:
                    pass
                breaker.reset()

            trio.run(main)
            print("done")
            """
        )
    )

    done = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert ("done\n", "") == (done.stdout, done.stderr)

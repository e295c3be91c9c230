"""The retry policy: backoff timing, what is retried, budgets, cancellation."""

from __future__ import annotations

import functools
import logging
import random

import anyio
import pytest
import trio
import trio.testing

from _scenario import Boom, ConnectionLost, Script, sleep_then
from resilient_mcp import (
    BulkheadError,
    CallTimeout,
    CircuitBreakerError,
    CircuitState,
    ConfigurationError,
    PermanentError,
    RetryConfig,
    RetryManager,
    TemporaryError,
)
from resilient_mcp.testing import set_testing


def exact(**kwargs) -> RetryManager:
    """A retry manager without jitter, for exact virtual times."""
    kwargs.setdefault("jitter", False)
    return RetryManager(RetryConfig(**kwargs))


def test_retries_with_exponential_backoff(run):
    """Retries wait initial_delay * factor**n, in virtual time."""

    async def scenario():
        retry = exact(max_attempts=4, initial_delay=1, backoff_factor=2)
        op = Script(TimeoutError(), TimeoutError(), TimeoutError(), "ok")

        result = await retry.call(op)

        assert "ok" == result
        assert [0.0, 1.0, 3.0, 7.0] == op.times
        metrics = retry.metrics()
        assert 1 == metrics.successful_calls
        assert 3 == metrics.total_retries
        assert 4 == metrics.total_attempts
        assert 1 == metrics.retried_calls

    run(scenario)


def test_exhausted_attempts_reraise_the_last_error_unchanged(run):
    """When attempts run out the last real error propagates, with a note."""

    async def scenario():
        retry = exact(max_attempts=3, initial_delay=0.5)
        last = ConnectionLost("connection reset, third time")
        op = Script(ConnectionLost("first"), ConnectionLost("second"), last)

        with pytest.raises(ConnectionLost) as info:
            await retry.call(op)

        assert last is info.value
        assert [
            "resilient_mcp: gave up after 3 attempts (attempts exhausted)"
        ] == info.value.__notes__
        assert 3 == op.calls
        assert 1.5 == anyio.current_time()
        assert 1 == retry.metrics().exhausted_calls
        assert 1 == retry.metrics().failed_calls

    run(scenario)


def test_non_retryable_errors_propagate_at_once(run):
    """An error that matches no retryable fragment is raised at once."""

    async def scenario():
        retry = exact()
        error = Boom("nothing to see")
        op = Script(error)

        with pytest.raises(Boom) as info:
            await retry.call(op)

        assert error is info.value
        assert not hasattr(info.value, "__notes__")
        assert 1 == op.calls
        assert 0.0 == anyio.current_time()
        assert 1 == retry.metrics().non_retryable_failures

    run(scenario)


@pytest.mark.parametrize(
    ("error", "retried"),
    [
        (TimeoutError(), True),  # type name
        (ConnectionLost("x"), True),  # type name contains "connection"
        (OSError("Connection refused"), True),  # message
        (RuntimeError("upstream TIMEOUT"), True),  # case-insensitive
        (RuntimeError("bad request"), False),
        (TemporaryError("anything"), True),  # always
        (PermanentError("E1", "timeout connection"), False),  # never
        (CircuitBreakerError("timeout", CircuitState.OPEN), False),
        (BulkheadError("connection-pool"), False),
        (CallTimeout(1, "pipeline"), True),
        # Issue 12: by type first.  Every timeout and connection error,
        # subclasses included, whatever the message ...
        (BrokenPipeError(), True),
        (ConnectionResetError("peer said bye"), True),
        (TimeoutError("slow"), True),
        # ... and never a programming error, whatever the message.
        (KeyError("timeout"), False),
        (ValueError("invalid connection string"), False),
        (TypeError("connection() missing 1 argument"), False),
        (AttributeError("'NoneType' has no attribute 'timeout'"), False),
        (AssertionError("connection"), False),
        (NameError("timeout"), False),
        (IndexError("connection index"), False),
        (ZeroDivisionError("timeout"), False),
        (NotImplementedError("timeout"), False),
        (ConfigurationError("bad timeout"), False),
    ],
)
def test_what_is_retryable_by_default(error, retried):
    """Fragments match message or type name; our own errors have rules."""
    assert retried == RetryManager().is_retryable(error)


def test_12_mcp_transport_errors_are_retried():
    """The MCP adapter's transport errors are retried, whatever they say."""
    from resilient_mcp import (  # noqa: PLC0415 (loads the MCP SDK)
        InvalidResponseError,
        NotSentError,
        RequestTimeoutError,
        ServerError,
        SessionLostError,
    )

    retry = RetryManager()

    assert all(
        retry.is_retryable(error)
        for error in (
            NotSentError("no session", reason="backoff"),
            SessionLostError("MCP session lost: bad value"),
            RequestTimeoutError("MCP request timed out"),
            ServerError("503", code=-32603, status_code=503),
            InvalidResponseError("invalid result: key missing"),
        )
    )


def test_cancellation_is_never_retryable():
    """BaseExceptions such as cancellation are never retried."""
    retry = RetryManager()

    assert not retry.is_retryable(trio.Cancelled._create())
    assert not retry.is_retryable(KeyboardInterrupt())


def test_is_retryable_predicate_overrides_fragments():
    """A configured predicate decides, except for Temporary/PermanentError."""
    retry = RetryManager(
        RetryConfig(is_retryable=lambda exc: isinstance(exc, Boom))
    )

    assert retry.is_retryable(Boom())
    assert not retry.is_retryable(TimeoutError())
    assert retry.is_retryable(TemporaryError("x"))
    assert not retry.is_retryable(PermanentError(1, "x"))


async def test_jitter_varies_delays_within_ten_percent(autojump_clock):
    """With jitter the waits stay within +-10 % of the backoff."""
    retry = RetryManager(
        RetryConfig(max_attempts=4, jitter=True), rng=random.Random(3)
    )
    op = Script(TimeoutError(), TimeoutError(), TimeoutError(), "ok")

    await retry.call(op)

    waits = [b - a for a, b in zip(op.times, op.times[1:], strict=False)]
    for wait, base in zip(waits, [1, 2, 4], strict=True):
        assert base * 0.9 <= wait <= base * 1.1
    assert waits != [1, 2, 4]


async def test_max_elapsed_stops_waits_that_would_overrun(autojump_clock):
    """No wait starts that would end past max_elapsed."""
    retry = exact(
        max_attempts=10, initial_delay=1, backoff_factor=2, max_elapsed=5
    )
    op = Script(TimeoutError())

    with pytest.raises(TimeoutError) as info:
        await retry.call(op)

    # Attempts at 0, 1, 3; the next wait (4 s) would end at 7 > 5.
    assert [0.0, 1.0, 3.0] == op.times
    assert 3.0 == trio.current_time()
    assert "max_elapsed of 5s would be exceeded" in info.value.__notes__[0]
    assert 1 == retry.metrics().budget_exhausted_calls


async def test_retries_respect_the_callers_deadline(autojump_clock):
    """A wait that would outlive the caller's deadline is not started."""
    retry = exact(max_attempts=10, initial_delay=2, backoff_factor=2)
    op = Script(TimeoutError())

    with trio.fail_after(5), pytest.raises(TimeoutError) as info:
        await retry.call(op)

    assert [0.0, 2.0] == op.times
    assert 2.0 == trio.current_time()
    assert "caller's deadline" in info.value.__notes__[0]


async def test_cancelled_while_waiting_is_not_a_failure(autojump_clock):
    """Cancelling a caller mid-backoff ends the call, retrying nothing."""
    retry = exact(max_attempts=5, initial_delay=10)
    op = Script(TimeoutError())

    async with trio.open_nursery() as nursery:

        async def cancel_later():
            await trio.sleep(5)
            nursery.cancel_scope.cancel()

        nursery.start_soon(cancel_later)
        await retry.call(op)

    assert nursery.cancel_scope.cancelled_caught
    assert 1 == op.calls
    assert 5.0 == trio.current_time()
    metrics = retry.metrics()
    assert 1 == metrics.cancelled_calls
    assert 0 == metrics.failed_calls
    assert 1 == metrics.total_calls


async def test_cancelled_attempt_is_not_retried(autojump_clock):
    """An attempt cancelled from outside is not retried."""
    retry = exact(max_attempts=5)

    with trio.move_on_after(1):
        await retry.call(functools.partial(sleep_then, 3))

    assert 1 == retry.metrics().cancelled_calls
    assert 0 == retry.metrics().total_retries


async def test_retry_after_hint_is_honoured(autojump_clock):
    """A retry_after lengthens the wait, past max_delay, up to the cap."""
    retry = exact(
        max_attempts=2, initial_delay=1, max_delay=2, max_retry_after=7
    )
    op = Script(TemporaryError("429", retry_after=7), "ok")

    assert "ok" == await retry.call(op)
    assert [0.0, 7.0] == op.times


async def test_12_retry_after_over_the_cap_ends_the_retries(autojump_clock):
    """A Retry-After over max_retry_after ends the retries at once."""
    retry = exact(max_attempts=5, initial_delay=1, max_delay=30)
    hour = TemporaryError("429", retry_after=3600)
    op = Script(hour, "ok")

    with pytest.raises(TemporaryError) as info:
        await retry.call(op)

    assert hour is info.value
    assert 0.0 == trio.current_time()
    assert 1 == op.calls
    note = (
        "resilient_mcp: gave up after 1 attempt (the server asked to wait "
        "3600s, more than max_retry_after (30s))"
    )
    assert [note] == hour.__notes__
    metrics = retry.metrics()
    assert (1, 1, 0) == (
        metrics.failed_calls,
        metrics.budget_exhausted_calls,
        metrics.total_retries,
    )


async def test_12_max_retry_after_none_honours_any_hint(autojump_clock):
    """max_retry_after=None waits for whatever the server asked."""
    retry = exact(max_attempts=2, max_retry_after=None)
    op = Script(TemporaryError("429", retry_after=3600), "ok")

    assert "ok" == await retry.call(op)
    assert [0.0, 3600.0] == op.times


async def test_retry_logs_the_seeds_line(autojump_clock, caplog):
    """Each retry logs "Retrying in <delay>" with the attempt and error."""
    caplog.set_level(logging.INFO, logger="resilient_mcp")
    retry = RetryManager(
        RetryConfig(max_attempts=3, jitter=False), name="search"
    )

    await retry.call(Script(TimeoutError("slow"), TimeoutError("slow"), 1))

    lines = [r.getMessage() for r in caplog.records]
    assert [
        "search: attempt 1/3 failed (TimeoutError: slow); Retrying in 1.000s",
        "search: attempt 2/3 failed (TimeoutError: slow); Retrying in 2.000s",
    ] == lines


async def test_set_testing_removes_waits(autojump_clock):
    """With set_testing(), retries happen at once with the same attempts."""
    set_testing(True)
    retry = RetryManager(RetryConfig(max_attempts=3))
    op = Script(TimeoutError())

    with pytest.raises(TimeoutError):
        await retry.call(op)

    assert [0.0, 0.0, 0.0] == op.times


async def test_success_path_makes_no_retry_state(autojump_clock):
    """A first-attempt success is just counted."""
    retry = RetryManager()

    assert 5 == await retry.call(Script(5))
    assert 1 == retry.metrics().successful_calls
    assert 0 == retry.metrics().total_retries


async def test_final_error_has_no_misleading_context(autojump_clock):
    """Errors of later attempts are not chained to the first as context."""
    retry = exact(max_attempts=2)
    first, second = TimeoutError("first"), TimeoutError("second")

    with pytest.raises(TimeoutError) as info:
        await retry.call(Script(first, second))

    assert second is info.value
    assert info.value.__context__ is None

"""The exception tree and the seed's error triage."""

from __future__ import annotations

import pytest

from resilient_mcp import (
    BulkheadError,
    CallTimeout,
    CircuitBreakerError,
    CircuitState,
    PermanentError,
    RecoveryAction,
    ResilienceError,
    TemporaryError,
    classify_error,
)


@pytest.mark.parametrize(
    ("exc", "action"),
    [
        (TemporaryError("flaky"), RecoveryAction.RETRY_WITH_BACKOFF),
        (
            CircuitBreakerError("svc", CircuitState.OPEN, 3.0),
            RecoveryAction.FAIL_FAST,
        ),
        (BulkheadError("tools"), RecoveryAction.QUEUE_OR_REJECT),
        (PermanentError("E42", "bad"), RecoveryAction.LOG_AND_FAIL),
        (ValueError("other"), RecoveryAction.RETRY_LIMITED),
        (CallTimeout(1.0, "x"), RecoveryAction.RETRY_LIMITED),
    ],
)
def test_classify_error(exc, action):
    """classify_error maps each error kind to the seed's recovery action."""
    assert action == classify_error(exc)


def test_every_error_is_a_resilience_error():
    """All our errors share one root."""
    for exc in (
        TemporaryError("x"),
        PermanentError(1, "x"),
        CircuitBreakerError("b", CircuitState.OPEN),
        BulkheadError("b"),
        CallTimeout(1, "x"),
    ):
        assert isinstance(exc, ResilienceError)


def test_call_timeout_is_a_timeout_error():
    """Except TimeoutError catches our timeouts."""
    with pytest.raises(TimeoutError, match=r"timed out after 2\.5s"):
        raise CallTimeout(2.5, "bulkhead 'tools'")


def test_error_fields_and_messages():
    """Errors keep structured fields and build a readable message."""
    cause = OSError("reset")
    temporary = TemporaryError("lost", cause, retry_after=2.0)
    breaker = CircuitBreakerError("svc", CircuitState.OPEN, 12.5)
    bulkhead = BulkheadError("tools", queue_full=True)
    permanent = PermanentError(-32602, "Invalid params")

    assert cause is temporary.cause
    assert cause is temporary.__cause__
    assert 2.0 == temporary.retry_after
    assert CircuitState.OPEN == breaker.state
    assert "retry after 12.500s" in str(breaker)
    assert "tools" == bulkhead.resource_name
    assert bulkhead.queue_full is True
    assert "queue full" in str(bulkhead)
    assert -32602 == permanent.code
    assert "[-32602] Invalid params" == str(permanent)


@pytest.mark.parametrize("retry_after", [None, 0.25])
def test_circuit_breaker_error_formats_lazily_and_pickles(retry_after):
    """The message is built on demand, and the error survives pickling."""
    import pickle  # noqa: PLC0415

    error = CircuitBreakerError("svc", CircuitState.HALF_OPEN, retry_after)
    when = "" if retry_after is None else "; retry after 0.250s"
    expected = f"Circuit breaker 'svc' is HALF_OPEN: call rejected{when}"
    assert expected == str(error)
    copy = pickle.loads(pickle.dumps(error))  # noqa: S301 (our own bytes)
    assert (copy.name, copy.state, copy.retry_after) == (
        "svc",
        CircuitState.HALF_OPEN,
        retry_after,
    )
    assert expected == str(copy)


def test_circuit_breaker_error_without_retry_after():
    """Built with two arguments, it knows no time to retry after."""
    error = CircuitBreakerError("svc", CircuitState.OPEN)

    assert (error.name, error.state, error.retry_after) == (
        "svc",
        CircuitState.OPEN,
        None,
    )
    assert "Circuit breaker 'svc' is OPEN: call rejected" == str(error)


def _errors_built_with_keywords():
    """One instance of every error class we export, built by keyword."""
    import resilient_mcp  # noqa: PLC0415

    return [
        TemporaryError(message="flaky", retry_after=2.0),
        PermanentError(code=-32602, message="bad arguments"),
        CircuitBreakerError(name="svc"),
        CircuitBreakerError(
            name="svc", state=CircuitState.HALF_OPEN, retry_after=None
        ),
        BulkheadError(resource_name="tools", queue_full=False),
        CallTimeout(timeout=1.5, where="bulkhead 'tools'"),
        resilient_mcp.RateLimitedError(name="api", retry_after=0.25),
        resilient_mcp.ConfigurationError("RetryConfig.attempts must be > 0"),
        resilient_mcp.HlogFormatError(path="x.hlog", line=3, reason="bad"),
        resilient_mcp.NotSentError(message="no session", reason="closed"),
        resilient_mcp.ServerError(message="boom", code=-32603),
        resilient_mcp.SessionLostError("lost"),
        resilient_mcp.RequestTimeoutError("slow"),
        resilient_mcp.InvalidResponseError("garbled"),
        resilient_mcp.SessionClosedError("closed"),
        resilient_mcp.AuthenticationError(
            "HTTP 401: refused", status_code=401, oauth_error="invalid_grant"
        ),
    ]


@pytest.mark.parametrize(
    "error", _errors_built_with_keywords(), ids=lambda e: type(e).__name__
)
def test_every_error_formats_and_pickles(error):
    """An error of ours has a readable str() and survives pickling whole."""
    import pickle  # noqa: PLC0415

    text = str(error)
    copy = pickle.loads(pickle.dumps(error))  # noqa: S301 (our own bytes)

    assert text
    assert type(error) is type(copy)
    assert text == str(copy)
    assert vars(error) == vars(copy)


def test_circuit_breaker_error_by_name_alone():
    """CircuitBreakerError("svc") formats, as any exception would."""
    error = CircuitBreakerError("svc")

    assert "Circuit breaker 'svc' is OPEN: call rejected" == str(error)
    assert error.state is None
    assert error.retry_after is None

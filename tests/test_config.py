"""Configuration: the seed's defaults, and clear errors for bad values."""

from __future__ import annotations

from datetime import timedelta

import attrs
import pytest

from resilient_mcp import (
    BulkheadConfig,
    CircuitBreakerConfig,
    ConfigurationError,
    RetryConfig,
)


def test_circuit_breaker_defaults_are_the_seeds():
    """CircuitBreakerConfig() carries the seed design's values."""
    config = CircuitBreakerConfig()

    assert 5 == config.failure_threshold
    assert 60.0 == config.recovery_timeout
    assert 3 == config.success_threshold
    assert 30.0 == config.request_timeout
    assert 120.0 == config.monitoring_window
    assert 3 == config.half_open_max_calls
    assert config.failure_rate_threshold is None


def test_half_open_max_calls_follows_success_threshold():
    """half_open_max_calls defaults to success_threshold."""
    assert 7 == CircuitBreakerConfig(success_threshold=7).half_open_max_calls


def test_retry_defaults_are_the_seeds():
    """RetryConfig() carries the seed design's values."""
    config = RetryConfig()

    assert 3 == config.max_attempts
    assert 1.0 == config.initial_delay
    assert 30.0 == config.max_delay
    assert 2.0 == config.backoff_factor
    assert config.jitter is True
    assert ("timeout", "connection") == config.retryable_errors
    assert config.is_retryable is None
    assert config.max_elapsed is None


def test_bulkhead_defaults_are_the_seeds():
    """BulkheadConfig() carries the seed design's values."""
    config = BulkheadConfig()

    assert "default" == config.name
    assert 10 == config.max_concurrent_requests
    assert 100 == config.queue_size
    assert 30.0 == config.request_timeout


def test_configs_are_frozen():
    """Configs cannot be changed in place; attrs.evolve makes a new one."""
    config = RetryConfig()

    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        config.max_attempts = 9  # type: ignore[misc]

    assert 9 == attrs.evolve(config, max_attempts=9).max_attempts


def test_timedelta_is_converted_to_seconds():
    """Durations may be given as timedelta and are stored as float seconds."""
    config = CircuitBreakerConfig(recovery_timeout=timedelta(minutes=2))

    assert 120.0 == config.recovery_timeout
    assert isinstance(config.recovery_timeout, float)


def test_retryable_errors_are_lowercased():
    """Retryable fragments are matched case-insensitively."""
    config = RetryConfig(retryable_errors=["Timeout", "RESET"])

    assert ("timeout", "reset") == config.retryable_errors


@pytest.mark.parametrize(
    ("factory", "field", "value", "rule"),
    [
        (CircuitBreakerConfig, "failure_threshold", 0, ">= 1"),
        (CircuitBreakerConfig, "failure_threshold", -3, ">= 1"),
        (CircuitBreakerConfig, "failure_threshold", 2.5, "integer"),
        (CircuitBreakerConfig, "failure_threshold", True, "integer"),
        (CircuitBreakerConfig, "success_threshold", 0, ">= 1"),
        (CircuitBreakerConfig, "recovery_timeout", 0, "> 0"),
        (CircuitBreakerConfig, "recovery_timeout", -1, "> 0"),
        (CircuitBreakerConfig, "recovery_timeout", float("nan"), "> 0"),
        (CircuitBreakerConfig, "recovery_timeout", "60", "> 0"),
        (CircuitBreakerConfig, "request_timeout", 0, "> 0 or None"),
        (CircuitBreakerConfig, "request_timeout", float("inf"), "or None"),
        (CircuitBreakerConfig, "monitoring_window", 0, "> 0"),
        (CircuitBreakerConfig, "failure_rate_threshold", 0, "(0, 1]"),
        (CircuitBreakerConfig, "failure_rate_threshold", 1.5, "(0, 1]"),
        (CircuitBreakerConfig, "minimum_calls", 0, ">= 1"),
        (CircuitBreakerConfig, "window_buckets", 0, ">= 1"),
        (CircuitBreakerConfig, "half_open_max_calls", 0, ">= 1"),
        (CircuitBreakerConfig, "slow_call_duration", -1, "> 0 or None"),
        (CircuitBreakerConfig, "is_failure", 3, "callable"),
        (RetryConfig, "max_attempts", 0, ">= 1"),
        (RetryConfig, "initial_delay", -0.5, ">= 0"),
        (RetryConfig, "backoff_factor", 0.5, ">= 1"),
        (RetryConfig, "jitter", "sometimes", "'full'"),
        (RetryConfig, "retryable_errors", "timeout", "tuple"),
        (RetryConfig, "retryable_errors", ("",), "non-empty"),
        (RetryConfig, "is_retryable", "yes", "callable"),
        (RetryConfig, "max_elapsed", 0, "> 0 or None"),
        (BulkheadConfig, "max_concurrent_requests", 0, ">= 1"),
        (BulkheadConfig, "queue_size", -1, ">= 0"),
        (BulkheadConfig, "request_timeout", -5, "> 0 or None"),
        (BulkheadConfig, "name", "", "non-empty"),
    ],
)
def test_invalid_values_fail_at_construction(factory, field, value, rule):
    """A bad value raises ValueError naming the class, field and range."""
    with pytest.raises(ValueError) as info:
        factory(**{field: value})

    message = str(info.value)
    assert isinstance(info.value, ConfigurationError)
    assert f"{factory.__name__}.{field}" in message
    assert rule in message
    assert repr(value) in message


def test_max_delay_below_initial_delay_is_rejected():
    """max_delay must be at least initial_delay, and the error says so."""
    with pytest.raises(ValueError, match=r"max_delay must be >= initial_de"):
        RetryConfig(initial_delay=5, max_delay=1)


def test_zero_queue_is_allowed():
    """queue_size=0 is valid: no call ever waits."""
    assert 0 == BulkheadConfig(queue_size=0).queue_size

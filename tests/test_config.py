"""Configuration: the seed's defaults, and clear errors for bad values."""

from __future__ import annotations

from datetime import timedelta

import attrs
import pytest

from resilient_mcp import (
    BulkheadConfig,
    CircuitBreakerConfig,
    ConfigurationError,
    ResilientClientConfig,
    RetryConfig,
    SessionConfig,
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
    assert 30.0 == config.max_retry_after


def test_max_retry_after_follows_max_delay():
    """max_retry_after defaults to max_delay; None lifts the cap."""
    assert 5.0 == RetryConfig(max_delay=5).max_retry_after
    assert (
        90.0
        == RetryConfig(max_retry_after=timedelta(seconds=90)).max_retry_after
    )
    assert RetryConfig(max_retry_after=None).max_retry_after is None


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
        (RetryConfig, "max_retry_after", -1, ">= 0 or None"),
        (RetryConfig, "max_retry_after", float("inf"), ">= 0 or None"),
        (RetryConfig, "max_retry_after", "1h", ">= 0 or None"),
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


class NoFileno:
    """A stderr stand-in without a file descriptor."""


@pytest.mark.parametrize(
    ("field", "value", "rule"),
    [
        ("connect_timeout", 0, "> 0"),
        ("connect_timeout", float("inf"), "> 0"),
        ("connect_timeout", "10", "> 0"),
        ("reconnect_delay", -0.1, ">= 0"),
        ("reconnect_max_delay", -1, ">= 0"),
        ("reconnect_backoff_factor", 0.5, ">= 1"),
        ("reconnect_backoff_factor", "2", ">= 1"),
        ("reconnect_jitter", "yes", "True or False"),
        ("eager_reconnect", 1, "True or False"),
        ("close_timeout", 0, "> 0"),
        ("client_options", 5, "mapping"),
        ("client_options", {1: "x"}, "mapping"),
        ("on_connect", 5, "callable"),
        ("stdio_errlog", NoFileno(), "fileno"),
        ("http_client_factory", "httpx", "callable"),
    ],
)
def test_invalid_session_values_fail_at_construction(field, value, rule):
    """A bad SessionConfig value raises naming the class, field and rule."""
    with pytest.raises(ConfigurationError) as info:
        SessionConfig(**{field: value})

    message = str(info.value)
    assert f"SessionConfig.{field}" in message
    assert rule in message
    assert repr(value) in message


def test_session_config_refuses_a_server_in_the_client_options():
    """client_options cannot carry the server: the supervisor owns it."""
    with pytest.raises(ConfigurationError, match="client_options must not"):
        SessionConfig(client_options={"server": "http://x"})


def test_session_reconnect_max_delay_is_at_least_the_delay():
    """reconnect_max_delay below reconnect_delay is refused."""
    with pytest.raises(ConfigurationError, match="reconnect_max_delay must"):
        SessionConfig(reconnect_delay=5, reconnect_max_delay=1)


def test_a_closed_errlog_is_refused(tmp_path):
    """A closed file has no usable descriptor for the server's stderr."""
    with (tmp_path / "log").open("w") as log:
        pass

    with pytest.raises(ConfigurationError, match="stdio_errlog"):
        SessionConfig(stdio_errlog=log)


@pytest.mark.parametrize(
    ("field", "value", "rule"),
    [
        ("circuit_breaker", 5, "CircuitBreakerConfig"),
        ("circuit_breaker", None, "CircuitBreakerConfig"),
        ("tool_circuit_breaker", "x", "CircuitBreakerConfig or None"),
        ("retry", None, "RetryConfig"),
        ("bulkheads", 5, "mapping"),
        ("bulkheads", {"nope": BulkheadConfig()}, "must be among"),
        ("bulkheads", {"tools": 5}, "BulkheadConfig or None"),
        ("timeout", 0, "> 0 or None"),
        ("timeout", "x", "> 0 or None"),
        ("timeout", float("nan"), "> 0 or None"),
        ("session", 5, "SessionConfig"),
        ("trust_tool_annotations", "yes", "bool"),
        ("retryable_tools", "echo", "collection of tool names"),
        ("retryable_tools", [1], "collection of tool names"),
        ("retryable_tools", 5, "collection of tool names"),
        ("max_tracked_tools", 0, ">= 1"),
        ("max_tracked_tools", 2.5, "integer"),
        ("progress_timeout_cap", -1, "> 0 or None"),
        ("log_payloads", "yes", "bool"),
    ],
)
def test_invalid_client_values_fail_at_construction(field, value, rule):
    """A bad ResilientClientConfig value raises naming the field."""
    with pytest.raises(ConfigurationError) as info:
        ResilientClientConfig(**{field: value})

    message = str(info.value)
    assert f"ResilientClientConfig.{field}" in message
    assert rule in message


def test_client_config_defaults_log_no_payloads():
    """Tool arguments and results are logged only when asked to."""
    assert ResilientClientConfig().log_payloads is False

"""
Frozen, validated configuration for every policy.

Every config is an ``attrs.frozen`` class with keyword-only fields whose
defaults each field documents.  Invalid values fail at construction with a
:class:`ConfigurationError` (a :class:`ValueError`) naming the class, the
field, the allowed range and the value given.  Durations are float seconds;
a :class:`datetime.timedelta` is accepted and converted once.
"""

from __future__ import annotations

import math

from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Final, Literal

import attrs

from ._errors import ResilienceError


if TYPE_CHECKING:
    from ._adaptive_config import AdaptiveLimitConfig

DEFAULT_FAILURE_THRESHOLD: Final = 5  # failures
DEFAULT_RECOVERY_TIMEOUT: Final = 60.0  # seconds
DEFAULT_SUCCESS_THRESHOLD: Final = 3  # successful probes
DEFAULT_REQUEST_TIMEOUT: Final = 30.0  # seconds
DEFAULT_MONITORING_WINDOW: Final = 120.0  # seconds
DEFAULT_MINIMUM_CALLS: Final = 10  # calls in the window
DEFAULT_WINDOW_BUCKETS: Final = 10  # buckets per window (rate mode)

DEFAULT_MAX_ATTEMPTS: Final = 3  # attempts, the first one included
DEFAULT_INITIAL_DELAY: Final = 1.0  # seconds
DEFAULT_MAX_DELAY: Final = 30.0  # seconds
DEFAULT_BACKOFF_FACTOR: Final = 2.0  # multiplier per retry
DEFAULT_RETRYABLE_ERRORS: Final = ("timeout", "connection")

DEFAULT_MAX_CONCURRENT: Final = 10  # calls running at once
DEFAULT_QUEUE_SIZE: Final = 100  # calls waiting
DEFAULT_BULKHEAD_TIMEOUT: Final = 30.0  # seconds, wait plus run

JitterMode = Literal["proportional", "full", "decorrelated"]
"""The jitter strategies :class:`RetryConfig` offers besides on/off."""
_JITTER_MODES: Final = ("proportional", "full", "decorrelated")


class ConfigurationError(ResilienceError, ValueError):
    """
    An invalid configuration value, raised at construction.

    The message names the config class, the field, the allowed range and
    the value that was given.

    .. versionadded:: 0.1.0
    """


def _fail(
    inst: object, attribute: attrs.Attribute[Any], rule: str, value: object
) -> None:
    raise ConfigurationError(
        f"{type(inst).__name__}.{attribute.name} must be {rule}, got {value!r}"
    )


def to_seconds(value: object) -> object:
    """
    Convert a duration to float seconds; leave anything else to validation.

    Args:
        value: A number of seconds, a :class:`~datetime.timedelta`, or
            ``None``.

    Returns:
        A float for numbers and timedeltas; *value* unchanged otherwise, so
        that the field's validator can name it in its error.
    """
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return value


def _is_number(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and not math.isnan(value)
    )


def _seed(inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    """A random source's seed: an integer, or None for the OS's."""
    if value is not None and (
        not isinstance(value, int) or isinstance(value, bool)
    ):
        _fail(inst, attribute, "an integer or None", value)


def _int_ge(bound: int) -> Callable[[Any, attrs.Attribute[Any], Any], None]:
    def check(inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if (
            not isinstance(value, int)
            or isinstance(value, bool)
            or value < bound
        ):
            _fail(inst, attribute, f"an integer >= {bound}", value)

    return check


def _seconds(
    *, allow_zero: bool = False, optional: bool = False
) -> Callable[[Any, attrs.Attribute[Any], Any], None]:
    rule = "a finite number of seconds " + (">= 0" if allow_zero else "> 0")
    if optional:
        rule += " or None"

    def check(inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value is None and optional:
            return
        if (
            not _is_number(value)
            or math.isinf(value)
            or value < 0
            or (value == 0 and not allow_zero)
        ):
            _fail(inst, attribute, rule, value)

    return check


def _lower_fragments(value: Any) -> Any:
    if isinstance(value, list | tuple) and all(
        isinstance(item, str) for item in value
    ):
        return tuple(item.lower() for item in value)
    return value


def _optional_callable(
    inst: Any, attribute: attrs.Attribute[Any], value: Any
) -> None:
    if value is not None and not callable(value):
        _fail(inst, attribute, "a callable or None", value)


@attrs.frozen(kw_only=True)
class CircuitBreakerConfig:
    """
    When a circuit opens, how long it stays open, and how it closes again.

    By default the circuit opens after
    ``failure_threshold`` failures within ``monitoring_window`` seconds
    (count mode).  Set ``failure_rate_threshold`` to open it instead when
    the failure ratio over the window reaches that fraction, once at least
    ``minimum_calls`` calls were made in the window (rate mode, as in
    resilience4j and Polly).

    .. versionadded:: 0.1.0
    """

    failure_threshold: int = attrs.field(
        default=DEFAULT_FAILURE_THRESHOLD, validator=_int_ge(1)
    )
    """Failures within the monitoring window that open the circuit."""

    recovery_timeout: float = attrs.field(
        default=DEFAULT_RECOVERY_TIMEOUT,
        converter=to_seconds,
        validator=_seconds(),
    )
    """Seconds the circuit stays open before probe calls are let through."""

    success_threshold: int = attrs.field(
        default=DEFAULT_SUCCESS_THRESHOLD, validator=_int_ge(1)
    )
    """Successful probes in the half-open state that close the circuit."""

    request_timeout: float | None = attrs.field(
        default=DEFAULT_REQUEST_TIMEOUT,
        converter=to_seconds,
        validator=_seconds(optional=True),
    )
    """
    Seconds each call may run before it is cancelled and counted as a
    failure (raising :class:`~resilient_mcp.CallTimeout`); ``None`` for no
    limit.
    """

    monitoring_window: float = attrs.field(
        default=DEFAULT_MONITORING_WINDOW,
        converter=to_seconds,
        validator=_seconds(),
    )
    """Seconds over which failures (or the failure rate) are counted."""

    failure_rate_threshold: float | None = attrs.field(default=None)
    """
    Failure ratio in (0, 1] that opens the circuit (rate mode), or ``None``
    for count mode.
    """

    minimum_calls: int = attrs.field(
        default=DEFAULT_MINIMUM_CALLS, validator=_int_ge(1)
    )
    """Calls needed in the window before the rate mode may open it."""

    window_buckets: int = attrs.field(
        default=DEFAULT_WINDOW_BUCKETS, validator=_int_ge(1)
    )
    """
    Buckets the window is divided into in rate mode: the window slides one
    bucket (``monitoring_window / window_buckets`` seconds) at a time.
    """

    half_open_max_calls: int = attrs.field(
        default=attrs.Factory(
            lambda self: self.success_threshold, takes_self=True
        ),
        validator=_int_ge(1),
    )
    """
    Probe calls allowed at once while half-open (default:
    ``success_threshold``); calls beyond it fail fast.
    """

    slow_call_duration: float | None = attrs.field(
        default=None, converter=to_seconds, validator=_seconds(optional=True)
    )
    """
    Seconds above which a successful call counts as a failure (a slow
    call), or ``None`` to judge calls by their outcome alone.
    """

    is_failure: Callable[[BaseException], bool] | None = attrs.field(
        default=None, validator=_optional_callable
    )
    """
    Decides whether an exception counts as a failure.  ``None`` counts
    every :class:`Exception` except :class:`~resilient_mcp.PermanentError`.
    Exceptions it rejects count as neither failure nor success.
    Cancellation never counts, whatever this says.
    """

    @failure_rate_threshold.validator
    def _check_rate(self, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value is None:
            return
        if not _is_number(value) or not 0 < value <= 1:
            _fail(self, attribute, "a number in (0, 1] or None", value)


@attrs.frozen(kw_only=True)
class RetryConfig:
    """
    How often, and how patiently, a failed call is tried again.

    The delay before retry *n* (n = 0, 1, ...) is
    ``initial_delay * backoff_factor ** n`` capped at ``max_delay``.  With
    ``jitter=True`` (or ``"proportional"``) it varies by +-10 %;
    ``"full"`` and ``"decorrelated"`` are the strategies of the AWS
    architecture blog's "Exponential Backoff And Jitter"; ``False`` waits
    exactly the computed delay.

    .. versionadded:: 0.1.0
    """

    max_attempts: int = attrs.field(
        default=DEFAULT_MAX_ATTEMPTS, validator=_int_ge(1)
    )
    """Attempts in all, the first one included (1 means no retry)."""

    initial_delay: float = attrs.field(
        default=DEFAULT_INITIAL_DELAY,
        converter=to_seconds,
        validator=_seconds(allow_zero=True),
    )
    """Seconds to wait before the first retry."""

    max_delay: float = attrs.field(
        default=DEFAULT_MAX_DELAY,
        converter=to_seconds,
        validator=_seconds(allow_zero=True),
    )
    """Cap on any single wait, in seconds; at least ``initial_delay``."""

    backoff_factor: float = attrs.field(
        default=DEFAULT_BACKOFF_FACTOR, converter=to_seconds
    )
    """Multiplier applied to the delay after each retry; at least 1."""

    jitter: bool | JitterMode = attrs.field(default=True)
    """
    ``True`` or ``"proportional"`` (+-10 %), ``"full"``, ``"decorrelated"``,
    or ``False`` for none.
    """

    retryable_errors: tuple[str, ...] = attrs.field(
        default=DEFAULT_RETRYABLE_ERRORS, converter=_lower_fragments
    )
    """
    Case-insensitive fragments: an error is retryable when one occurs in
    its message or its type name (unless ``is_retryable`` decides).
    """

    is_retryable: Callable[[Exception], bool] | None = attrs.field(
        default=None, validator=_optional_callable
    )
    """
    Decides retryability instead of ``retryable_errors`` when given.
    :class:`~resilient_mcp.TemporaryError` is always retried and
    :class:`~resilient_mcp.PermanentError` never, whatever it says.
    """

    max_elapsed: float | None = attrs.field(
        default=None, converter=to_seconds, validator=_seconds(optional=True)
    )
    """
    Total time budget in seconds from the start of the first attempt, or
    ``None``.  No wait starts that would end past it; the last error is
    raised instead.
    """

    max_retry_after: float | None = attrs.field(
        default=attrs.Factory(lambda self: self.max_delay, takes_self=True),
        converter=to_seconds,
        validator=_seconds(allow_zero=True, optional=True),
    )
    """
    The longest server ``Retry-After`` the retry waits for, in seconds
    (default: ``max_delay``); ``None`` to honour any.  A longer hint ends
    the retries at once with the error that carried it (the MCP client
    still holds its circuit breaker open that long).
    """

    @backoff_factor.validator
    def _check_factor(
        self, attribute: attrs.Attribute[Any], value: Any
    ) -> None:
        if not _is_number(value) or math.isinf(value) or value < 1:
            _fail(self, attribute, "a finite number >= 1", value)

    @max_delay.validator
    def _check_max_delay(
        self, attribute: attrs.Attribute[Any], value: Any
    ) -> None:
        if value < self.initial_delay:
            _fail(
                self,
                attribute,
                f">= initial_delay ({self.initial_delay!r})",
                value,
            )

    @jitter.validator
    def _check_jitter(
        self, attribute: attrs.Attribute[Any], value: Any
    ) -> None:
        if not isinstance(value, bool) and value not in _JITTER_MODES:
            _fail(
                self,
                attribute,
                "True, False, 'proportional', 'full' or 'decorrelated'",
                value,
            )

    @retryable_errors.validator
    def _check_fragments(
        self, attribute: attrs.Attribute[Any], value: Any
    ) -> None:
        if isinstance(value, str) or not all(
            isinstance(item, str) and item for item in value
        ):
            _fail(self, attribute, "a tuple of non-empty strings", value)


@attrs.frozen(kw_only=True)
class BulkheadConfig:
    """
    How many calls may run at once, and how many may wait for a turn.

    .. versionadded:: 0.1.0
    """

    name: str = attrs.field(default="default")
    """The bulkhead's name, in errors, logs and metrics."""

    max_concurrent_requests: int = attrs.field(
        default=DEFAULT_MAX_CONCURRENT, validator=_int_ge(1)
    )
    """Calls that may run at once."""

    queue_size: int = attrs.field(
        default=DEFAULT_QUEUE_SIZE, validator=_int_ge(0)
    )
    """Calls that may wait for a slot; any further call is rejected."""

    request_timeout: float | None = attrs.field(
        default=DEFAULT_BULKHEAD_TIMEOUT,
        converter=to_seconds,
        validator=_seconds(optional=True),
    )
    """
    Seconds a call may spend waiting for a slot plus running, or ``None``.
    """

    adaptive: AdaptiveLimitConfig | None = attrs.field(default=None)
    """
    An :class:`~resilient_mcp.AdaptiveLimitConfig` to let the limit follow
    the measured latency (``max_concurrent_requests`` is then unused), or
    ``None`` for a fixed limit.

    .. versionadded:: 0.1.0
    """

    @adaptive.validator
    def _check_adaptive(
        self, attribute: attrs.Attribute[Any], value: Any
    ) -> None:
        # Imported here: _adaptive_config builds on this module's helpers.
        from ._adaptive_config import AdaptiveLimitConfig  # noqa: PLC0415

        if value is not None and not isinstance(value, AdaptiveLimitConfig):
            _fail(self, attribute, "an AdaptiveLimitConfig or None", value)

    @name.validator
    def _check_name(self, attribute: attrs.Attribute[Any], value: Any) -> None:
        if not isinstance(value, str) or not value:
            _fail(self, attribute, "a non-empty string", value)

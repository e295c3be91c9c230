"""
The hedging policy's configuration and its metrics snapshot.

The policy itself is in ``_hedging.py``; its config is here so that each
module stays small (and the MCP client's config can import it alone).
"""

from __future__ import annotations

import math

from typing import Any, Final

import attrs

from ._config import _fail, _int_ge, _is_number, _seconds, to_seconds


DEFAULT_MAX_HEDGED_ATTEMPTS: Final = 1  # extra attempts per call
DEFAULT_PERCENTILE: Final = 0.95  # of recent latencies: the delay
DEFAULT_BUDGET_PERCENT: Final = 0.05  # hedges per call
DEFAULT_MIN_HEDGES_PER_SECOND: Final = 0.2  # hedges per second, reserve
DEFAULT_BUDGET_TTL: Final = 10.0  # seconds a deposit or hedge counts
DEFAULT_WINDOW: Final = 30.0  # seconds of latency history
DEFAULT_MIN_SAMPLES: Final = 20  # latencies before a percentile delay
DEFAULT_MAX_SLOW_FRACTION: Final = 0.5  # slow calls that stop hedging


def _check_fraction(
    inst: Any, attribute: attrs.Attribute[Any], value: Any
) -> None:
    if not _is_number(value) or not 0 < value < 1:
        _fail(inst, attribute, "a number in (0, 1)", value)


def _check_percent(
    inst: Any, attribute: attrs.Attribute[Any], value: Any
) -> None:
    if not _is_number(value) or not 0 <= value <= 1:
        _fail(inst, attribute, "a number in [0, 1]", value)


def _check_slow(
    inst: Any, attribute: attrs.Attribute[Any], value: Any
) -> None:
    if not _is_number(value) or not 0 < value <= 1:
        _fail(inst, attribute, "a number in (0, 1]", value)


def _check_rate(
    inst: Any, attribute: attrs.Attribute[Any], value: Any
) -> None:
    if not _is_number(value) or not 0 <= value < math.inf:
        _fail(inst, attribute, "a finite number >= 0", value)


@attrs.frozen(kw_only=True)
class HedgingConfig:
    """
    When a call gets a second (hedged) attempt, and how many may.

    >>> HedgingConfig(delay=0.2).max_hedged_attempts
    1

    .. versionadded:: 0.1.0
    """

    max_hedged_attempts: int = attrs.field(
        default=DEFAULT_MAX_HEDGED_ATTEMPTS, validator=_int_ge(1)
    )
    """Hedged attempts a call may add to its first one."""

    delay: float | None = attrs.field(
        default=None,
        converter=to_seconds,
        validator=_seconds(optional=True),
    )
    """
    Seconds without an answer before the next hedged attempt starts (the
    k-th one ``k * delay`` after the call's first attempt); ``None`` for
    the ``percentile`` of the recent latencies.
    """

    percentile: float = attrs.field(
        default=DEFAULT_PERCENTILE, validator=_check_fraction
    )
    """The recent latency, as a fraction in (0, 1), that sets the delay."""

    budget_percent: float = attrs.field(
        default=DEFAULT_BUDGET_PERCENT, validator=_check_percent
    )
    """Hedges allowed per call, in [0, 1] (0.05: one per 20 calls)."""

    min_hedges_per_second: float = attrs.field(
        default=DEFAULT_MIN_HEDGES_PER_SECOND, validator=_check_rate
    )
    """
    A reserve of hedges per second on top of ``budget_percent`` (0 for
    none), so that a pipeline with few calls can hedge at all.
    """

    budget_ttl: float = attrs.field(
        default=DEFAULT_BUDGET_TTL, converter=to_seconds, validator=_seconds()
    )
    """Seconds a call's deposit and a hedge's withdrawal count."""

    window: float = attrs.field(
        default=DEFAULT_WINDOW, converter=to_seconds, validator=_seconds()
    )
    """
    Seconds of history the latencies and the slow fraction cover (two
    halves: the window slides half of it at a time).
    """

    min_samples: int = attrs.field(
        default=DEFAULT_MIN_SAMPLES, validator=_int_ge(1)
    )
    """
    Latencies needed before a percentile delay (and calls needed before
    the slowdown guard judges); with fewer, no hedge.
    """

    max_slow_fraction: float = attrs.field(
        default=DEFAULT_MAX_SLOW_FRACTION, validator=_check_slow
    )
    """
    Above this fraction of recent calls that outlived their delay, the
    service is slow as a whole (a slowdown, not a tail): no hedges.
    """


@attrs.frozen(kw_only=True)
class HedgingMetrics:
    """
    A snapshot of a :class:`Hedging` policy.

    .. versionadded:: 0.1.0
    """

    name: str
    """The policy's name."""
    calls: int
    """Calls that went through the policy."""
    hedged_calls: int
    """Calls that started at least one hedged attempt."""
    hedges: int
    """Hedged attempts started (the extra requests)."""
    hedge_wins: int
    """Calls whose answer came from a hedged attempt."""
    budget_rejections: int
    """Hedges the budget refused."""
    suppressed_by_slowdown: int
    """Hedges not made because most recent calls were slow."""
    cancelled_attempts: int
    """Attempts cancelled because another one answered first."""
    delay: float | None
    """The delay the next call would get, seconds (``None``: no hedge)."""
    slow_fraction: float
    """The fraction of recent calls that outlived their delay."""

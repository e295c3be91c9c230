"""
How a call through a pipeline ended, and a pipeline's metrics snapshot.

One :class:`Outcome` per call; :func:`classify_rejection` names the
outcome of a resilience error by its type.  The pipeline keeps the books
(``_pipeline.py``); this module holds only what they are made of.
"""

from __future__ import annotations

import enum

from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

import attrs

from ._errors import (
    BulkheadError,
    CircuitBreakerError,
    RateLimitedError,
    ThrottledError,
)


if TYPE_CHECKING:
    from ._breaker import CircuitBreakerMetrics
    from ._bulkhead import BulkheadMetrics
    from ._hedging_config import HedgingMetrics
    from ._metrics import LatencySnapshot
    from ._rate_limiter import RateLimiterMetrics
    from ._retry import RetryMetrics
    from ._retry_budget import RetryBudgetMetrics
    from ._throttling import ThrottlingMetrics


class Outcome(enum.Enum):
    """
    How a call through a pipeline ended; each call has exactly one.

    .. versionadded:: 0.1.0
    """

    SUCCESS = "success"
    """The operation returned."""
    CIRCUIT_OPEN = "circuit_open"
    """Rejected by an open circuit (fast fail)."""
    BULKHEAD_FULL = "bulkhead_full"
    """Rejected by a full bulkhead."""
    TIMEOUT = "timeout"
    """Ended by a timeout (the last attempt's, or the bulkhead's)."""
    RETRIES_EXHAUSTED = "retries_exhausted"
    """A retryable error that outlasted the attempts or the time budget."""
    ERROR = "error"
    """Any other error (not retryable, or no retry configured)."""
    RETRY_BUDGET_EXHAUSTED = "retry_budget_exhausted"
    """
    The retry budget refused a retry: the last error (of any kind, a
    timeout included) propagated, with a note saying so.
    """
    RATE_LIMITED = "rate_limited"
    """Rejected by the rate limiter (its turn was beyond ``max_wait``)."""
    THROTTLED = "throttled"
    """Dropped locally by the adaptive throttle."""
    CANCELLED = "cancelled"
    """The caller was cancelled: neither a success nor a failure."""


FAILURE_OUTCOMES: Final = tuple(
    o for o in Outcome if o not in (Outcome.SUCCESS, Outcome.CANCELLED)
)
"""The failure outcomes, in declaration order."""


@attrs.frozen(kw_only=True)
class PipelineMetrics:
    """
    A snapshot of a pipeline's counters and of its policies' metrics.

    ``total_requests == successful_requests + failed_requests +
    cancelled_requests``, and ``failed_requests`` is the sum of
    ``outcomes`` over the failure kinds.

    .. versionadded:: 0.1.0
    """

    name: str
    """The pipeline's name."""
    total_requests: int
    """Calls that ended."""
    successful_requests: int
    """Calls that returned."""
    failed_requests: int
    """Calls that raised (every kind of failure)."""
    cancelled_requests: int
    """Calls whose caller was cancelled."""
    retried_requests: int
    """Calls that needed at least one retry."""
    circuit_breaker_trips: int
    """Times the circuit opened."""
    bulkhead_rejections: int
    """Calls rejected by the bulkhead."""
    outcomes: Mapping[Outcome, int]
    """Calls per :class:`Outcome`, every outcome present."""
    circuit_breaker: CircuitBreakerMetrics | None
    """The breaker's own metrics, if there is a breaker."""
    retry: RetryMetrics | None
    """The retry manager's own metrics, if there is one."""
    bulkhead: BulkheadMetrics | None
    """The bulkhead's own metrics, if there is one."""
    rate_limiter: RateLimiterMetrics | None = None
    """The rate limiter's own metrics, if there is one."""
    throttling: ThrottlingMetrics | None = None
    """The adaptive throttle's own metrics, if there is one."""
    latency: LatencySnapshot | None
    """
    Latency of every call that ended (all outcomes, from entering the
    pipeline to leaving it), if the pipeline records to a recorder.
    """
    retry_budget: RetryBudgetMetrics | None = None
    """The retry budget's own metrics, if there is one."""
    hedging: HedgingMetrics | None = None
    """The hedging policy's own metrics, if there is one."""


_REJECTIONS: Final[tuple[tuple[type[BaseException], Outcome], ...]] = (
    (CircuitBreakerError, Outcome.CIRCUIT_OPEN),
    (BulkheadError, Outcome.BULKHEAD_FULL),
    (RateLimitedError, Outcome.RATE_LIMITED),
    (ThrottledError, Outcome.THROTTLED),
    (TimeoutError, Outcome.TIMEOUT),
)


def classify_rejection(exc: BaseException) -> Outcome | None:
    """
    The outcome a resilience error (or a timeout) names by its type.

    Returns:
        The outcome, or None for an error that is not one of them.
    """
    for kind, outcome in _REJECTIONS:
        if isinstance(exc, kind):
            return outcome
    return None

"""
The metric families of the overload policies.

Retry budgets, rate limiters, adaptive throttles and hedging policies;
``_families.py`` holds the rest and the exposition order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from ._spec import Kind, Spec


if TYPE_CHECKING:
    from .._hedging_config import HedgingMetrics
    from .._rate_limiter import RateLimiterMetrics
    from .._retry_budget import RetryBudgetMetrics
    from .._throttling import ThrottlingMetrics
    from ._spec import Sample
    from ._watch import Reading


_RB: Final = ("budget",)
_L: Final = ("rate_limiter",)

RETRY_BUDGET_CALLS: Final = Spec(
    name="resilient_mcp_retry_budget_calls",
    kind=Kind.COUNTER,
    documentation="Calls that deposited into the retry budget.",
    labels=_RB,
    otel_name="resilient_mcp.retry_budget.calls",
    otel_unit="{call}",
)
RETRY_BUDGET_RETRIES: Final = Spec(
    name="resilient_mcp_retry_budget_retries",
    kind=Kind.COUNTER,
    documentation="Retries the retry budget allowed and that were made.",
    labels=_RB,
    otel_name="resilient_mcp.retry_budget.retries",
    otel_unit="{attempt}",
)
RETRY_BUDGET_REJECTED: Final = Spec(
    name="resilient_mcp_retry_budget_rejected_retries",
    kind=Kind.COUNTER,
    documentation=(
        "Retries the retry budget refused (their calls ended with their "
        "last error)."
    ),
    labels=_RB,
    otel_name="resilient_mcp.retry_budget.rejected_retries",
    otel_unit="{attempt}",
)
RETRY_BUDGET_BALANCE: Final = Spec(
    name="resilient_mcp_retry_budget_balance",
    kind=Kind.GAUGE,
    documentation=(
        "Retries the retry budget would allow at once, as of its last "
        "call or retry."
    ),
    labels=_RB,
    otel_name="resilient_mcp.retry_budget.balance",
    otel_unit="{attempt}",
)
RETRY_BUDGET_STORE_ERRORS: Final = Spec(
    name="resilient_mcp_retry_budget_store_errors",
    kind=Kind.COUNTER,
    documentation=(
        "Requests of the retry budget to its shared state store that "
        "failed or timed out (the budget then decided alone)."
    ),
    labels=_RB,
    otel_name="resilient_mcp.retry_budget.store_errors",
    otel_unit="{request}",
)
RATE_LIMITER_CALLS: Final = Spec(
    name="resilient_mcp_rate_limiter_calls",
    kind=Kind.COUNTER,
    documentation=(
        "Calls that came to the rate limiter, by result: admitted (at once "
        "or after waiting), rejected (RateLimitedError), cancelled."
    ),
    labels=(*_L, "result"),
    otel_name="resilient_mcp.rate_limiter.calls",
    otel_unit="{call}",
)
RATE_LIMITER_DELAYED: Final = Spec(
    name="resilient_mcp_rate_limiter_delayed",
    kind=Kind.COUNTER,
    documentation="Admitted calls that waited for their turn first.",
    labels=_L,
    otel_name="resilient_mcp.rate_limiter.delayed",
    otel_unit="{call}",
)
RATE_LIMITER_WAITING: Final = Spec(
    name="resilient_mcp_rate_limiter_waiting",
    kind=Kind.GAUGE,
    documentation="Calls waiting for their turn now.",
    labels=_L,
    otel_name="resilient_mcp.rate_limiter.waiting",
    otel_unit="{call}",
    additive=True,
)

RATE_LIMITER_STORE_ERRORS: Final = Spec(
    name="resilient_mcp_rate_limiter_store_errors",
    kind=Kind.COUNTER,
    documentation=(
        "Calls for which the rate limiter's shared state store failed or "
        "timed out (the limiter then decided alone)."
    ),
    labels=_L,
    otel_name="resilient_mcp.rate_limiter.store_errors",
    otel_unit="{call}",
)


def _throttling(suffix: str, kind: Kind, documentation: str) -> Spec:
    """A family of the adaptive throttles (label ``throttle``)."""
    return Spec(
        name=f"resilient_mcp_throttling_{suffix}",
        kind=kind,
        documentation=documentation,
        labels=("throttle",),
        otel_name=f"resilient_mcp.throttling.{suffix}",
        otel_unit="{request}" if kind is Kind.COUNTER else "1",
    )


THROTTLING_REQUESTS: Final = _throttling(
    "requests",
    Kind.COUNTER,
    "Calls that reached the adaptive throttle, those it rejected included.",
)
THROTTLING_ACCEPTS: Final = _throttling(
    "accepts", Kind.COUNTER, "Calls the backend accepted, as counted."
)
THROTTLING_THROTTLED: Final = _throttling(
    "throttled", Kind.COUNTER, "Calls the adaptive throttle rejected locally."
)
THROTTLING_CANCELLED: Final = _throttling(
    "cancelled",
    Kind.COUNTER,
    "Calls through the throttle whose caller was cancelled.",
)
THROTTLING_PROBABILITY: Final = _throttling(
    "rejection_probability",
    Kind.GAUGE,
    "The probability (0 to 1) that the throttle rejects the next call: "
    "max(0, (requests - k * accepts) / (requests + 1)) over its window.",
)


def _hedging(suffix: str, kind: Kind, unit: str, documentation: str) -> Spec:
    """A family of the hedging policies (label ``hedging``)."""
    return Spec(
        name=f"resilient_mcp_hedging_{suffix}",
        kind=kind,
        documentation=documentation,
        labels=("hedging", "reason") if suffix == "refused" else ("hedging",),
        otel_name=f"resilient_mcp.hedging.{suffix}",
        otel_unit=unit,
    )


HEDGING_CALLS: Final = _hedging(
    "calls", Kind.COUNTER, "{call}", "Calls through the hedging policy."
)
HEDGING_HEDGED_CALLS: Final = _hedging(
    "hedged_calls",
    Kind.COUNTER,
    "{call}",
    "Calls that started at least one hedged attempt.",
)
HEDGING_HEDGES: Final = _hedging(
    "hedges",
    Kind.COUNTER,
    "{request}",
    "Hedged attempts started: the extra requests.",
)
HEDGING_WINS: Final = _hedging(
    "hedge_wins",
    Kind.COUNTER,
    "{call}",
    "Calls whose answer came from a hedged attempt.",
)
HEDGING_REFUSED: Final = _hedging(
    "refused",
    Kind.COUNTER,
    "{request}",
    "Hedges not made, by reason: budget (the hedging budget was spent) or "
    "slowdown (most recent calls were slow).",
)
HEDGING_DELAY: Final = _hedging(
    "delay_seconds",
    Kind.GAUGE,
    "s",
    "Seconds without an answer before a call is hedged (absent: no hedge "
    "until enough latencies are known).",
)
HEDGING_SLOW_FRACTION: Final = _hedging(
    "slow_fraction",
    Kind.GAUGE,
    "1",
    "The fraction (0 to 1) of recent calls that outlived their delay.",
)


OVERLOAD_SPECS: Final[tuple[Spec, ...]] = (
    RETRY_BUDGET_CALLS,
    RETRY_BUDGET_RETRIES,
    RETRY_BUDGET_REJECTED,
    RETRY_BUDGET_BALANCE,
    RETRY_BUDGET_STORE_ERRORS,
    RATE_LIMITER_CALLS,
    RATE_LIMITER_DELAYED,
    RATE_LIMITER_WAITING,
    RATE_LIMITER_STORE_ERRORS,
    THROTTLING_REQUESTS,
    THROTTLING_ACCEPTS,
    THROTTLING_THROTTLED,
    THROTTLING_CANCELLED,
    THROTTLING_PROBABILITY,
    HEDGING_CALLS,
    HEDGING_HEDGED_CALLS,
    HEDGING_HEDGES,
    HEDGING_WINS,
    HEDGING_REFUSED,
    HEDGING_DELAY,
    HEDGING_SLOW_FRACTION,
)
"""The overload policies' families, in exposition order."""


def add_overload_samples(
    out: dict[Spec, list[Sample]], reading: Reading
) -> None:
    """Append the overload policies' samples of *reading* to *out*."""
    for _, budget in reading.retry_budgets:
        _retry_budget(out, budget)
    for _, limiter in reading.rate_limiters:
        _rate_limiter(out, limiter)
    for _, throttle in reading.throttles:
        _throttle(out, throttle)
    for _, hedging in reading.hedgings:
        _hedging_samples(out, hedging)


def _retry_budget(
    out: dict[Spec, list[Sample]], m: RetryBudgetMetrics
) -> None:
    name = (m.name,)
    out[RETRY_BUDGET_CALLS].append((name, m.calls))
    out[RETRY_BUDGET_RETRIES].append((name, m.retries))
    out[RETRY_BUDGET_REJECTED].append((name, m.rejected_retries))
    out[RETRY_BUDGET_BALANCE].append((name, m.balance))
    out[RETRY_BUDGET_STORE_ERRORS].append((name, m.store_errors))


def _rate_limiter(
    out: dict[Spec, list[Sample]], m: RateLimiterMetrics
) -> None:
    calls = out[RATE_LIMITER_CALLS]
    calls.append(((m.name, "admitted"), m.admitted))
    calls.append(((m.name, "rejected"), m.rejected))
    calls.append(((m.name, "cancelled"), m.cancelled))
    out[RATE_LIMITER_DELAYED].append(((m.name,), m.delayed))
    out[RATE_LIMITER_WAITING].append(((m.name,), m.waiting))
    out[RATE_LIMITER_STORE_ERRORS].append(((m.name,), m.store_errors))


def _throttle(out: dict[Spec, list[Sample]], m: ThrottlingMetrics) -> None:
    name = (m.name,)
    out[THROTTLING_REQUESTS].append((name, m.total_requests))
    out[THROTTLING_ACCEPTS].append((name, m.total_accepts))
    out[THROTTLING_THROTTLED].append((name, m.throttled))
    out[THROTTLING_CANCELLED].append((name, m.cancelled))
    out[THROTTLING_PROBABILITY].append((name, m.rejection_probability))


def _hedging_samples(out: dict[Spec, list[Sample]], m: HedgingMetrics) -> None:
    name = (m.name,)
    out[HEDGING_CALLS].append((name, m.calls))
    out[HEDGING_HEDGED_CALLS].append((name, m.hedged_calls))
    out[HEDGING_HEDGES].append((name, m.hedges))
    out[HEDGING_WINS].append((name, m.hedge_wins))
    refused = out[HEDGING_REFUSED]
    refused.append(((m.name, "budget"), m.budget_rejections))
    refused.append(((m.name, "slowdown"), m.suppressed_by_slowdown))
    if m.delay is not None:
        out[HEDGING_DELAY].append((name, m.delay))
    out[HEDGING_SLOW_FRACTION].append((name, m.slow_fraction))

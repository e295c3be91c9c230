"""
Our overload policies of issue 13 through :class:`ResiliencePipeline`.

Each arm is the pipeline a user would build for one policy, success path,
with nothing else configured (no timeout, no recorder), next to its
hand-built floor (:mod:`bench._floors_overload`).  Two arms put a second
call policy (a plain bulkhead) behind the rate limiter or the throttle:
the stage of two call policies, measured against the same floor plus a
borrowed slot.
"""

from __future__ import annotations

import functools

from typing import Any, Final

from resilient_mcp import (
    AdaptiveLimitConfig,
    BulkheadConfig,
    HedgingConfig,
    RateLimiterConfig,
    ResiliencePipeline,
    RetryBudgetConfig,
    RetryConfig,
    ThrottlingConfig,
)

from . import _floors_overload as floors
from ._floors import ATTEMPTS, noop
from ._harness import Arm, Factory, Variant


BUDGET: Final = "pipeline: retry + retry_budget"
RETRY_ONLY: Final = "pipeline: retry, no budget"
RATE: Final = "pipeline: rate_limit"
RATE_BULKHEAD: Final = "pipeline: rate_limit + bulkhead (2 call policies)"
THROTTLE: Final = "pipeline: throttling"
THROTTLE_BULKHEAD: Final = "pipeline: throttling + bulkhead (2 call policies)"
GRADIENT: Final = "pipeline: adaptive bulkhead (gradient2)"
AIMD: Final = "pipeline: adaptive bulkhead (aimd)"
HEDGE: Final = "pipeline: hedging (a delay no call reaches)"


def _bulkhead(adaptive: AdaptiveLimitConfig | None = None) -> BulkheadConfig:
    return BulkheadConfig(
        name="bench", request_timeout=None, adaptive=adaptive
    )


def _rate() -> RateLimiterConfig:
    return RateLimiterConfig(rate=floors.RATE, burst=floors.BURST)


def _pipeline(**policies: Any) -> Factory:
    def make(_stack: object) -> Variant:
        pipeline = ResiliencePipeline(name="bench", timeout=None, **policies)
        return functools.partial(pipeline.call, noop)

    return make


def _adaptive(algorithm: str) -> AdaptiveLimitConfig:
    # Every call a sample, as the floor: the default window ignores calls
    # under 100 us, which is every call here.
    return AdaptiveLimitConfig(algorithm=algorithm, window_size=None)


def budget_arms() -> tuple[Arm, ...]:
    retry = RetryConfig(max_attempts=ATTEMPTS)
    return (
        Arm(
            label=BUDGET,
            factory=_pipeline(retry=retry, retry_budget=RetryBudgetConfig()),
            baseline=floors.BUDGET,
        ),
        Arm(
            label=RETRY_ONLY,
            factory=_pipeline(retry=retry),
            baseline=floors.BUDGET,
            note="what the budget adds: the difference to the row above",
        ),
    )


def rate_arms() -> tuple[Arm, ...]:
    return (
        Arm(
            label=RATE,
            factory=_pipeline(rate_limit=_rate()),
            baseline=floors.GCRA,
        ),
        Arm(
            label=RATE_BULKHEAD,
            factory=_pipeline(rate_limit=_rate(), bulkhead=_bulkhead()),
            baseline=floors.GCRA_SLOT,
        ),
    )


def throttle_arms() -> tuple[Arm, ...]:
    return (
        Arm(
            label=THROTTLE,
            factory=_pipeline(throttling=ThrottlingConfig()),
            baseline=floors.SRE,
        ),
        Arm(
            label=THROTTLE_BULKHEAD,
            factory=_pipeline(
                throttling=ThrottlingConfig(), bulkhead=_bulkhead()
            ),
            baseline=floors.SRE_SLOT,
        ),
    )


def adaptive_arms() -> tuple[Arm, ...]:
    return (
        Arm(
            label=GRADIENT,
            factory=_pipeline(bulkhead=_bulkhead(_adaptive("gradient2"))),
            baseline=floors.GRADIENT,
            note="window_size=None",
        ),
        Arm(
            label=AIMD,
            factory=_pipeline(bulkhead=_bulkhead(_adaptive("aimd"))),
            baseline=floors.AIMD,
            note="window_size=None",
        ),
    )


def hedge_arms() -> tuple[Arm, ...]:
    return (
        Arm(
            label=HEDGE,
            factory=_pipeline(hedging=HedgingConfig(delay=floors.HEDGE_DELAY)),
            baseline=floors.HEDGE,
        ),
    )

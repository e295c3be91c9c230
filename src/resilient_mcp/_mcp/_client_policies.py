"""
The resilience policies of one client: one pipeline per MCP method.

Every operation goes through the server's adaptive throttle and rate
limiter (when configured: one each per server), a bulkhead for its kind,
the retry policy (asking the server's retry budget before each retry),
the server's circuit breaker and a timeout (``_pipeline.py`` stacks
them).
The server's breaker counts what says the *server* is unwell; bad requests,
a tool's own open breaker and the supervisor's fail-fast during its
reconnect backoff do not count against it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, final

import attrs

from .._breaker import CircuitBreaker
from .._bulkhead import Bulkhead
from .._errors import CircuitBreakerError, PermanentError
from .._metrics import LatencyRecorder
from .._pipeline import ResiliencePipeline
from .._rate_limiter import RateLimiter
from .._retry import RetryManager
from .._retry_budget import RetryBudget
from .._throttling import AdaptiveThrottle
from ._client_config import ResilientClientConfig
from ._errors import NotSentError
from ._pushback import Pushback


TOOL_LATENCY_DIGITS: Final = 2  # significant digits of per-tool histograms

KINDS: Final = {
    "tools/list": "tools",
    "tools/call": "tools",
    "resources/list": "resources",
    "resources/templates/list": "resources",
    "resources/read": "resources",
    "prompts/list": "prompts",
    "prompts/get": "prompts",
    "completion/complete": "completion",
    "ping": None,
    "resources/subscribe": "resources",
    "resources/unsubscribe": "resources",
    "logging/setLevel": None,
    "notifications/roots/list_changed": None,
}
"""Each MCP method, and the bulkhead (operation kind) it goes through."""

HEDGED: Final = frozenset(
    {
        "tools/list",
        "tools/call",  # only tools safe to retry go through it (unsafe_calls)
        "resources/list",
        "resources/templates/list",
        "resources/read",
        "prompts/list",
        "prompts/get",
        "completion/complete",
    }
)
"""The methods safe to repeat, hedged when the config asks for it."""

REFRESH: Final = "tools/list:refresh"
"""The pipeline of the client's own tool-list refreshes (not the caller's)."""


def never_sent(exc: Exception) -> bool:
    """Whether *exc* proves that the request never left the client."""
    return isinstance(exc, NotSentError)


def counts_against_server(
    user: Callable[[BaseException], bool] | None,
) -> Callable[[BaseException], bool]:
    """The server breaker's ``is_failure``, around the user's own."""

    def is_failure(exc: BaseException) -> bool:
        if isinstance(exc, PermanentError | CircuitBreakerError):
            return False  # a bad request, or a tool's own breaker
        if isinstance(exc, NotSentError) and exc.reason == "backoff":
            return False  # the supervisor failing fast on its own
        return True if user is None else user(exc)

    return is_failure


@final
@attrs.define(eq=False, repr=False, on_setattr=attrs.setters.NO_OP)
class ClientPolicies:
    """
    The policies and pipelines of one client; see :meth:`from_config`.

    ``tools/call`` has two pipelines: ``pipelines["tools/call"]`` for
    calls safe to retry, and :attr:`unsafe_calls` for the others, retried
    only when the request provably never left the client (both record
    latency under ``"tools/call"``).
    """

    breaker: CircuitBreaker
    """The server's breaker."""
    pushback: Pushback
    """The server's last ``Retry-After``, held against :attr:`breaker`."""
    retry: RetryManager
    retry_budget: RetryBudget | None
    """The server's retry budget, shared by every pipeline that retries."""
    throttle: AdaptiveThrottle | None
    """The server's adaptive throttle, shared by the caller's pipelines."""
    rate_limiter: RateLimiter | None
    """The server's rate limiter, shared by the caller's pipelines."""
    bulkheads: dict[str, Bulkhead]
    """Per operation kind."""
    recorder: LatencyRecorder
    """Per-method latencies plus the overall."""
    tool_recorder: LatencyRecorder
    """Per-tool latencies of ``tools/call``."""
    pipelines: dict[str, ResiliencePipeline]
    """Per MCP method."""
    unsafe_calls: ResiliencePipeline
    """``tools/call`` of tools not safe to repeat."""
    refresh: ResiliencePipeline
    """The client's own ``tools/list`` after ``list_changed``: through the
    ``tools`` bulkhead, the server's breaker and the timeout, but never
    retried (the next call tries again), never timed, never throttled nor
    rate-limited, and counted apart from the caller's requests."""

    @classmethod
    def from_config(
        cls, config: ResilientClientConfig, name: str
    ) -> ClientPolicies:
        """Build the policies *config* asks for, named *name*."""
        pushback = Pushback()
        breaker = CircuitBreaker(
            attrs.evolve(
                config.circuit_breaker,
                is_failure=counts_against_server(
                    config.circuit_breaker.is_failure
                ),
            ),
            name=name,
            listeners=[pushback.on_breaker_change],
            store=config.store,
        )
        pushback.breaker = breaker
        retry = RetryManager(config.retry, name=name)
        budget = (
            None
            if config.retry_budget is None
            else RetryBudget(
                config.retry_budget, name=name, store=config.store
            )
        )
        # One throttle and one limiter per server, as the budget: every
        # operation calls the same server (issue 13).
        throttle = (
            None
            if config.throttling is None
            else AdaptiveThrottle(config.throttling, name=name)
        )
        limiter = (
            None
            if config.rate_limit is None
            else RateLimiter(config.rate_limit, name=name, store=config.store)
        )
        pushback.limiter = limiter
        bulkheads = {
            kind: Bulkhead(bulkhead)
            for kind, bulkhead in config.bulkheads.items()
            if bulkhead is not None
        }
        recorder = LatencyRecorder()
        # Per-tool histograms at 2 significant digits (1 %): sparse while
        # latencies cluster, 27 KB at most (185 KB at 3 digits), so 1,000
        # tracked tools cost 27 MB in the worst case.
        tool_recorder = LatencyRecorder(
            max_keys=config.max_tracked_tools,
            significant_figures=TOOL_LATENCY_DIGITS,
        )

        def pipeline(
            method: str,
            kind: str | None,
            timeout: float | None,
            retry_if: Callable[[Exception], bool] | None = None,
        ) -> ResiliencePipeline:
            hedging = config.hedging if method in HEDGED else None
            # The unsafe tools/call pipeline records under "tools/call".
            return ResiliencePipeline(
                bulkhead=bulkheads.get(kind) if kind else None,
                retry=retry,
                circuit_breaker=breaker,
                timeout=timeout,
                retry_budget=budget,
                rate_limit=limiter,
                throttling=throttle,
                name=method,
                recorder=recorder,
                record_key=method.partition(":")[0],
                retry_if=retry_if,
                hedging=hedging,
            )

        timeout = config.attempt_timeout
        pipelines = {
            method: pipeline(method, kind, timeout)
            for method, kind in KINDS.items()
        }
        # A progress-aware timeout replaces the pipeline's for tools/call.
        if config.progress_timeout_cap is not None:
            timeout = None
        pipelines["tools/call"] = pipeline("tools/call", "tools", timeout)
        return cls(
            breaker=breaker,
            pushback=pushback,
            retry=retry,
            retry_budget=budget,
            throttle=throttle,
            rate_limiter=limiter,
            bulkheads=bulkheads,
            recorder=recorder,
            tool_recorder=tool_recorder,
            pipelines=pipelines,
            unsafe_calls=pipeline(
                "tools/call:unsafe", "tools", timeout, retry_if=never_sent
            ),
            refresh=ResiliencePipeline(
                bulkhead=bulkheads.get("tools"),
                circuit_breaker=breaker,
                timeout=config.attempt_timeout,
                name=REFRESH,
            ),
        )

    def caller_pipelines(self) -> list[ResiliencePipeline]:
        """The pipelines of the caller's requests (unsafe calls last)."""
        return [*self.pipelines.values(), self.unsafe_calls]

    def all_pipelines(self) -> list[ResiliencePipeline]:
        """Every pipeline: the caller's, then the client's own refresh."""
        return [*self.pipelines.values(), self.unsafe_calls, self.refresh]

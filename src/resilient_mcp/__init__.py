"""
resilient_mcp: a structured-concurrency resilience layer for MCP clients.

The layers, from the bottom up: ``_errors`` (the exception tree) and
``_config`` (frozen, validated configs); ``_backoff`` (pure delay math),
``_breaker_core`` (the breaker's state machine) and ``_timeouts`` (the
event loop's clock, cancel-scope deadlines and the timeout policy);
``_policy`` (the interface every policy offers) and ``_engine`` (a call
through an ordered plan of policies); the policies ``_breaker``,
``_retry``, ``_retry_budget``, ``_bulkhead``, ``_rate_limiter``,
``_throttling`` and ``_hedging``; ``_store``, the state a fleet of
processes shares (Redis); ``_pipeline``, the only
place that sets their order; ``instrumentation``, which attaches through
``_hooks``; and ``_mcp``, the MCP client.  :mod:`resilient_mcp.testing`
is imported separately.
"""

import logging

from typing import TYPE_CHECKING

from ._adaptive_config import AdaptiveLimitConfig
from ._breaker import (
    CircuitBreaker,
    CircuitBreakerMetrics,
    CircuitState,
    StateListener,
)
from ._bulkhead import Bulkhead, BulkheadMetrics
from ._config import (
    BulkheadConfig,
    CircuitBreakerConfig,
    ConfigurationError,
    JitterMode,
    RetryConfig,
)
from ._errors import (
    BulkheadError,
    CallTimeout,
    CircuitBreakerError,
    PermanentError,
    RateLimitedError,
    RecoveryAction,
    ResilienceError,
    TemporaryError,
    ThrottledError,
    classify_error,
)
from ._hedging import Hedging
from ._hedging_config import HedgingConfig, HedgingMetrics
from ._hlog import HlogFormatError, run_hlog_writer, write_hlog_once
from ._metrics import (
    LatencyHistogram,
    LatencyRecorder,
    LatencyRecorderMetrics,
    LatencySnapshot,
)
from ._outcomes import Outcome, PipelineMetrics
from ._pipeline import ResiliencePipeline
from ._policy import Policy, PolicyBase
from ._rate_limiter import RateLimiter, RateLimiterConfig, RateLimiterMetrics
from ._retry import RetryManager, RetryMetrics
from ._retry_budget import RetryBudget, RetryBudgetConfig, RetryBudgetMetrics
from ._store._protocol import BreakerShape, StateStore
from ._store._redis import RedisStore
from ._throttling import AdaptiveThrottle, ThrottlingConfig, ThrottlingMetrics
from ._timeouts import Timeout
from ._util import fixup_module_metadata
from .instrumentation import _otel as _tracing  # attaches the call tracer


del _tracing

# A library's logger stays silent until the application configures logging.
logging.getLogger(__name__).addHandler(logging.NullHandler())


__all__ = [
    "AdaptiveLimitConfig",
    "AdaptiveThrottle",
    "AuthenticationError",
    "BreakerShape",
    "Bulkhead",
    "BulkheadConfig",
    "BulkheadError",
    "BulkheadMetrics",
    "CallTimeout",
    "CircuitBreaker",
    "CircuitBreakerConfig",
    "CircuitBreakerError",
    "CircuitBreakerMetrics",
    "CircuitState",
    "ConfigurationError",
    "Hedging",
    "HedgingConfig",
    "HedgingMetrics",
    "HlogFormatError",
    "InvalidResponseError",
    "JitterMode",
    "LatencyHistogram",
    "LatencyRecorder",
    "LatencyRecorderMetrics",
    "LatencySnapshot",
    "NotSentError",
    "OperationMetrics",
    "Outcome",
    "PermanentError",
    "PipelineMetrics",
    "Policy",
    "PolicyBase",
    "RateLimitedError",
    "RateLimiter",
    "RateLimiterConfig",
    "RateLimiterMetrics",
    "RecoveryAction",
    "RedisStore",
    "RequestTimeoutError",
    "ResilienceError",
    "ResiliencePipeline",
    "ResilientClientConfig",
    "ResilientClientMetrics",
    "ResilientMCPClient",
    "RetryBudget",
    "RetryBudgetConfig",
    "RetryBudgetMetrics",
    "RetryConfig",
    "RetryManager",
    "RetryMetrics",
    "ServerError",
    "SessionClosedError",
    "SessionConfig",
    "SessionLostError",
    "SessionMetrics",
    "SessionState",
    "StateListener",
    "StateStore",
    "TemporaryError",
    "ThrottledError",
    "ThrottlingConfig",
    "ThrottlingMetrics",
    "Timeout",
    "ToolError",
    "ToolMetrics",
    "classify_error",
    "run_hlog_writer",
    "write_hlog_once",
]

# The MCP client pulls in the MCP SDK (about 0.9 s to import); the
# primitives work on any async callable and should not pay for it.  So the
# MCP names load on first use, through the module __getattr__ below (PEP
# 562).  Type checkers see the real names instead (mypy and pyright read
# this block but never run it), and no __getattr__: a misspelt name is then
# an error, not an attribute of type ``object``.
if TYPE_CHECKING:
    from ._mcp import (
        AuthenticationError,
        InvalidResponseError,
        NotSentError,
        OperationMetrics,
        RequestTimeoutError,
        ResilientClientConfig,
        ResilientClientMetrics,
        ResilientMCPClient,
        ServerError,
        SessionClosedError,
        SessionConfig,
        SessionLostError,
        SessionMetrics,
        SessionState,
        ToolError,
        ToolMetrics,
    )
else:
    _MCP_NAMES = frozenset(
        {
            "AuthenticationError",
            "InvalidResponseError",
            "NotSentError",
            "OperationMetrics",
            "RequestTimeoutError",
            "ResilientClientConfig",
            "ResilientClientMetrics",
            "ResilientMCPClient",
            "ServerError",
            "SessionClosedError",
            "SessionConfig",
            "SessionLostError",
            "SessionMetrics",
            "SessionState",
            "ToolError",
            "ToolMetrics",
        }
    )

    def __getattr__(name: str) -> object:
        if name in _MCP_NAMES:
            from . import _mcp  # noqa: PLC0415

            value = getattr(_mcp, name)
            fixup_module_metadata(__name__, {"__all__": [name], name: value})
            globals()[name] = value
            return value
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


fixup_module_metadata(__name__, globals())

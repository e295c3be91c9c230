"""
resilient_mcp: a structured-concurrency resilience layer for MCP clients.

The layers, from the bottom up: ``_errors`` (the exception tree) and
``_config`` (frozen, validated configs); ``_backoff`` (pure delay math) and
``_timeouts`` (the event loop's clock and cancel-scope deadlines); the
policies ``_breaker``, ``_retry`` and ``_bulkhead``; and ``_pipeline``, the
only place that sets their order.  :mod:`resilient_mcp.testing` is
imported separately.
"""

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
    RecoveryAction,
    ResilienceError,
    TemporaryError,
    classify_error,
)
from ._hlog import HlogFormatError, run_hlog_writer, write_hlog_once
from ._metrics import (
    LatencyHistogram,
    LatencyRecorder,
    LatencyRecorderMetrics,
    LatencySnapshot,
)
from ._pipeline import Outcome, PipelineMetrics, ResiliencePipeline
from ._retry import RetryManager, RetryMetrics
from ._util import fixup_module_metadata


__all__ = [
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
    "HlogFormatError",
    "JitterMode",
    "LatencyHistogram",
    "LatencyRecorder",
    "LatencyRecorderMetrics",
    "LatencySnapshot",
    "Outcome",
    "PermanentError",
    "PipelineMetrics",
    "RecoveryAction",
    "ResilienceError",
    "ResiliencePipeline",
    "RetryConfig",
    "RetryManager",
    "RetryMetrics",
    "StateListener",
    "TemporaryError",
    "classify_error",
    "run_hlog_writer",
    "write_hlog_once",
]

fixup_module_metadata(__name__, globals())
del fixup_module_metadata

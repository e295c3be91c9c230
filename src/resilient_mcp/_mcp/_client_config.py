"""
Configuration of :class:`~resilient_mcp.ResilientMCPClient`.

The defaults: one circuit breaker and one retry budget per server, the
default retry settings, and one bulkhead per kind of operation (tools 5
running and 20 waiting with 15 s, resources 10 and 50 with 30 s, prompts as
resources, completions 3 and 10).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any, Final

import attrs

from .._config import (
    BulkheadConfig,
    CircuitBreakerConfig,
    ConfigurationError,
    RetryConfig,
)
from .._hedging_config import HedgingConfig
from .._rate_limiter import RateLimiterConfig
from .._retry_budget import RetryBudgetConfig
from .._store._protocol import StateStore
from .._throttling import ThrottlingConfig
from ._config import SessionConfig


OPERATION_KINDS: Final = ("tools", "resources", "prompts", "completion")
"""The kinds of operation, each with a bulkhead of its own."""

SEED_BULKHEADS: Final[Mapping[str, BulkheadConfig]] = MappingProxyType(
    {
        "tools": BulkheadConfig(
            name="tools",
            max_concurrent_requests=5,
            queue_size=20,
            request_timeout=15.0,
        ),
        "resources": BulkheadConfig(
            name="resources",
            max_concurrent_requests=10,
            queue_size=50,
            request_timeout=30.0,
        ),
        "prompts": BulkheadConfig(
            name="prompts",
            max_concurrent_requests=10,
            queue_size=50,
            request_timeout=30.0,
        ),
        "completion": BulkheadConfig(
            name="completion",
            max_concurrent_requests=3,
            queue_size=10,
            request_timeout=30.0,
        ),
    }
)
"""The default bulkheads per operation kind."""

DEFAULT_MAX_TRACKED_TOOLS: Final = 1000  # per-tool breakers kept at once


def _bulkheads(value: Any) -> Mapping[str, BulkheadConfig | None]:
    """Merge the user's bulkheads over the defaults, naming them by kind."""
    if value is None:
        value = {}
    if not isinstance(value, Mapping):
        raise ConfigurationError(
            "ResilientClientConfig.bulkheads must be a mapping of operation "
            f"kind to BulkheadConfig, got {value!r}"
        )
    merged: dict[str, BulkheadConfig | None] = dict(SEED_BULKHEADS)
    for kind, config in value.items():
        if kind not in OPERATION_KINDS:
            raise ConfigurationError(
                "ResilientClientConfig.bulkheads keys must be among "
                f"{', '.join(OPERATION_KINDS)}; got {kind!r}"
            )
        if config is not None and not isinstance(config, BulkheadConfig):
            raise ConfigurationError(
                f"ResilientClientConfig.bulkheads[{kind!r}] must be a "
                f"BulkheadConfig or None, got {config!r}"
            )
        if config is not None and config.name == "default":
            merged[kind] = attrs.evolve(config, name=kind)
        else:
            merged[kind] = config
    return MappingProxyType(merged)


def _timeout(value: Any) -> Any:
    if value is None or value is _FROM_BREAKER:
        return value
    if (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and 0 < value < float("inf")
    ):
        return float(value)
    raise ConfigurationError(
        "ResilientClientConfig.timeout must be a finite number of seconds "
        f"> 0 or None, got {value!r}"
    )


def _of_type(kind: type, *, optional: bool = False) -> Any:
    def check(
        inst: Any,  # noqa: ARG001 (attrs' validator signature)
        attribute: attrs.Attribute[Any],
        value: Any,
    ) -> None:
        if value is None and optional:
            return
        if not isinstance(value, kind):
            raise ConfigurationError(
                f"ResilientClientConfig.{attribute.name} must be a "
                f"{kind.__name__}{' or None' if optional else ''}, "
                f"got {value!r}"
            )

    return check


def _names(value: Any) -> frozenset[str]:
    if (
        isinstance(value, str)
        or not isinstance(value, Iterable)
        or not all(isinstance(v, str) for v in value)
    ):
        raise ConfigurationError(
            "ResilientClientConfig.retryable_tools must be a collection of "
            f"tool names, got {value!r}"
        )
    return frozenset(value)


_FROM_BREAKER: Any = object()


@attrs.frozen(kw_only=True)
class ResilientClientConfig:
    """
    Everything :class:`~resilient_mcp.ResilientMCPClient` can be tuned by.

    .. versionadded:: 0.1.0
    """

    circuit_breaker: CircuitBreakerConfig = attrs.field(
        factory=CircuitBreakerConfig,
        validator=_of_type(CircuitBreakerConfig),
    )
    """The server's breaker: transport and JSON-RPC failures count."""

    tool_circuit_breaker: CircuitBreakerConfig | None = attrs.field(
        factory=CircuitBreakerConfig,
        validator=_of_type(CircuitBreakerConfig, optional=True),
    )
    """
    Each tool's own breaker: tool-level errors (``is_error`` results)
    count.  ``None`` turns per-tool breakers off.
    """

    retry: RetryConfig = attrs.field(
        factory=RetryConfig, validator=_of_type(RetryConfig)
    )
    """Retries of reads, of idempotent tools, and of unsent requests."""

    retry_budget: RetryBudgetConfig | None = attrs.field(
        factory=RetryBudgetConfig,
        validator=_of_type(RetryBudgetConfig, optional=True),
    )
    """
    The server's retry budget, shared by every operation's retries (see
    :class:`~resilient_mcp.RetryBudget`); ``None`` turns it off.
    """

    hedging: HedgingConfig | None = attrs.field(
        default=None, validator=_of_type(HedgingConfig, optional=True)
    )
    """
    Hedged requests for operations safe to repeat (reads, and tools
    annotated read-only or idempotent: the rule of retries), one
    :class:`~resilient_mcp.Hedging` per MCP method; ``None`` (the
    default) turns hedging off.  See ``docs/hedging.md``.

    .. versionadded:: 0.1.0
    """

    throttling: ThrottlingConfig | None = attrs.field(
        default=None,
        validator=_of_type(ThrottlingConfig, optional=True),
    )
    """
    Client-side adaptive throttling of the server (see
    :class:`~resilient_mcp.AdaptiveThrottle`): one throttle per server,
    shared by every operation; ``None`` (the default) for none.

    .. versionadded:: 0.1.0
    """

    rate_limit: RateLimiterConfig | None = attrs.field(
        default=None,
        validator=_of_type(RateLimiterConfig, optional=True),
    )
    """
    A rate limit on the calls to the server (see
    :class:`~resilient_mcp.RateLimiter`): one limiter per server, shared
    by every operation and held back by the server's ``Retry-After``;
    ``None`` (the default) for none.

    .. versionadded:: 0.1.0
    """

    bulkheads: Mapping[str, BulkheadConfig | None] = attrs.field(
        factory=dict, converter=_bulkheads
    )
    """
    Bulkheads by operation kind (``tools``, ``resources``, ``prompts``,
    ``completion``), merged over the defaults; ``None`` turns one off.
    """

    timeout: float | None = attrs.field(
        default=_FROM_BREAKER, converter=_timeout
    )
    """
    Seconds each attempt may take (a cancel scope; the server is sent
    ``notifications/cancelled``).  By default the breaker's
    ``request_timeout``; ``None`` for no limit.
    """

    session: SessionConfig = attrs.field(
        factory=SessionConfig, validator=_of_type(SessionConfig)
    )
    """Connecting, reconnecting and closing (see :class:`SessionConfig`)."""

    trust_tool_annotations: bool = attrs.field(
        default=True, validator=_of_type(bool)
    )
    """
    Retry tool calls the server annotates ``read_only_hint`` or
    ``idempotent_hint``.  Turn off for servers you do not trust.
    """

    retryable_tools: frozenset[str] = attrs.field(
        default=frozenset(), converter=_names
    )
    """Tool names whose calls may be retried whatever their annotations."""

    max_tracked_tools: int = attrs.field(default=DEFAULT_MAX_TRACKED_TOOLS)
    """Per-tool breakers kept at once (least recently used evicted)."""

    progress_timeout_cap: float | None = attrs.field(default=None)
    """
    Opt-in progress-aware timeout for tool calls: each progress
    notification from the server restarts the attempt's ``timeout``, up to
    this many seconds in all.  ``None`` (default): progress changes nothing.
    """

    log_payloads: bool = attrs.field(default=False, validator=_of_type(bool))
    """
    Opt-in, for debugging only: log every tool call's arguments and its
    result (or error) at DEBUG on the ``resilient_mcp.payloads`` logger.
    Off by default, and nothing else ever logs them, because arguments and
    results may carry personal data and secrets.
    """

    store: StateStore | None = attrs.field(default=None)
    """
    Where the fleet shares the server's breaker, retry budget and rate
    limiter (:class:`~resilient_mcp.RedisStore`, open while the client
    runs); ``None`` (the default) keeps them in this process.  Per-tool
    breakers and the adaptive throttle stay local.  See docs/fleet.md.

    .. versionadded:: 0.1.0
    """

    @store.validator
    def _check_store(
        self,
        attribute: attrs.Attribute[Any],  # noqa: ARG002
        value: Any,
    ) -> None:
        if value is not None and not callable(getattr(value, "breaker", None)):
            raise ConfigurationError(
                "ResilientClientConfig.store must be a StateStore (such as "
                f"RedisStore) or None, got {value!r}"
            )

    @max_tracked_tools.validator
    def _check_tracked(
        self,
        attribute: attrs.Attribute[Any],  # noqa: ARG002
        value: Any,
    ) -> None:
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigurationError(
                "ResilientClientConfig.max_tracked_tools must be an integer "
                f">= 1, got {value!r}"
            )

    @progress_timeout_cap.validator
    def _check_cap(
        self,
        attribute: attrs.Attribute[Any],  # noqa: ARG002
        value: Any,
    ) -> None:
        if value is None:
            return
        if (
            not isinstance(value, int | float)
            or isinstance(value, bool)
            or not 0 < value < float("inf")
        ):
            raise ConfigurationError(
                "ResilientClientConfig.progress_timeout_cap must be a "
                f"finite number of seconds > 0 or None, got {value!r}"
            )

    @property
    def attempt_timeout(self) -> float | None:
        """The per-attempt timeout in force, resolved from the breaker."""
        if self.timeout is _FROM_BREAKER:
            return self.circuit_breaker.request_timeout
        return self.timeout

    @classmethod
    def production(cls, **overrides: Any) -> ResilientClientConfig:
        """
        Conservative settings for critical services.

        The breaker opens after 3 failures in 5 minutes, stays open 60 s
        and needs 5 successful probes; 5 attempts starting at 0.5 s; the
        "critical" bulkhead (20 running, 100 waiting, 45 s) for tools
        and completions and a "bulk" one (50, 200, 60 s) for resources
        and prompts.  Keyword arguments override fields.
        """
        critical: dict[str, Any] = {
            "max_concurrent_requests": 20,
            "queue_size": 100,
        }
        bulk: dict[str, Any] = {
            "max_concurrent_requests": 50,
            "queue_size": 200,
        }
        settings: dict[str, Any] = {
            "circuit_breaker": CircuitBreakerConfig(
                failure_threshold=3,
                recovery_timeout=60.0,
                success_threshold=5,
                request_timeout=30.0,
                monitoring_window=300.0,
            ),
            "retry": RetryConfig(
                max_attempts=5,
                initial_delay=0.5,
                max_delay=30.0,
                backoff_factor=2.0,
                jitter=True,
            ),
            "bulkheads": {
                "tools": BulkheadConfig(
                    name="tools", request_timeout=45.0, **critical
                ),
                "completion": BulkheadConfig(
                    name="completion", request_timeout=45.0, **critical
                ),
                "resources": BulkheadConfig(
                    name="resources", request_timeout=60.0, **bulk
                ),
                "prompts": BulkheadConfig(
                    name="prompts", request_timeout=60.0, **bulk
                ),
            },
        }
        settings.update(overrides)
        return cls(**settings)

    @classmethod
    def development(cls, **overrides: Any) -> ResilientClientConfig:
        """
        Settings for fast feedback during development.

        The breaker opens after 2 failures, probes after 10 s and closes
        after 2 successes; 3 attempts from 0.1 s, factor 1.5, no jitter
        (predictable timing); 10 s per request.  Keyword arguments override
        fields.
        """
        settings: dict[str, Any] = {
            "circuit_breaker": CircuitBreakerConfig(
                failure_threshold=2,
                recovery_timeout=10.0,
                success_threshold=2,
                request_timeout=10.0,
            ),
            "retry": RetryConfig(
                max_attempts=3,
                initial_delay=0.1,
                max_delay=5.0,
                backoff_factor=1.5,
                jitter=False,
            ),
        }
        settings.update(overrides)
        return cls(**settings)

"""
OpenTelemetry spans: one per call through a pipeline, when tracing is on.

The pipeline asks :func:`call_tracer` on every call.  With no tracer
provider configured that must cost next to nothing, and it must notice a
provider configured later (applications often set up the SDK after
importing their libraries).  So the answer is cached against the identity
of the global provider and the check is two dictionary lookups:

* ``sys.modules`` has no ``opentelemetry.trace``: nobody can have set a
  provider, so there is nothing to do;
* the module's global provider is still the one the cached answer was
  computed for: reuse the answer.

That global is private to OpenTelemetry; :mod:`._otel_global` is the one
place that names it, and says why the public
:func:`opentelemetry.trace.get_tracer_provider` is too slow for every call.
The answer itself always comes from the public function.

The span becomes the current span while the call runs, so that the MCP
SDK's own client spans nest under it.  Contexts are attached and detached
around the call in the caller's task, which is exactly what trio's
per-task context variables need.
"""

from __future__ import annotations

import importlib.metadata
import sys

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final, final

import attrs

from .._breaker import CircuitState
from .._hooks import set_call_tracer
from ._otel_global import PROVIDER_GLOBAL, trace_globals


if TYPE_CHECKING:
    from types import ModuleType

    from opentelemetry.trace import Span, Tracer


INSTRUMENTATION_NAME: Final = "resilient_mcp"

OPERATION: Final = "resilient_mcp.operation"
OUTCOME: Final = "resilient_mcp.outcome"
RETRY_ATTEMPT: Final = "resilient_mcp.retry.attempt"
BREAKER_NAME: Final = "resilient_mcp.circuit_breaker.name"
BREAKER_STATE: Final = "resilient_mcp.circuit_breaker.state"
BREAKER_FAILURES: Final = "resilient_mcp.circuit_breaker.failures"
BULKHEAD_NAME: Final = "resilient_mcp.bulkhead.name"
BULKHEAD_WAIT: Final = "resilient_mcp.bulkhead.wait_time"
CANCELLED: Final = "resilient_mcp.cancelled"
ERROR_TYPE: Final = "error.type"  # OpenTelemetry semantic convention

_TRACE_MODULE: Final = "opentelemetry.trace"
_modules: Final = sys.modules
_UNSEEN: Final = object()  # matches no provider: forces a refresh
_NO_GLOBAL: Final = object()  # the private global is gone: always refresh


def _version() -> str | None:
    try:
        return importlib.metadata.version("resilient-mcp")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover
        return None


@final
@attrs.frozen(kw_only=True)
class CallSpan:
    """
    The span of one call in flight, from :meth:`CallTracer.start`.

    .. versionadded:: 0.1.0
    """

    span: Span
    """The OpenTelemetry span; add attributes of your own if you like."""
    token: object
    """The context token that made it current: :meth:`CallTracer.finish`
    detaches it."""


@final
@attrs.frozen(kw_only=True)
class CallTracer:
    """
    Starts and finishes the span of each call through a pipeline.

    Get one from :func:`call_tracer`, which returns ``None`` when tracing
    is off.  :meth:`start` makes the span current; :meth:`finish` must be
    called once, in the same task, whatever happened to the call.

    .. versionadded:: 0.1.0
    """

    tracer: Tracer
    """The OpenTelemetry tracer spans come from."""
    _api: Any = attrs.field(alias="api")
    """The ``opentelemetry`` functions used per call, looked up once."""

    def start(self, operation: str) -> CallSpan:
        """
        Start the span of a call to *operation* and make it current.

        The span is named ``resilient_mcp <operation>`` and is a child of
        the caller's current span.
        """
        api = self._api
        span = self.tracer.start_span(
            f"resilient_mcp {operation}", attributes={OPERATION: operation}
        )
        token = api.attach(api.set_span_in_context(span))
        return CallSpan(span=span, token=token)

    def finish(
        self,
        call: CallSpan,
        *,
        outcome: str,
        attempts: int,
        breaker_name: str | None = None,
        breaker_state: CircuitState | str | None = None,
        breaker_failures: int | None = None,
        bulkhead_name: str | None = None,
        bulkhead_wait: float | None = None,
        error: BaseException | None = None,
    ) -> None:
        """
        Record how the call ended, end its span and restore the context.

        Only the arguments below go on the span: never the operation's
        arguments nor its result.

        Args:
            call: What :meth:`start` returned.
            outcome: The :class:`~resilient_mcp.Outcome` value, for
                example ``"success"`` or ``"circuit_open"``.
            attempts: Attempts made (1 without retries).
            breaker_name: The circuit breaker's name, if there is one.
            breaker_state: Its state after the call.
            breaker_failures: Its failures in the current window.
            bulkhead_name: The bulkhead's name, if there is one.
            bulkhead_wait: Seconds the call waited for a bulkhead slot.
            error: What the call raised, if anything.  An
                :class:`Exception` sets the span's status to ERROR and is
                recorded as an event; cancellation (any other
                :class:`BaseException`) only sets
                ``resilient_mcp.cancelled``: the call did not fail, its
                caller stopped waiting.
        """
        api = self._api
        span = call.span
        try:
            if span.is_recording():
                attributes: dict[str, str | int | float | bool] = {
                    OUTCOME: outcome,
                    RETRY_ATTEMPT: attempts,
                }
                if breaker_name is not None:
                    attributes[BREAKER_NAME] = breaker_name
                if breaker_state is not None:
                    attributes[BREAKER_STATE] = (
                        breaker_state.value
                        if isinstance(breaker_state, CircuitState)
                        else breaker_state
                    )
                if breaker_failures is not None:
                    attributes[BREAKER_FAILURES] = breaker_failures
                if bulkhead_name is not None:
                    attributes[BULKHEAD_NAME] = bulkhead_name
                if bulkhead_wait is not None:
                    attributes[BULKHEAD_WAIT] = bulkhead_wait
                if isinstance(error, Exception):
                    kind = type(error)
                    attributes[ERROR_TYPE] = (
                        f"{kind.__module__}.{kind.__qualname__}"
                    )
                    span.record_exception(error)
                    message = str(error)
                    span.set_status(
                        api.Status(
                            api.StatusCode.ERROR,
                            f"{kind.__name__}: {message}"
                            if message
                            else kind.__name__,
                        )
                    )
                elif error is not None:
                    attributes[CANCELLED] = True
                span.set_attributes(attributes)
            span.end()
        finally:
            api.detach(call.token)


@attrs.frozen
class _Cache:
    module: object
    """The ``opentelemetry.trace`` module the answer was computed with."""
    namespace: Mapping[str, object]
    """Its globals: one dictionary lookup per call, cheaper than getattr."""
    raw: object
    """Its private global provider then (or ``_NO_GLOBAL``)."""
    provider: object
    """The provider ``get_tracer_provider()`` returned then."""
    tracer: CallTracer | None
    """The answer."""


_cache = _Cache(None, {}, _UNSEEN, _UNSEEN, None)


def call_tracer() -> CallTracer | None:
    """
    The tracer for pipeline calls, or ``None`` when tracing is off.

    Tracing is on once a real tracer provider (the OpenTelemetry SDK's, or
    a vendor's) is set globally, at any time; it is off while the global
    provider is the API's default proxy or no-op provider, when the SDK is
    disabled (``OTEL_SDK_DISABLED``), and when ``opentelemetry-api`` is
    not installed.

    The pipeline calls this on every call, so it is cheap: about 0.1
    microsecond when tracing is off (see the module docstring).

    .. versionadded:: 0.1.0
    """
    module = _modules.get(_TRACE_MODULE)
    if module is None:
        return None
    cache = _cache
    if (
        module is cache.module
        and cache.namespace.get(PROVIDER_GLOBAL, _UNSEEN) is cache.raw
    ):
        return cache.tracer
    return _refresh(module)


def _refresh(module: ModuleType) -> CallTracer | None:
    global _cache  # noqa: PLW0603 - swapped whole, so readers see one state
    # The public getter also loads a provider named by the
    # OTEL_PYTHON_TRACER_PROVIDER environment variable; read the global
    # after it.
    provider = module.get_tracer_provider()
    namespace = trace_globals(module)
    raw = namespace.get(PROVIDER_GLOBAL, _NO_GLOBAL)
    cache = _cache
    if module is cache.module and provider is cache.provider:
        tracer = cache.tracer
    else:
        tracer = _tracer_for(module, provider)
    _cache = _Cache(module, namespace, raw, provider, tracer)
    return tracer


def _tracer_for(module: ModuleType, provider: Any) -> CallTracer | None:
    if isinstance(
        provider, module.ProxyTracerProvider | module.NoOpTracerProvider
    ):
        return None
    tracer = provider.get_tracer(INSTRUMENTATION_NAME, _version())
    if isinstance(tracer, module.NoOpTracer):  # e.g. OTEL_SDK_DISABLED
        return None
    from opentelemetry import context  # noqa: PLC0415

    api = _Api(
        attach=context.attach,
        detach=context.detach,
        set_span_in_context=module.set_span_in_context,
        Status=module.Status,
        StatusCode=module.StatusCode,
    )
    return CallTracer(tracer=tracer, api=api)


@attrs.frozen(kw_only=True)
class _Api:
    attach: Any
    detach: Any
    set_span_in_context: Any
    Status: Any  # the OpenTelemetry names
    StatusCode: Any


set_call_tracer(call_tracer)

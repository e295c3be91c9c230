"""
Observability for resilient_mcp: Prometheus, OpenTelemetry, health logs.

Nothing here sits on the hot path.  A :class:`Watchlist` names the
pipelines and policies to observe; :class:`ResilienceCollector` exposes
them to Prometheus and :func:`serve_metrics` serves them over HTTP from
the application's own task group; :func:`instrument_otel_metrics` reports
them as OpenTelemetry metrics; :func:`run_health_monitor` logs warning
signs every interval.  :func:`call_tracer` is what the pipeline
asks for its per-call spans.

``prometheus_client`` and ``opentelemetry-api`` are imported only when
used.
"""

from .._util import fixup_module_metadata
from ._health import HealthReport, log_health_report, run_health_monitor
from ._otel import CallSpan, CallTracer, call_tracer
from ._otel_metrics import instrument_otel_metrics
from ._prometheus import ResilienceCollector
from ._server import serve_metrics
from ._watch import Watchlist


__all__ = [
    "CallSpan",
    "CallTracer",
    "HealthReport",
    "ResilienceCollector",
    "Watchlist",
    "call_tracer",
    "instrument_otel_metrics",
    "log_health_report",
    "run_health_monitor",
    "serve_metrics",
]

fixup_module_metadata(__name__, globals())
del fixup_module_metadata

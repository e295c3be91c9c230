"""
A Prometheus collector that reads a :class:`~._watch.Watchlist` per scrape.

``prometheus_client`` is imported when the collector is created, not when
this module is, so that ``resilient_mcp.instrumentation`` imports without
it.  The collector follows ``prometheus_client``'s custom-collector
protocol (``collect()`` yields metric families, ``describe()`` names
them), so the hot path pays nothing: values are only read at scrape time.

Latencies are Prometheus histograms: cumulative ``le`` buckets counted
from our HdrHistograms, which add up across processes (and decay with
``rate()``), unlike the summaries of precomputed quantiles we exported
before (issue 12, item 16).
"""

from __future__ import annotations

import math

from collections.abc import Iterator
from typing import TYPE_CHECKING, final

import attrs

from ._distribution import (
    DEFAULT_BUCKETS,
    Distribution,
    check_buckets,
    to_buckets,
)
from ._families import SPECS, build_families
from ._spec import Family, Kind, Spec
from ._watch import Watchlist


if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric


def _import_prometheus() -> None:
    """Fail early, and say how to fix it, without prometheus_client."""
    try:
        import prometheus_client  # noqa: F401, PLC0415
    except ImportError as exc:  # pragma: no cover - a core dependency
        # Only an install without dependencies (pip --no-deps) gets here.
        raise ModuleNotFoundError(
            "resilient_mcp's Prometheus support needs prometheus_client, "
            "one of its dependencies: pip install prometheus-client",
            name="prometheus_client",
        ) from exc


@final
@attrs.define(eq=False, repr=False)
class ResilienceCollector:
    """
    Expose a :class:`Watchlist` to Prometheus.

    Register it with a ``prometheus_client`` registry and serve that
    registry, with :func:`serve_metrics` or any other exposition:

    >>> import prometheus_client
    >>> from resilient_mcp import ResiliencePipeline
    >>> pipeline = ResiliencePipeline()
    >>> watchlist = Watchlist()
    >>> watchlist.watch_pipeline(pipeline)
    >>> registry = prometheus_client.CollectorRegistry()  # or .REGISTRY
    >>> registry.register(ResilienceCollector(watchlist))

    Every scrape reads the watched objects' ``metrics()`` snapshots (in the
    event loop's thread, see :meth:`Watchlist.read`) and turns them into
    metric families; ``docs/observability.md`` lists them.

    Latencies are histograms whose ``le`` buckets are counted from the
    HdrHistograms at scrape time, so they can be summed across processes
    (``histogram_quantile(0.99, sum by (le) (rate(..._bucket[5m])))``).

    Args:
        watchlist: The objects to expose.
        buckets: The latency buckets' upper bounds, in seconds, ascending;
            ``+Inf`` is always added.  The default, :data:`DEFAULT_BUCKETS`,
            spans 1 ms to 60 s.

    Raises:
        ModuleNotFoundError: ``prometheus_client`` is not installed.
        ConfigurationError: *buckets* is empty, not ascending, or holds a
            bound that is not finite seconds > 0.

    .. versionadded:: 0.1.0
    """

    watchlist: Watchlist
    buckets: tuple[float, ...] = attrs.field(
        default=DEFAULT_BUCKETS, converter=to_buckets, kw_only=True
    )

    @buckets.validator
    def _check_buckets(
        self,
        attribute: attrs.Attribute[tuple[float, ...]],  # noqa: ARG002
        value: tuple[float, ...],
    ) -> None:
        check_buckets("ResilienceCollector", value)

    def __attrs_post_init__(self) -> None:
        _import_prometheus()

    def __repr__(self) -> str:
        return f"<ResilienceCollector {self.watchlist!r}>"

    def collect(self) -> Iterator[Metric]:
        """Yield a metric family per kind of series, read now."""
        for family in build_families(self.watchlist.read()):
            yield _to_prometheus(family, self.buckets)

    def describe(self) -> Iterator[Metric]:
        """
        Yield every family this collector may expose, without samples.

        Registries call this at registration to catch name clashes with
        other collectors, instead of calling :meth:`collect`.
        """
        for spec in SPECS:
            yield _new_family(spec)


def _new_family(spec: Spec) -> Metric:
    from prometheus_client.metrics_core import (  # noqa: PLC0415
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
    )

    if spec.kind is Kind.COUNTER:
        return CounterMetricFamily(
            spec.name, spec.documentation, labels=spec.labels
        )
    if spec.kind is Kind.GAUGE:
        return GaugeMetricFamily(
            spec.name, spec.documentation, labels=spec.labels
        )
    return HistogramMetricFamily(
        spec.name, spec.documentation, labels=spec.labels, unit="seconds"
    )


def _to_prometheus(family: Family, bounds: tuple[float, ...]) -> Metric:
    from prometheus_client.metrics_core import (  # noqa: PLC0415
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
    )

    metric = _new_family(family.spec)
    for labels, value in family.samples:
        if isinstance(value, Distribution):
            assert isinstance(metric, HistogramMetricFamily)  # noqa: S101
            metric.add_metric(
                list(labels),
                buckets=[
                    ("+Inf" if bound == math.inf else repr(bound), count)
                    for bound, count in value.buckets(bounds)
                ],
                sum_value=value.total,
            )
        else:
            assert isinstance(  # noqa: S101
                metric, CounterMetricFamily | GaugeMetricFamily
            )
            metric.add_metric(list(labels), value)
    return metric

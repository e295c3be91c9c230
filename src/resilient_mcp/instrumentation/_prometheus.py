"""
A Prometheus collector that reads a :class:`~._watch.Watchlist` per scrape.

``prometheus_client`` is imported when the collector is created, not when
this module is, so that ``resilient_mcp.instrumentation`` imports without
it.  The collector follows ``prometheus_client``'s custom-collector
protocol (``collect()`` yields metric families, ``describe()`` names
them), so the hot path pays nothing: values are only read at scrape time.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, final

import attrs

from ._families import SPECS, Family, Kind, Quantiles, Spec, build_families
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

    Args:
        watchlist: The objects to expose.

    Raises:
        ModuleNotFoundError: ``prometheus_client`` is not installed.

    .. versionadded:: 0.1.0
    """

    watchlist: Watchlist

    def __attrs_post_init__(self) -> None:
        _import_prometheus()

    def __repr__(self) -> str:
        return f"<ResilienceCollector {self.watchlist!r}>"

    def collect(self) -> Iterator[Metric]:
        """Yield a metric family per kind of series, read now."""
        for family in build_families(self.watchlist.read()):
            yield _to_prometheus(family)

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
        SummaryMetricFamily,
    )

    if spec.kind is Kind.COUNTER:
        return CounterMetricFamily(
            spec.name, spec.documentation, labels=spec.labels
        )
    if spec.kind is Kind.GAUGE:
        return GaugeMetricFamily(
            spec.name, spec.documentation, labels=spec.labels
        )
    return SummaryMetricFamily(
        spec.name, spec.documentation, labels=spec.labels, unit="seconds"
    )


def _to_prometheus(family: Family) -> Metric:
    from prometheus_client.metrics_core import (  # noqa: PLC0415
        CounterMetricFamily,
        GaugeMetricFamily,
        SummaryMetricFamily,
    )
    from prometheus_client.samples import Sample  # noqa: PLC0415

    spec = family.spec
    metric = _new_family(spec)
    for labels, value in family.samples:
        if isinstance(value, Quantiles):
            assert isinstance(metric, SummaryMetricFamily)  # noqa: S101
            # SummaryMetricFamily.add_metric only takes the count and the
            # sum; the quantile series are plain samples of the family's
            # own name.
            named = dict(zip(spec.labels, labels, strict=True))
            metric.samples.extend(
                Sample(spec.name, {**named, "quantile": q}, v)
                for q, v in value.values
            )
            metric.add_metric(
                list(labels), count_value=value.count, sum_value=value.total
            )
        else:
            assert isinstance(  # noqa: S101
                metric, CounterMetricFamily | GaugeMetricFamily
            )
            metric.add_metric(list(labels), value)
    return metric

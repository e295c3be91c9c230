"""
The Prometheus series, as OpenTelemetry observable instruments.

Each family of :data:`~._families.SPECS` becomes one observable instrument
whose callback reads the watchlist when a metric reader collects, so the
hot path pays nothing here either.  A reader calls every instrument's
callback in turn; the first callback of a collection reads the watchlist
and the others reuse that reading, so one collection costs one read.
Histograms have no OpenTelemetry counterpart among observable instruments:
their quantiles are reported as a gauge with a ``quantile`` attribute.
"""

from __future__ import annotations

import functools
import threading

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, final

import attrs

from ._distribution import Distribution
from ._families import SPECS, build_families
from ._otel import INSTRUMENTATION_NAME, _version
from ._spec import Family, Kind, Spec
from ._watch import Watchlist


if TYPE_CHECKING:
    from opentelemetry.metrics import (
        CallbackOptions,
        MeterProvider,
        Observation,
    )


@final
@attrs.define(eq=False)
class _Observer:
    """Serves every instrument's callback from one reading per collection."""

    watchlist: Watchlist
    _lock: threading.Lock = attrs.field(init=False, factory=threading.Lock)
    _families: dict[str, Family] | None = attrs.field(init=False, default=None)
    _served: set[str] = attrs.field(init=False, factory=set)

    def observe(
        self, spec: Spec, options: CallbackOptions
    ) -> Iterable[Observation]:
        del options  # the read has its own timeout
        from opentelemetry.metrics import Observation  # noqa: PLC0415

        with self._lock:
            families = self._families
            # A family served already means a new collection has begun.
            fresh = families is None or spec.name in self._served
            if not fresh:
                self._served.add(spec.name)
        if fresh:
            # Not under the lock: the read may wait for the event loop, and
            # the loop may be collecting too.
            families = {
                f.spec.name: f for f in build_families(self.watchlist.read())
            }
            with self._lock:
                self._families = families
                self._served = {spec.name}
        assert families is not None  # noqa: S101
        family = families.get(spec.name)
        if family is None:
            return []
        observations: list[Observation] = []
        for labels, value in family.samples:
            attributes = dict(zip(spec.labels, labels, strict=True))
            if isinstance(value, Distribution):
                if value.count:  # no quantiles of nothing
                    observations.extend(
                        Observation(v, {**attributes, "quantile": q})
                        for q, v in value.quantiles().values
                    )
            else:
                observations.append(Observation(value, attributes))
        return observations


def instrument_otel_metrics(
    watchlist: Watchlist, *, meter_provider: MeterProvider | None = None
) -> None:
    """
    Report a watchlist's metrics through OpenTelemetry.

    Creates one observable instrument per metric family (see
    ``docs/observability.md``): counters for the Prometheus ``_total``
    series, up-down counters for the gauges that add up (active calls,
    queue depth), gauges for the rest.  Names are dotted, for example
    ``resilient_mcp.circuit_breaker.calls``, and attributes carry the same
    names and values as the Prometheus labels.

    The callbacks run when a metric reader collects, usually in the
    reader's own thread; they read the watchlist in the event loop's thread
    (see :meth:`Watchlist.read`).  Shut a periodic reader down from
    outside the event loop's thread, or after the loop has ended, so that
    its last collection does not wait for a loop that is waiting for it.

    Call it once per meter provider.

    Args:
        watchlist: The objects to report.
        meter_provider: Where to create the instruments; ``None`` for the
            global one (instruments made on the API's default provider
            start reporting once an SDK provider is set).

    Raises:
        ModuleNotFoundError: ``opentelemetry-api`` is not installed.

    .. versionadded:: 0.1.0
    """
    from opentelemetry import metrics  # noqa: PLC0415

    provider = (
        meter_provider
        if meter_provider is not None
        else metrics.get_meter_provider()
    )
    meter = provider.get_meter(INSTRUMENTATION_NAME, _version())
    observer = _Observer(watchlist)
    for spec in SPECS:
        create: Callable[..., object]
        if spec.kind is Kind.COUNTER:
            create = meter.create_observable_counter
        elif spec.kind is Kind.GAUGE and spec.additive:
            create = meter.create_observable_up_down_counter
        else:
            create = meter.create_observable_gauge
        create(
            spec.otel_name,
            callbacks=[functools.partial(observer.observe, spec)],
            unit=spec.otel_unit,
            description=spec.documentation,
        )

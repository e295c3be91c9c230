"""
What a metric family is, independent of the exporter.

Its :class:`Kind`, its :class:`Spec` (both exporters' names) and a
:class:`Family` of samples at one moment.
"""

from __future__ import annotations

import enum

import attrs

from ._distribution import Distribution


class Kind(enum.Enum):
    """The type of a metric family."""

    COUNTER = "counter"
    """Only goes up (Prometheus adds ``_total``)."""
    GAUGE = "gauge"
    """A value now, which may go up and down."""
    HISTOGRAM = "histogram"
    """A latency distribution: cumulative buckets, a count and a sum."""


@attrs.frozen(kw_only=True)
class Spec:
    """One metric family, as both exporters name it."""

    name: str
    """Prometheus name; counters without their ``_total`` suffix."""
    kind: Kind
    """Counter, gauge or histogram."""
    documentation: str
    """The ``# HELP`` text, and the OpenTelemetry description."""
    labels: tuple[str, ...]
    """Label names (OpenTelemetry attribute keys), ``le`` aside."""
    otel_name: str
    """The OpenTelemetry instrument name."""
    otel_unit: str
    """The OpenTelemetry unit (UCUM)."""
    additive: bool = False
    """A gauge whose series may be summed (an OpenTelemetry
    up-down counter rather than a gauge)."""


Value = float | Distribution
Sample = tuple[tuple[str, ...], Value]


@attrs.frozen(kw_only=True)
class Family:
    """A spec and its samples at one moment."""

    spec: Spec
    samples: tuple[Sample, ...]

"""
Latency distributions for the exporters: histogram buckets and quantiles.

A latency family's samples are :class:`Distribution` values, each holding
a private copy of an HdrHistogram.  Prometheus turns one into cumulative
``le`` buckets (:meth:`Distribution.buckets`), which add up across
processes and decay with ``rate()``; OpenTelemetry, which has no
observable histogram, reports its quantiles (:meth:`Distribution.
quantiles`).  Exact percentiles stay where they were: ``metrics()`` and
the ``.hlog`` dumps.
"""

from __future__ import annotations

import itertools
import math

from collections.abc import Iterable
from typing import Any, Final

import attrs

from .._config import ConfigurationError
from .._metrics import LatencyHistogram


DEFAULT_BUCKETS: Final[tuple[float, ...]] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)
"""Upper bounds in seconds, 1 ms to 60 s: from a local tool to a slow
remote one, up to the default timeouts.  ``+Inf`` is always added."""

QUANTILES: Final = (
    ("0.5", 50.0),
    ("0.9", 90.0),
    ("0.95", 95.0),
    ("0.99", 99.0),
    ("0.999", 99.9),
    ("1", 100.0),
)
"""(label, percentile) of the quantiles OpenTelemetry reports."""


def to_buckets(value: Any) -> Any:
    """Bucket bounds as a tuple of floats (ints accepted)."""
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        return value  # the validator says why
    return tuple(
        float(b) if isinstance(b, int) and not isinstance(b, bool) else b
        for b in value
    )


def check_buckets(owner: str, value: Any) -> None:
    """
    Check latency bucket bounds: seconds, finite, > 0, ascending, unique.

    Raises:
        ConfigurationError: Naming *owner*'s ``buckets`` field.
    """
    field = f"{owner}.buckets"
    if not isinstance(value, tuple) or not value:
        raise ConfigurationError(
            f"{field} must be a non-empty sequence of seconds, got {value!r}"
        )
    for bound in value:
        if not isinstance(bound, float) or not 0 < bound < math.inf:
            raise ConfigurationError(
                f"{field} must hold finite seconds > 0 (+Inf is always "
                f"added), got {bound!r}"
            )
    for low, high in itertools.pairwise(value):
        if not low < high:
            raise ConfigurationError(
                f"{field} must be strictly ascending, got {low!r} then "
                f"{high!r}"
            )


@attrs.frozen(kw_only=True)
class Quantiles:
    """The quantiles of one distribution, for OpenTelemetry."""

    count: int
    """How many values were observed."""
    values: tuple[tuple[str, float], ...]
    """(quantile label, seconds); quantile ``"1"`` is the maximum."""


@attrs.frozen(eq=False)
class Distribution:
    """The value of one latency series: a private histogram copy."""

    histogram: LatencyHistogram
    """A copy nobody else records into."""

    @property
    def count(self) -> int:
        """How many values were recorded."""
        return self.histogram.count

    @property
    def total(self) -> float:
        """Their sum in seconds, each value taken at its bucket's middle."""
        return self.histogram.mean() * self.histogram.count

    def buckets(self, bounds: tuple[float, ...]) -> list[tuple[float, int]]:
        """(upper bound, cumulative count), ending with ``inf``."""
        counts = self.histogram.cumulative_counts(bounds)
        return [*zip(bounds, counts, strict=True), (math.inf, self.count)]

    def quantiles(self) -> Quantiles:
        """The :data:`QUANTILES` of the distribution, in seconds."""
        values = self.histogram.values_at_percentiles(
            [p for _, p in QUANTILES]
        )
        return Quantiles(
            count=self.count,
            values=tuple(
                (label, v / 1_000_000)  # microseconds to seconds
                for (label, _), v in zip(QUANTILES, values, strict=True)
            ),
        )

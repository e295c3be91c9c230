"""
Latency distributions for the :class:`~._chaos_faults.Latency` fault.

Each maps one uniform draw ``u`` in [0, 1) to seconds (an inverse CDF),
which is what keeps the number of draws per decision fixed (see
:mod:`._chaos`).  The validators shared by every chaos config live here
too, next to the first configs that use them.
"""

from __future__ import annotations

import math
import statistics

from typing import Any, Final, Protocol, final

import attrs

from .._config import ConfigurationError


_UNIT_NORMAL: Final = statistics.NormalDist()


def _fail(inst: object, attribute: attrs.Attribute[Any], rule: str) -> None:
    value = getattr(inst, attribute.name)
    raise ConfigurationError(
        f"{type(inst).__name__}.{attribute.name} must be {rule}, got {value!r}"
    )


def _finite(value: object, *, minimum: float = 0.0) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= minimum
    )


def _rate(inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not (_finite(value) and value <= 1):
        _fail(inst, attribute, "a probability in [0, 1]")


def _seconds(inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not _finite(value):
        _fail(inst, attribute, "a finite number of seconds >= 0")


def _optional_seconds(
    inst: Any, attribute: attrs.Attribute[Any], value: Any
) -> None:
    if value is not None and not _finite(value):
        _fail(inst, attribute, "a finite number of seconds >= 0 or None")


class DelayDistribution(Protocol):
    """
    A latency distribution, as its inverse CDF.

    ``sample(u)`` maps one uniform draw *u* in [0, 1) to a delay in
    seconds; the injector draws *u*, so one call always consumes one draw.

    .. versionadded:: 0.1.0
    """

    def sample(self, u: float) -> float:
        """The delay, in seconds, at quantile *u* of the distribution."""
        ...


def _cap(value: float, cap: float | None) -> float:
    return value if cap is None else min(value, cap)


@final
@attrs.frozen
class FixedDelay:
    """
    Always the same delay.

    .. versionadded:: 0.1.0
    """

    seconds: float = attrs.field(converter=float, validator=_seconds)
    """The delay, in seconds."""

    def sample(self, u: float) -> float:  # noqa: ARG002 (the protocol)
        """``seconds``, whatever *u*."""
        return self.seconds


@final
@attrs.frozen
class UniformDelay:
    """
    A delay spread evenly between two bounds.

    .. versionadded:: 0.1.0
    """

    low: float = attrs.field(converter=float, validator=_seconds)
    """The shortest delay, in seconds."""
    high: float = attrs.field(converter=float, validator=_seconds)
    """The longest delay, in seconds; at least ``low``."""

    @high.validator
    def _check_high(self, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value < self.low:
            _fail(self, attribute, f">= low ({self.low!r})")

    def sample(self, u: float) -> float:
        """``low + u * (high - low)``."""
        return self.low + u * (self.high - self.low)


@final
@attrs.frozen(kw_only=True)
class ExponentialDelay:
    """
    Exponentially distributed delays: mostly short, now and then long.

    .. versionadded:: 0.1.0
    """

    mean: float = attrs.field(converter=float, validator=_seconds)
    """The mean delay, in seconds."""
    cap: float | None = attrs.field(default=None, validator=_optional_seconds)
    """The longest delay, in seconds, or ``None`` for no cap."""

    def sample(self, u: float) -> float:
        """The exponential quantile ``-mean * ln(1 - u)``, capped."""
        return _cap(-self.mean * math.log1p(-u), self.cap)


@final
@attrs.frozen(kw_only=True)
class LognormalDelay:
    """
    Log-normal delays: the long right tail of real service latencies.

    .. versionadded:: 0.1.0
    """

    median: float = attrs.field(converter=float, validator=_seconds)
    """The median delay, in seconds."""
    sigma: float = attrs.field(
        default=1.0, converter=float, validator=_seconds
    )
    """The standard deviation of the delay's logarithm (the tail's
    weight)."""
    cap: float | None = attrs.field(default=None, validator=_optional_seconds)
    """The longest delay, in seconds, or ``None`` for no cap."""

    def sample(self, u: float) -> float:
        """``median * exp(sigma * z)`` for the normal quantile *z* of *u*."""
        if self.median == 0 or u <= 0:
            return 0.0
        z = _UNIT_NORMAL.inv_cdf(u)
        return _cap(self.median * math.exp(self.sigma * z), self.cap)


def _delay(value: Any) -> Any:
    if _finite(value):
        return FixedDelay(value)
    return value


def _check_distribution(
    inst: Any, attribute: attrs.Attribute[Any], value: Any
) -> None:
    if not callable(getattr(value, "sample", None)):
        _fail(
            inst,
            attribute,
            "a finite number of seconds >= 0 or a DelayDistribution",
        )

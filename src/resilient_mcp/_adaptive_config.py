"""
The configuration of an adaptive bulkhead: :class:`AdaptiveLimitConfig`.

The algorithms it names live in ``_adaptive_limit.py``; this module only
holds their knobs, with Netflix/concurrency-limits' defaults (issue 13,
item 2).
"""

from __future__ import annotations

import math

from collections.abc import Callable
from typing import Any, Final, Literal

import attrs

from ._config import (
    ConfigurationError,
    _fail,
    _int_ge,
    _is_number,
    _seed,
    to_seconds,
)


Algorithm = Literal["gradient2", "vegas", "aimd"]
"""The algorithms :class:`AdaptiveLimitConfig` offers."""
_ALGORITHMS: Final = ("gradient2", "vegas", "aimd")
VegasProbe = Literal["sample", "drain"]
"""How Vegas measures its no-load RTT anew (``vegas_probe``)."""
_VEGAS_PROBES: Final = ("sample", "drain")

# Netflix's defaults (the builders of the three Java classes).
DEFAULT_INITIAL_LIMIT: Final = 20  # calls
DEFAULT_MIN_LIMIT: Final = 1  # calls
DEFAULT_MAX_LIMIT: Final = 200  # calls
DEFAULT_GRADIENT2_SMOOTHING: Final = 0.2  # weight of the new estimate
DEFAULT_GRADIENT2_RTT_TOLERANCE: Final = 1.5  # ratio of RTTs
DEFAULT_GRADIENT2_LONG_WINDOW: Final = 600  # samples
DEFAULT_GRADIENT2_QUEUE_SIZE: Final = 4  # calls
DEFAULT_VEGAS_ALPHA: Final = 3  # times log10(limit)
DEFAULT_VEGAS_BETA: Final = 6  # times log10(limit)
DEFAULT_VEGAS_THRESHOLD: Final = 1  # times log10(limit)
DEFAULT_VEGAS_SMOOTHING: Final = 1.0  # weight of the new estimate
DEFAULT_VEGAS_PROBE_MULTIPLIER: Final = 30  # times the limit, in samples
DEFAULT_AIMD_BACKOFF_RATIO: Final = 0.9  # multiplier on a drop
DEFAULT_AIMD_TIMEOUT: Final = 5.0  # seconds; a slower call is a drop
# WindowedLimit's defaults, but for the shortest window: Netflix's is 1 s,
# ours 100 ms (the least Netflix allows), so that a window is twice the
# lowest RTT for calls of 50 to 500 ms, and the limit moves several times
# a second: within 10 s of a change in the server (issue 13, item 2).
DEFAULT_WINDOW_SIZE: Final = 10  # samples at least per window
DEFAULT_WINDOW_MIN_TIME: Final = 0.1  # seconds
DEFAULT_WINDOW_MAX_TIME: Final = 1.0  # seconds
DEFAULT_WINDOW_MIN_RTT: Final = 100e-6  # seconds; faster calls are ignored


def _fraction(
    *, low: float, high: float, high_open: bool = False
) -> Callable[[Any, attrs.Attribute[Any], Any], None]:
    rule = f"a number in ({low:g}, {high:g}" + (")" if high_open else "]")

    def check(inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if (
            not _is_number(value)
            or value <= low
            or value > high
            or (high_open and value == high)
        ):
            _fail(inst, attribute, rule, value)

    return check


def _at_least(
    bound: float,
) -> Callable[[Any, attrs.Attribute[Any], Any], None]:
    def check(inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if not _is_number(value) or math.isinf(value) or value < bound:
            _fail(inst, attribute, f"a finite number >= {bound:g}", value)

    return check


def _queue_size(
    inst: Any, attribute: attrs.Attribute[Any], value: Any
) -> None:
    if not callable(value):
        _int_ge(0)(inst, attribute, value)


@attrs.frozen(kw_only=True)
class AdaptiveLimitConfig:
    """
    How an adaptive bulkhead finds its limit: the algorithm and its knobs.

    Pass it as ``BulkheadConfig(adaptive=...)``.  The defaults are those
    of Netflix's concurrency-limits, but for the limits (the issue's) and
    ``window_min_time`` (100 ms, not 1 s, so that the limit follows the
    server within seconds); each algorithm reads only its own
    ``gradient2_*``, ``vegas_*`` or ``aimd_*`` fields.

    >>> AdaptiveLimitConfig(algorithm="vegas", max_limit=50).max_limit
    50

    .. versionadded:: 0.1.0
    """

    algorithm: Algorithm = attrs.field(default="gradient2")
    """``"gradient2"``, ``"vegas"`` or ``"aimd"``."""

    initial_limit: int = attrs.field(
        default=DEFAULT_INITIAL_LIMIT, validator=_int_ge(1)
    )
    """Calls that may run at once before the first sample."""

    min_limit: int = attrs.field(
        default=DEFAULT_MIN_LIMIT, validator=_int_ge(1)
    )
    """The limit never goes below this."""

    max_limit: int = attrs.field(
        default=DEFAULT_MAX_LIMIT, validator=_int_ge(1)
    )
    """The limit never goes above this."""

    gradient2_smoothing: float = attrs.field(
        default=DEFAULT_GRADIENT2_SMOOTHING,
        validator=_fraction(low=0.0, high=1.0),
    )
    """Weight of each new estimate against the current limit, in (0, 1]."""

    gradient2_rtt_tolerance: float = attrs.field(
        default=DEFAULT_GRADIENT2_RTT_TOLERANCE, validator=_at_least(1.0)
    )
    """How many times the long-term RTT a call may take before the limit
    shrinks (``rttTolerance``)."""

    gradient2_long_window: int = attrs.field(
        default=DEFAULT_GRADIENT2_LONG_WINDOW, validator=_int_ge(1)
    )
    """Samples in the long-term RTT's exponential average (``longWindow``)."""

    gradient2_queue_size: int | Callable[[int], int] = attrs.field(
        default=DEFAULT_GRADIENT2_QUEUE_SIZE, validator=_queue_size
    )
    """Calls the limit may grow by per sample while latency stays low: a
    number, or a function of the current limit (``queueSize``)."""

    vegas_alpha: int = attrs.field(
        default=DEFAULT_VEGAS_ALPHA, validator=_int_ge(1)
    )
    """Queued calls, times log10 of the limit, under which the limit grows
    by log10 of the limit."""

    vegas_beta: int = attrs.field(
        default=DEFAULT_VEGAS_BETA, validator=_int_ge(1)
    )
    """Queued calls, times log10 of the limit, over which the limit shrinks
    by log10 of the limit."""

    vegas_threshold: int = attrs.field(
        default=DEFAULT_VEGAS_THRESHOLD, validator=_int_ge(1)
    )
    """Queued calls, times log10 of the limit, at or under which the limit
    grows fast (by beta)."""

    vegas_smoothing: float = attrs.field(
        default=DEFAULT_VEGAS_SMOOTHING, validator=_fraction(low=0.0, high=1.0)
    )
    """Weight of each new estimate against the current limit, in (0, 1]."""

    vegas_probe_multiplier: int = attrs.field(
        default=DEFAULT_VEGAS_PROBE_MULTIPLIER, validator=_int_ge(1)
    )
    """The no-load RTT is measured anew about every ``probe_multiplier``
    times the limit samples (with a jitter of 0.5 to 1)."""

    vegas_probe: VegasProbe = attrs.field(default="sample")
    """
    How the no-load RTT is measured anew.  ``"sample"`` (Netflix's): the
    next call's RTT becomes it, loaded or not.  ``"drain"``: the limit
    drops to ``min_limit`` until a call that started with at most
    ``min_limit`` calls running (itself included) ends; its RTT becomes
    the no-load RTT, and the limit returns to where it was.  Under a
    lasting overload only a drained probe measures the server unloaded
    (docs/adaptive-concurrency.md).
    """

    aimd_backoff_ratio: float = attrs.field(
        default=DEFAULT_AIMD_BACKOFF_RATIO,
        validator=_fraction(low=0.5, high=1.0, high_open=True),
    )
    """The limit is multiplied by this on each drop, in [0.5, 1)."""

    aimd_timeout: float = attrs.field(
        default=DEFAULT_AIMD_TIMEOUT, converter=to_seconds
    )
    """Seconds after which a call counts as dropped, however it ended."""

    window_size: int | None = attrs.field(default=DEFAULT_WINDOW_SIZE)
    """
    Samples a window needs (at least 10), or ``None`` to feed every call
    to the algorithm.  With a window (Netflix's ``WindowedLimit``), the
    algorithm sees one sample per window: its mean RTT, its highest
    in-flight count, and whether any call in it was dropped.
    """

    window_min_time: float = attrs.field(
        default=DEFAULT_WINDOW_MIN_TIME, converter=to_seconds
    )
    """Seconds a window lasts at least; a window lasts twice its lowest
    RTT, within this and ``window_max_time``."""

    window_max_time: float = attrs.field(
        default=DEFAULT_WINDOW_MAX_TIME, converter=to_seconds
    )
    """Seconds a window lasts at most."""

    window_min_rtt: float = attrs.field(
        default=DEFAULT_WINDOW_MIN_RTT, converter=to_seconds
    )
    """Seconds under which a call is too fast to be a sample (windowed
    only)."""

    seed: int | None = attrs.field(default=None, validator=_seed)
    """
    Seed of the limit's own :class:`random.Random` (Vegas's probe
    jitter), for reproducible runs; ``None`` seeds it from the operating
    system.
    """

    @algorithm.validator
    def _check_algorithm(
        self, attribute: attrs.Attribute[Any], value: Any
    ) -> None:
        if value not in _ALGORITHMS:
            _fail(self, attribute, f"one of {_ALGORITHMS}", value)

    @vegas_probe.validator
    def _check_vegas_probe(
        self, attribute: attrs.Attribute[Any], value: Any
    ) -> None:
        if value not in _VEGAS_PROBES:
            _fail(self, attribute, f"one of {_VEGAS_PROBES}", value)

    @window_size.validator
    def _check_window_size(
        self, attribute: attrs.Attribute[Any], value: Any
    ) -> None:
        if value is not None:
            _int_ge(10)(self, attribute, value)

    @window_min_rtt.validator
    def _check_min_rtt(
        self, attribute: attrs.Attribute[Any], value: Any
    ) -> None:
        if not _is_number(value) or math.isinf(value) or value < 0:
            _fail(self, attribute, "a finite number of seconds >= 0", value)

    @aimd_timeout.validator
    @window_min_time.validator
    @window_max_time.validator
    def _check_timeout(
        self, attribute: attrs.Attribute[Any], value: Any
    ) -> None:
        if not _is_number(value) or math.isinf(value) or value <= 0:
            _fail(self, attribute, "a finite number of seconds > 0", value)

    def __attrs_post_init__(self) -> None:
        if not self.min_limit <= self.initial_limit <= self.max_limit:
            raise ConfigurationError(
                f"{type(self).__name__}.initial_limit must be between "
                f"min_limit ({self.min_limit}) and max_limit "
                f"({self.max_limit}), got {self.initial_limit!r}"
            )
        if self.window_min_time > self.window_max_time:
            raise ConfigurationError(
                f"{type(self).__name__}.window_min_time must be <= "
                f"window_max_time ({self.window_max_time}), got "
                f"{self.window_min_time!r}"
            )
        if self.vegas_alpha > self.vegas_beta:
            raise ConfigurationError(
                f"{type(self).__name__}.vegas_alpha must be <= vegas_beta "
                f"({self.vegas_beta}), got {self.vegas_alpha!r}"
            )

"""
Adaptive concurrency limits: Netflix's concurrency-limits algorithms.

The bulkhead's number of slots is a guess; the right number is what the
server can run at once without queueing, and that changes with the
server's load and speed.  These algorithms find it from the calls' round
trip times, the way TCP congestion control finds a path's window:
Netflix/concurrency-limits, ``Gradient2Limit.java``, ``VegasLimit.java``
and ``AIMDLimit.java``, ported update rule for update rule.

Each algorithm is a pure class: ``on_sample(now, rtt, inflight, dropped)``
takes one finished call (when it ended, its round trip time in seconds,
how many calls were running when it started, itself included, and
whether it was dropped: timed out or refused for overload) and returns
the new limit.  No clock reads, no I/O: the bulkhead feeds it the times
the pipeline measured (issue 13, item 2).

:class:`AdaptiveLimit` is the small glue the bulkhead uses: it makes the
algorithm from an :class:`AdaptiveLimitConfig`, hands out the permits
that remember when a call started running, and turns a call's outcome
into a sample.
"""

from __future__ import annotations

import math
import random

from typing import Final, Protocol, final

from ._adaptive_config import AdaptiveLimitConfig
from ._errors import BulkheadError, TemporaryError


GRADIENT2_WARMUP: Final = 10  # samples averaged before the EMA starts


class LimitAlgorithm(Protocol):
    """What the bulkhead asks of an algorithm."""

    @property
    def limit(self) -> int:
        """The current limit."""

    def on_sample(
        self, now: float, rtt: float, inflight: int, dropped: bool
    ) -> int:
        """Take one finished call; return the new limit."""


def log10_root(limit: int) -> int:
    """
    Netflix's ``Log10RootFunction``: ``max(1, int(log10(limit)))``.

    (For limits of 1000 and more it is ``int(sqrt(limit))``, as in Java.)
    """
    if limit >= 1000:  # Netflix's lookup table ends here
        return math.isqrt(limit)
    return max(1, int(math.log10(limit))) if limit > 0 else 1


@final
class ExpAvg:
    """Netflix's ``ExpAvgMeasurement``: a mean, then an EMA of *window*."""

    __slots__ = ("count", "factor", "sum", "value", "warmup")

    def __init__(self, window: int, warmup: int) -> None:
        self.value = 0.0
        self.sum = 0.0
        self.count = 0
        self.warmup = warmup
        self.factor = 2.0 / (window + 1)

    def add(self, sample: float) -> float:
        """Add *sample*; return the new average."""
        if self.count < self.warmup:
            self.count += 1
            self.sum += sample
            self.value = self.sum / self.count
        else:
            factor = self.factor
            self.value = self.value * (1 - factor) + sample * factor
        return self.value


@final
class Gradient2:
    """
    ``Gradient2Limit``: the gradient of a long-term RTT over the last one.

    For each sample::

        gradient = max(0.5, min(1, tolerance * long_rtt / rtt))
        new = limit * gradient + queue_size(limit)
        limit = clamp(limit * (1 - smoothing) + new * smoothing)

    where ``long_rtt`` is an exponential average over ``long_window``
    samples (cut by 5 % whenever it is over twice the last RTT, so that it
    comes down after an overload), and the limit does not move while fewer
    than half of it are in flight (the caller, not the server, limits).
    """

    __slots__ = ("_config", "_estimate", "_long_rtt")

    def __init__(self, config: AdaptiveLimitConfig) -> None:
        self._config = config
        self._estimate = float(config.initial_limit)
        self._long_rtt = ExpAvg(config.gradient2_long_window, GRADIENT2_WARMUP)

    @property
    def limit(self) -> int:
        """The current limit."""
        return int(self._estimate)

    @property
    def estimate(self) -> float:
        """The estimated limit, before rounding down."""
        return self._estimate

    @property
    def long_rtt(self) -> float:
        """The long-term RTT, in seconds."""
        return self._long_rtt.value

    def on_sample(
        self,
        now: float,  # noqa: ARG002 (Netflix's interface)
        rtt: float,
        inflight: int,
        dropped: bool,  # noqa: ARG002 (gradient2 reads latency only)
    ) -> int:
        """Take one finished call; return the new limit."""
        config = self._config
        estimate = self._estimate
        if rtt <= 0:  # a call faster than the clock: no gradient to take
            return int(estimate)
        size = config.gradient2_queue_size
        queue_size = float(size(int(estimate)) if callable(size) else size)
        long_rtt = self._long_rtt.add(rtt)
        if long_rtt / rtt > 2:
            self._long_rtt.value = long_rtt * 0.95
        if inflight < estimate / 2:
            return int(estimate)
        gradient = max(
            0.5, min(1.0, config.gradient2_rtt_tolerance * long_rtt / rtt)
        )
        new = estimate * gradient + queue_size
        smoothing = config.gradient2_smoothing
        new = estimate * (1 - smoothing) + new * smoothing
        self._estimate = max(
            float(config.min_limit), min(float(config.max_limit), new)
        )
        return int(self._estimate)


@final
class Vegas:
    """
    ``VegasLimit``: TCP Vegas's estimate of the calls queued at the server.

    The lowest RTT seen is the no-load RTT (measured anew every
    ``probe_multiplier * limit`` samples, with a jitter of 0.5 to 1: from
    the next sample, as Netflix does, or with ``vegas_probe="drain"`` from
    the first call that ran with at most ``min_limit`` in flight, the
    limit held at ``min_limit`` until it ends).  For each later sample,
    with ``log = log10_root(limit)``::

        queue = ceil(limit * (1 - rtt_noload / rtt))
        dropped:                  new = limit - log
        inflight * 2 < limit:     no change
        queue <= threshold * log: new = limit + beta * log
        queue < alpha * log:      new = limit + log
        queue > beta * log:       new = limit - log
        otherwise:                no change
        limit = (1 - smoothing) * limit + smoothing * clamp(new)

    Args:
        config: The configuration.
        rng: The probes' jitter source; a fresh ``random.Random()`` if
            ``None``.
    """

    __slots__ = (
        "_config",
        "_drained",
        "_estimate",
        "_jitter",
        "_probes",
        "_rng",
        "rtt_noload",
    )

    def __init__(
        self, config: AdaptiveLimitConfig, rng: random.Random | None = None
    ) -> None:
        self._config = config
        self._estimate = float(config.initial_limit)
        self._rng = random.Random() if rng is None else rng
        self._jitter = self._rng.uniform(0.5, 1.0)
        self._probes = 0
        self._drained: float | None = None
        self.rtt_noload = 0.0

    @property
    def limit(self) -> int:
        """The current limit."""
        return int(self._estimate)

    @property
    def estimate(self) -> float:
        """The estimated limit, before rounding down."""
        return self._estimate

    def _probing(self, rtt: float, inflight: int, dropped: bool) -> bool:
        """
        Whether the sample went to measuring the no-load RTT anew.

        Counts the samples to the next probe and starts it: the sample's
        RTT becomes the no-load RTT (``"sample"``), or the limit drops to
        ``min_limit`` (``"drain"``) until a call that started with at
        most ``min_limit`` running ends, whose RTT does; then the limit
        returns to where it was.
        """
        config = self._config
        drained = self._drained
        if drained is not None:  # draining
            if inflight <= config.min_limit and not dropped:
                self.rtt_noload = rtt
                self._estimate = drained
                self._drained = None
            return True
        self._probes += 1
        due = self._jitter * config.vegas_probe_multiplier * self._estimate
        if self._probes < due:
            return False
        self._jitter = self._rng.uniform(0.5, 1.0)
        self._probes = 0
        if config.vegas_probe == "drain":
            self._drained = self._estimate
            self._estimate = float(config.min_limit)
        else:
            self.rtt_noload = rtt
        return True

    def on_sample(
        self,
        now: float,  # noqa: ARG002 (Netflix's interface)
        rtt: float,
        inflight: int,
        dropped: bool,
    ) -> int:
        """Take one finished call; return the new limit."""
        config = self._config
        estimate = self._estimate
        if rtt <= 0:  # Netflix requires rtt > 0
            return int(estimate)
        if self._probing(rtt, inflight, dropped):
            return int(self._estimate)
        if self.rtt_noload == 0 or rtt < self.rtt_noload:
            self.rtt_noload = rtt
            return int(estimate)
        queue = math.ceil(estimate * (1 - self.rtt_noload / rtt))
        log = log10_root(int(estimate))
        if dropped:
            new = estimate - log
        elif inflight * 2 < estimate:
            return int(estimate)
        elif queue <= config.vegas_threshold * log:
            new = estimate + config.vegas_beta * log
        elif queue < config.vegas_alpha * log:
            new = estimate + log
        elif queue > config.vegas_beta * log:
            new = estimate - log
        else:
            return int(estimate)
        new = max(float(config.min_limit), min(float(config.max_limit), new))
        smoothing = config.vegas_smoothing
        self._estimate = (1 - smoothing) * estimate + smoothing * new
        return int(self._estimate)


@final
class AIMD:
    """
    ``AIMDLimit``: additive increase, multiplicative decrease on drops.

    For each sample::

        dropped or rtt > timeout: limit = int(limit * backoff_ratio)
        inflight * 2 >= limit:    limit = limit + 1
        limit = clamp(limit)
    """

    __slots__ = ("_config", "limit")

    def __init__(self, config: AdaptiveLimitConfig) -> None:
        self._config = config
        self.limit = config.initial_limit

    def on_sample(
        self,
        now: float,  # noqa: ARG002 (Netflix's interface)
        rtt: float,
        inflight: int,
        dropped: bool,
    ) -> int:
        """Take one finished call; return the new limit."""
        config = self._config
        limit = self.limit
        if dropped or rtt > config.aimd_timeout:
            limit = int(limit * config.aimd_backoff_ratio)
        elif inflight * 2 >= limit:
            limit += 1
        self.limit = min(config.max_limit, max(config.min_limit, limit))
        return self.limit


@final
class Windowed:
    """
    ``WindowedLimit``: one sample per window for the algorithm it wraps.

    A window collects samples of at least ``window_min_rtt``; it closes
    with the first sample that ends after its end time, and the next one
    ends ``clamp(2 * lowest RTT, window_min_time, window_max_time)``
    later.  A closed window of at least ``window_size`` samples becomes
    one sample: the mean RTT, the highest in-flight count, and whether any
    call was dropped.
    """

    __slots__ = (
        "_config",
        "_count",
        "_dropped",
        "_inflight",
        "_min_rtt",
        "_next_update",
        "_sum",
        "algorithm",
    )

    def __init__(
        self, config: AdaptiveLimitConfig, algorithm: LimitAlgorithm
    ) -> None:
        self._config = config
        self.algorithm = algorithm
        self._next_update = -math.inf
        self._reset()

    def _reset(self) -> None:
        self._min_rtt = math.inf
        self._sum = 0.0
        self._inflight = 0
        self._count = 0
        self._dropped = False

    @property
    def limit(self) -> int:
        """The current limit."""
        return self.algorithm.limit

    def on_sample(
        self, now: float, rtt: float, inflight: int, dropped: bool
    ) -> int:
        """Take one finished call; return the new limit."""
        config = self._config
        if rtt < config.window_min_rtt:
            return self.algorithm.limit
        self._min_rtt = min(self._min_rtt, rtt)
        self._sum += rtt
        self._inflight = max(self._inflight, inflight)
        self._count += 1
        self._dropped = self._dropped or dropped
        if now <= self._next_update:
            return self.algorithm.limit
        min_rtt, count = self._min_rtt, self._count
        mean, peak, drop = self._sum / count, self._inflight, self._dropped
        self._reset()
        self._next_update = now + min(
            max(min_rtt * 2, config.window_min_time), config.window_max_time
        )
        assert config.window_size is not None  # noqa: S101
        if count < config.window_size:
            return self.algorithm.limit
        return self.algorithm.on_sample(now, mean, peak, drop)


def new_algorithm(
    config: AdaptiveLimitConfig, rng: random.Random | None = None
) -> LimitAlgorithm:
    """
    The algorithm *config* names, at its initial limit, in its window.

    Args:
        config: The configuration.
        rng: Vegas's jitter source (``None``: one seeded with the
            config's ``seed``).
    """
    algorithm: LimitAlgorithm
    if rng is None and config.seed is not None:
        rng = random.Random(config.seed)
    if config.algorithm == "gradient2":
        algorithm = Gradient2(config)
    elif config.algorithm == "vegas":
        algorithm = Vegas(config, rng)
    else:
        algorithm = AIMD(config)
    if config.window_size is None:
        return algorithm
    return Windowed(config, algorithm)


@final
class Permit:
    """One call's slot in an adaptive bulkhead: when it started running."""

    __slots__ = ("inflight", "started")

    def __init__(self, started: float, inflight: int) -> None:
        self.started = started
        self.inflight = inflight


def is_drop(error: BaseException) -> bool:
    """
    Whether a call that raised *error* was dropped: timed out or overloaded.

    Timeouts (:class:`TimeoutError`, :class:`~resilient_mcp.CallTimeout`
    among them), a :class:`~resilient_mcp.TemporaryError` (a server's "try
    again later") and a :class:`~resilient_mcp.BulkheadError` from a
    policy further in are drops; any other error is an answer like a
    result.
    """
    return isinstance(error, TimeoutError | TemporaryError | BulkheadError)


@final
class AdaptiveLimit:
    """
    The bulkhead's side of an adaptive limit: permits in, samples out.

    Args:
        config: The configuration.
    """

    __slots__ = ("algorithm",)

    def __init__(self, config: AdaptiveLimitConfig) -> None:
        self.algorithm = new_algorithm(config)

    @property
    def limit(self) -> int:
        """The current limit."""
        return self.algorithm.limit

    def sample(
        self, permit: object, now: float, error: BaseException | None
    ) -> int | None:
        """
        Feed the call that held *permit* and ended at *now*.

        Returns:
            The new limit if it changed, else ``None``.  A cancelled call
            (a :class:`BaseException` that is not an :class:`Exception`)
            is no sample: it says nothing about the server.
        """
        if error is not None and not isinstance(error, Exception):
            return None
        assert isinstance(permit, Permit)  # noqa: S101
        before = self.algorithm.limit
        after = self.algorithm.on_sample(
            now,
            now - permit.started,
            permit.inflight,
            error is not None and is_drop(error),
        )
        return None if after == before else after

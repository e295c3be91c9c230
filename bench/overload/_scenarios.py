"""
The overload scenarios, and the client configurations they compare.

A scenario is a flaky server (its capacity model), an open-loop load
(a base rate, and optionally a spike on top of it), and events that
change the server while the load runs (a brownout), all in seconds from
the start of the load.  ``scale`` shortens every duration for
``--quick`` runs (rates and the server stay the same).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

import attrs

from resilient_mcp import (
    AdaptiveLimitConfig,
    BulkheadConfig,
    CircuitBreakerConfig,
    HedgingConfig,
    ResilientClientConfig,
    RetryBudgetConfig,
    ThrottlingConfig,
)


# The server of every scenario: 5 requests at full speed, 100 ms each,
# so at most 50 requests a second (its capacity); slower in proportion
# beyond 5 in flight.  Small enough that one Python process on a shared
# two-core machine can offer three times that.
CAPACITY: Final = 5  # requests at full speed at once
BASE_LATENCY: Final = 0.1  # seconds per request within capacity
CAPACITY_RATE: Final = CAPACITY / BASE_LATENCY  # requests per second
STATIC_LIMIT: Final = 100  # the static bulkhead's running calls
QUEUE_SIZE: Final = 20  # both bulkheads' waiting calls (the tools default)
NEVER_OPENS: Final = 2**31 - 1  # a breaker threshold never reached
ALGORITHM: Final = "vegas"  # the adaptive limit's (see docs/overload.md)
# Vegas forgets its lowest RTT every 30 x limit samples (Netflix's
# default) and takes the next, loaded, RTT for the no-load one: under a
# steady overload the limit then climbs.  A drain probe (the limit held
# at min_limit until a lone call ends) measures the server unloaded, and
# every 1,000 x limit samples (minutes here) it costs next to nothing
# (docs/adaptive-concurrency.md, "Under a steady overload").
PROBE_MULTIPLIER: Final = 1000
ADAPTIVE_QUEUE: Final = 0  # the adaptive bulkhead refuses what it cannot run
SLOW_RATE: Final = 0.01  # share of the slow tail's requests that are slow
SLOW_FACTOR: Final = 10  # how many times slower those are
TUNED_PERCENTILE: Final = 0.97  # docs/hedging.md found it better than 0.95
TRANSIENT_RATE: Final = 0.05  # share of attempts that fail, transient
# A budget that holds retries to 1.2 attempts per call at 100 % failure
# from 20 calls a second up (1 + 0.1 + 2 / rate), twice the retries that
# 5 % transient failures need (0.05 + 0.05**2 per call).
TIGHT_PERCENT: Final = 0.1  # retries per call
TIGHT_MIN_RETRIES: Final = 2.0  # retries per second
# The failing server of the fast variant: no capacity model, no service
# time, so that the client, not the server, sets the pace.
FAILS_AT_ONCE: Final = {"capacity": 0, "base_latency": 0.0}
FAST_LIMIT: Final = 1000  # its static bulkhead's running calls


@attrs.frozen(kw_only=True)
class Spike:
    """Extra load on top of the base rate, for a while."""

    start: float
    """Seconds from the start of the load."""
    duration: float
    """Seconds the extra load lasts."""
    rate: float
    """Extra requests per second."""


@attrs.frozen(kw_only=True)
class ServerEvent:
    """A ``configure`` call on the server at a given time."""

    at: float
    """Seconds from the start of the load."""
    knobs: Mapping[str, Any]
    """The ``configure`` tool's arguments (``base_latency=1.0`` ...)."""


@attrs.frozen(kw_only=True)
class Scenario:
    """One overload scenario, run once per client configuration."""

    name: str
    title: str
    rate: float
    """Base requests per second, for the whole duration."""
    duration: float
    """Seconds during which requests start."""
    tool: str = "echo"
    arguments: Mapping[str, Any] = attrs.field(factory=lambda: {"text": "x"})
    server: Mapping[str, Any] = attrs.field(factory=dict)
    """Extra flaky-server options (``failure_rate`` ...)."""
    spike: Spike | None = None
    events: tuple[ServerEvent, ...] = ()
    configs: tuple[str, ...] = ("static", "adaptive")
    """The client configurations to compare (names in :data:`CONFIGS`)."""
    timeout: float | None = None
    """Seconds per attempt in every configuration (``None``: defaults)."""
    breaker: bool = True
    """False: breakers that never open, to see the retries alone."""
    steady_from: float = 0.0
    """Fraction of the run after which the load counts as steady."""
    tail: bool = False
    """True: summarize the tail (p99.9) and the hedges, and plot it."""
    max_concurrent: int | None = None
    """The static ``tools`` bulkhead's running calls, if not
    :data:`STATIC_LIMIT` (the adaptive limit's ``max_limit`` stays)."""
    retries: bool = False
    """True: summarize the retries (amplification over the whole run and
    over the steady window, success rate, the budget's bound)."""

    def scaled(self, scale: float) -> Scenario:
        """The scenario with every duration and time times *scale*."""
        spike = self.spike
        if spike is not None:
            spike = attrs.evolve(
                spike,
                start=spike.start * scale,
                duration=spike.duration * scale,
            )
        events = tuple(
            attrs.evolve(event, at=event.at * scale) for event in self.events
        )
        return attrs.evolve(
            self, duration=self.duration * scale, spike=spike, events=events
        )


def static() -> ResilientClientConfig:
    """
    The design document's settings: the seed client, no retry budget.

    3 attempts from 1 s, a breaker of 5 failures / 60 s, and a static
    ``tools`` bulkhead of 100 running calls (20 waiting, 15 s).
    """
    return ResilientClientConfig(
        retry_budget=None,
        bulkheads={
            "tools": BulkheadConfig(
                max_concurrent_requests=STATIC_LIMIT,
                queue_size=QUEUE_SIZE,
                request_timeout=15.0,
            )
        },
    )


def budget_only() -> ResilientClientConfig:
    """The static settings plus the default retry budget."""
    return attrs.evolve(
        static(), retry_budget=ResilientClientConfig().retry_budget
    )


def tight_budget() -> ResilientClientConfig:
    """
    The static settings plus a budget held to 1.2 attempts per call.

    ``RetryBudgetConfig(percent_can_retry=0.1,
    min_retries_per_second=2.0)``: at most ``1 + 0.1 + 2 / rate``
    attempts per call in the steady state (docs/retry-budget.md).
    """
    return attrs.evolve(
        static(),
        retry_budget=RetryBudgetConfig(
            percent_can_retry=TIGHT_PERCENT,
            min_retries_per_second=TIGHT_MIN_RETRIES,
        ),
    )


def adaptive(algorithm: str = ALGORITHM) -> ResilientClientConfig:
    """
    Retry budget + adaptive concurrency limit + adaptive throttling.

    The defaults of each, but for the limit's probes: a retry budget of
    20 % plus 10 retries a second; an adaptive limit (*algorithm*)
    starting at 20 (at most 100), every call a sample, Vegas drain-probing
    every :data:`PROBE_MULTIPLIER` x limit samples, and
    :data:`ADAPTIVE_QUEUE` waiting calls; a throttle with ``k=2`` over
    120 s.
    """
    limit: dict[str, Any] = {}
    if algorithm == "vegas":
        limit["vegas_probe"] = "drain"
        limit["vegas_probe_multiplier"] = PROBE_MULTIPLIER
    return ResilientClientConfig(
        bulkheads={
            "tools": BulkheadConfig(
                # No queue, as Netflix's limiters: a call over the limit
                # is refused at once rather than kept waiting (its wait
                # would be in its latency, and the limit does not see it).
                queue_size=ADAPTIVE_QUEUE,
                request_timeout=15.0,
                adaptive=AdaptiveLimitConfig(
                    algorithm=algorithm,  # type: ignore[arg-type]
                    max_limit=STATIC_LIMIT,
                    **limit,
                    # Every call is a sample: a window of at least 10
                    # samples (the default) never fills while a browned-
                    # out server answers 5 calls a second, and the limit
                    # would freeze (docs/overload.md).
                    window_size=None,
                ),
            )
        },
        throttling=ThrottlingConfig(seed=13),
    )


def hedged(algorithm: str = ALGORITHM) -> ResilientClientConfig:
    """The adaptive configuration plus hedging, ``HedgingConfig()``."""
    return attrs.evolve(adaptive(algorithm), hedging=HedgingConfig())


def hedged_p97(algorithm: str = ALGORITHM) -> ResilientClientConfig:
    """The adaptive configuration plus hedging at the p97 latency."""
    return attrs.evolve(
        adaptive(algorithm),
        hedging=HedgingConfig(percentile=TUNED_PERCENTILE),
    )


CONFIGS: Final[Mapping[str, Callable[..., ResilientClientConfig]]] = {
    "static": static,
    "budget": budget_only,
    "tight-budget": tight_budget,
    "adaptive": adaptive,
    "hedged": hedged,
    "hedged-p97": hedged_p97,
}
"""The client configurations, by name."""

ADAPTIVE: Final = frozenset({"adaptive", "hedged", "hedged-p97"})
"""The configurations that take the limit algorithm."""


def client_config(
    scenario: Scenario, name: str, algorithm: str = ALGORITHM
) -> ResilientClientConfig:
    """Configuration *name*, with the scenario's timeout, breaker, bulkhead."""
    config = CONFIGS[name](algorithm) if name in ADAPTIVE else CONFIGS[name]()
    changes: dict[str, Any] = {}
    if scenario.timeout is not None:
        changes["timeout"] = scenario.timeout
    tools = config.bulkheads.get("tools")
    if (
        scenario.max_concurrent is not None
        and tools is not None
        and tools.adaptive is None
    ):
        changes["bulkheads"] = {
            **config.bulkheads,
            "tools": attrs.evolve(
                tools, max_concurrent_requests=scenario.max_concurrent
            ),
        }
    if not scenario.breaker:
        changes["circuit_breaker"] = CircuitBreakerConfig(
            failure_threshold=NEVER_OPENS
        )
        changes["tool_circuit_breaker"] = None
    return attrs.evolve(config, **changes) if changes else config


SCENARIOS: Final[Mapping[str, Scenario]] = {
    s.name: s
    for s in (
        Scenario(
            name="uncontended",
            title="Uncontended: half the capacity (the reference latency)",
            rate=CAPACITY_RATE / 2,
            duration=10.0,
            configs=("static",),
        ),
        Scenario(
            name="overload-3x",
            title="3x overload: 150 requests/s offered to a 50/s server",
            rate=3 * CAPACITY_RATE,
            duration=40.0,
            steady_from=0.5,
        ),
        Scenario(
            name="brownout",
            title="Brownout: the server slows 10x for 30 s",
            rate=0.6 * CAPACITY_RATE,
            duration=60.0,
            events=(
                ServerEvent(
                    at=10.0, knobs={"base_latency": BASE_LATENCY * 10}
                ),
                ServerEvent(at=40.0, knobs={"base_latency": BASE_LATENCY}),
            ),
        ),
        Scenario(
            name="total-failure",
            title="100 % failure: retry amplification",
            rate=CAPACITY_RATE,
            duration=20.0,
            tool="flaky",
            arguments={},
            server={"failure_rate": 1.0},
            configs=("static", "budget", "tight-budget", "adaptive"),
            breaker=False,
            steady_from=0.5,
            retries=True,
        ),
        # The same, at twice the rate, from a server that fails at once
        # (no service time, no capacity): the budget's floor of retries
        # per second weighs half as much per call.  The static
        # configuration is left out (3.00 by construction).  At 200 a
        # second the one Python process of client and load generator
        # fell behind on this machine (a third of the requests never
        # started, attempts timed out in the client).
        Scenario(
            name="total-failure-fast",
            title="100 % failure at 100 requests/s, failing at once",
            rate=2 * CAPACITY_RATE,
            duration=20.0,
            tool="flaky",
            arguments={},
            server={"failure_rate": 1.0, **FAILS_AT_ONCE},
            configs=("budget", "tight-budget"),
            # Room for every call in its backoff (100 a second, up to 3 s
            # each), so that the bulkhead turns none away before the
            # retry policy sees it.
            max_concurrent=FAST_LIMIT,
            breaker=False,
            steady_from=0.5,
            retries=True,
        ),
        # 5 % of attempts fail at random (the server's seeded draws), at
        # 60 % of the capacity: the budgets must leave the success rate
        # of unbudgeted retries (1 - 0.05**3 of the calls) as it is.  The
        # breakers never open: 5 failures within their window would come
        # in seconds, and the retries are what is compared.
        Scenario(
            name="transient-5pct",
            title="5 % transient failures: success rate with and without",
            rate=0.6 * CAPACITY_RATE,
            duration=30.0,
            tool="flaky",
            arguments={},
            server={"failure_rate": TRANSIENT_RATE},
            configs=("static", "budget", "tight-budget", "adaptive"),
            breaker=False,
            steady_from=0.5,
            retries=True,
        ),
        Scenario(
            name="spike",
            title="Load spike: 70 % load, 5 s at 4x, then 70 % again",
            rate=0.7 * CAPACITY_RATE,
            duration=60.0,
            spike=Spike(
                start=10.0, duration=5.0, rate=(4 - 0.7) * CAPACITY_RATE
            ),
            timeout=5 * BASE_LATENCY,
            breaker=False,
        ),
        # Half the capacity, so that the slow share is a tail and not an
        # overload (a slow request holds its place 10x longer: about 3
        # requests in flight of 5); 100 s gives 2,500 calls per
        # configuration, the p99.9 the 3rd slowest (1,250 with --quick).
        Scenario(
            name="slow-tail",
            title="Slow tail: 1 % of requests 10x slower, half the capacity",
            rate=0.5 * CAPACITY_RATE,
            duration=100.0,
            server={"slow_rate": SLOW_RATE, "slow_factor": SLOW_FACTOR},
            configs=("adaptive", "hedged", "hedged-p97"),
            tail=True,
        ),
    )
}
"""Every scenario, in the order they run."""

"""
The circuit breaker's fleet part: one circuit for every process.

Given a ``store``, a :class:`~resilient_mcp.CircuitBreaker` keeps its own
state machine (:mod:`._breaker_core`, which stays authoritative for the
process: its own failures open it, with or without the fleet) and a
:class:`FleetBreaker` that shares it through the store's breaker script
(``_store/_lua.py``, ``BREAKER``):

* Counts: every call that ends adds to a local tally that a task in the
  store's task group sends, one request in flight at a time, as the
  retry budget does; nothing waits for it on the success path.  Each
  answer brings back the fleet's state (its generation, open or not, and
  until when), cached for ``refresh_interval`` seconds.
* Reads: a call waits for a fresh state (one round trip) only when the
  cache is older than ``refresh_interval``, or when the process's last
  call failed: a process whose call failed learns the fleet's verdict on
  that failure before its next call, so a fleet whose failures cross the
  threshold sends the server at most one more call per process.
* Opening: when the fleet's window crosses the threshold, the script
  opens the fleet's circuit (a new generation); each process follows it
  on its next answer, opening its own circuit until the fleet's ends.
* Probing: a process whose circuit turns half-open while the fleet's is
  open asks for the fleet's probe lease (``LEASE``: one process gets it
  for ``recovery_timeout`` seconds); the others open their circuits again
  until it ends.  The lease holder reports its probes' verdict, and the
  fleet's circuit closes or opens anew (a new generation either way);
  the others close with it when they had opened by the fleet's word.
* Generations: every report carries the generation it was counted in,
  and the script ignores reports of another generation, so counts and
  probe verdicts from before a change never move the new state.

When the store fails the breaker decides alone (the tally is dropped,
``store_errors`` counts the failed request); see docs/fleet.md.
"""

from __future__ import annotations

import math

from collections.abc import Callable
from typing import Final, final

import anyio
import attrs

from ._breaker_core import CLOSED, HALF_OPEN, BreakerCore, Transition
from ._store._protocol import (
    LEASE,
    PROBE_CLOSED,
    PROBE_FAILED,
    REPORT,
    BreakerShape,
    StateStore,
)
from ._timeouts import current_time


DEFAULT_REFRESH_INTERVAL: Final = 0.1  # seconds a fleet state is reused


def shape_of(core: BreakerCore) -> BreakerShape:
    """The numbers of a breaker's config that the fleet's script needs."""
    config = core.config
    return BreakerShape(
        width=config.monitoring_window / config.window_buckets,
        buckets=config.window_buckets,
        threshold=config.failure_threshold,
        rate=config.failure_rate_threshold or 0.0,
        minimum=config.minimum_calls,
        recovery=config.recovery_timeout,
    )


@final
@attrs.define(eq=False, on_setattr=attrs.setters.NO_OP)
class FleetBreaker:
    """A breaker's link to the fleet's circuit (see the module)."""

    store: StateStore
    name: str
    core: BreakerCore
    announce: Callable[[Transition | None], None]
    refresh: float
    shape: BreakerShape = attrs.field(init=False)
    generation: int = -1
    """The fleet's generation as of the last answer (-1: none yet)."""
    fresh_until: float = -math.inf
    """Event-loop time until which the cached state is used as is."""
    wait: float | None = None
    """The fleet's circuit as of the last answer: ``None`` closed, else
    the seconds until a probe may start then."""
    errors: int = 0
    """Requests to the store that failed or were too slow."""
    _calls: int = 0
    _failures: int = 0
    _seen: tuple[int, int] = (0, 0)
    _op: int = REPORT
    _op_generation: int = -1
    _probing: int | None = None
    _followed: int = -1
    _applying: bool = False
    _flushing: bool = False
    _done: anyio.Event | None = None

    def __attrs_post_init__(self) -> None:
        self.shape = shape_of(self.core)

    # -- the breaker's hooks ------------------------------------------------

    def count(self) -> None:
        """Tally the outcomes the core counted since the last call."""
        core = self.core
        calls = core.successes + core.failures
        seen_calls, seen_failures = self._seen
        if calls == seen_calls:
            return  # ignored or cancelled: nothing for the fleet
        self._seen = (calls, core.failures)
        failures = core.failures - seen_failures
        self._calls += calls - seen_calls
        self._failures += failures
        if failures:
            self.fresh_until = -math.inf  # the next call hears the verdict
        self._kick()

    def wants_lease(self) -> bool:
        """Whether a half-open process must ask for the probe lease."""
        return self.wait is not None and self._probing != self.generation

    def must_ask(self, now: float) -> bool:
        """Whether a call at *now* (circuit not closed) awaits the store."""
        return self.store.available() and (
            now >= self.fresh_until
            or (self.core.state is HALF_OPEN and self.wants_lease())
        )

    async def settle(self) -> float:
        """
        Read the fleet's state, and ask for the lease if it is needed.

        Returns:
            The event-loop time after the answers, for the local decision.
        """
        await self.sync()
        core = self.core
        now = current_time()
        self.announce(core.tick(now))
        if (
            core.state is HALF_OPEN
            and self.wants_lease()
            and self.store.available()
        ):
            await self.lease()
            now = current_time()
            self.announce(core.tick(now))
        return now

    def moved(self, event: Transition) -> None:
        """The local circuit changed: a lease holder's probes decided."""
        probing = self._probing
        if probing is None or self._applying or event.old is not HALF_OPEN:
            return
        self._probing = None
        self._op = PROBE_CLOSED if event.new is CLOSED else PROBE_FAILED
        self._op_generation = probing
        self._kick()

    async def sync(self) -> None:
        """Wait for a fresh state: the pending tally's answer, or a read."""
        self._kick()
        done = self._done
        if done is not None:
            await done.wait()

    async def lease(self) -> None:
        """Ask for the fleet's probe lease; follow the fleet if refused."""
        reply = await self.store.breaker(
            self.name, self.shape, self.generation, (0, 0), LEASE
        )
        self._apply(reply)

    # -- talking to the store ---------------------------------------------

    def _kick(self) -> None:
        if self._flushing:
            return
        store = self.store
        if store.available() and store.start_soon(self._flush):
            self._flushing = True
            self._done = anyio.Event()
        else:
            self._calls = self._failures = 0  # the local state decides

    async def _flush(self) -> None:
        """Send the tally, one request at a time, until none is left."""
        try:
            first = True
            while first or self._calls or self._op != REPORT:
                first = False
                op, generation = self._op, self.generation
                counts = (0, 0)
                if op == REPORT:
                    counts = (self._calls, self._failures)
                    self._calls = self._failures = 0
                else:
                    self._op, generation = REPORT, self._op_generation
                reply = await self.store.breaker(
                    self.name, self.shape, generation, counts, op
                )
                self._apply(reply)
                if reply is None:
                    return
        finally:
            self._flushing = False
            done, self._done = self._done, None
            if done is not None:
                done.set()

    def _apply(self, reply: tuple[int, float | None, bool] | None) -> None:
        """Take in the fleet's state: follow it where it says so."""
        if reply is None:
            self.errors += 1
            self._calls = self._failures = 0
            return
        generation, wait, granted = reply
        core = self.core
        now = current_time()
        if generation != self.generation:
            if self.generation != -1:
                # Counted in a generation the fleet has left: stale.
                self._calls = self._failures = 0
            self.generation = generation
        self.wait = wait
        self.fresh_until = now + self.refresh
        if granted:
            self._probing = generation
            return
        if core.forced or self._probing == generation:
            return
        event = None
        self._applying = True
        try:
            if wait is None:
                if core.state is not CLOSED and core.trips == self._followed:
                    event = core.reset(now)  # the fleet's probe closed it
            elif wait > 0 or core.state is CLOSED:
                event = core.follow(now, wait)
                if event is not None:
                    self._followed = core.trips
        finally:
            self._applying = False
        self.announce(event)

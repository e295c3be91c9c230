"""
A server's ``Retry-After``, held against the server's circuit breaker.

A server that said "come back in 30 s" is not probed after 5: the
``Retry-After`` of the failure that opened the circuit becomes the
breaker's minimum open time, and one that arrives while the circuit is
open extends it.  When the client has a rate limiter, every
``Retry-After`` also holds it (:meth:`RateLimiter.hold`), so that no call
starts before the server said it could take one.
"""

from __future__ import annotations

import math

from typing import Final, final

import attrs

from .._breaker import CircuitBreaker, CircuitState
from .._rate_limiter import RateLimiter
from .._timeouts import current_time


PUSHBACK_WINDOW: Final = 1.0  # seconds a Retry-After may precede the trip


@final
@attrs.define(eq=False, repr=False, on_setattr=attrs.setters.NO_OP)
class Pushback:
    """
    The last ``Retry-After`` a server sent, and when.

    Register :meth:`on_breaker_change` as a listener of *breaker*, and
    give :meth:`note` every error a call raises.
    """

    breaker: CircuitBreaker | None = None
    """The server's breaker; set once it exists (it takes the listener)."""
    limiter: RateLimiter | None = None
    """The server's rate limiter, held by every ``Retry-After``, if any."""
    _last: tuple[float, float] | None = attrs.field(init=False, default=None)

    def note(self, exc: BaseException) -> None:
        """Remember *exc*'s ``retry_after``, if it has a finite one."""
        retry_after = getattr(exc, "retry_after", None)
        if isinstance(retry_after, int | float) and math.isfinite(retry_after):
            now = current_time()
            self._last = (now, float(retry_after))
            limiter = self.limiter
            if limiter is not None:
                limiter.hold(float(retry_after), now)
            breaker = self.breaker
            if breaker is not None and breaker.state is CircuitState.OPEN:
                breaker.trip(now, float(retry_after))

    def on_breaker_change(
        self,
        breaker: CircuitBreaker,
        old: CircuitState,  # noqa: ARG002 (the listener signature)
        new: CircuitState,
    ) -> None:
        """The breaker listener: keep a just-opened circuit open enough."""
        last = self._last
        if new is CircuitState.OPEN and last is not None:
            at, seconds = last
            now = current_time()
            if now - at <= PUSHBACK_WINDOW:  # the failure that opened it
                breaker.trip(now, seconds)

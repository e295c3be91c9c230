"""
The supervisor's reconnect policy: when the next attempt may start.

Failed attempts and short-lived sessions space the attempts by an
exponential backoff with jitter (the delay math of :mod:`.._backoff`);
a session that lived at least ``reconnect_max_delay`` seconds counts as
stable and resets it.  A ``Retry-After`` seen while connecting is a
minimum.  The counters behind :class:`~._session_types.SessionMetrics`
live here too, since they are what the policy counts.
"""

from __future__ import annotations

import math
import random

from typing import final

import attrs

from .._backoff import compute_delay
from .._config import RetryConfig
from .._timeouts import current_time
from ._config import SessionConfig
from ._errors import NotSentError


def _backoff(self: ReconnectSchedule) -> RetryConfig:
    config = self.config
    return RetryConfig(
        initial_delay=config.reconnect_delay,
        max_delay=config.reconnect_max_delay,
        backoff_factor=config.reconnect_backoff_factor,
        jitter=config.reconnect_jitter,
    )


def _initial_delay(self: ReconnectSchedule) -> float:
    return self.config.reconnect_delay


@final
@attrs.define(eq=False, repr=False, on_setattr=attrs.setters.NO_OP)
class ReconnectSchedule:
    """
    When a supervisor may next try to connect, and its counters.

    Args:
        config: The supervisor's configuration (its ``reconnect_*``).
        rng: The random source for the jitter.
    """

    config: SessionConfig
    rng: random.Random
    retry_at: float = attrs.field(init=False, default=-math.inf)
    """Event-loop time before which no attempt starts."""
    streak: int = attrs.field(init=False, default=0)
    """Failures (and short-lived sessions) since the last stable one."""
    last_error: BaseException | None = attrs.field(init=False, default=None)
    """Why the last attempt failed or the last session died."""
    failure: BaseException | None = attrs.field(init=False, default=None)
    """Why the last attempt failed, until one succeeds."""
    failure_delay: float = attrs.field(init=False, default=0.0)
    """The backoff that failure started, in seconds."""
    attempts: int = attrs.field(init=False, default=0)
    """Connection attempts started."""
    connects: int = attrs.field(init=False, default=0)
    """Attempts that published a session."""
    failures: int = attrs.field(init=False, default=0)
    """Attempts that failed."""
    losses: int = attrs.field(init=False, default=0)
    """Published sessions that died (requested reconnects excluded)."""
    _backoff: RetryConfig = attrs.field(
        init=False, default=attrs.Factory(_backoff, takes_self=True)
    )
    _previous_delay: float = attrs.field(
        init=False, default=attrs.Factory(_initial_delay, takes_self=True)
    )

    def waiting(self, now: float) -> bool:
        """Whether the backoff still runs at event-loop time *now*."""
        return self.retry_at > now

    def attempt_started(self) -> None:
        """Count a connection attempt."""
        self.attempts += 1

    def connected(self) -> None:
        """An attempt published a session: the next one may start at once."""
        self.connects += 1
        self.retry_at = -math.inf
        self.failure = None

    def connect_now(self) -> None:
        """Let the next attempt start at once (a requested reconnect)."""
        self.retry_at = -math.inf

    def connect_failed(
        self,
        cause: BaseException,
        retry_after: float | None,
        *,
        permanent: bool = False,
    ) -> float:
        """
        An attempt failed with *cause*: start the backoff.

        Args:
            cause: Why it failed.
            retry_after: The server's ``Retry-After`` in seconds, if any:
                the backoff lasts at least that long.
            permanent: No retry can fix *cause* (a refused login): no
                backoff, and the streak does not grow.

        Returns:
            The backoff, in seconds.
        """
        self.failures += 1
        self.failure = cause
        self.last_error = cause
        if permanent:
            self.failure_delay = 0.0
            self.retry_at = -math.inf
            return 0.0
        self.streak += 1
        delay = self._next_delay()
        if retry_after is not None:
            delay = max(delay, retry_after)
        self.failure_delay = delay
        self.retry_at = current_time() + delay
        return delay

    def session_lost(
        self,
        *,
        connected_at: float,
        recycle: bool,
        cause: BaseException | None,
        now: float,
    ) -> None:
        """
        A published session died at *now*: when may the next one start?

        Args:
            connected_at: When it was published.
            recycle: Whether it was dropped on request (no backoff, not
                counted as lost).
            cause: Why it died, when known.
            now: The event-loop time.
        """
        if recycle:
            self.retry_at = now
        elif now - connected_at >= self.config.reconnect_max_delay:
            self.streak = 0
            self.retry_at = now
        else:
            self.streak += 1
            self.retry_at = now + self._next_delay()
        if not recycle:
            self.losses += 1
            self.last_error = cause

    def backoff_error(self, name: str, now: float) -> NotSentError:
        """What a caller gets while the backoff runs at *now*."""
        wait = self.retry_at - now
        return NotSentError(
            f"{name}: no live MCP session; next connection attempt "
            f"in {wait:.3f}s",
            self.last_error,
            reason="backoff",
            retry_after=wait,
        )

    def _next_delay(self) -> float:
        delay = compute_delay(
            self._backoff, self.streak - 1, self._previous_delay, self.rng
        )
        self._previous_delay = delay
        return delay

"""Small operations the tests feed to the policies."""

from __future__ import annotations

import anyio


class Boom(Exception):
    """A failure an operation raises on purpose."""


class ConnectionLost(Exception):
    """A failure whose type name says "connection" (retryable)."""


async def ok(value: object = "ok") -> object:
    """Succeed at once, after a checkpoint."""
    await anyio.lowlevel.checkpoint()
    return value


async def boom() -> None:
    """Fail at once, after a checkpoint."""
    await anyio.lowlevel.checkpoint()
    raise Boom("boom")


async def sleep_then(seconds: float, value: object = "done") -> object:
    """Take *seconds* of (virtual) time, then succeed."""
    await anyio.sleep(seconds)
    return value


class Script:
    """
    An operation that follows a script of outcomes, one per call.

    Each entry is an exception instance to raise or a value to return;
    the last entry repeats.  ``calls`` counts the calls and ``times``
    records the event-loop time of each.
    """

    def __init__(self, *outcomes: object) -> None:
        self.outcomes = list(outcomes)
        self.calls = 0
        self.times: list[float] = []

    async def __call__(self) -> object:
        self.times.append(anyio.current_time())
        index = min(self.calls, len(self.outcomes) - 1)
        self.calls += 1
        await anyio.lowlevel.checkpoint()
        outcome = self.outcomes[index]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

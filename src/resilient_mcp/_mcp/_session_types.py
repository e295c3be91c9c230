"""
The values a :class:`~._session.SessionSupervisor` shows the outside.

Its states, the events it passes to listeners, the live session it hands
out, and its metrics snapshot.
"""

from __future__ import annotations

import enum

from collections.abc import Awaitable, Callable
from typing import TypeAlias

import attrs

from mcp.client import Client

from ._transport import ServerSpec


ServerSource: TypeAlias = (
    ServerSpec | Callable[[], ServerSpec | Awaitable[ServerSpec]]
)
"""A server spec, or a zero-argument (sync or async) callable that returns
a fresh one for every connection attempt."""


class SessionState(enum.Enum):
    """
    Where a :class:`SessionSupervisor` is in the life of its sessions.

    .. versionadded:: 0.1.0
    """

    IDLE = "idle"
    """No session and no attempt under way (nobody needs one yet)."""
    CONNECTING = "connecting"
    """A connection attempt is under way."""
    CONNECTED = "connected"
    """A live session is published."""
    BACKOFF = "backoff"
    """No session; the next attempt must wait for the backoff delay."""
    CLOSED = "closed"
    """Closed, or not running: no session will ever be published again."""


class SessionEventKind(enum.Enum):
    """
    What happened to a supervisor's session.

    .. versionadded:: 0.1.0
    """

    CONNECTED = "connected"
    """A new session was published."""
    CONNECT_FAILED = "connect_failed"
    """A connection attempt failed (``error`` says why)."""
    LOST = "lost"
    """A published session died (``error`` says why, when known)."""
    CLOSED = "closed"
    """The supervisor stopped."""


@attrs.frozen(kw_only=True)
class SessionEvent:
    """
    One event passed to the supervisor's listeners.

    .. versionadded:: 0.1.0
    """

    supervisor: str
    """The supervisor's name."""
    kind: SessionEventKind
    """What happened."""
    generation: int
    """The generation (1, 2, ...) of the session or attempt concerned."""
    error: BaseException | None
    """The underlying error of a failed attempt or a lost session."""
    time: float
    """Event-loop time of the event."""


SessionListener = Callable[[SessionEvent], None]
"""Called as ``listener(event)`` on every :class:`SessionEvent`."""


@attrs.frozen
class LiveSession:
    """
    A published session: the client to call, and which session it is.

    .. versionadded:: 0.1.0
    """

    client: Client
    """The connected ``mcp.Client``; call it from any task."""
    generation: int
    """1 for the first session, 2 for the next, and so on."""


@attrs.frozen(kw_only=True)
class SessionMetrics:
    """
    A snapshot of a supervisor's state and counters.

    .. versionadded:: 0.1.0
    """

    name: str
    """The supervisor's name."""
    state: SessionState
    """The state at the time of the snapshot."""
    generation: int
    """Generation of the live session, or of the last attempt."""
    protocol_version: str | None
    """Protocol version of the live session, or ``None``."""
    connect_attempts: int
    """Connection attempts started."""
    connects: int
    """Attempts that published a session."""
    connect_failures: int
    """Attempts that failed (timeouts included)."""
    sessions_lost: int
    """Published sessions that died (closing the supervisor and requested
    reconnects excluded)."""
    consecutive_failures: int
    """Failures (and short-lived sessions) since the last stable
    session; drives the backoff."""
    reconnect_in: float | None
    """Seconds until the next attempt is allowed, or ``None`` if now."""
    last_error: BaseException | None
    """Why the last attempt failed or the last session died."""

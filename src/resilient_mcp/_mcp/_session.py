"""
The session supervisor: one task that owns the ``mcp.Client``.

Why a task of its own?  The SDK's ``Client`` must be entered and exited in
the same task (trio enforces it), and when the streamable HTTP transport
crashes it cancels whatever runs in that task, so a call made from the
owning task would get a ``Cancelled`` it cannot handle.  The supervisor
therefore enters the ``Client`` in its own task, publishes it, and lets
every caller use it from their own tasks, where a dying transport shows up
as an ordinary ``MCPError`` that :mod:`._errors` translates.

The life of a session::

    IDLE --demand--> CONNECTING --ok--> CONNECTED --lost--> IDLE / BACKOFF
                        |                                       |
                        +--failed--> BACKOFF --delay passes-----+

A session is *lost* when its transport ends (a dead stdio server: seen at
once by :func:`._transport.watch_transport`), when its transport crashes
(HTTP: the ``async with Client`` in the owner task raises), or when a
caller reports a session-fatal error (``-32000``, "session not found").
Reconnects are spaced by an exponential backoff; by default they happen
only when a caller needs a session, so that a circuit breaker wrapping the
calls also governs the reconnects.
"""

from __future__ import annotations

import enum
import inspect
import logging
import math
import random

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import AsyncExitStack, asynccontextmanager
from functools import partial
from typing import Final, TypeAlias, TypeVar, cast, final

import anyio
import anyio.abc
import attrs
import trio

from mcp.client import Client
from mcp.client.stdio import StdioServerParameters
from mcp.server import Server
from mcp.server.mcpserver import MCPServer
from mcp.shared.exceptions import MCPError
from pydantic import ValidationError

from .._backoff import compute_delay
from .._config import RetryConfig
from .._timeouts import (
    DeadlinePassed,
    checkpoint,
    current_time,
    deadline_scope,
)
from ._config import SessionConfig
from ._errors import (
    NotSentError,
    SessionClosedError,
    SessionLostError,
    is_session_fatal,
    root_cause,
    translate_mcp_error,
    translate_runtime_error,
    translate_validation_error,
)
from ._http import HTTPResponseBox, capture_http_errors, close_box, open_box
from ._transport import ServerSpec, enter_transport, is_spec


T = TypeVar("T")

logger: Final = logging.getLogger("resilient_mcp")

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


@final
@attrs.define(eq=False, repr=False, on_setattr=attrs.setters.NO_OP)
class _Session:
    """One connection attempt and, if it succeeds, its session."""

    generation: int
    lost: anyio.Event = attrs.field(factory=anyio.Event)
    client: Client | None = None
    public: LiveSession | None = None
    connected_at: float = 0.0
    cause: BaseException | None = None
    recycle: bool = False
    in_process: bool = False
    http_statuses: bool = True  # whether calls collect HTTP statuses
    calls: set[trio.CancelScope | anyio.CancelScope] = attrs.field(factory=set)
    calls_ended: bool = False

    def mark_lost(self, cause: BaseException | None = None) -> None:
        if self.cause is None:
            self.cause = cause
        self.lost.set()

    def cancel_calls(self) -> None:
        # Stream transports fail their pending calls with -32000 when the
        # client exits; in-process calls outlive it (they run the server's
        # handler in the caller's task), so they are registered and ended.
        self.calls_ended = True
        for scope in self.calls:
            scope.cancel()


def _config(value: SessionConfig | None) -> SessionConfig:
    return SessionConfig() if value is None else value


def _listeners(
    value: Iterable[SessionListener],
) -> tuple[SessionListener, ...]:
    return tuple(value)


@final
@attrs.define(eq=False, repr=False, on_setattr=attrs.setters.NO_OP)
class SessionSupervisor:
    """
    Own an MCP client session in a task, and replace it when it dies.

    Like a switchboard operator who keeps one line open to the server:
    callers borrow the line for their calls; when it goes dead, calls on it
    fail at once with :class:`SessionLostError`, and the operator dials
    again (waiting a little longer after each failed dial) as soon as
    someone needs the line.

    Start it in a task group you own, then call through it::

        supervisor = SessionSupervisor(server_params)
        async with anyio.create_task_group() as tg:
            await tg.start(supervisor.run)
            result = await supervisor.call(
                lambda client: client.call_tool("echo", {"text": "hi"})
            )
            await supervisor.aclose()

    or let :func:`open_session_supervisor` do it.

    Args:
        server: What to connect to: an in-process ``MCPServer`` or
            ``Server``, a ``StdioServerParameters``, a streamable HTTP URL,
            a reusable transport, or a zero-argument callable (sync or
            async) returning one of these afresh for each attempt.
        config: The configuration; ``None`` for the defaults.
        name: A name for logs, errors, events and metrics.
        listeners: Called with a :class:`SessionEvent` after each connect,
            failed attempt, loss and close, in the supervisor's task.  An
            exception in a listener is logged and ignored.
        rng: The random source for backoff jitter.

    .. versionadded:: 0.1.0
    """

    server: ServerSource
    config: SessionConfig = attrs.field(default=None, converter=_config)
    name: str = attrs.field(default="mcp", kw_only=True)
    listeners: tuple[SessionListener, ...] = attrs.field(
        default=(), converter=_listeners, kw_only=True
    )
    rng: random.Random = attrs.field(factory=random.Random, kw_only=True)

    _backoff: RetryConfig = attrs.field(init=False)
    _session: _Session | None = attrs.field(init=False, default=None)
    _attempt: _Session | None = attrs.field(init=False, default=None)
    _connect_scope: anyio.CancelScope | None = attrs.field(
        init=False, default=None
    )
    _run_scope: anyio.CancelScope | None = attrs.field(
        init=False, default=None
    )
    _changed: anyio.Event = attrs.field(init=False, factory=anyio.Event)
    _stopped: anyio.Event = attrs.field(init=False, factory=anyio.Event)
    _running: bool = attrs.field(init=False, default=False)
    _closing: bool = attrs.field(init=False, default=False)
    _demand: int = attrs.field(init=False, default=0)
    _connect_requested: bool = attrs.field(init=False, default=False)
    _generation: int = attrs.field(init=False, default=0)
    _retry_at: float = attrs.field(init=False, default=-math.inf)
    _previous_delay: float = attrs.field(init=False, default=0.0)
    _streak: int = attrs.field(init=False, default=0)
    _last_error: BaseException | None = attrs.field(init=False, default=None)
    _failure: BaseException | None = attrs.field(init=False, default=None)
    _failure_delay: float = attrs.field(init=False, default=0.0)
    _attempts: int = attrs.field(init=False, default=0)
    _connects: int = attrs.field(init=False, default=0)
    _failures: int = attrs.field(init=False, default=0)
    _losses: int = attrs.field(init=False, default=0)

    def __attrs_post_init__(self) -> None:
        config = self.config
        self._backoff = RetryConfig(
            initial_delay=config.reconnect_delay,
            max_delay=config.reconnect_max_delay,
            backoff_factor=config.reconnect_backoff_factor,
            jitter=config.reconnect_jitter,
        )
        self._previous_delay = config.reconnect_delay

    def __repr__(self) -> str:
        session = self._session
        live = f"generation {session.generation}" if session else "none"
        return (
            f"<SessionSupervisor {self.name!r} {self._state().value}, "
            f"session: {live}, {self._connects} connects, "
            f"{self._failures} failed attempts, {self._losses} lost>"
        )

    # -- the supervisor task ------------------------------------------------

    async def run(
        self,
        *,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """
        Own the sessions until :meth:`close`; start it with ``tg.start``.

        Returns once closed.  Connection failures and lost sessions never
        escape: they are reported to callers and listeners.  Cancelling
        the task closes the supervisor too.

        Raises:
            RuntimeError: The supervisor already ran.
        """
        if self._running or self._stopped.is_set():
            raise RuntimeError(f"{self!r} can run only once")
        self._running = True
        try:
            with anyio.CancelScope() as scope:
                self._run_scope = scope
                task_status.started()
                await self._loop()
        finally:
            self._running = False
            self._closing = True
            self._session = None
            self._stopped.set()
            self._notify()
            self._emit(SessionEventKind.CLOSED, self._generation, None)

    async def _loop(self) -> None:
        while not self._closing:
            deadline = math.inf
            if self._wants_session():
                if current_time() >= self._retry_at:
                    await self._connect_and_serve()
                    continue
                deadline = self._retry_at
            changed = self._changed
            with anyio.CancelScope(deadline=deadline):
                await changed.wait()

    def _wants_session(self) -> bool:
        return (
            self.config.eager_reconnect
            or self._demand > 0
            or self._connect_requested
        )

    async def _connect_and_serve(self) -> None:
        self._connect_requested = False
        self._generation += 1
        session = _Session(self._generation)
        self._attempt = session
        self._attempts += 1
        self._notify()
        config = self.config
        with capture_http_errors() as box:
            try:
                connect_scope = anyio.CancelScope(
                    deadline=current_time() + config.connect_timeout
                )
                self._connect_scope = connect_scope
                with connect_scope:
                    spec = await self._resolve_spec()
                    session.in_process = isinstance(spec, MCPServer | Server)
                    # Only HTTP answers carry statuses (a transport of the
                    # user's may be HTTP: it collects them too).
                    session.http_statuses = not (
                        session.in_process
                        or isinstance(spec, StdioServerParameters)
                    )
                    async with AsyncExitStack() as stack:
                        target = await enter_transport(
                            stack,
                            spec,
                            on_close=partial(self._transport_closed, session),
                            errlog=config.stdio_errlog,
                            http_client_factory=config.http_client_factory,
                        )
                        client = Client(target, **config.client_options)
                        await stack.enter_async_context(client)
                        if config.on_connect is not None:
                            await config.on_connect(client)
                        connect_scope.deadline = math.inf
                        self._connect_scope = None
                        self._publish(session, client)
                        try:
                            await session.lost.wait()
                        finally:
                            self._unpublish(session)
            except Exception as exc:
                if session.public is not None:
                    self._session_lost(session, exc)
                elif not self._closing:
                    self._connect_failed(session, exc, box)
                return
            finally:
                self._attempt = None
                self._connect_scope = None
                session.cancel_calls()
        if session.public is not None:
            self._session_lost(session, None)
        elif not self._closing:
            why = f"connecting took over {config.connect_timeout:g}s"
            self._connect_failed(session, TimeoutError(why), box)

    async def _resolve_spec(self) -> ServerSpec:
        source = self.server
        if is_spec(source):
            return cast("ServerSpec", source)
        factory = cast("Callable[[], object]", source)
        spec = factory()
        if inspect.isawaitable(spec):
            spec = await spec
        return cast("ServerSpec", spec)

    def _transport_closed(self, session: _Session) -> None:
        # Runs in the dispatcher's task, just before it fails the pending
        # requests: unpublish first, so that no new call picks this one.
        if not session.lost.is_set():
            session.mark_lost(EOFError("the MCP transport was closed"))
        self._unpublish(session)

    def _publish(self, session: _Session, client: Client) -> None:
        now = current_time()
        self._attempt = None
        session.client = client
        session.connected_at = now
        session.public = LiveSession(client, session.generation)
        self._session = session
        self._connects += 1
        self._retry_at = -math.inf
        self._failure = None
        logger.info(
            "%s: MCP session %d connected (protocol %s)",
            self.name,
            session.generation,
            client.protocol_version,
        )
        self._notify()
        self._emit(SessionEventKind.CONNECTED, session.generation, None)

    def _unpublish(self, session: _Session) -> None:
        if self._session is session:
            self._session = None
            self._notify()

    def _connect_failed(
        self, session: _Session, exc: BaseException, box: HTTPResponseBox
    ) -> None:
        cause = root_cause(exc)
        self._failures += 1
        self._failure = cause
        self._last_error = cause
        self._streak += 1
        delay = self._next_delay()
        if box.retry_after is not None:
            delay = max(delay, box.retry_after)
        self._failure_delay = delay
        self._retry_at = current_time() + delay
        if not self._closing:
            logger.warning(
                "%s: MCP connection attempt %d failed (%s: %s); "
                "next attempt allowed in %.3fs",
                self.name,
                session.generation,
                type(cause).__name__,
                cause,
                delay,
            )
        self._notify()
        self._emit(SessionEventKind.CONNECT_FAILED, session.generation, cause)

    def _session_lost(
        self, session: _Session, exc: BaseException | None
    ) -> None:
        if exc is not None:
            # The transport's own error beats what a caller saw (-32000).
            session.cause = root_cause(exc)
        cause = session.cause
        if self._closing:
            return
        now = current_time()
        if session.recycle:
            self._retry_at = now
        elif now - session.connected_at >= self.config.reconnect_max_delay:
            self._streak = 0
            self._retry_at = now
        else:
            self._streak += 1
            self._retry_at = now + self._next_delay()
        if not session.recycle:
            self._losses += 1
            self._last_error = cause
        logger.warning(
            "%s: MCP session %d lost (%s); next attempt allowed in %.3fs",
            self.name,
            session.generation,
            "reconnect requested" if session.recycle else repr(cause),
            max(0.0, self._retry_at - now),
        )
        self._notify()
        self._emit(SessionEventKind.LOST, session.generation, cause)

    def _next_delay(self) -> float:
        delay = compute_delay(
            self._backoff, self._streak - 1, self._previous_delay, self.rng
        )
        self._previous_delay = delay
        return delay

    def _notify(self) -> None:
        changed, self._changed = self._changed, anyio.Event()
        changed.set()

    def _emit(
        self,
        kind: SessionEventKind,
        generation: int,
        error: BaseException | None,
    ) -> None:
        if not self.listeners:
            return
        event = SessionEvent(
            supervisor=self.name,
            kind=kind,
            generation=generation,
            error=error,
            time=current_time(),
        )
        for listener in self.listeners:
            try:
                listener(event)
            except Exception:
                logger.exception(
                    "%s: session listener %r raised", self.name, listener
                )

    def _state(self) -> SessionState:
        if self._closing or not self._running:
            return SessionState.CLOSED
        if self._session is not None:
            return SessionState.CONNECTED
        if self._attempt is not None:
            return SessionState.CONNECTING
        if self._retry_at > current_time():
            return SessionState.BACKOFF
        return SessionState.IDLE

    # -- the callers' side --------------------------------------------------

    async def call(self, operation: Callable[[Client], Awaitable[T]]) -> T:
        """
        Run ``await operation(client)`` on the live session.

        Waits for a connection when none exists and none failed recently
        (connecting on demand); translates the SDK's errors (see
        :mod:`resilient_mcp._mcp._errors`, which also recovers HTTP
        statuses); and reports a dead session so that it is replaced.

        Args:
            operation: An async callable taking the ``mcp.Client``; it may
                make several SDK calls.

        Returns:
            What *operation* returned (an ``is_error`` tool result
            included: that is an answer, not an error).

        Raises:
            NotSentError: No session: the last attempt failed, or the
                reconnect backoff is running.  Nothing was sent.
            SessionLostError: The session died during the call.
            RequestTimeoutError: The SDK's read timeout expired.
            ServerError: The server answered ``-32603`` (or HTTP 5xx/429).
            InvalidResponseError: The server's answer did not match the
                request's result type, or the tool's output schema.
            PermanentError: The request itself was wrong (``-32602``,
                ``-32601``, ...), or an HTTP 4xx.
            SessionClosedError: The supervisor is closed.
            Exception: Anything else *operation* raised, unchanged.
        """
        return await self._call_until(math.inf, operation)

    async def _call_until(
        self, deadline: float, operation: Callable[[Client], Awaitable[T]]
    ) -> T:
        """
        :meth:`call`, cancelled at the event-loop time *deadline*.

        One cancel scope serves both the deadline and, in process, the
        session's hold on the call (see :meth:`_Session.cancel_calls`):
        the client hands its policies' deadline down to here (see
        :class:`~resilient_mcp._timeouts.DeadlineAware`) instead of
        entering a scope of its own around the call.

        Raises:
            DeadlinePassed: *deadline* passed, while waiting for a
                connection or during the call.
            Exception: As :meth:`call`.
        """
        session = self._session
        if session is None:
            if deadline == math.inf:
                session = await self._obtain(patient=False)
            else:
                obtained: _Session | None = None
                with deadline_scope(deadline):
                    obtained = await self._obtain(patient=False)
                if obtained is None:
                    raise DeadlinePassed
                session = obtained
        # No checkpoint of our own on the fast path: every SDK call is one.
        if not session.in_process:
            if deadline == math.inf:
                return await self._call_streams(session, operation)
            with deadline_scope(deadline):
                return await self._call_streams(session, operation)
            raise DeadlinePassed
        # The in-process client runs the server's handler in our task and
        # does not fail it when the session ends; the supervisor cancels it
        # through this scope instead (see _Session.cancel_calls).
        with deadline_scope(deadline) as scope:
            session.calls.add(scope)
            if session.calls_ended:  # it ended as this call took it up
                scope.cancel()
            try:
                return await self._call_streams(session, operation)
            finally:
                session.calls.discard(scope)
        if not session.calls_ended:
            raise DeadlinePassed
        raise SessionLostError(
            f"{self.name}: MCP session {session.generation} ended during "
            "the call",
            session.cause,
        )

    async def _call_streams(
        self, session: _Session, operation: Callable[[Client], Awaitable[T]]
    ) -> T:
        client = cast("Client", session.client)
        # Only HTTP answers have statuses to collect (no contextvar and no
        # box on the other transports' per-call path).
        box, token = open_box() if session.http_statuses else (None, None)
        try:
            return await operation(client)
        except MCPError as exc:
            if is_session_fatal(exc):
                self._report(session, exc)
            error = translate_mcp_error(
                exc,
                status_code=None if box is None else box.status_code,
                retry_after=None if box is None else box.retry_after,
            )
            if error is exc:
                raise
            raise error from exc
        except ValidationError as exc:
            # A result of the wrong shape, or parameters the SDK could
            # not build: the pydantic text quotes the values, ours not.
            raise translate_validation_error(exc) from exc
        except RuntimeError as exc:
            # The client was exited under the call: it is gone.
            if session.lost.is_set():
                raise SessionLostError(
                    f"MCP session closed during the call: {exc}", exc
                ) from exc
            invalid = translate_runtime_error(exc)
            if invalid is not None:
                raise invalid from exc
            raise
        finally:
            if token is not None:
                close_box(token)

    async def acquire(self) -> LiveSession:
        """
        The live session, connecting on demand.

        Waits while an attempt is under way or may start now; fails fast
        while the reconnect backoff runs.  If you call the client yourself,
        translate errors with :func:`translate_mcp_error` and report
        session-fatal ones with :meth:`report_lost`, as :meth:`call` does.

        Returns:
            The :class:`LiveSession`.

        Raises:
            NotSentError: The attempt failed, or the backoff is running
                (``retry_after`` says for how long).
            SessionClosedError: The supervisor is closed or not running.
        """
        session = await self._obtain(patient=False)
        return cast("LiveSession", session.public)

    def acquire_nowait(self) -> LiveSession:
        """
        The live session, or an error at once; asks for a connection.

        Raises:
            NotSentError: There is no live session right now.
            SessionClosedError: The supervisor is closed or not running.
        """
        self._check_open()
        session = self._session
        if session is not None:
            return cast("LiveSession", session.public)
        self._connect_requested = True
        self._notify()
        now = current_time()
        if self._retry_at > now:
            raise self._backoff_error(now)
        raise NotSentError(
            f"{self.name}: no live MCP session (connecting)",
            self._last_error,
            reason="no-session",
        )

    async def connect(self) -> LiveSession:
        """
        The live session, waiting out the backoff and one attempt if needed.

        Returns:
            The :class:`LiveSession`.

        Raises:
            NotSentError: The attempt failed.
            SessionClosedError: The supervisor is closed or not running.
        """
        session = await self._obtain(patient=True)
        return cast("LiveSession", session.public)

    def request_reconnect(self) -> None:
        """
        Drop the live session (if any) and connect again, without backoff.

        Calls in flight on the old session fail with
        :class:`SessionLostError`.
        """
        session = self._session
        if session is not None:
            session.recycle = True
            session.mark_lost()
            self._unpublish(session)
        self._retry_at = -math.inf
        self._connect_requested = True
        self._notify()

    async def reconnect(self) -> LiveSession:
        """
        :meth:`request_reconnect`, then wait for the new session.

        Raises:
            NotSentError: The attempt failed.
            SessionClosedError: The supervisor is closed or not running.
        """
        self.request_reconnect()
        return await self.connect()

    def report_lost(
        self, generation: int, cause: BaseException | None = None
    ) -> None:
        """
        Tell the supervisor that session *generation* is dead.

        Ignored when that session is no longer the live one.
        """
        session = self._session
        if session is not None and session.generation == generation:
            self._report(session, cause)

    def close(self) -> None:
        """
        Start closing: drop the session and stop; idempotent.

        The supervisor task ends within ``close_timeout`` seconds; calls in
        flight fail with :class:`SessionLostError`, later ones with
        :class:`SessionClosedError`.
        """
        if self._closing:
            return
        self._closing = True
        session = self._session
        if session is not None:
            session.mark_lost(
                SessionClosedError(f"{self.name}: the supervisor was closed")
            )
            self._unpublish(session)
        if self._connect_scope is not None:
            self._connect_scope.cancel()
        scope = self._run_scope
        if scope is not None and self._running:
            scope.deadline = min(
                scope.deadline, current_time() + self.config.close_timeout
            )
        self._notify()

    async def aclose(self) -> None:
        """:meth:`close`, then wait until the supervisor task has ended."""
        self.close()
        if self._running:
            await self._stopped.wait()

    def metrics(self) -> SessionMetrics:
        """
        Take a snapshot of the supervisor's state and counters.

        Returns:
            A frozen :class:`SessionMetrics`.
        """
        session = self._session
        now = current_time()
        wait = self._retry_at - now
        return SessionMetrics(
            name=self.name,
            state=self._state(),
            generation=self._generation,
            protocol_version=(
                session.client.protocol_version
                if session is not None and session.client is not None
                else None
            ),
            connect_attempts=self._attempts,
            connects=self._connects,
            connect_failures=self._failures,
            sessions_lost=self._losses,
            consecutive_failures=self._streak,
            reconnect_in=wait if wait > 0 else None,
            last_error=self._last_error,
        )

    def _report(self, session: _Session, cause: BaseException | None) -> None:
        if not session.lost.is_set():
            session.mark_lost(cause)
        self._unpublish(session)

    def _check_open(self) -> None:
        if self._closing or self._stopped.is_set():
            raise SessionClosedError(f"{self.name}: the supervisor is closed")
        if not self._running:
            raise SessionClosedError(
                f"{self.name}: the supervisor is not running; start it "
                "with `await task_group.start(supervisor.run)`"
            )

    def _backoff_error(self, now: float) -> NotSentError:
        wait = self._retry_at - now
        return NotSentError(
            f"{self.name}: no live MCP session; next connection attempt "
            f"in {wait:.3f}s",
            self._last_error,
            reason="backoff",
            retry_after=wait,
        )

    async def _obtain(self, *, patient: bool) -> _Session:
        await checkpoint()  # a checkpoint even on the fast path
        failures = self._failures
        registered = False
        try:
            while True:
                self._check_open()
                session = self._session
                if session is not None:
                    return session
                if self._failures != failures:
                    cause = self._failure
                    raise NotSentError(
                        f"{self.name}: could not connect to the MCP server: "
                        f"{cause!r}",
                        cause,
                        reason="connect-failed",
                        retry_after=self._failure_delay,
                    )
                now = current_time()
                if not patient and self._retry_at > now:
                    raise self._backoff_error(now)
                if not registered:
                    registered = True
                    self._demand += 1
                    self._notify()
                changed = self._changed
                await changed.wait()
        finally:
            if registered:
                self._demand -= 1


@asynccontextmanager
async def open_session_supervisor(
    server: ServerSource,
    config: SessionConfig | None = None,
    *,
    name: str = "mcp",
    connect: bool = True,
    listeners: Iterable[SessionListener] = (),
) -> AsyncIterator[SessionSupervisor]:
    """
    Run a :class:`SessionSupervisor` in a task group of its own.

    >>> # async with open_session_supervisor(params) as supervisor:
    >>> #     tools = await supervisor.call(lambda c: c.list_tools())

    An error raised in the body leaves the ``async with`` as itself, not
    wrapped in an exception group.

    Args:
        server: See :class:`SessionSupervisor`.
        config: See :class:`SessionSupervisor`.
        name: See :class:`SessionSupervisor`.
        connect: Connect before entering the body, and fail if that fails.
        listeners: See :class:`SessionSupervisor`.

    Yields:
        The running supervisor; it is closed on exit.

    Raises:
        NotSentError: *connect* is true and the first attempt failed.

    .. versionadded:: 0.1.0
    """
    supervisor = SessionSupervisor(
        server, config, name=name, listeners=listeners
    )
    error: Exception | None = None
    async with anyio.create_task_group() as tg:
        await tg.start(supervisor.run)
        try:
            if connect:
                await supervisor.connect()
            yield supervisor
        except Exception as exc:  # re-raised below, outside the group
            error = exc
        finally:
            supervisor.close()
    if error is not None:
        raise error

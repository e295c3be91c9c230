"""
The supervisor task's side: connect, publish, lose, back off, repeat.

The life of a session::

    IDLE --demand--> CONNECTING --ok--> CONNECTED --lost--> IDLE / BACKOFF
                        |                                       |
                        +--failed--> BACKOFF --delay passes-----+

A session is *lost* when its transport ends (a dead stdio server: seen at
once by :func:`._transport.watch_transport`), when its transport crashes
(HTTP: the ``async with Client`` in the owner task raises), or when a
caller reports a session-fatal error (``-32000``, "session not found").
Reconnects are spaced by the backoff of :mod:`._reconnect`; by default
they happen only when a caller needs a session, so that a circuit breaker
wrapping the calls also governs the reconnects.

:class:`SessionOwner` holds the state both sides share and runs the task's
side; :class:`~._session.SessionSupervisor` adds the callers' side.
"""

from __future__ import annotations

import copy
import inspect
import logging
import math
import random

from collections.abc import Callable, Iterable
from contextlib import AsyncExitStack
from functools import partial
from typing import Final, cast

import anyio
import anyio.abc
import attrs

from mcp.client import Client
from mcp.client.stdio import StdioServerParameters
from mcp.server import Server
from mcp.server.mcpserver import MCPServer

from .._errors import PermanentError
from .._timeouts import current_time
from ._auth import OffClock, auth_error
from ._config import SessionConfig
from ._errors import NotSentError, SessionClosedError, root_cause
from ._http import HTTPResponseBox, capture_http_errors
from ._reconnect import ReconnectSchedule
from ._session_handle import SessionHandle
from ._session_types import (
    LiveSession,
    ServerSource,
    SessionEvent,
    SessionEventKind,
    SessionListener,
    SessionState,
)
from ._transport import ServerSpec, enter_transport, is_spec


logger: Final = logging.getLogger("resilient_mcp")


def _config(value: SessionConfig | None) -> SessionConfig:
    return SessionConfig() if value is None else value


def _listeners(
    value: Iterable[SessionListener],
) -> tuple[SessionListener, ...]:
    return tuple(value)


@attrs.define(eq=False, repr=False, on_setattr=attrs.setters.NO_OP)
class SessionOwner:
    """
    The state of a supervisor, and the side its own task runs.

    Only :class:`~._session.SessionSupervisor` derives from it; see there
    for the arguments.
    """

    server: ServerSource
    config: SessionConfig = attrs.field(default=None, converter=_config)
    name: str = attrs.field(default="mcp", kw_only=True)
    listeners: tuple[SessionListener, ...] = attrs.field(
        default=(), converter=_listeners, kw_only=True
    )
    rng: random.Random = attrs.field(factory=random.Random, kw_only=True)

    _schedule: ReconnectSchedule = attrs.field(init=False)
    _session: SessionHandle | None = attrs.field(init=False, default=None)
    _attempt: SessionHandle | None = attrs.field(init=False, default=None)
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
    _clock: OffClock | None = attrs.field(init=False, default=None)
    """The deadlines a login during the current attempt stops."""
    _refused: bool = attrs.field(init=False, default=False)
    """The last attempt failed to authenticate: no attempt until a new
    caller (or request) asks for one."""

    def __attrs_post_init__(self) -> None:
        self._schedule = ReconnectSchedule(self.config, self.rng)

    async def _loop(self) -> None:
        while not self._closing:
            deadline = math.inf
            if self._wants_session():
                retry_at = self._schedule.retry_at
                if current_time() >= retry_at:
                    await self._connect_and_serve()
                    continue
                deadline = retry_at
            changed = self._changed
            with anyio.CancelScope(deadline=deadline):
                await changed.wait()

    def _wants_session(self) -> bool:
        # After a refused login, only a new caller (or request) tries.
        return not self._refused and (
            self.config.eager_reconnect
            or self._demand > 0
            or self._connect_requested
        )

    async def _connect_and_serve(self) -> None:
        self._connect_requested = False
        self._refused = False
        self._generation += 1
        session = SessionHandle(self._generation, unpublish=self._unpublish)
        self._attempt = session
        self._schedule.attempt_started()
        self._notify()
        config = self.config
        with capture_http_errors() as box:
            try:
                connect_scope = anyio.CancelScope(
                    deadline=current_time() + config.connect_timeout
                )
                self._connect_scope = connect_scope
                # A person logging in stops the attempt's deadline, and
                # those of the callers waiting for it (see _auth).
                box.clock = self._clock = OffClock(connect_scope)
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
                            auth=config.auth,
                            login_timeout=config.login_timeout,
                        )
                        client = Client(target, **config.client_options)
                        await stack.enter_async_context(client)
                        if config.on_connect is not None:
                            await config.on_connect(client)
                        connect_scope.deadline = math.inf
                        self._connect_scope = self._clock = None
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
                self._connect_scope = self._clock = None
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

    def _follow_clock(
        self, scope: object, clock: OffClock | None
    ) -> OffClock | None:
        # A caller waiting for the attempt: a login during it stops the
        # caller's deadline too.  Returns the clock *scope* is now on.
        if self._clock is not clock:
            if clock is not None:
                clock.discard(scope)
            clock = self._clock
            if clock is not None:
                clock.add(scope)
        return clock

    def _attempt_failed(self) -> Exception:
        """What the callers waiting for the attempt that just failed get."""
        schedule = self._schedule
        cause = schedule.failure
        if isinstance(cause, PermanentError | NotSentError):
            # Told apart by _auth (a refused login, an authorization
            # server that is down): each caller gets a copy of its own.
            error = copy.copy(cause)
            error.__cause__ = cause.__cause__
            if isinstance(error, NotSentError):
                error.retry_after = schedule.failure_delay
            return error
        return NotSentError(
            f"{self.name}: could not connect to the MCP server: {cause!r}",
            cause,
            reason="connect-failed",
            retry_after=schedule.failure_delay,
        )

    def _transport_closed(self, session: SessionHandle) -> None:
        # Runs in the dispatcher's task, just before it fails the pending
        # requests: unpublish first, so that no new call picks this one.
        session.report(EOFError("the MCP transport was closed"))

    def _publish(self, session: SessionHandle, client: Client) -> None:
        now = current_time()
        self._attempt = None
        session.client = client
        session.connected_at = now
        session.public = LiveSession(client, session.generation)
        self._session = session
        self._schedule.connected()
        logger.info(
            "%s: MCP session %d connected (protocol %s)",
            self.name,
            session.generation,
            client.protocol_version,
        )
        self._notify()
        self._emit(SessionEventKind.CONNECTED, session.generation, None)

    def _unpublish(self, session: SessionHandle) -> None:
        if self._session is session:
            self._session = None
            self._notify()

    def _connect_failed(
        self, session: SessionHandle, exc: BaseException, box: HTTPResponseBox
    ) -> None:
        cause = root_cause(exc)
        refused = auth_error(cause, box)
        if refused is not None:
            if refused.__cause__ is None:
                refused.__cause__ = cause
            cause = refused
        # A refused login is the caller's to fix: no backoff, no eager
        # reconnect; the next call that needs the session tries once.
        permanent = isinstance(cause, PermanentError)
        self._refused = permanent
        delay = self._schedule.connect_failed(
            cause, box.retry_after, permanent=permanent
        )
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
        self, session: SessionHandle, exc: BaseException | None
    ) -> None:
        if exc is not None:
            # The transport's own error beats what a caller saw (-32000).
            session.cause = root_cause(exc)
        cause = session.cause
        if self._closing:
            return
        now = current_time()
        self._schedule.session_lost(
            connected_at=session.connected_at,
            recycle=session.recycle,
            cause=cause,
            now=now,
        )
        logger.warning(
            "%s: MCP session %d lost (%s); next attempt allowed in %.3fs",
            self.name,
            session.generation,
            "reconnect requested" if session.recycle else repr(cause),
            max(0.0, self._schedule.retry_at - now),
        )
        self._notify()
        self._emit(SessionEventKind.LOST, session.generation, cause)

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
        if self._schedule.waiting(current_time()):
            return SessionState.BACKOFF
        return SessionState.IDLE

    def _check_open(self) -> None:
        if self._closing or self._stopped.is_set():
            raise SessionClosedError(f"{self.name}: the supervisor is closed")
        if not self._running:
            raise SessionClosedError(
                f"{self.name}: the supervisor is not running; start it "
                "with `await task_group.start(supervisor.run)`"
            )

"""
The session supervisor: one task that owns the ``mcp.Client``.

Why a task of its own?  The SDK's ``Client`` must be entered and exited in
the same task (trio enforces it), and when the streamable HTTP transport
crashes it cancels whatever runs in that task, so a call made from the
owning task would get a ``Cancelled`` it cannot handle.  The supervisor
therefore enters the ``Client`` in its own task, publishes it, and lets
every caller use it from their own tasks, where a dying transport shows up
as an ordinary ``MCPError`` that :mod:`._errors` translates.

The task's side (connecting, losing sessions, the backoff) is
:class:`~._session_owner.SessionOwner`; this module adds the callers' side.
"""

from __future__ import annotations

import math

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from typing import TypeVar, cast, final

import anyio
import anyio.abc
import attrs

from mcp.client import Client

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
)
from ._session_handle import SessionHandle
from ._session_owner import SessionOwner
from ._session_types import (
    LiveSession,
    ServerSource,
    SessionEventKind,
    SessionListener,
    SessionMetrics,
)


T = TypeVar("T")


@final
@attrs.define(eq=False, repr=False, on_setattr=attrs.setters.NO_OP)
class SessionSupervisor(SessionOwner):
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

    def __repr__(self) -> str:
        session = self._session
        live = f"generation {session.generation}" if session else "none"
        schedule = self._schedule
        return (
            f"<SessionSupervisor {self.name!r} {self._state().value}, "
            f"session: {live}, {schedule.connects} connects, "
            f"{schedule.failures} failed attempts, {schedule.losses} lost>"
        )

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
                ``-32601``, ...), or an HTTP 4xx.  Its subclass
                AuthenticationError: the server refused our credentials.
            SessionClosedError: The supervisor is closed.
            Exception: Anything else *operation* raised, unchanged.
        """
        return await self.call_until(math.inf, operation)

    async def call_until(
        self, deadline: float, operation: Callable[[Client], Awaitable[T]]
    ) -> T:
        """
        :meth:`call`, cancelled at the event-loop time *deadline*.

        One cancel scope serves both the deadline and, in process, the
        session's hold on the call (see :meth:`.SessionHandle.cancel_calls`):
        the client hands its policies' deadline down to here (see
        :class:`~resilient_mcp._timeouts.DeadlineAware`) instead of
        entering a scope of its own around the call.

        Args:
            deadline: Event-loop time (``anyio.current_time()``) at which
                the call is cancelled; ``math.inf`` for none.
            operation: As :meth:`call`.

        Raises:
            DeadlinePassed: *deadline* passed, while waiting for a
                connection or during the call.
            Exception: As :meth:`call`.

        .. versionadded:: 0.1.0
        """
        session = self._session
        if session is None:
            if deadline == math.inf:
                session = await self._obtain(patient=False)
            else:
                obtained: SessionHandle | None = None
                with deadline_scope(deadline) as scope:
                    obtained = await self._obtain(patient=False, scope=scope)
                if obtained is None:
                    raise DeadlinePassed
                session = obtained
                deadline = scope.deadline  # moved by a login meanwhile
        # No checkpoint of our own on the fast path: every SDK call is one.
        if not session.in_process:
            if deadline == math.inf:
                return await session.call(operation)
            with deadline_scope(deadline) as scope:
                return await session.call(operation, scope)
            raise DeadlinePassed
        # The in-process client runs the server's handler in our task and
        # does not fail it when the session ends; the supervisor cancels it
        # through this scope instead (see SessionHandle.cancel_calls).
        with deadline_scope(deadline) as scope:
            session.calls.add(scope)
            if session.calls_ended:  # it ended as this call took it up
                scope.cancel()
            try:
                return await session.call(operation)
            finally:
                session.calls.discard(scope)
        if not session.calls_ended:
            raise DeadlinePassed
        raise SessionLostError(
            f"{self.name}: MCP session {session.generation} ended during "
            "the call",
            session.cause,
        )

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

    def live_session(self) -> LiveSession | None:
        """
        The live session right now, or ``None``; nothing else happens.

        Unlike :meth:`acquire_nowait` it never asks for a connection, so a
        look (the response-cache probe, say) has no side effects: with
        the circuit open, looking must not dial the server.

        .. versionadded:: 0.1.0
        """
        session = self._session
        if session is None or self._closing:
            return None
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
        self._refused = False
        self._notify()
        now = current_time()
        schedule = self._schedule
        if schedule.waiting(now):
            raise schedule.backoff_error(self.name, now)
        raise NotSentError(
            f"{self.name}: no live MCP session (connecting)",
            schedule.last_error,
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
        self._schedule.connect_now()
        self._connect_requested = True
        self._refused = False
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
            session.report(cause)

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

        It never raises, even once the event loop has ended (metrics read
        after ``trio.run`` returned): ``reconnect_in`` is then ``None``.

        Returns:
            A frozen :class:`SessionMetrics`.
        """
        session = self._session
        schedule = self._schedule
        try:
            wait = schedule.retry_at - current_time()
        except RuntimeError:  # no event loop running: nothing to wait for
            wait = 0.0
        return SessionMetrics(
            name=self.name,
            state=self._state(),
            generation=self._generation,
            protocol_version=(
                session.client.protocol_version
                if session is not None and session.client is not None
                else None
            ),
            connect_attempts=schedule.attempts,
            connects=schedule.connects,
            connect_failures=schedule.failures,
            sessions_lost=schedule.losses,
            consecutive_failures=schedule.streak,
            reconnect_in=wait if wait > 0 else None,
            last_error=schedule.last_error,
        )

    async def _obtain(
        self, *, patient: bool, scope: object = None
    ) -> SessionHandle:
        await checkpoint()  # a checkpoint even on the fast path
        schedule = self._schedule
        failures = schedule.failures
        registered = False
        clock = None
        try:
            while True:
                self._check_open()
                session = self._session
                if session is not None:
                    return session
                if schedule.failures != failures:
                    raise self._attempt_failed()
                now = current_time()
                if not patient and schedule.waiting(now):
                    raise schedule.backoff_error(self.name, now)
                if not registered:
                    registered = True
                    self._demand += 1
                    self._refused = False
                    self._notify()
                if scope is not None:
                    clock = self._follow_clock(scope, clock)
                changed = self._changed
                await changed.wait()
        finally:
            if registered:
                self._demand -= 1
            if clock is not None:
                clock.discard(scope)


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

"""
One connection attempt of a supervisor and, if it succeeds, its session.

A :class:`SessionHandle` is what the supervisor's callers hold while they
call: :meth:`SessionHandle.call` runs one operation on its client and
translates the SDK's errors at the boundary (see :mod:`._errors`), with
the HTTP status the transport saw (see :mod:`._http`).  A session-fatal
error marks the session lost, so that the supervisor replaces it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar, cast, final

import anyio
import attrs
import trio

from mcp.client import Client
from mcp.shared.exceptions import MCPError
from pydantic import ValidationError

from ._auth import OffClock, auth_error
from ._errors import (
    SessionLostError,
    is_session_fatal,
    translate_mcp_error,
    translate_runtime_error,
    translate_validation_error,
)
from ._http import HTTPResponseBox, close_box, open_box
from ._session_types import LiveSession


T = TypeVar("T")


@final
@attrs.define(eq=False, repr=False, on_setattr=attrs.setters.NO_OP)
class SessionHandle:
    """
    One connection attempt and, if it succeeds, its session.

    Args:
        generation: 1 for the supervisor's first attempt, and so on.
        unpublish: The supervisor's: stop handing this session out.
    """

    generation: int
    unpublish: Callable[[SessionHandle], None] = attrs.field(kw_only=True)
    lost: anyio.Event = attrs.field(factory=anyio.Event)
    """Set once the session is dead (or the attempt is over)."""
    client: Client | None = None
    public: LiveSession | None = None
    """What callers get, once connected."""
    connected_at: float = 0.0
    cause: BaseException | None = None
    """Why the session died, when known."""
    recycle: bool = False
    """Dropped on request (:meth:`SessionSupervisor.request_reconnect`)."""
    in_process: bool = False
    http_statuses: bool = True  # whether calls collect HTTP statuses
    calls: set[trio.CancelScope | anyio.CancelScope] = attrs.field(factory=set)
    """The cancel scopes of the in-process calls in flight."""
    calls_ended: bool = False

    def mark_lost(self, cause: BaseException | None = None) -> None:
        """The session is dead; *cause* says why, unless already known."""
        if self.cause is None:
            self.cause = cause
        self.lost.set()

    def report(self, cause: BaseException | None) -> None:
        """:meth:`mark_lost` (unless lost already), and unpublish it."""
        if not self.lost.is_set():
            self.mark_lost(cause)
        self.unpublish(self)

    def cancel_calls(self) -> None:
        """End the in-process calls in flight, and any that start later."""
        # Stream transports fail their pending calls with -32000 when the
        # client exits; in-process calls outlive it (they run the server's
        # handler in the caller's task), so they are registered and ended.
        self.calls_ended = True
        for scope in self.calls:
            scope.cancel()

    async def call(
        self,
        operation: Callable[[Client], Awaitable[T]],
        scope: object = None,
    ) -> T:
        """
        ``await operation(client)``, the SDK's errors translated.

        Args:
            operation: As :meth:`SessionSupervisor.call`.
            scope: The cancel scope of the call's deadline, if any: a
                person logging in during the call stops it (see
                :mod:`._auth`).

        Raises:
            Exception: As :meth:`SessionSupervisor.call`.
        """
        client = cast("Client", self.client)
        # Only HTTP answers have statuses to collect (no contextvar and no
        # box on the other transports' per-call path).
        box, token = open_box() if self.http_statuses else (None, None)
        if box is not None and scope is not None:
            box.clock = OffClock(scope)
        try:
            return await operation(client)
        except MCPError as exc:
            if is_session_fatal(exc):
                self.report(exc)
            error = _translated(exc, box)
            if error is exc:
                raise
            raise error from error.__cause__
        except ValidationError as exc:
            # A result of the wrong shape, or parameters the SDK could
            # not build: the pydantic text quotes the values, ours not.
            raise translate_validation_error(exc) from exc
        except RuntimeError as exc:
            # The client was exited under the call: it is gone.
            if self.lost.is_set():
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


def _translated(exc: MCPError, box: HTTPResponseBox | None) -> Exception:
    """The error replacing *exc*, its ``__cause__`` set; or *exc*."""
    refused = None if box is None else auth_error(exc, box)
    if refused is not None:  # about logging in (see _auth)
        refused.__cause__ = refused.__cause__ or exc
        return refused
    error = translate_mcp_error(
        exc,
        status_code=None if box is None else box.status_code,
        retry_after=None if box is None else box.retry_after,
    )
    if error is not exc:
        error.__cause__ = exc
    return error

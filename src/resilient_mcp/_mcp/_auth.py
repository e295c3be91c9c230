"""
Authentication: a failed login is not an outage, and a login is no timeout.

The SDK authenticates its HTTP requests with an ``httpx2.Auth`` such as
``mcp.client.auth.OAuthClientProvider``: on a 401 (or a 403 asking for
more scope) it discovers the authorization server, sends the user to log
in, exchanges the code for a token and sends the request again.  Left
alone, its failures look like outages to us: an ``OAuthFlowError`` raised
in a POST crashes the streamable HTTP transport (every call in flight gets
``-32000``), and the minutes a person spends logging in run down our
connect and call deadlines.

:class:`ResilientAuth` wraps the user's ``auth`` (see
``SessionConfig.auth``) and, through the call's
:class:`~._http.HTTPResponseBox`:

* stops our deadlines while the provider's own code runs between its
  requests (that is where it waits for the person; the SDK pauses its own
  request clock there too), bounding that time by ``login_timeout``;
* lets the provider authorize at most ``MAX_AUTHORIZATIONS`` times per
  call (or connection attempt), and at most one failed login;
* turns a provider that raises into a failed request: the original request
  is sent once more so that the transport gets the MCP server's own answer
  (a 401, say), and the failure is noted for :func:`auth_error`, which
  tells the caller.

Only public API: ``httpx2.Auth``'s generator protocol, and request
extensions to mark the flow's own requests.
"""

from __future__ import annotations

import math

from collections.abc import AsyncGenerator, Awaitable, Generator
from typing import TYPE_CHECKING, Any, Final, TypeVar, final

import anyio
import attrs
import httpx2

from mcp.client.auth import OAuthFlowError
from mcp.shared.exceptions import MCPError
from mcp_types import CONNECTION_CLOSED, INTERNAL_ERROR

from .._errors import PermanentError
from .._timeouts import current_time
from ._errors import NotSentError
from ._http import AUTH_REQUEST, current_box


if TYPE_CHECKING:
    from ._http import HTTPResponseBox


T = TypeVar("T")

MAX_AUTHORIZATIONS: Final = 3  # authorization attempts per call
REFUSED: Final = frozenset({401, 403})
"""The statuses with which a server refuses our credentials."""
TOO_MANY_REQUESTS: Final = 429


class AuthenticationError(PermanentError):
    """
    The server (or its authorization server) refused our credentials.

    Raised for a 401 or 403 from the MCP server that logging in did not
    cure, for a login that failed (the SDK's ``OAuthFlowError`` and
    ``OAuthTokenError``, an authorization server answering 4xx), and for a
    login that took longer than ``SessionConfig.login_timeout``.  It is a
    :class:`~resilient_mcp.PermanentError`: never retried, never counted
    against a circuit breaker, and the session supervisor does not
    reconnect on its own because of it (the next call tries again, once).

    Attributes:
        code: ``"http-401"`` / ``"http-403"`` when the MCP server's status
            is known, else ``"oauth-<error>"`` or ``"auth-failed"``.
        status_code: The MCP server's HTTP status (401, 403), or ``None``.
        oauth_error: The OAuth ``error`` code the authorization server
            answered (``"invalid_client"``, ``"invalid_grant"``, ...), or
            ``None``.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        oauth_error: str | None = None,
    ) -> None:
        if status_code is not None:
            code = f"http-{status_code}"
        elif oauth_error is not None:
            code = f"oauth-{oauth_error}"
        else:
            code = "auth-failed"
        super().__init__(code, message)
        self.status_code = status_code
        self.oauth_error = oauth_error


@final
@attrs.frozen
class AuthFailure:
    """Why logging in failed during one call (kept in its box)."""

    error: BaseException | None
    """What the auth provider raised, if it raised."""
    status_code: int | None
    """The MCP server's last refusal (401, 403), if any."""
    auth_status: int | None
    """The status of the flow's own last request (the token endpoint's)."""
    oauth_error: str | None
    """The OAuth ``error`` code of that answer, if it had one."""


@final
class OffClock:
    """
    Cancel scopes whose deadlines stop while a person logs in.

    Like a chess clock: :meth:`pause` stops every scope's time (the rest
    of its budget is kept, its deadline is lifted), :meth:`resume` starts
    it again from where it stopped.  Pauses nest, and a scope added during
    a pause is stopped at once.
    """

    __slots__ = ("_budgets", "_pauses")

    def __init__(self, *scopes: Any) -> None:
        self._budgets: dict[Any, float] = dict.fromkeys(scopes, math.inf)
        self._pauses = 0

    def add(self, scope: Any) -> None:
        """Put *scope* on this clock."""
        self._budgets[scope] = math.inf
        if self._pauses:
            self._stop(scope, current_time())

    def discard(self, scope: Any) -> None:
        """Take *scope* off this clock, its time running again."""
        budget = self._budgets.pop(scope, None)
        if budget is not None and self._pauses:
            scope.deadline = current_time() + budget

    def pause(self) -> None:
        """Stop the time of every scope (nests)."""
        if not self._pauses:
            now = current_time()
            for scope in self._budgets:
                self._stop(scope, now)
        self._pauses += 1

    def resume(self) -> None:
        """Undo one :meth:`pause`; the last one starts the time again."""
        self._pauses -= 1
        if not self._pauses:
            now = current_time()
            for scope, budget in self._budgets.items():
                scope.deadline = now + budget

    def _stop(self, scope: Any, now: float) -> None:
        self._budgets[scope] = scope.deadline - now
        scope.deadline = math.inf


def _oauth_error(response: httpx2.Response) -> str | None:
    try:
        body = response.json()
    except (ValueError, httpx2.ResponseNotRead):
        return None
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, str) else None


@final
class ResilientAuth(httpx2.Auth):
    """
    The user's ``httpx2.Auth``, as a guest of our deadlines and limits.

    Args:
        inner: The user's auth (``OAuthClientProvider``, a client
            credentials provider, a static bearer token...).
        login_timeout: Seconds the provider's own code may take between
            two of its requests (a person logging in), off our deadlines.
        max_authorizations: Authorization attempts allowed per call.
    """

    def __init__(
        self,
        inner: httpx2.Auth,
        *,
        login_timeout: float,
        max_authorizations: int = MAX_AUTHORIZATIONS,
    ) -> None:
        self.inner = inner
        self.login_timeout = login_timeout
        self.max_authorizations = max_authorizations
        self.requires_request_body = inner.requires_request_body
        self.requires_response_body = inner.requires_response_body

    def __repr__(self) -> str:
        return f"<ResilientAuth around {self.inner!r}>"

    def sync_auth_flow(
        self,
        request: httpx2.Request,  # noqa: ARG002 (httpx2's signature)
    ) -> Generator[httpx2.Request, httpx2.Response, None]:
        """Not supported: the MCP transports are asynchronous."""
        raise RuntimeError("resilient_mcp authenticates async clients only")

    async def async_auth_flow(  # noqa: C901, PLR0912 (one state machine)
        self, request: httpx2.Request
    ) -> AsyncGenerator[httpx2.Request, httpx2.Response]:
        """The inner flow, bounded, with its failures noted in the box."""
        box = current_box()
        flow = self.inner.async_auth_flow(request)
        refused: int | None = None  # the MCP server's last refusal
        response: httpx2.Response | None = None
        try:
            outgoing = await self._step(flow.__anext__(), box)
            while True:
                own = outgoing is not request
                if own:
                    outgoing.extensions[AUTH_REQUEST] = True
                if box is not None:
                    box.auth_pending = own
                response = yield outgoing
                if box is not None:
                    box.auth_pending = False
                refusal = not own and response.status_code in REFUSED
                if refusal:
                    refused = response.status_code
                    if box is not None and self._no_more_logins(box):
                        if box.auth_failure is None:
                            box.auth_failure = AuthFailure(
                                None, refused, None, None
                            )
                        return  # the refusal stands
                outgoing = await self._step(flow.asend(response), box)
                if refusal and box is not None:
                    box.authorizations += 1  # the flow went on to log in
        except StopAsyncIteration:
            return
        except Exception as exc:
            if box is None:
                raise  # nobody to tell: as without us
            answered = response is not None and response.request is request
            own_answer = response if not answered else None
            box.auth_failure = AuthFailure(
                exc,
                refused,
                None if own_answer is None else own_answer.status_code,
                None if own_answer is None else _oauth_error(own_answer),
            )
            if not answered:
                # The transport must get the MCP server's own answer (not
                # the token endpoint's, nor none): send the request again.
                yield request
        finally:
            await flow.aclose()

    def _no_more_logins(self, box: HTTPResponseBox) -> bool:
        # At most max_authorizations per call, and one failed login: a
        # later request of the same call (the SDK's initialize after a
        # refused discover probe) meets the server's refusal as it is.
        return (
            box.auth_failure is not None
            or box.authorizations >= self.max_authorizations
        )

    async def _step(
        self, step: Awaitable[T], box: HTTPResponseBox | None
    ) -> T:
        # The provider's own code between two requests: where it waits
        # for a person.  Off our deadlines, within login_timeout.
        clock: OffClock | None = None if box is None else box.clock
        if clock is not None:
            clock.pause()
        try:
            with anyio.move_on_after(self.login_timeout):
                return await step
        finally:
            if clock is not None:
                clock.resume()
        raise TimeoutError(f"logging in took over {self.login_timeout:g}s")


def _temporary(status: int | None) -> bool:
    return status is not None and (
        status >= 500 or status == TOO_MANY_REQUESTS
    )


def auth_error(
    cause: BaseException, box: HTTPResponseBox | None
) -> Exception | None:
    """
    What an authentication failure means for the call, if *cause* is one.

    Args:
        cause: What the SDK raised (the call's error, or the root cause of
            a failed connection attempt).
        box: What the call's POSTs saw, if they were collected.

    Returns:
        :class:`AuthenticationError` (the server or the authorization
        server refused us: permanent), :class:`NotSentError` with reason
        ``"auth-unavailable"`` (the authorization server is down or
        overloaded: temporary), or ``None`` (not about auth).
    """
    failure = None if box is None else box.auth_failure
    if failure is not None:
        if _temporary(failure.auth_status):
            return NotSentError(
                "the authorization server is unavailable "
                f"(HTTP {failure.auth_status})",
                failure.error,
                reason="auth-unavailable",
            )
        what = (
            f"logging in failed: {failure.error}"
            if failure.error is not None
            else "the MCP server kept refusing our credentials after "
            f"{MAX_AUTHORIZATIONS} authorization attempts"
        )
        error = _refused(what, failure.status_code, failure.oauth_error)
        error.__cause__ = failure.error
        return error
    pending = box is not None and box.auth_pending
    if _auth_request_failed(cause) or (
        pending
        and isinstance(cause, MCPError)
        and cause.code == CONNECTION_CLOSED
    ):
        return NotSentError(
            f"the authorization server is unreachable: {cause}",
            cause,
            reason="auth-unavailable",
        )
    if isinstance(cause, OAuthFlowError):
        return _refused(f"logging in failed: {cause}", None, None)
    status = None if box is None else box.status_code
    if (
        isinstance(cause, MCPError)
        and cause.code == INTERNAL_ERROR
        and status in REFUSED
    ):
        return _refused(
            f"the MCP server refused our credentials: {cause.message}",
            status,
            None,
        )
    return None


def _refused(
    what: str, status: int | None, oauth_error: str | None
) -> AuthenticationError:
    where = f"HTTP {status}: " if status is not None else ""
    return AuthenticationError(
        f"{where}{what}", status_code=status, oauth_error=oauth_error
    )


def _auth_request_failed(cause: BaseException) -> bool:
    if not isinstance(cause, httpx2.RequestError):
        return False
    try:
        request = cause.request
    except RuntimeError:  # raised without a request
        return False
    return AUTH_REQUEST in request.extensions


def wrap_auth(auth: httpx2.Auth | None, login_timeout: float) -> Any:
    """*auth* in a :class:`ResilientAuth` (once), or ``None``."""
    if auth is None or isinstance(auth, ResilientAuth):
        return auth
    return ResilientAuth(auth, login_timeout=login_timeout)

"""
Recovering the HTTP status and ``Retry-After`` that the SDK drops.

The streamable HTTP transport turns a non-JSON 429 or 503 into
``MCPError(-32603, "Server returned an error response")``; the status is
gone by the time the caller sees the error.  But each request's POST runs
in a copy of the *calling* task's context (the transport's write stream
carries the sender's ``contextvars`` snapshot), so an httpx2 response hook
can drop what it saw into a box that the caller put in a
:class:`~contextvars.ContextVar` before the call, and the caller reads it
back after the error.
"""

from __future__ import annotations

import contextvars
import math

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Final, final

import attrs
import httpx2


if TYPE_CHECKING:
    from ._auth import AuthFailure, OffClock

HTTP_ERROR: Final = 400  # the smallest status worth recording

# The SDK's defaults for its own streamable HTTP client (mcp 2.3:
# MCP_DEFAULT_TIMEOUT and MCP_DEFAULT_SSE_READ_TIMEOUT, in the private
# mcp.shared._httpx_utils): a long read timeout, since a server may hold a
# response stream open.  Redirects stay off, the httpx2 default: the SDK's
# transport follows them itself, within the endpoint's origin only.
MCP_HTTP_TIMEOUT: Final = 30.0  # seconds: connect, write, pool
MCP_HTTP_READ_TIMEOUT: Final = 300.0  # seconds: reading a response


AUTH_REQUEST: Final = "resilient_mcp.auth_request"
"""The request extension marking the requests an auth flow makes of its
own (metadata, registration, token): their statuses are not the MCP
server's answers."""


@final
@attrs.define(eq=False)
class HTTPResponseBox:
    """
    What the HTTP transport saw of one call's POSTs.

    Filled by :func:`record_http_error`: the last POST's answer wins, and
    a success clears an earlier failure (a 401 that the auth provider then
    recovered from says nothing about a later error).  The auth adapter
    (:mod:`._auth`) notes its own findings here too.

    .. versionadded:: 0.1.0
    """

    status_code: int | None = None
    """The HTTP status of the last POST, if it failed, or ``None``."""
    retry_after: float | None = None
    """Its ``Retry-After`` in seconds, or ``None``."""
    auth_failure: AuthFailure | None = None
    """Why logging in failed during this call (an ``AuthFailure``)."""
    authorizations: int = 0
    """Authorization attempts the auth provider made during this call."""
    auth_pending: bool = False
    """An auth flow's own request is in flight (no answer yet)."""
    clock: OffClock | None = None
    """The ``OffClock`` whose deadlines stop while a person logs in."""


_BOX: Final[contextvars.ContextVar[HTTPResponseBox | None]] = (
    contextvars.ContextVar("resilient_mcp_http_response", default=None)
)


def parse_retry_after(
    value: str | None, date: str | None = None
) -> float | None:
    """
    Read an HTTP ``Retry-After`` header as seconds to wait.

    Args:
        value: The header: delay-seconds (``"120"``; a fraction is
            accepted) or an HTTP date.
        date: The response's ``Date`` header.  An HTTP-date value is
            measured against it, as RFC 9110 suggests, so that clock skew
            between client and server does not matter; without it, against
            the local wall clock.

    Returns:
        Seconds, at least 0, or ``None`` when *value* is missing or
        unreadable.
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        when = _http_date(text)
        if when is None:
            return None
        reference = _http_date(date) if date is not None else None
        if reference is None:
            reference = datetime.now(UTC)
        seconds = (when - reference).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def _http_date(text: str) -> datetime | None:
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when


async def record_http_error(response: httpx2.Response) -> None:
    """
    An httpx2 ``response`` event hook feeding :func:`capture_http_errors`.

    Records the status and ``Retry-After`` of a failed POST into the box
    of the context it runs in, if any, and clears them on a successful
    one; does nothing otherwise.  The requests an auth flow makes of its
    own (marked ``AUTH_REQUEST``) are not the MCP server's answers and are
    skipped.
    """
    request = response.request
    if request.method != "POST":
        return
    box = _BOX.get()
    if box is None or AUTH_REQUEST in request.extensions:
        return
    if response.status_code < HTTP_ERROR:
        box.status_code = box.retry_after = None
        return
    headers = response.headers
    box.status_code = response.status_code
    box.retry_after = parse_retry_after(
        headers.get("retry-after"), headers.get("date")
    )


def install_status_hook(client: httpx2.AsyncClient) -> httpx2.AsyncClient:
    """
    Add :func:`record_http_error` to *client*'s response hooks, once.

    Returns:
        *client*, for chaining.

    .. versionadded:: 0.1.0
    """
    hooks = client.event_hooks
    response_hooks = list(hooks.get("response", []))
    if record_http_error not in response_hooks:
        response_hooks.append(record_http_error)
        client.event_hooks = {**hooks, "response": response_hooks}
    return client


def default_http_client() -> httpx2.AsyncClient:
    """
    An httpx2 client set up as the SDK sets up its own.

    The timeouts of the SDK's default streamable HTTP client
    (``MCP_HTTP_TIMEOUT``, ``MCP_HTTP_READ_TIMEOUT``) and httpx2's defaults
    for everything else: no redirects followed, no extra headers, at most
    100 connections.  Built with public httpx2 API only.
    """
    return httpx2.AsyncClient(
        timeout=httpx2.Timeout(MCP_HTTP_TIMEOUT, read=MCP_HTTP_READ_TIMEOUT)
    )


def create_http_client(
    factory: Callable[[], httpx2.AsyncClient] | None = None,
) -> httpx2.AsyncClient:
    """
    A fresh httpx2 client for the MCP transport, with the status hook.

    Args:
        factory: Builds the client; :func:`default_http_client` (the
            SDK's defaults: 30 s connect/write/pool timeouts, 300 s read
            timeout) when ``None``.

    .. versionadded:: 0.1.0
    """
    client = (factory or default_http_client)()
    return install_status_hook(client)


def current_box() -> HTTPResponseBox | None:
    """The box of the call this code serves, if any."""
    return _BOX.get()


def open_box() -> tuple[
    HTTPResponseBox, contextvars.Token[HTTPResponseBox | None]
]:
    """
    Start collecting this task's failed POSTs; :func:`close_box` stops.

    The allocation-light form of :func:`capture_http_errors`, for the
    per-call path.
    """
    box = HTTPResponseBox()
    return box, _BOX.set(box)


def close_box(token: contextvars.Token[HTTPResponseBox | None]) -> None:
    """Stop the collection :func:`open_box` started (same task)."""
    _BOX.reset(token)


@contextmanager
def capture_http_errors() -> Iterator[HTTPResponseBox]:
    """
    Collect, for the duration of the block, failed POSTs of this task.

    Only requests *sent* from inside the block, by the task that entered
    it, are recorded.  Enter and leave it in the same task.

    .. versionadded:: 0.1.0
    """
    box = HTTPResponseBox()
    token = _BOX.set(box)
    try:
        yield box
    finally:
        _BOX.reset(token)

"""
The boundary error map: SDK errors in, resilient_mcp errors out.

This is the only module that decides what an :class:`mcp.MCPError` means
for retries and breakers.  Every translation is ``raise ours from theirs``,
so the SDK's error stays reachable as ``__cause__`` (and as ``.cause``).

=====================================  =====================================
SDK error                              resilient_mcp error
=====================================  =====================================
``-32000`` connection closed           :class:`SessionLostError`
(or one request's SSE stream failed)
``-32001`` request timeout             :class:`RequestTimeoutError`
``-32603`` internal error, legacy      :class:`ServerError` (with the HTTP
code ``0`` (a plain handler crash)     status and ``Retry-After`` when the
                                       transport saw them)
the same with HTTP 4xx other than      :class:`~resilient_mcp.PermanentError`
408/425/429                            with code ``"http-<status>"`` (401 and
                                       403: ``AuthenticationError``, by
                                       :mod:`._auth`)
``-32600`` "Session not found" /       :class:`NotSentError` (the server
"Session terminated"                   refused it before any handler ran)
``-32700``, ``-32600``, ``-32601``,    :class:`~resilient_mcp.PermanentError`
``-32602``, ``-32020``, ``-32021``,    with the JSON-RPC code kept
``-32022``
``-32042`` URL elicitation required    unchanged (it asks for user action)
any other code                         unchanged (triage: RETRY_LIMITED)
a result the SDK rejects (pydantic     :class:`InvalidResponseError` (the
``ValidationError``), or structured    message names the fields at fault,
content against the output schema      never their values)
a request the SDK cannot build         :class:`~resilient_mcp.PermanentError`
(``ValidationError`` of its params)    with code ``-32602``
=====================================  =====================================

A tool result with ``is_error=True`` is not an exception at all: it is the
tool's answer, and it leaves this layer untouched.
"""

from __future__ import annotations

from typing import Final, Literal

from mcp.shared.exceptions import MCPError, UrlElicitationRequiredError
from mcp_types import (
    CONNECTION_CLOSED,
    HEADER_MISMATCH,
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    MISSING_REQUIRED_CLIENT_CAPABILITY,
    PARSE_ERROR,
    REQUEST_TIMEOUT,
    UNSUPPORTED_PROTOCOL_VERSION,
)
from pydantic import ValidationError

from .._errors import PermanentError, ResilienceError, TemporaryError


PERMANENT_CODES: Final = frozenset(
    {
        PARSE_ERROR,
        INVALID_REQUEST,
        METHOD_NOT_FOUND,
        INVALID_PARAMS,
        HEADER_MISMATCH,
        MISSING_REQUIRED_CLIENT_CAPABILITY,
        UNSUPPORTED_PROTOCOL_VERSION,
    }
)
"""JSON-RPC codes that no retry can fix."""

LEGACY_HANDLER_CRASH: Final = 0
"""The code a 2025-era server sends when a non-tool handler raises a plain
exception (``JSONRPCDispatcher`` keeps it for v1 compatibility); at
2026-07-28 the same crash is ``-32603``."""

SESSION_EXPIRED_MESSAGES: Final = frozenset(
    {"Session not found", "Session terminated"}
)
"""``-32600`` messages meaning the server no longer knows our HTTP session:
the server's answer (``Session not found``) or the client transport's
stand-in for a bare 404 (``Session terminated``)."""

TEMPORARY_HTTP_STATUSES: Final = frozenset({408, 425, 429})
"""4xx statuses that say "try again later"; every 5xx does too."""

RESPONSE_STREAM_LOST: Final = "SSE stream"
"""The start of the ``-32000`` messages the streamable HTTP transport makes
up for *one* request whose SSE response stream failed (an event over its
``max_sse_event_size``, a stream that ended without the answer): that
request is lost, the session is not."""

STRUCTURED_CONTENT_INVALID: Final = (
    "Invalid structured content returned by tool ",
    "has an output schema but did not return structured content",
)
"""What the SDK's ``RuntimeError`` says when a tool's structured content
does not match the tool's output schema."""

MAX_REPORTED_FIELDS: Final = 5  # validation errors named in a message


class NotSentError(TemporaryError):
    """
    The request provably never reached a server handler: retry freely.

    Raised when there was no live session to send it on (the supervisor
    is between sessions, waiting out its reconnect backoff, or the
    connection attempt failed), and when the server refused it before
    dispatch because it no longer knew the session.  Because nothing ran,
    retrying is safe even for non-idempotent tools.

    Attributes:
        reason: A short machine-readable reason: ``"connect-failed"``
            (the attempt this call waited for failed), ``"backoff"`` (the
            reconnect delay is running), ``"no-session"`` (none right now,
            from ``acquire_nowait``), ``"session-expired"`` (the server
            no longer knows the session) or ``"auth-unavailable"`` (the
            authorization server is down: logging in failed for now).
        never_sent: Always ``True``; lets a caller test the property
            without importing this class.

    .. versionadded:: 0.1.0
    """

    never_sent: Final = True

    def __init__(
        self,
        message: str,
        cause: BaseException | None = None,
        *,
        reason: str,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, cause, retry_after=retry_after)
        self.reason = reason


class SessionLostError(TemporaryError):
    """
    The session died while the request was in flight.

    The request may or may not have run on the server, so only idempotent
    operations should be retried.  The supervisor reconnects on its own;
    the cause is the SDK's ``MCPError`` (``-32000``).  Over streamable
    HTTP the SSE stream carrying one request's answer can fail alone (an
    event over the transport's size limit, say): that request gets this
    error too ("MCP response stream lost"), and the session carries on.

    .. versionadded:: 0.1.0
    """

    never_sent: Final = False


class RequestTimeoutError(TemporaryError, TimeoutError):
    """
    The server did not answer within the SDK's read timeout (``-32001``).

    It is a :class:`TimeoutError` too.  The SDK cancelled the request on
    the server, but the server may already have acted on it.

    .. versionadded:: 0.1.0
    """

    never_sent: Final = False


class ServerError(TemporaryError):
    """
    The server failed to handle the request, probably for a while only.

    Raised for JSON-RPC ``-32603`` (and the legacy code ``0``), which is
    also how the SDK reports an HTTP error status such as 503 or 429.
    When the HTTP transport saw the status, it and the ``Retry-After``
    header are recovered here.

    Attributes:
        code: The JSON-RPC error code.
        status_code: The HTTP status of the failed POST, or ``None``
            (not HTTP, or the status was a success).
        retry_after: Seconds the server asked us to wait, or ``None``.

    .. versionadded:: 0.1.0
    """

    never_sent: Final = False

    def __init__(
        self,
        message: str,
        cause: BaseException | None = None,
        *,
        code: int,
        status_code: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, cause, retry_after=retry_after)
        self.code = code
        self.status_code = status_code


class InvalidResponseError(TemporaryError):
    """
    The server answered, but not with what the request expects.

    Raised when the SDK rejects a result (a ``pydantic.ValidationError``:
    a result of the wrong shape for the negotiated protocol) and when a
    tool's structured content violates the tool's own output schema.  The
    request reached the server and may have run, so only operations that
    are safe to repeat are retried; it counts against the server's circuit
    breaker, since a server that answers nonsense is not healthy.

    The message names the result type and the fields at fault, never
    their values: results may carry personal data, and error messages end
    up in logs and spans.  The SDK's own error, values included, is the
    ``__cause__``.

    .. versionadded:: 0.1.0
    """

    never_sent: Final = False


class SessionClosedError(ResilienceError, RuntimeError):
    """
    The session supervisor was closed (or never started): no more calls.

    Not retryable: no amount of waiting brings a closed supervisor back.

    .. versionadded:: 0.1.0
    """


def told_by_text(
    code: int, message: str
) -> Literal["response-stream-lost", "session-expired"] | None:
    """
    What an SDK error means where only its message text tells.

    The one place that reads the SDK's error *text*; everything else goes
    by exception type and JSON-RPC code.  In ``mcp`` 2.3 two cases share
    their code with errors that mean something else
    (``tests/mcp/test_sdk_private.py`` pins the texts):

    * ``-32000`` with a message starting ``"SSE stream"``: the streamable
      HTTP transport lost the response stream of *one* request (an event
      over its size limit, a stream that ended without the answer); the
      same code otherwise means the whole connection closed.
    * ``-32600`` ``"Session not found"`` (a restarted server's 404 answer)
      or ``"Session terminated"`` (the transport's stand-in for a bare
      404): the server no longer knows our HTTP session; the same code
      otherwise means an invalid request.

    Returns:
        ``"response-stream-lost"``, ``"session-expired"``, or ``None``
        (the code says it all).
    """
    if code == CONNECTION_CLOSED and message.startswith(RESPONSE_STREAM_LOST):
        return "response-stream-lost"
    if code == INVALID_REQUEST and message in SESSION_EXPIRED_MESSAGES:
        return "session-expired"
    return None


def is_session_fatal(exc: BaseException) -> bool:
    """
    Whether *exc*, raised by a call, means its session cannot be used again.

    True for ``-32000`` (the transport closed or crashed; not when only
    one request's SSE stream failed) and for the ``-32600`` "session not
    found" answers of a restarted HTTP server.
    """
    if not isinstance(exc, MCPError):
        return False
    code = exc.code
    if code == CONNECTION_CLOSED:
        return told_by_text(code, exc.message) is None
    return code == INVALID_REQUEST and (
        told_by_text(code, exc.message) == "session-expired"
    )


def translate_mcp_error(
    exc: MCPError,
    *,
    status_code: int | None = None,
    retry_after: float | None = None,
) -> Exception:
    """
    Map an SDK error to the resilient_mcp error that replaces it.

    Args:
        exc: What an SDK call raised.
        status_code: The HTTP status of the request's failed POST, if the
            HTTP transport saw one (see :mod:`._http`).
        retry_after: Its ``Retry-After``, in seconds, if any.

    Returns:
        The error to raise ``from exc``; *exc* itself when the code has no
        translation (raise it unchanged then).
    """
    code = exc.code
    message = exc.message
    told = told_by_text(code, message)
    error: Exception = exc
    if isinstance(exc, UrlElicitationRequiredError):
        pass  # a request for user action, not a failure
    elif code == CONNECTION_CLOSED:
        what = (
            "MCP response stream lost"
            if told == "response-stream-lost"
            else "MCP session lost"
        )
        error = SessionLostError(f"{what}: {message}", exc)
    elif code == REQUEST_TIMEOUT:
        error = RequestTimeoutError(f"MCP request timed out: {message}", exc)
    elif told == "session-expired":
        error = NotSentError(
            f"MCP server no longer knows the session: {message}",
            exc,
            reason="session-expired",
        )
    elif code in PERMANENT_CODES:
        error = PermanentError(code, message)
    elif code in (INTERNAL_ERROR, LEGACY_HANDLER_CRASH):
        error = _server_error(exc, status_code, retry_after)
    return error


def translate_validation_error(exc: ValidationError) -> Exception:
    """
    Map a pydantic error raised by an SDK call to the error replacing it.

    The SDK validates the parameters it builds from the caller's
    arguments, and every result it receives; the model's name tells the
    two apart.

    Args:
        exc: What the SDK call raised.

    Returns:
        :class:`InvalidResponseError` for a result, else a
        :class:`~resilient_mcp.PermanentError` with code ``-32602`` (the
        request could not be built; nothing was sent).  Either message
        names the fields at fault, never their values.
    """
    title = exc.title
    problems = exc.errors(
        include_url=False, include_context=False, include_input=False
    )
    fields = "; ".join(
        f"{'.'.join(str(part) for part in problem['loc']) or '(root)'}: "
        f"{problem['msg']}"
        for problem in problems[:MAX_REPORTED_FIELDS]
    )
    more = len(problems) - MAX_REPORTED_FIELDS
    if more > 0:
        fields += f"; and {more} more"
    if "Result" in title:
        return InvalidResponseError(
            f"MCP server sent an invalid result ({title}): {fields}", exc
        )
    return PermanentError(
        INVALID_PARAMS, f"invalid request parameters ({title}): {fields}"
    )


def translate_runtime_error(exc: RuntimeError) -> Exception | None:
    """
    Map the SDK's ``RuntimeError`` about structured content, if it is one.

    The SDK raises a bare ``RuntimeError`` there, told apart from others
    by its text only (``STRUCTURED_CONTENT_INVALID``, pinned by
    ``tests/mcp/test_sdk_private.py``).

    Args:
        exc: What the SDK call raised.

    Returns:
        :class:`InvalidResponseError` naming the tool, and where in the
        content the schema was violated (never the values); ``None`` for
        any other ``RuntimeError``.
    """
    text = str(exc)
    invalid, missing = STRUCTURED_CONTENT_INVALID
    if text.startswith(invalid):
        tool = text[len(invalid) :].partition(":")[0]
        cause = exc.__cause__
        path = getattr(cause, "json_path", "$")
        rule = getattr(cause, "validator", "schema")
        return InvalidResponseError(
            f"MCP tool {tool!r} returned structured content that violates "
            f"its output schema (at {path}: {rule})",
            exc,
        )
    if missing in text:
        return InvalidResponseError(
            f"MCP server sent no structured content: {text}", exc
        )
    return None


def _server_error(
    exc: MCPError, status_code: int | None, retry_after: float | None
) -> Exception:
    code = exc.code
    if status_code is None:
        return ServerError(
            f"MCP server error [{code}]: {exc.message}", exc, code=code
        )
    if 400 <= status_code < 500 and status_code not in (
        TEMPORARY_HTTP_STATUSES
    ):
        return PermanentError(
            f"http-{status_code}", f"HTTP {status_code}: {exc.message}"
        )
    return ServerError(
        f"MCP server error [{code}]: HTTP {status_code}: {exc.message}",
        exc,
        code=code,
        status_code=status_code,
        retry_after=retry_after,
    )


def leaf_exceptions(exc: BaseException) -> list[BaseException]:
    """
    The non-group exceptions inside *exc*, depth first.

    ``async with Client(...)`` raises nested exception groups (one per
    task group between the failure and the caller); this digs the real
    errors out.
    """
    if isinstance(exc, BaseExceptionGroup):
        leaves: list[BaseException] = []
        for inner in exc.exceptions:
            leaves.extend(leaf_exceptions(inner))
        return leaves
    return [exc]


def single_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one real error inside *group*, or *group* if there are more."""
    leaves = leaf_exceptions(group)
    return leaves[0] if len(leaves) == 1 else group


def root_cause(exc: BaseException) -> BaseException:
    """
    The most telling real error inside *exc*.

    Picks, among the leaves of *exc*, the first ``MCPError``, else the
    first leaf; *exc* itself when it is no group.
    """
    leaves = leaf_exceptions(exc)
    for leaf in leaves:
        if isinstance(leaf, MCPError):
            return leaf
    return leaves[0] if leaves else exc

"""
The boundary error map and the HTTP status recovery, without a server.

The same map is exercised against real servers in the session tests; these
tests pin every row of the table, including the ones no flaky-server tool
triggers.
"""

from __future__ import annotations

import datetime as dt

from email.utils import format_datetime

import httpx2
import pytest

from hypothesis import given
from hypothesis import strategies as st
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

from resilient_mcp import PermanentError, TemporaryError
from resilient_mcp._mcp import (
    NotSentError,
    RequestTimeoutError,
    ServerError,
    SessionLostError,
    capture_http_errors,
    create_http_client,
    install_status_hook,
    is_session_fatal,
    leaf_exceptions,
    parse_retry_after,
    record_http_error,
    root_cause,
    translate_mcp_error,
)


@pytest.mark.parametrize(
    ("code", "message", "expected"),
    [
        (CONNECTION_CLOSED, "Connection closed", SessionLostError),
        (
            REQUEST_TIMEOUT,
            "Request 'tools/call' timed out",
            RequestTimeoutError,
        ),
        (INTERNAL_ERROR, "Internal server error", ServerError),
        (0, "Unknown prompt: nope", ServerError),
        (INVALID_REQUEST, "Session not found", NotSentError),
        (INVALID_REQUEST, "Session terminated", NotSentError),
        (INVALID_PARAMS, "Unknown resource", PermanentError),
        (METHOD_NOT_FOUND, "Method not found", PermanentError),
        (INVALID_REQUEST, "server answered with 202", PermanentError),
        (PARSE_ERROR, "Parse error", PermanentError),
        (HEADER_MISMATCH, "Header mismatch", PermanentError),
        (MISSING_REQUIRED_CLIENT_CAPABILITY, "Missing", PermanentError),
        (UNSUPPORTED_PROTOCOL_VERSION, "Unsupported", PermanentError),
    ],
)
def test_error_map(code: int, message: str, expected: type[Exception]):
    """
    Each JSON-RPC code becomes its resilient_mcp error, message kept.
    """
    exc = MCPError(code=code, message=message)

    error = translate_mcp_error(exc)

    assert expected is type(error)
    assert message in str(error)


def test_permanent_keeps_the_code():
    """
    A permanent error carries the JSON-RPC code of the SDK error.
    """
    error = translate_mcp_error(MCPError(code=INVALID_PARAMS, message="bad"))

    assert isinstance(error, PermanentError)
    assert INVALID_PARAMS == error.code
    assert "bad" == error.message


def test_temporary_errors_keep_the_cause():
    """
    The temporary translations carry the SDK error as ``cause``.
    """
    exc = MCPError(code=CONNECTION_CLOSED, message="Connection closed")

    error = translate_mcp_error(exc)

    assert isinstance(error, TemporaryError)
    assert exc is error.cause
    assert exc is error.__cause__


def test_request_timeout_is_a_timeout_error():
    """
    ``-32001`` is both a TemporaryError and a TimeoutError.
    """
    error = translate_mcp_error(MCPError(code=REQUEST_TIMEOUT, message="t"))

    assert isinstance(error, TimeoutError)
    assert isinstance(error, TemporaryError)


@pytest.mark.parametrize(
    ("status", "retry_after", "expected"),
    [
        (503, 2.0, ServerError),
        (429, 1.5, ServerError),
        (500, None, ServerError),
        (408, None, ServerError),
        (401, None, PermanentError),
        (403, None, PermanentError),
    ],
)
def test_http_status_decides(
    status: int, retry_after: float | None, expected: type[Exception]
):
    """
    A recovered HTTP status makes ``-32603`` temporary or permanent.
    """
    exc = MCPError(code=INTERNAL_ERROR, message="Server returned an error")

    error = translate_mcp_error(
        exc, status_code=status, retry_after=retry_after
    )

    assert expected is type(error)
    if isinstance(error, ServerError):
        assert status == error.status_code
        assert retry_after == error.retry_after
    else:
        assert isinstance(error, PermanentError)
        assert f"http-{status}" == error.code


def test_unknown_codes_and_elicitations_pass_through():
    """
    Codes without a translation, and URL elicitations, are not replaced.
    """
    custom = MCPError(code=42, message="quota")
    elicit = UrlElicitationRequiredError([])

    assert custom is translate_mcp_error(custom)
    assert elicit is translate_mcp_error(elicit)


def test_session_fatal():
    """
    Connection closed and session-not-found kill a session; others don't.
    """
    assert is_session_fatal(MCPError(CONNECTION_CLOSED, "Connection closed"))
    assert is_session_fatal(MCPError(INVALID_REQUEST, "Session not found"))
    assert not is_session_fatal(MCPError(INVALID_REQUEST, "other"))
    assert not is_session_fatal(MCPError(INTERNAL_ERROR, "boom"))
    assert not is_session_fatal(RuntimeError("not an MCPError"))


def test_never_sent_flag():
    """
    Only NotSentError claims the request never reached a handler.
    """
    assert NotSentError("x", reason="backoff").never_sent
    assert not SessionLostError("x").never_sent
    assert not ServerError("x", code=INTERNAL_ERROR).never_sent


def test_root_cause_digs_into_groups():
    """
    The MCPError inside nested exception groups is the root cause.
    """
    inner = MCPError(CONNECTION_CLOSED, "Connection closed")
    other = ValueError("noise")
    group = ExceptionGroup("outer", [ExceptionGroup("inner", [other, inner])])

    assert [other, inner] == leaf_exceptions(group)
    assert inner is root_cause(group)
    assert other is root_cause(ExceptionGroup("g", [other]))
    assert other is root_cause(other)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        (" 0.5 ", 0.5),
        ("-3", 0.0),
        ("", None),
        (None, None),
        ("soon", None),
        ("inf", None),
    ],
)
def test_parse_retry_after_seconds(value: str | None, expected: float | None):
    """
    Delay-seconds values parse to non-negative floats; junk to None.
    """
    assert expected == parse_retry_after(value)


@given(st.integers(min_value=0, max_value=10**6))
def test_parse_retry_after_http_date(seconds: int):
    """
    An HTTP-date value is measured against the response's Date header.
    """
    now = dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    later = now + dt.timedelta(seconds=seconds)

    parsed = parse_retry_after(
        format_datetime(later, usegmt=True), format_datetime(now, usegmt=True)
    )

    assert float(seconds) == parsed


def test_parse_retry_after_date_without_date_header():
    """
    Without a Date header, a past HTTP-date means no wait at all.
    """
    assert 0.0 == parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT")


def _response(method: str, status: int, **headers: str) -> httpx2.Response:
    request = httpx2.Request(method, "http://127.0.0.1:1/mcp")
    return httpx2.Response(status, headers=headers, request=request)


async def test_status_hook_fills_the_box_of_its_context():
    """
    The response hook records a failed POST into the current box only.
    """
    await record_http_error(_response("POST", 503))  # no box: ignored

    with capture_http_errors() as box:
        await record_http_error(_response("POST", 200))
        await record_http_error(_response("GET", 503))
        await record_http_error(_response("POST", 429, **{"Retry-After": "7"}))

    assert 429 == box.status_code
    assert 7.0 == box.retry_after


async def test_create_http_client_installs_the_hook_once():
    """
    The supervisor's httpx2 clients carry the status hook exactly once.
    """
    async with create_http_client() as client:
        install_status_hook(client)

        assert [record_http_error] == client.event_hooks["response"]

"""
The error map's answers to the bad input the chaos suite found (issue 6).

Unit tests of the boundary functions, on the SDK's own exceptions: one
request's failed SSE stream is not the session's death; a result the SDK
rejects, or structured content against its schema, becomes
``InvalidResponseError`` whose message names fields, never values; a
request the SDK cannot build is permanent.
"""

from __future__ import annotations

import pydantic
import pytest

from mcp.shared.exceptions import MCPError
from mcp_types import (
    CONNECTION_CLOSED,
    INVALID_PARAMS,
    CallToolRequestParams,
    CallToolResult,
)

from resilient_mcp import PermanentError, SessionLostError
from resilient_mcp._mcp import (
    InvalidResponseError,
    is_session_fatal,
    translate_mcp_error,
    translate_runtime_error,
    translate_validation_error,
)


pytestmark = pytest.mark.chaos

SECRET = "secret-value-42"  # noqa: S105 (a canary, not a password)


@pytest.mark.parametrize(
    "message",
    [
        "SSE stream failed: Server-sent event exceeded the 1048576 byte limit",
        "SSE stream ended without a response",
        "SSE stream ended and reconnection attempts were exhausted",
    ],
)
def test_one_requests_sse_failure_is_not_session_fatal(message):
    """A -32000 the HTTP transport made up for one request spares the rest."""
    error = MCPError(CONNECTION_CLOSED, message)

    translated = translate_mcp_error(error)

    assert not is_session_fatal(error)
    assert isinstance(translated, SessionLostError)
    assert f"MCP response stream lost: {message}" == str(translated)


def test_connection_closed_is_still_session_fatal():
    """The dispatcher's own "Connection closed" still ends the session."""
    error = MCPError(CONNECTION_CLOSED, "Connection closed")

    assert is_session_fatal(error)
    assert "MCP session lost: Connection closed" == str(
        translate_mcp_error(error)
    )


def validation_error(model, data):
    """The pydantic error *model* raises for *data*."""
    with pytest.raises(pydantic.ValidationError) as info:
        model.model_validate(data)
    return info.value


def test_a_rejected_result_names_fields_not_values():
    """A result of the wrong shape: InvalidResponseError, values withheld."""
    error = validation_error(
        CallToolResult, {"content": SECRET, "isError": SECRET}
    )

    translated = translate_validation_error(error)

    assert isinstance(translated, InvalidResponseError)
    assert "invalid result (CallToolResult)" in str(translated)
    assert "content: Input should be a valid list" in str(translated)
    assert SECRET not in str(translated)
    assert SECRET in str(translated.__cause__ or translated.cause)


def test_a_request_the_sdk_cannot_build_is_permanent():
    """Bad request parameters: PermanentError -32602, values withheld."""
    error = validation_error(
        CallToolRequestParams, {"name": "echo", "arguments": SECRET}
    )

    translated = translate_validation_error(error)

    assert isinstance(translated, PermanentError)
    assert INVALID_PARAMS == translated.code
    assert "CallToolRequestParams" in str(translated)
    assert SECRET not in str(translated)


def test_many_problems_are_summed_up():
    """Past five fields the message says how many more there were."""
    error = validation_error(
        CallToolResult,
        {"content": [{"type": "text", "text": i} for i in range(8)]},
    )
    count = error.error_count()

    translated = str(translate_validation_error(error))

    assert count > 5
    assert translated.endswith(f"; and {count - 5} more")
    assert 5 == translated.count("content.")


def test_structured_content_against_its_schema_names_the_place():
    """The SDK's RuntimeError about structured content is translated."""
    import jsonschema  # noqa: PLC0415 (the SDK's dependency)

    try:
        jsonschema.validate(
            {"result": SECRET},
            {"properties": {"result": {"type": "integer"}}},
        )
    except jsonschema.ValidationError as cause:
        sdk = RuntimeError(
            f"Invalid structured content returned by tool add: {cause}"
        )
        sdk.__cause__ = cause
    missing = RuntimeError(
        "Tool add has an output schema but did not return structured content"
    )

    translated = translate_runtime_error(sdk)

    assert isinstance(translated, InvalidResponseError)
    assert "MCP tool 'add' returned structured content" in str(translated)
    assert "(at $.result: type)" in str(translated)
    assert SECRET not in str(translated)
    assert isinstance(translate_runtime_error(missing), InvalidResponseError)
    assert translate_runtime_error(RuntimeError("other")) is None

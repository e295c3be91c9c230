"""
The MCP adapter: the only part of resilient_mcp that imports ``mcp``.

``_errors`` maps the SDK's errors to ours at the boundary (``_auth``
those of logging in, and keeps a login off our deadlines); ``_http``
recovers the HTTP status and ``Retry-After`` the SDK drops; ``_transport``
builds transports from server specs and notices when one ends; and
``_session`` supervises one ``mcp.Client`` per server in a task of its own,
reconnecting when it dies; ``_client`` is the facade that puts every
operation through the resilience pipeline.  ``_sdk_private`` holds the
little that relies on what the SDK does not make public.
"""

from ._auth import AuthenticationError
from ._client import ResilientMCPClient
from ._client_config import (
    OPERATION_KINDS,
    SEED_BULKHEADS,
    ResilientClientConfig,
)
from ._client_metrics import (
    OperationMetrics,
    ResilientClientMetrics,
    ToolMetrics,
)
from ._config import SessionConfig
from ._errors import (
    InvalidResponseError,
    NotSentError,
    RequestTimeoutError,
    ServerError,
    SessionClosedError,
    SessionLostError,
    is_session_fatal,
    leaf_exceptions,
    root_cause,
    translate_mcp_error,
    translate_runtime_error,
    translate_validation_error,
)
from ._http import (
    HTTPResponseBox,
    capture_http_errors,
    create_http_client,
    install_status_hook,
    parse_retry_after,
    record_http_error,
)
from ._session import SessionSupervisor, open_session_supervisor
from ._session_types import (
    LiveSession,
    ServerSource,
    SessionEvent,
    SessionEventKind,
    SessionListener,
    SessionMetrics,
    SessionState,
)
from ._tool_call import ToolError
from ._transport import ServerSpec, watch_transport


__all__ = [
    "OPERATION_KINDS",
    "SEED_BULKHEADS",
    "AuthenticationError",
    "HTTPResponseBox",
    "InvalidResponseError",
    "LiveSession",
    "NotSentError",
    "OperationMetrics",
    "RequestTimeoutError",
    "ResilientClientConfig",
    "ResilientClientMetrics",
    "ResilientMCPClient",
    "ServerError",
    "ServerSource",
    "ServerSpec",
    "SessionClosedError",
    "SessionConfig",
    "SessionEvent",
    "SessionEventKind",
    "SessionListener",
    "SessionLostError",
    "SessionMetrics",
    "SessionState",
    "SessionSupervisor",
    "ToolError",
    "ToolMetrics",
    "capture_http_errors",
    "create_http_client",
    "install_status_hook",
    "is_session_fatal",
    "leaf_exceptions",
    "open_session_supervisor",
    "parse_retry_after",
    "record_http_error",
    "root_cause",
    "translate_mcp_error",
    "translate_runtime_error",
    "translate_validation_error",
    "watch_transport",
]

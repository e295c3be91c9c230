"""
The progress-aware timeout of ``tools/call``.

With ``progress_timeout_cap`` set, a tool that reports progress keeps its
call alive: each progress notification pushes the timeout out by another
attempt timeout, never past the cap.  Like a parking meter that takes
another coin each time the tool shows a sign of life, up to the maximum
stay.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from .._errors import CallTimeout
from .._timeouts import current_time, deadline_scope


if TYPE_CHECKING:
    from mcp.client import Client
    from mcp_types import CallToolResult

    from ._tool_call import CallUntil


async def call_with_progress(  # noqa: PLR0917 (one caller, positional)
    call_until: CallUntil,
    name: str,
    arguments: dict[str, Any] | None,
    options: dict[str, Any],
    progress: tuple[float, float],
    deadline: float,
) -> CallToolResult:
    """
    Call tool *name* under a progress-aware timeout, and *deadline*.

    Args:
        call_until: The supervisor's call on the live session.
        name: The tool.
        arguments: Its arguments.
        options: More keyword arguments of ``mcp.Client.call_tool``; a
            ``progress_callback`` among them is still called.
        progress: ``(cap, step)``: each progress notification pushes the
            timeout out by another *step* seconds, never past start +
            *cap*.
        deadline: The pipeline's (its bulkhead's), enforced by
            *call_until*.

    Raises:
        CallTimeout: No progress for *step* seconds, or *cap* passed.
    """
    cap, step = progress
    start = current_time()
    hard = start + cap
    scope = deadline_scope(min(start + step, hard))
    user_callback: Callable[..., Awaitable[None]] | None = options.get(
        "progress_callback"
    )

    async def on_progress(*args: Any) -> None:
        scope.deadline = min(current_time() + step, hard)
        if user_callback is not None:
            await user_callback(*args)

    sdk_options = {**options, "progress_callback": on_progress}

    def request(client: Client) -> Awaitable[CallToolResult]:
        return client.call_tool(name, arguments, **sdk_options)

    with scope:
        return await call_until(deadline, request)
    limit = min(current_time(), hard) - start
    raise CallTimeout(limit, f"tool {name!r} (progress-aware)")

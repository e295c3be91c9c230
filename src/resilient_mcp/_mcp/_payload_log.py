"""
The opt-in debug log of tool arguments and results (``log_payloads``).

Payloads may carry personal data: they are logged only when the client's
config says so, at DEBUG, to a logger of their own, so that the ordinary
``resilient_mcp`` logs never carry them.
"""

from __future__ import annotations

import logging

from typing import TYPE_CHECKING, Final

from .._timeouts import current_time


if TYPE_CHECKING:
    from mcp_types import CallToolResult

    from .._metrics import LatencyRecorder
    from .._pipeline import ResiliencePipeline
    from .._timeouts import DeadlineAware


payload_logger: Final = logging.getLogger("resilient_mcp.payloads")
"""Tool arguments and results, only with ``log_payloads=True``."""


async def call_logged(
    pipeline: ResiliencePipeline,
    op: DeadlineAware,
    name: str,
    arguments: object,
    tool_recorder: LatencyRecorder,
) -> CallToolResult:
    """
    ``tools/call`` of tool *name* through *pipeline*, its payloads logged.

    Records the call's latency under *name* in *tool_recorder*, as the
    unlogged path does.
    """
    payload_logger.debug("tools/call %r arguments: %r", name, arguments)
    start = current_time()
    try:
        result: CallToolResult = await pipeline.call(op)
    except Exception as exc:
        payload_logger.debug("tools/call %r failed: %r", name, exc)
        raise
    finally:
        tool_recorder.record(name, current_time() - start)
    payload_logger.debug("tools/call %r result: %r", name, result)
    return result

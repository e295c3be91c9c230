"""
The list operations: pages, every page at once, and the response cache.

``list_tools(all_pages=True)`` follows ``next_cursor`` through the
pipeline, one request (with its own retries) per page, and returns one
result with every item; a server that repeats a cursor gets a
:class:`~resilient_mcp.PermanentError` instead of an endless loop.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from .._errors import PermanentError
from ._cache_probe import from_cache


if TYPE_CHECKING:
    from mcp.client import Client

    from .._pipeline import ResiliencePipeline
    from ._session import SessionSupervisor


async def list_through(  # noqa: PLR0917 (one caller per operation)
    call: Callable[[Callable[[Client], Awaitable[Any]]], Awaitable[Any]],
    supervisor: SessionSupervisor,
    pipeline: ResiliencePipeline,
    field: str,
    sdk_method: str,
    cursor: str | None,
    all_pages: bool,
    kwargs: dict[str, Any],
) -> Any:
    """
    One list operation of ``mcp.Client``, through *pipeline*.

    Args:
        call: How the pipeline calls the session (the client's bounded
            call, which takes the pipeline's deadline).
        supervisor: For the cache probe.
        pipeline: The method's pipeline (its name is the MCP method).
        field: The result's list of items (``"tools"``).
        sdk_method: The ``mcp.Client`` method (``"list_tools"``).
        cursor: Where to start; ``None`` for the first page, which may
            come from the SDK's response cache.
        all_pages: Follow ``next_cursor`` to the end.
        kwargs: More keyword arguments of the SDK method.

    Raises:
        PermanentError: The server repeated a cursor (``"cursor-loop"``).
    """
    use_cache = kwargs.get("cache_mode", "use") == "use"

    async def page(client: Client, after: str | None) -> Any:
        return await getattr(client, sdk_method)(cursor=after, **kwargs)

    async def first(client: Client) -> Any:
        return await page(client, cursor)

    result: Any = None
    if cursor is None and use_cache:
        result = await from_cache(supervisor, first)
    if result is None:
        result = await pipeline.call(call, first)
    if not all_pages or result.next_cursor is None:
        return result
    items = list(getattr(result, field))
    seen = {result.next_cursor}
    after = result.next_cursor
    while after is not None:

        async def following(client: Client, after: str = after) -> Any:
            return await page(client, after)

        result = await pipeline.call(call, following)
        items.extend(getattr(result, field))
        after = result.next_cursor
        if after in seen:
            raise PermanentError(
                "cursor-loop",
                f"{pipeline.name}: the server repeated cursor {after!r}",
            )
        seen.add(after)
    return result.model_copy(update={field: items, "next_cursor": None})

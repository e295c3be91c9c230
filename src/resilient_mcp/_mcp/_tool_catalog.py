"""
What the client knows of the server's tools: which ones are safe to retry.

A ``tools/call`` may be retried after it reached the server only when the
tool says a repeat does no harm: ``read_only_hint`` or ``idempotent_hint``
in its annotations (unless annotations are not trusted), or when the user
names it in ``retryable_tools``.  The annotations come from the listings:
one straight through the SDK when a session connects, then every complete
``list_tools`` of the caller.  A stale listing (``list_changed``) or an
unknown name asks for a new one before the call.
"""

from __future__ import annotations

import logging
import math

from collections.abc import Awaitable, Callable, Collection
from typing import TYPE_CHECKING, Any, Final, final

import attrs

from .._timeouts import current_time


if TYPE_CHECKING:
    from mcp.client import Client
    from mcp_types import ListToolsResult


logger: Final = logging.getLogger("resilient_mcp")

UNKNOWN_TOOL_REFRESH: Final = 1.0  # seconds between listings for unknowns
MAX_LISTING_PAGES: Final = 1000  # pages of one listing at connect


def tool_safety(tool: Any) -> tuple[bool, bool]:
    """``(read_only, idempotent)`` as *tool*'s annotations say."""
    annotations = getattr(tool, "annotations", None)
    if annotations is None:
        return (False, False)
    return (
        bool(annotations.read_only_hint),
        bool(annotations.idempotent_hint),
    )


@final
@attrs.define(eq=False, repr=False, on_setattr=attrs.setters.NO_OP)
class ToolCatalog:
    """
    The tools' retry safety, from their annotations.

    Args:
        trust_annotations: Whether annotations decide retry safety.
        retryable_tools: Tools safe to retry whatever they say.
    """

    trust_annotations: bool
    retryable_tools: Collection[str]
    annotations: dict[str, tuple[bool, bool]] = attrs.field(
        init=False, factory=dict
    )
    """``(read_only, idempotent)`` per tool name."""
    stale: bool = attrs.field(init=False, default=False)
    """Whether the server said the list changed since the last listing."""
    _last_refresh: float = attrs.field(init=False, default=-math.inf)
    # Whether the last refresh failed (and was logged): one line an outage.
    _refresh_failing: bool = attrs.field(init=False, default=False)

    def learn(self, result: ListToolsResult, *, complete: bool) -> None:
        """
        Take the annotations of a listing.

        Args:
            result: A page, or every page in one result.
            complete: Whether *result* lists every tool (it replaces what
                was known, and the catalog is fresh again).
        """
        annotations = {tool.name: tool_safety(tool) for tool in result.tools}
        if complete:
            self.annotations = annotations
            self.stale = False
        else:
            self.annotations.update(annotations)

    async def learn_all(self, client: Client) -> None:
        """
        List the tools once per session, straight through the SDK.

        Their annotations decide retry safety, and the SDK needs the
        listing anyway (it sends a hidden ``tools/list`` before the first
        ``tools/call`` of a tool whose output schema it has not seen, and
        that hidden request failing would fail a call that already ran).
        """
        if client.server_capabilities.tools is None:
            return
        cursor: str | None = None
        tools: list[Any] = []
        for _ in range(MAX_LISTING_PAGES):
            page = await client.list_tools(cursor=cursor, cache_mode="bypass")
            tools.extend(page.tools)
            cursor = page.next_cursor
            if cursor is None:
                break
        self.annotations = {tool.name: tool_safety(tool) for tool in tools}
        self.stale = False

    async def refresh(
        self, list_all: Callable[[], Awaitable[ListToolsResult]], client: str
    ) -> None:
        """
        Learn every tool from *list_all* (a listing of every page).

        A failure is logged, not raised: the call that asked for the
        listing goes ahead, and is not retried unless safe by what is
        known; the next call asks again.  It is logged once per outage
        (a WARNING naming the error, without a traceback, then DEBUG),
        and again after a listing has succeeded: while the circuit is
        open every call's refresh is refused, and one line says so.
        """
        try:
            result = await list_all()
        except Exception as exc:
            level = logging.DEBUG if self._refresh_failing else logging.WARNING
            self._refresh_failing = True
            logger.log(
                level,
                "%s: could not refresh the tool list after list_changed "
                "(%s: %s); calls go ahead, retried only as the last listing "
                "allows, and each tries again (logged again after a "
                "success)",
                client,
                type(exc).__name__,
                exc,
            )
            return
        self._refresh_failing = False
        self.learn(result, complete=True)

    def needs_refresh(self, name: str) -> bool:
        """
        Whether a call of *name* should wait for a new listing first.

        Only where annotations decide: when the listing is stale, or when
        *name* is missing from it.  At protocol 2026-07-28 servers announce
        list changes only to ``listen()`` subscribers, so a tool added
        since the last listing shows up as an unknown name; the listing is
        refreshed for it, at most once per ``UNKNOWN_TOOL_REFRESH``
        seconds.
        """
        if not self.trust_annotations or name in self.retryable_tools:
            return False
        if self.stale:
            return True
        if name in self.annotations:
            return False
        now = current_time()
        if now - self._last_refresh < UNKNOWN_TOOL_REFRESH:
            return False
        self._last_refresh = now
        return True

    def retry_safe(self, name: str) -> bool:
        """Whether a call of *name* that reached the server may be retried."""
        if name in self.retryable_tools:
            return True
        if not self.trust_annotations:
            return False
        read_only, idempotent = self.annotations.get(name, (False, False))
        return read_only or idempotent

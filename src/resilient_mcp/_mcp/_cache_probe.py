"""
Answers from the SDK's response cache, kept out of the statistics.

At protocol 2026-07-28 the SDK caches the first page of the four list
methods and ``resources/read`` when the server allows it.  Cache hits
never touch the server, so they must stay out of the latency, breaker and
bulkhead statistics: the cache is asked first with the wire forbidden
(:func:`from_cache`), and only a miss goes through the pipeline.
"""

from __future__ import annotations

import contextvars

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Final, TypeVar

from ._sdk_private import refuse_requests_while


if TYPE_CHECKING:
    from mcp.client import Client

    from ._session import SessionSupervisor


T = TypeVar("T")

# Set while probing the SDK's response cache: a request that would go on
# the wire is refused instead.
_PROBING: Final = contextvars.ContextVar(
    "resilient_mcp_probing", default=False
)


class _CacheMiss(Exception):  # noqa: N818
    """The SDK's response cache did not have the answer (never escapes)."""


def guard_session(client: Client) -> None:
    """
    Make *client* refuse wire requests during :func:`from_cache`.

    A client without a response cache is never probed, so its requests
    are left alone (no wrapper, no frame of ours on every request).
    """
    if client.cache is not None:
        refuse_requests_while(client, _PROBING, _CacheMiss)


async def from_cache(
    supervisor: SessionSupervisor,
    operation: Callable[[Client], Awaitable[T]],
) -> T | None:
    """
    The answer from the SDK's response cache, or ``None`` on a miss.

    Runs *operation* on the live session (if there is one right now, with
    a cache), its wire requests refused (see :func:`guard_session`).  A
    probe has no side effects: without a live session it asks for none
    (the pipeline's call does that, once its breaker has admitted it).
    """
    live = supervisor.live_session()
    if live is None or live.client.cache is None:
        return None
    token = _PROBING.set(True)
    try:
        return await operation(live.client)
    except _CacheMiss:
        return None
    except Exception:
        # Anything else: let the real call (through the pipeline) meet it
        # and account for it.
        return None
    finally:
        _PROBING.reset(token)

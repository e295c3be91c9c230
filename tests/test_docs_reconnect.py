"""
docs/client.md's "Reconnect backoff" section says what the supervisor does.

An in-process server on trio's virtual clock: the waits are exact.
"""

from __future__ import annotations

import pytest
import trio
import trio.testing

from resilient_mcp import NotSentError, SessionConfig
from resilient_mcp._mcp import open_session_supervisor
from resilient_mcp.testing.flaky_server import create_flaky_server


async def test_short_sessions_slow_recovery_to_the_cap(autojump_clock):
    """
    Sessions lost right after connecting back off 0.1, 0.2, ... 6.4, 10 s.

    Each short session counts as a failed connect, so the eighth in a row
    waits the full ``reconnect_max_delay``; a session that lives that long
    resets the count, and its loss reconnects at once.
    """
    config = SessionConfig(reconnect_jitter=False)
    waits = []
    async with open_session_supervisor(
        create_flaky_server(), config
    ) as supervisor:
        for _ in range(9):
            live = await supervisor.connect()
            supervisor.report_lost(live.generation)
            await trio.testing.wait_all_tasks_blocked()
            with pytest.raises(NotSentError) as backoff:
                supervisor.acquire_nowait()
            waits.append(backoff.value.retry_after)
            await trio.sleep(backoff.value.retry_after)
        live = await supervisor.connect()
        await trio.sleep(config.reconnect_max_delay)
        supervisor.report_lost(live.generation)
        await trio.testing.wait_all_tasks_blocked()
        metrics = supervisor.metrics()

    assert [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 10.0, 10.0] == pytest.approx(
        waits
    )
    capped = [n for n, wait in enumerate(waits, 1) if wait > 9.99]
    assert [8, 9] == capped
    assert 0 == metrics.consecutive_failures
    assert metrics.reconnect_in is None

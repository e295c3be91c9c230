"""
The server's bad answers again, over a real stdio subprocess.

The same faults as ``test_bad_input.py``, injected by a
:class:`ChaosTransport` wrapped around the SDK's stdio transport, on the
real clock: every wait is bounded by a hang guard, never asserted.  A real
oversized answer (2 MB of text through the pipe) is delivered whole.
"""

from __future__ import annotations

import pytest
import trio
import trio.testing

from resilient_mcp import (
    CallTimeout,
    InvalidResponseError,
    ResilientClientConfig,
    ResilientMCPClient,
    RetryConfig,
)
from resilient_mcp.testing.chaos import (
    ChaosTransport,
    Corrupt,
    Corruption,
    FaultInjector,
)


pytestmark = [pytest.mark.chaos, pytest.mark.slow]

HANG_GUARD = 90  # seconds; a hang guard, never a timing claim
TIMEOUT = 1.0  # seconds per attempt (real time)
EXPECTED = {
    Corruption.GARBLED_JSON: CallTimeout,
    Corruption.UNKNOWN_ID: CallTimeout,
    Corruption.SCHEMA_MISMATCH: InvalidResponseError,
    Corruption.OUTPUT_SCHEMA_MISMATCH: InvalidResponseError,
}


async def test_spoilt_answers_fail_their_call_only_over_stdio(
    stdio_params, server_log
):
    """
    Each kind of spoilt answer fails only its own call, over stdio too.

    Each gets the expected error; the one session and the calls alongside
    go on.
    """
    injectors = {
        kind: FaultInjector(
            [Corrupt(rate=1.0, kind=kind)], seed=6, enabled=False
        )
        for kind in EXPECTED
    }
    chaos = ChaosTransport(
        stdio_params(),
        injectors[Corruption.GARBLED_JSON],
        methods={"tools/call"},
        errlog=server_log,
    )
    config = ResilientClientConfig(
        timeout=TIMEOUT, retry=RetryConfig(max_attempts=1)
    )
    errors = {}
    others = []
    with trio.fail_after(HANG_GUARD):
        async with ResilientMCPClient(chaos, config=config) as client:
            for kind, injector in injectors.items():
                chaos.injector = injector

                async def victim(kind=kind):
                    try:
                        await client.call_tool("add", {"a": 1, "b": 2})
                    except Exception as exc:
                        errors[kind] = exc

                async def other(i):
                    result = await client.call_tool("echo", {"text": str(i)})
                    others.append(result.structured_content)

                async with trio.open_nursery() as nursery:
                    injector.enabled = True
                    nursery.start_soon(victim)
                    while injector.metrics().calls == 0:
                        await trio.sleep(0.001)
                    injector.enabled = False
                    for i in range(3):
                        nursery.start_soon(other, i)
            big = await client.call_tool("echo", {"text": "x" * 2_000_000})
            metrics = client.metrics()

    assert EXPECTED == {kind: type(error) for kind, error in errors.items()}
    assert 3 * len(EXPECTED) == len(others)
    assert 2_000_000 == len(big.structured_content["result"])
    assert (1, 0) == (metrics.session.connects, metrics.session.sessions_lost)

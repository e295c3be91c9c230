"""
Fleet mode: circuit breakers sharing one circuit through a real Redis.

As tests/test_fleet.py: a redis-server on 127.0.0.1 on a free port
(tests/_redis_server.py), real time (Redis has its own clock), every
wait bounded; the multi-process test starts tests/fleet_worker.py.
"""

from __future__ import annotations

import gc
import time

import anyio
import pytest

from _scenario import ConnectionLost, Script
from resilient_mcp import (
    CircuitBreaker,
    CircuitBreakerConfig,
    CircuitBreakerError,
    CircuitState,
    ConfigurationError,
    RedisStore,
    ResiliencePipeline,
)
from resilient_mcp._store._protocol import (
    LEASE,
    PROBE_CLOSED,
    PROBE_FAILED,
    REPORT,
    BreakerShape,
)
from test_fleet import PROCESSES, TIMEOUT, _finish, _start, outage


pytestmark = pytest.mark.slow

REFRESH = 0.05  # seconds a breaker reuses the fleet's state


async def _outcome(breaker: CircuitBreaker, fn: Script) -> str:
    try:
        await breaker.call(fn)
    except CircuitBreakerError:
        return "rejected"
    except ConnectionLost:
        return "failed"
    return "ok"


def test_failures_through_two_breakers_open_both(redis_server, backend):
    """
    Two failures each through two breakers open both at a threshold of 4.

    Alone, neither would have opened; the second learns of the fleet's
    circuit on its next call, at most a refresh interval later.
    """
    config = CircuitBreakerConfig(failure_threshold=4, recovery_timeout=60)
    failing = Script(ConnectionLost("down"))
    seen: list[object] = []

    async def main() -> None:
        async with RedisStore(redis_server.url, timeout=TIMEOUT) as store:
            a, b = (
                CircuitBreaker(
                    config, name="srv", store=store, refresh_interval=REFRESH
                )
                for _ in range(2)
            )
            seen.extend([await _outcome(x, failing) for x in (a, a, b, b)])
            seen.append(await _outcome(b, failing))
            await anyio.sleep(REFRESH)
            seen.append(await _outcome(a, failing))
            seen.extend((a.state, b.state))
            seen.append(a.metrics().store_errors + b.metrics().store_errors)

    anyio.run(main, backend=backend)

    assert [
        *["failed"] * 4,
        "rejected",
        "rejected",
        CircuitState.OPEN,
        CircuitState.OPEN,
        0,
    ] == seen
    assert 4 == failing.calls


def test_one_probe_per_half_open_period_reaches_the_server(
    redis_server, backend
):
    """
    Of three breakers half-open at once, one probes; the fleet follows it.

    The others keep failing fast while the probe runs; its success closes
    the fleet's circuit, and every breaker admits calls again.
    """
    config = CircuitBreakerConfig(
        failure_threshold=1, recovery_timeout=0.3, success_threshold=1
    )
    probes = 0
    outcomes: list[str] = []

    async def probe() -> str:
        nonlocal probes
        probes += 1
        await anyio.sleep(0.1)
        return "ok"

    async def main() -> None:
        async with RedisStore(redis_server.url, timeout=TIMEOUT) as store:
            breakers = [
                CircuitBreaker(
                    config, name="srv", store=store, refresh_interval=REFRESH
                )
                for _ in range(3)
            ]
            assert "failed" == await _outcome(
                breakers[0], Script(ConnectionLost("down"))
            )
            await anyio.sleep(0.35)  # past recovery_timeout

            async def one(breaker: CircuitBreaker) -> None:
                try:
                    await breaker.call(probe)
                    outcomes.append("ok")
                except CircuitBreakerError:
                    outcomes.append("rejected")

            async with anyio.create_task_group() as tasks:
                for breaker in breakers:
                    tasks.start_soon(one, breaker)
            await anyio.sleep(REFRESH)
            for breaker in breakers:
                await breaker.call(probe)
            errors = sum(b.metrics().store_errors for b in breakers)
            assert 0 == errors

    anyio.run(main, backend=backend)

    assert ["ok", "rejected", "rejected"] == sorted(outcomes)
    assert 1 + 3 == probes


def test_reports_of_a_past_generation_move_nothing(redis_server):
    """Counts and probe verdicts of an old generation are ignored."""
    shape = BreakerShape(
        width=1.0, buckets=10, threshold=2, rate=0.0, minimum=1, recovery=0.01
    )
    replies: list[object] = []

    async def main() -> None:
        async with RedisStore(redis_server.url, timeout=TIMEOUT) as store:

            async def send(gen: int, calls: int, failures: int, op: int):
                reply = await store.breaker(
                    "b", shape, gen, (calls, failures), op
                )
                assert reply is not None
                gen, wait, granted = reply
                replies.append((gen, wait is None, granted))

            await send(-1, 2, 2, REPORT)  # opens: generation 1
            await anyio.sleep(0.02)  # past recovery
            await send(1, 0, 0, LEASE)  # the lease: generation 1's
            await send(0, 9, 9, REPORT)  # stale counts: nothing
            await send(1, 0, 0, PROBE_CLOSED)  # closes: generation 2
            await send(1, 0, 0, PROBE_FAILED)  # a stale verdict: nothing
            await send(1, 5, 5, REPORT)  # stale counts: nothing
            await send(2, 1, 1, REPORT)  # counted, under the threshold

    anyio.run(main, backend="trio")

    assert [
        (1, False, False),
        (1, False, True),
        (1, False, False),
        (2, True, False),
        (2, True, False),
        (2, True, False),
        (2, True, False),
    ] == replies


@outage
def test_a_breaker_opens_alone_while_redis_is_down(redis_server, backend):
    """With Redis gone, a breaker's own failures still open it, at once."""
    config = CircuitBreakerConfig(failure_threshold=3, recovery_timeout=60)
    failing = Script(ConnectionLost("down"))
    seen: list[object] = []

    async def main() -> None:
        async with RedisStore(
            redis_server.url, timeout=TIMEOUT, reconnect_interval=60
        ) as store:
            breaker = CircuitBreaker(
                config, name="srv", store=store, refresh_interval=REFRESH
            )
            redis_server.stop()
            start = anyio.current_time()
            seen.extend([await _outcome(breaker, failing) for _ in range(4)])
            seen.append(anyio.current_time() - start < TIMEOUT + 2)
            seen.append(breaker.metrics().store_errors)

    anyio.run(main, backend=backend)
    gc.collect()  # coredis's leak, while it is ignored

    # One request failed; the store was then left alone until reconnect.
    assert [*["failed"] * 3, "rejected", True, 1] == seen
    assert 3 == failing.calls


@outage
def test_a_call_cancelled_while_the_fleet_answers_counts_as_cancelled(
    redis_server, backend
):
    """A call cancelled while it waits for a hung Redis is cancelled."""
    seen: list[object] = []

    async def main() -> None:
        async with RedisStore(
            redis_server.url, timeout=TIMEOUT, reconnect_interval=60
        ) as store:
            breaker = CircuitBreaker(name="srv", store=store)
            assert redis_server.process is not None
            redis_server.process.send_signal(19)  # SIGSTOP: hangs
            try:
                with anyio.move_on_after(TIMEOUT / 5):
                    await breaker.call(anyio.sleep, 0)
                    seen.append("ran")
                await anyio.sleep(TIMEOUT)  # the request times out
            finally:
                redis_server.process.send_signal(18)  # SIGCONT
            # Redis is skipped now: the breaker decides alone, at once.
            await breaker.call(anyio.sleep, 0)
            m = breaker.metrics()
            seen.extend((m.cancelled_requests, m.total_requests))
            seen.append(m.store_errors)

    anyio.run(main, backend=backend)
    gc.collect()  # coredis's leak, while it is ignored

    assert [1, 2, 1] == seen


def test_the_fleets_failure_rate_opens_every_breaker(redis_server, backend):
    """
    In rate mode, the fleet's window opens both breakers together.

    Each breaker alone has 3 calls, under minimum_calls=6; together 6
    calls with 4 failures, over the 50 % threshold.
    """
    config = CircuitBreakerConfig(
        failure_rate_threshold=0.5, minimum_calls=6, recovery_timeout=60
    )
    seen: list[str] = []

    async def main() -> None:
        async with RedisStore(redis_server.url, timeout=TIMEOUT) as store:
            a, b = (
                CircuitBreaker(
                    config, name="srv", store=store, refresh_interval=REFRESH
                )
                for _ in range(2)
            )
            failing = Script(ConnectionLost("down"))
            for breaker in (a, b):
                seen.append(await _outcome(breaker, Script("ok")))
                seen.append(await _outcome(breaker, failing))
                seen.append(await _outcome(breaker, failing))
            await anyio.sleep(REFRESH)
            seen.extend([await _outcome(x, Script("ok")) for x in (a, b)])

    anyio.run(main, backend=backend)

    assert [
        *["ok", "failed", "failed"] * 2,
        "rejected",
        "rejected",
    ] == seen


def test_a_breaker_whose_own_calls_fail_opens_without_the_fleet(
    redis_server, backend
):
    """
    A process whose own calls fail opens its breaker; the fleet's stays.

    In rate mode, one breaker's 4 failures of 4 calls open it, while the
    fleet's 4 of 24 do not: the fleet's closed circuit does not close it
    again, and the other breaker goes on calling.
    """
    config = CircuitBreakerConfig(
        failure_rate_threshold=0.5, minimum_calls=4, recovery_timeout=60
    )
    seen: list[object] = []

    async def main() -> None:
        async with RedisStore(redis_server.url, timeout=TIMEOUT) as store:
            well, sick = (
                CircuitBreaker(
                    config, name="srv", store=store, refresh_interval=REFRESH
                )
                for _ in range(2)
            )
            for _ in range(20):
                await well.call(anyio.sleep, 0)
            failing = Script(ConnectionLost("down"))
            seen.extend([await _outcome(sick, failing) for _ in range(5)])
            await anyio.sleep(REFRESH)
            seen.append(await _outcome(sick, failing))
            seen.append(await _outcome(well, Script("ok")))
            seen.extend((sick.state, well.state))
            seen.append(sick.metrics().store_errors)

    anyio.run(main, backend=backend)

    assert [
        *["failed"] * 4,
        "rejected",
        "rejected",
        "ok",
        CircuitState.OPEN,
        CircuitState.CLOSED,
        0,
    ] == seen


def test_the_breakers_key_has_a_ttl(redis_server):
    """The breaker's hash expires: nothing grows forever."""
    config = CircuitBreakerConfig(monitoring_window=10, recovery_timeout=5)

    async def main() -> int:
        import coredis  # noqa: PLC0415

        async with RedisStore(redis_server.url, timeout=TIMEOUT) as store:
            breaker = CircuitBreaker(config, name="b", store=store)
            await _outcome(breaker, Script(ConnectionLost("down")))
            await breaker.call(anyio.sleep, 0)  # waits for the verdict
        async with coredis.Redis.from_url(redis_server.url) as client:
            return int(await client.pttl("resilient-mcp:breaker:b"))

    ttl = anyio.run(main, backend="trio")

    # The window plus twice the recovery timeout, plus a second.
    assert 0 < ttl <= 21_000


@outage
def test_redis_killed_and_restarted_breakers_share_again(
    redis_server, backend
):
    """
    Redis killed: calls go on, none failed; back: one circuit again.

    After the restart (an empty Redis), two failures through one breaker
    and one through the other open both at a threshold of 3.
    """
    config = CircuitBreakerConfig(failure_threshold=3, recovery_timeout=60)
    seen: list[object] = []

    async def main() -> None:
        async with RedisStore(
            redis_server.url, timeout=TIMEOUT, reconnect_interval=0.05
        ) as store:
            a, b = (
                CircuitBreaker(
                    config, name="srv", store=store, refresh_interval=REFRESH
                )
                for _ in range(2)
            )
            answering = Script("ok")
            seen.append(await _outcome(a, answering))
            redis_server.stop()
            seen.extend([await _outcome(x, answering) for x in (a, b, a, b)])
            redis_server.start()
            await anyio.sleep(0.1)  # past the reconnect interval
            failing = Script(ConnectionLost("down"))
            seen.extend([await _outcome(x, failing) for x in (a, a, b)])
            await anyio.sleep(REFRESH)
            seen.extend([await _outcome(x, answering) for x in (a, b)])
            seen.append(a.metrics().store_errors > 0)

    anyio.run(main, backend=backend)
    gc.collect()  # coredis's leak, while it is ignored

    assert [
        *["ok"] * 5,
        *["failed"] * 3,
        "rejected",
        "rejected",
        True,
    ] == seen


def test_the_refresh_interval_is_validated():
    """A refresh interval that is not a positive duration is named."""
    with pytest.raises(ConfigurationError, match="refresh_interval"):
        CircuitBreaker(refresh_interval=0)


@pytest.mark.timeout(90)
def test_a_fleet_of_processes_stops_calling_a_dead_server(redis_server):
    """
    Eight processes calling a dead server stop after the fleet's threshold.

    The server sees at most failure_threshold calls plus one per process
    before every process rejects (without a store: the threshold each).
    """
    threshold = 5
    workers = [
        _start(
            "breaker",
            redis_server.url,
            "-",
            str(threshold),
            backend=("trio", "asyncio")[i % 2],
        )
        for i in range(PROCESSES)
    ]
    for worker in workers:
        assert worker.stdout is not None
        assert "ready\n" == worker.stdout.readline()
    start = time.time() + 0.5
    for worker in workers:
        assert worker.stdin is not None
        worker.stdin.write(f"{start!r}\n")
        worker.stdin.flush()
    outputs = _finish(workers)

    reached = sum(int(out[2]) for out in outputs)
    rejected = [float(out[3]) for out in outputs]
    print(  # noqa: T201
        f"fleet breaker: {reached} calls reached the dead server "
        f"(bound {threshold + PROCESSES}, {threshold * PROCESSES} alone); "
        f"first and last process rejected "
        f"{(max(rejected) - min(rejected)) * 1000:.1f} ms apart"
    )

    assert [["store_errors", "0"]] * PROCESSES == [o[:2] for o in outputs]
    assert threshold <= reached <= threshold + PROCESSES


def test_pipelines_of_two_processes_share_one_circuit(redis_server, backend):
    """
    A pipeline whose server answers is held by the fleet's open circuit.

    Both pipelines stand for processes: each has its own breaker, named
    alike on one store; the failures of one open the other's circuit.
    """
    config = CircuitBreakerConfig(failure_threshold=2, recovery_timeout=60)
    failing = Script(ConnectionLost("down"))
    answering = Script("ok")
    seen: list[str] = []

    async def main() -> None:
        async with RedisStore(redis_server.url, timeout=TIMEOUT) as store:
            sick, well = (
                ResiliencePipeline(
                    circuit_breaker=CircuitBreaker(
                        config,
                        name="srv",
                        store=store,
                        refresh_interval=REFRESH,
                    )
                )
                for _ in range(2)
            )
            for pipeline, fn in (
                (well, answering),
                (sick, failing),
                (sick, failing),
                (well, answering),
            ):
                await anyio.sleep(REFRESH)
                try:
                    seen.append(await pipeline.call(fn))
                except ConnectionLost:
                    seen.append("failed")
                except CircuitBreakerError:
                    seen.append("rejected")

    anyio.run(main, backend=backend)

    assert ["ok", "failed", "failed", "rejected"] == seen
    assert 1 == answering.calls

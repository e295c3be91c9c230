"""
One process of a fleet, for tests/test_fleet.py (run as a script).

``python fleet_worker.py rate URL - SECONDS`` prints ``ready`` once
connected, reads the Unix time START from its standard input (the test
sends it once every worker is ready), waits until then, calls through a
shared rate limiter for SECONDS and prints the wall-clock time of each
admission, one per line.  ``FLEET_BACKEND=asyncio`` runs it on asyncio.

``python fleet_worker.py budget URL START DEPOSITS [keep]`` deposits
DEPOSITS calls into a shared retry budget, waits until START, deposits
one more call, then (unless ``keep``) withdraws retries one at a time,
each after the store has answered the last, until the budget refuses
one, and prints how many it made.

``python fleet_worker.py breaker URL - THRESHOLD`` prints ``ready``,
reads START as ``rate`` does, then calls a dead server (a function that
raises) through a shared circuit breaker of that failure threshold, one
call at a time, until the breaker rejects one, and prints how many
calls reached the server and the wall-clock time of that rejection.

``python fleet_worker.py probe URL - SECONDS`` prints ``ready``, reads
START, then calls a dead server through a shared breaker (threshold 2,
recovery 0.3 s), one call at a time and a few milliseconds apart, for
SECONDS; it prints how many calls reached the server before the fleet
opened, then one line per probe that reached it: the fleet generation
of the probe lease it held.

``python fleet_worker.py outage URL - SECONDS`` runs as ``rate`` does,
each call going through a shared breaker too (the test kills and
restarts Redis meanwhile), and prints ``calls STARTED ENDED FAILED``,
both policies' store errors, then the admission times.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time

import anyio

from resilient_mcp import (
    CircuitBreaker,
    CircuitBreakerConfig,
    CircuitBreakerError,
    RateLimitedError,
    RateLimiter,
    RateLimiterConfig,
    RedisStore,
    RetryBudget,
    RetryBudgetConfig,
)


BACKEND = os.environ.get("FLEET_BACKEND", "trio")  # or asyncio
RATE = 200.0  # the fleet's calls per second
TASKS = 8  # concurrent callers per process
TIMEOUT = 0.25  # a loaded 2-core CI machine: sharing, not speed, is tested


async def _rate(url: str, seconds: float) -> None:
    admitted: list[float] = []
    async with RedisStore(url, timeout=TIMEOUT) as store:
        limiter = RateLimiter(
            RateLimiterConfig(rate=RATE, max_wait=1.0),
            name="fleet",
            store=store,
        )

        async def record() -> None:
            admitted.append(time.time())

        async def caller() -> None:
            while time.time() < start + seconds:
                try:
                    await limiter.call(record)
                except RateLimitedError as exc:
                    await anyio.sleep(min(exc.retry_after, 0.05))

        print("ready", flush=True)  # noqa: T201
        start = float(await anyio.to_thread.run_sync(sys.stdin.readline))
        await anyio.sleep(max(0.0, start - time.time()))
        async with anyio.create_task_group() as tasks:
            for _ in range(TASKS):
                tasks.start_soon(caller)
        errors = limiter.metrics().store_errors
    print(f"store_errors {errors}")  # noqa: T201
    for t in admitted:
        print(repr(t))  # noqa: T201


async def _settled(budget: RetryBudget) -> None:
    while budget._flushing:  # the test waits for the store's answer
        await anyio.sleep(0.001)


async def _budget(
    url: str, start: float, deposits: int, withdraw: bool
) -> None:
    async with RedisStore(url, timeout=TIMEOUT) as store:
        budget = RetryBudget(
            RetryBudgetConfig(
                percent_can_retry=0.2, min_retries_per_second=0, ttl=60
            ),
            name="fleet",
            store=store,
        )
        for _ in range(deposits):
            budget.deposit(anyio.current_time())
            await _settled(budget)
        await anyio.sleep(max(0.0, start - time.time()))
        budget.deposit(anyio.current_time())
        made = 0
        while withdraw:
            await _settled(budget)
            if not budget.try_withdraw(anyio.current_time()):
                break
            made += 1
        errors = budget.metrics().store_errors
    print(f"store_errors {errors}")  # noqa: T201
    print(made)  # noqa: T201


async def _breaker(url: str, threshold: int) -> None:
    reached = 0

    async def dead() -> None:
        nonlocal reached
        reached += 1
        await anyio.sleep(0.001)
        raise ConnectionError("the server is down")

    async with RedisStore(url, timeout=TIMEOUT) as store:
        breaker = CircuitBreaker(
            CircuitBreakerConfig(
                failure_threshold=threshold, recovery_timeout=60
            ),
            name="fleet",
            store=store,
        )
        print("ready", flush=True)  # noqa: T201
        start = float(await anyio.to_thread.run_sync(sys.stdin.readline))
        await anyio.sleep(max(0.0, start - time.time()))
        with anyio.fail_after(30):
            while True:
                try:
                    await breaker.call(dead)
                except ConnectionError:
                    continue
                except CircuitBreakerError:
                    rejected = time.time()
                    break
        errors = breaker.metrics().store_errors
    print(f"store_errors {errors}")  # noqa: T201
    print(reached, repr(rejected))  # noqa: T201


async def _probe(url: str, seconds: float) -> None:
    before = 0
    probes: list[int] = []
    breaker: CircuitBreaker

    async def dead() -> None:
        nonlocal before
        fleet = breaker._fleet
        assert fleet is not None
        if fleet._probing is None:
            before += 1
        else:
            probes.append(fleet._probing)
        await anyio.sleep(0.001)
        raise ConnectionError("the server is down")

    async with RedisStore(url, timeout=TIMEOUT) as store:
        breaker = CircuitBreaker(
            CircuitBreakerConfig(failure_threshold=2, recovery_timeout=0.3),
            name="fleet",
            store=store,
            refresh_interval=0.05,
        )
        print("ready", flush=True)  # noqa: T201
        start = float(await anyio.to_thread.run_sync(sys.stdin.readline))
        await anyio.sleep(max(0.0, start - time.time()))
        with anyio.fail_after(seconds + 30):
            while time.time() < start + seconds:
                with contextlib.suppress(ConnectionError, CircuitBreakerError):
                    await breaker.call(dead)
                await anyio.sleep(0.005)
        errors = breaker.metrics().store_errors
    print(f"store_errors {errors}")  # noqa: T201
    print(before)  # noqa: T201
    for generation in probes:
        print(generation)  # noqa: T201


async def _outage(url: str, seconds: float) -> None:
    admitted: list[float] = []
    started = ended = failed = 0
    async with RedisStore(
        url, timeout=TIMEOUT, reconnect_interval=0.05
    ) as store:
        limiter = RateLimiter(
            RateLimiterConfig(rate=RATE, max_wait=1.0),
            name="fleet",
            store=store,
        )
        breaker = CircuitBreaker(
            CircuitBreakerConfig(failure_threshold=5, recovery_timeout=60),
            name="fleet",
            store=store,
        )

        async def record() -> None:
            admitted.append(time.time())

        async def through_breaker() -> None:
            await breaker.call(record)

        async def caller() -> None:
            nonlocal started, ended, failed
            while time.time() < start + seconds:
                started += 1
                try:
                    await limiter.call(through_breaker)
                except RateLimitedError as exc:
                    ended += 1
                    await anyio.sleep(min(exc.retry_after, 0.05))
                    continue
                except Exception:  # a failed call: counted, judged by the test
                    failed += 1
                ended += 1

        print("ready", flush=True)  # noqa: T201
        start = float(await anyio.to_thread.run_sync(sys.stdin.readline))
        await anyio.sleep(max(0.0, start - time.time()))
        with anyio.fail_after(seconds + 30):
            async with anyio.create_task_group() as tasks:
                for _ in range(TASKS):
                    tasks.start_soon(caller)
        errors = (
            limiter.metrics().store_errors,
            breaker.metrics().store_errors,
        )
    print(f"calls {started} {ended} {failed}")  # noqa: T201
    print(f"store_errors {errors[0]} {errors[1]}")  # noqa: T201
    for t in admitted:
        print(repr(t))  # noqa: T201


def main() -> None:
    mode, url, start, amount, *keep = sys.argv[1:]
    if mode == "breaker":
        anyio.run(_breaker, url, int(amount), backend=BACKEND)
    elif mode == "probe":
        anyio.run(_probe, url, float(amount), backend=BACKEND)
    elif mode == "outage":
        anyio.run(_outage, url, float(amount), backend=BACKEND)
    elif mode == "rate":
        anyio.run(_rate, url, float(amount), backend=BACKEND)
    else:
        anyio.run(
            _budget, url, float(start), int(amount), not keep, backend=BACKEND
        )


if __name__ == "__main__":
    main()

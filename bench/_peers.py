"""
Peer libraries, one policy at a time and stacked into pipelines.

The peers are only installed in the bench environment, so every import
happens inside a factory; a missing peer turns into an arm that reports
the ``ImportError`` instead of a crash.  Each peer is configured as its
documentation shows, with the same thresholds as ours (3 attempts, 5
failures, a 60 s timeout, 10 slots), and wraps the same no-op.

A peer that cannot run on a backend fails when its arm is built or first
called, and the report shows the error.  :func:`compatibility` goes
further and drives each peer through its failure paths (a retry that has
to wait, an open circuit, a timeout, a contended bulkhead), because
several peers only touch asyncio there.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools

from collections.abc import Awaitable, Callable
from datetime import timedelta
from math import floor
from typing import Any, Final

import anyio
import attrs
import trio

from ._floors import TIMEOUT, Kit, new_hdr, noop
from ._harness import (
    Arm,
    Factory,
    UnsupportedError,
    Variant,
    describe,
    run_on,
)


ATTEMPTS: Final = 3
THRESHOLD: Final = 5
RECOVERY: Final = 60.0  # seconds
SLOTS: Final = 10
QUICK_WAIT: Final = 0.001  # seconds: backoff in the failure-path probes


class _BoomError(Exception):
    """A failure the retry loops retry and the breakers count."""


async def _fail() -> None:
    raise _BoomError


def _on_trio() -> bool:
    import sniffio  # noqa: PLC0415

    return sniffio.current_async_library() == "trio"


# -- retry ---------------------------------------------------------------


def tenacity_retry(fn: Callable[[], Awaitable[Any]]) -> Variant:
    import tenacity  # noqa: PLC0415

    return tenacity.retry(
        stop=tenacity.stop_after_attempt(ATTEMPTS),
        wait=tenacity.wait_exponential(multiplier=QUICK_WAIT),
        reraise=True,
    )(fn)


def stamina_retry(fn: Callable[[], Awaitable[Any]]) -> Variant:
    import stamina  # noqa: PLC0415

    return stamina.retry(
        on=Exception,
        attempts=ATTEMPTS,
        wait_initial=QUICK_WAIT,
        wait_max=QUICK_WAIT,
    )(fn)


def stamina_caller(fn: Callable[[], Awaitable[Any]]) -> Variant:
    import stamina  # noqa: PLC0415

    caller = stamina.AsyncRetryingCaller(
        attempts=ATTEMPTS, wait_initial=QUICK_WAIT, wait_max=QUICK_WAIT
    ).on(Exception)
    return functools.partial(caller, fn)


def redress_retry(
    fn: Callable[[], Awaitable[Any]], *, trio_sleeper: bool = True
) -> Variant:
    import redress  # noqa: PLC0415

    # redress sleeps with asyncio.sleep unless given a sleeper; on trio
    # that fails ("no running event loop"), so the trio rows pass
    # trio.sleep.
    sleeper = trio.sleep if trio_sleeper and _on_trio() else None
    retry = redress.AsyncRetry(
        classifier=redress.default_classifier,
        strategy=redress.decorrelated_jitter(
            base_s=QUICK_WAIT, max_s=QUICK_WAIT
        ),
        max_attempts=ATTEMPTS,
        sleeper=sleeper,
    )
    return functools.partial(retry.call, fn)


def hyx_retry(fn: Callable[[], Awaitable[Any]]) -> Variant:
    from hyx.retry import retry  # noqa: PLC0415

    return retry(attempts=ATTEMPTS, backoff=QUICK_WAIT)(fn)


def pyresilience_retry(fn: Callable[[], Awaitable[Any]]) -> Variant:
    from pyresilience import RetryConfig, resilient  # noqa: PLC0415

    return resilient(retry=RetryConfig(max_attempts=ATTEMPTS, delay=0.001))(fn)


RETRIES: Final = {
    "tenacity @retry": tenacity_retry,
    "stamina @retry": stamina_retry,
    "stamina AsyncRetryingCaller": stamina_caller,
    "redress AsyncRetry": redress_retry,
    "hyx @retry": hyx_retry,
    "pyresilience @resilient(retry)": pyresilience_retry,
}


# -- circuit breakers -------------------------------------------------------


def purgatory_breaker(
    fn: Callable[[], Awaitable[Any]], threshold: int = THRESHOLD
) -> Variant:
    from purgatory import AsyncCircuitBreakerFactory  # noqa: PLC0415

    factory = AsyncCircuitBreakerFactory(
        default_threshold=threshold, default_ttl=RECOVERY
    )

    async def call() -> Any:
        async with await factory.get_breaker("bench"):
            return await fn()

    return call


def aiobreaker_breaker(
    fn: Callable[[], Awaitable[Any]], threshold: int = THRESHOLD
) -> Variant:
    import aiobreaker  # noqa: PLC0415

    breaker = aiobreaker.CircuitBreaker(
        fail_max=threshold, timeout_duration=timedelta(seconds=RECOVERY)
    )
    return functools.partial(breaker.call_async, fn)


def circuitbreaker_breaker(
    fn: Callable[[], Awaitable[Any]], threshold: int = THRESHOLD
) -> Variant:
    import circuitbreaker  # noqa: PLC0415

    wrapped: Variant = circuitbreaker.circuit(
        failure_threshold=threshold, recovery_timeout=RECOVERY
    )(fn)
    return wrapped


def hyx_breaker(
    fn: Callable[[], Awaitable[Any]], threshold: int = THRESHOLD
) -> Variant:
    from hyx.circuitbreaker import consecutive_breaker  # noqa: PLC0415

    return consecutive_breaker(
        failure_threshold=threshold, recovery_time_secs=RECOVERY
    )(fn)


def redress_breaker(
    fn: Callable[[], Awaitable[Any]], threshold: int = THRESHOLD
) -> Variant:
    import redress  # noqa: PLC0415

    # redress trips only on the error classes in trip_on (by default not
    # on unclassified exceptions); the others count every exception.
    policy = redress.AsyncPolicy(
        circuit_breaker=redress.CircuitBreaker(
            failure_threshold=threshold,
            recovery_timeout_s=RECOVERY,
            trip_on=set(redress.ErrorClass),
        )
    )
    return functools.partial(policy.call, fn)


def pyresilience_breaker(
    fn: Callable[[], Awaitable[Any]], threshold: int = THRESHOLD
) -> Variant:
    from pyresilience import CircuitBreakerConfig, resilient  # noqa: PLC0415

    return resilient(
        circuit_breaker=CircuitBreakerConfig(
            failure_threshold=threshold, recovery_timeout=RECOVERY
        )
    )(fn)


BREAKERS: Final = {
    "purgatory": purgatory_breaker,
    "aiobreaker": aiobreaker_breaker,
    "circuitbreaker @circuit": circuitbreaker_breaker,
    "hyx consecutive_breaker": hyx_breaker,
    "redress AsyncPolicy(breaker)": redress_breaker,
    "pyresilience @resilient(breaker)": pyresilience_breaker,
}


def _rejection_types() -> tuple[type[BaseException], ...]:
    kinds: list[type[BaseException]] = []
    for module, name in (
        ("purgatory.domain.model", "OpenedState"),
        ("aiobreaker", "CircuitBreakerError"),
        ("circuitbreaker", "CircuitBreakerError"),
        ("hyx.circuitbreaker.exceptions", "BreakerFailing"),
        ("redress", "CircuitOpenError"),
        ("pyresilience", "CircuitOpenError"),
    ):
        try:
            kinds.append(getattr(__import__(module, fromlist=[name]), name))
        except ImportError:
            continue
    return tuple(kinds)


async def _opened(
    make: Callable[..., Variant],
) -> tuple[Variant, tuple[type[BaseException], ...]]:
    """A peer breaker with threshold 1, opened by one failure."""
    should_fail = True

    async def op() -> None:
        if should_fail:
            raise _BoomError

    call = make(op, 1)
    # aiobreaker raises its own error from the call that opens it.
    with contextlib.suppress(Exception):
        await call()
    should_fail = False
    return call, _rejection_types()


def _open_peer(make: Callable[..., Variant]) -> Factory:
    async def build(_stack: object) -> Variant:
        call, rejected = await _opened(make)

        async def reject() -> None:
            try:
                await call()
            except rejected:
                return
            raise AssertionError("the circuit should be open")

        return reject

    return build


# -- bulkheads and timeouts ------------------------------------------------


def _hyx_bulkhead(_stack: object) -> Variant:
    if _on_trio():
        raise UnsupportedError(
            "asyncio.Semaphore inside: contended on trio it raises "
            "AttributeError (no create_future)"
        )
    from hyx.bulkhead import bulkhead  # noqa: PLC0415

    return bulkhead(max_concurrency=SLOTS, max_capacity=SLOTS + 100)(noop)


def _pyresilience_bulkhead(_stack: object) -> Variant:
    from pyresilience import BulkheadConfig, resilient  # noqa: PLC0415

    return resilient(bulkhead=BulkheadConfig(max_concurrent=SLOTS))(noop)


def _semaphore(_stack: object) -> Variant:
    semaphore = asyncio.Semaphore(SLOTS)

    async def op() -> None:
        async with semaphore:
            await noop()

    return op


def _hyx_timeout(_stack: object) -> Variant:
    from hyx.timeout import timeout  # noqa: PLC0415

    return timeout(TIMEOUT)(noop)


def _pyresilience_timeout(_stack: object) -> Variant:
    from pyresilience import TimeoutConfig, resilient  # noqa: PLC0415

    return resilient(timeout=TimeoutConfig(seconds=TIMEOUT))(noop)


# -- arms ----------------------------------------------------------------


def _wrap(make: Callable[[Callable[[], Awaitable[Any]]], Variant]) -> Factory:
    def build(_stack: object) -> Variant:
        return make(noop)

    return build


def retry_peers() -> tuple[Arm, ...]:
    return tuple(
        Arm(label=name, factory=_wrap(make), kind="peer")
        for name, make in RETRIES.items()
    )


def breaker_peers() -> tuple[Arm, ...]:
    return tuple(
        Arm(label=name, factory=_wrap(make), kind="peer")
        for name, make in BREAKERS.items()
    )


def open_breaker_peers() -> tuple[Arm, ...]:
    return tuple(
        Arm(label=f"{name} (open)", factory=_open_peer(make), kind="peer")
        for name, make in BREAKERS.items()
    )


def bulkhead_peers(backend: str, baseline: str) -> tuple[Arm, ...]:
    arms = [
        Arm(
            label="hyx bulkhead",
            factory=_hyx_bulkhead,
            kind="peer",
            baseline=baseline,
        ),
        Arm(
            label="pyresilience @resilient(bulkhead)",
            factory=_pyresilience_bulkhead,
            kind="peer",
            baseline=baseline,
        ),
    ]
    if backend == "asyncio":
        arms.append(
            Arm(
                label="async with asyncio.Semaphore",
                factory=_semaphore,
                kind="peer",
                baseline=baseline,
            )
        )
    return tuple(arms)


def timeout_peers() -> tuple[Arm, ...]:
    return (
        Arm(label="hyx timeout", factory=_hyx_timeout, kind="peer"),
        Arm(
            label="pyresilience @resilient(timeout)",
            factory=_pyresilience_timeout,
            kind="peer",
        ),
    )


# -- peer stacks: bulkhead + retry + breaker + timeout + recording ---------


def _recording(
    backend: str, call: Callable[[], Awaitable[Any]]
) -> Callable[[], Awaitable[Any]]:
    """*call* plus two clock reads and one ``hdrh`` ``record_value``."""
    now = Kit.for_backend(backend).now
    record = new_hdr().record_value

    async def recorded() -> Any:
        start = now()
        result = await call()
        record(floor((now() - start) * 1e6 + 0.5))
        return result

    return recorded


def _peer_stack(
    backend: str,
    retry: Callable[[Callable[[], Awaitable[Any]]], Variant],
    *,
    native: bool,
) -> Factory:
    """
    limiter( retry( circuitbreaker( timeout( op ) ) ) ) + recording.

    *native*: trio.CapacityLimiter and trio.fail_after on trio (anyio's on
    asyncio); else asyncio.Semaphore and asyncio.timeout.
    """

    def build(_stack: object) -> Variant:
        import circuitbreaker  # noqa: PLC0415

        kit = Kit.for_backend(backend)
        if native:
            fail_after = kit.fail_after
            limiter = kit.limiter(SLOTS)

            async def attempt() -> Any:
                with fail_after(TIMEOUT):
                    return await noop()

        else:
            if backend == "trio":
                raise UnsupportedError("asyncio.Semaphore/timeout on trio")
            limiter = asyncio.Semaphore(SLOTS)

            async def attempt() -> Any:
                async with asyncio.timeout(TIMEOUT):
                    return await noop()

        guarded = circuitbreaker.circuit(
            failure_threshold=THRESHOLD, recovery_timeout=RECOVERY
        )(attempt)
        retried = retry(guarded)

        async def call() -> Any:
            async with limiter:
                return await retried()

        return _recording(backend, call)

    return build


def _redress_policy_stack(backend: str) -> Factory:
    def build(_stack: object) -> Variant:
        import redress  # noqa: PLC0415

        kit = Kit.for_backend(backend)
        limiter = kit.limiter(SLOTS)
        fail_after = kit.fail_after
        policy = redress.AsyncPolicy(
            retry=redress.AsyncRetry(
                classifier=redress.default_classifier,
                strategy=redress.decorrelated_jitter(max_s=1.0),
                max_attempts=ATTEMPTS,
                sleeper=trio.sleep if backend == "trio" else None,
            ),
            circuit_breaker=redress.CircuitBreaker(
                failure_threshold=THRESHOLD,
                recovery_timeout_s=RECOVERY,
                trip_on=set(redress.ErrorClass),
            ),
        )

        async def attempt() -> Any:
            with fail_after(TIMEOUT):
                return await noop()

        async def call() -> Any:
            async with limiter:
                return await policy.call(attempt)

        return _recording(backend, call)

    return build


def _pyresilience_stack(backend: str) -> Factory:
    def build(_stack: object) -> Variant:
        from pyresilience import (  # noqa: PLC0415
            BulkheadConfig,
            CircuitBreakerConfig,
            RetryConfig,
            TimeoutConfig,
            resilient,
        )

        call = resilient(
            retry=RetryConfig(max_attempts=ATTEMPTS),
            timeout=TimeoutConfig(seconds=TIMEOUT),
            circuit_breaker=CircuitBreakerConfig(
                failure_threshold=THRESHOLD, recovery_timeout=RECOVERY
            ),
            bulkhead=BulkheadConfig(max_concurrent=SLOTS),
        )(noop)
        return _recording(backend, call)

    return build


def _hyx_stack(backend: str) -> Factory:
    def build(_stack: object) -> Variant:
        from hyx.bulkhead import bulkhead  # noqa: PLC0415
        from hyx.circuitbreaker import consecutive_breaker  # noqa: PLC0415
        from hyx.retry import retry  # noqa: PLC0415
        from hyx.timeout import timeout  # noqa: PLC0415

        call = bulkhead(max_concurrency=SLOTS, max_capacity=SLOTS + 100)(
            retry(attempts=ATTEMPTS)(
                consecutive_breaker(
                    failure_threshold=THRESHOLD, recovery_time_secs=RECOVERY
                )(timeout(TIMEOUT)(noop))
            )
        )
        return _recording(backend, call)

    return build


def stack_arms(backend: str, baseline: str) -> tuple[Arm, ...]:
    """The peer stacks that make sense on *backend*."""
    native = "CapacityLimiter + fail_after"
    if backend == "trio":
        named = [
            (f"circuitbreaker + redress + {native}", redress_retry, True),
            (f"circuitbreaker + stamina + {native}", stamina_retry, True),
            (f"circuitbreaker + tenacity + {native}", tenacity_retry, True),
        ]
    else:
        sem = "asyncio.Semaphore + asyncio.timeout"
        named = [
            (f"circuitbreaker + hyx retry + {sem}", hyx_retry, False),
            (f"circuitbreaker + stamina + {sem}", stamina_retry, False),
            (f"circuitbreaker + tenacity + {sem}", tenacity_retry, False),
            (f"circuitbreaker + redress + {sem}", redress_retry, False),
            (
                f"circuitbreaker + stamina + anyio {native}",
                stamina_retry,
                True,
            ),
        ]
    arms = [
        Arm(
            label=f"{label} + hdrh",
            factory=_peer_stack(backend, retry, native=native_parts),
            kind="stack",
            baseline=baseline,
        )
        for label, retry, native_parts in named
    ]
    arms.append(
        Arm(
            label="redress AsyncPolicy + CapacityLimiter + fail_after + hdrh",
            factory=_redress_policy_stack(backend),
            kind="stack",
            baseline=baseline,
        )
    )
    arms.append(
        Arm(
            label="pyresilience @resilient(all four) + hdrh",
            factory=_pyresilience_stack(backend),
            kind="stack",
            baseline=baseline,
        )
    )
    arms.append(
        Arm(
            label="hyx (bulkhead+retry+breaker+timeout) + hdrh",
            factory=_hyx_stack(backend),
            kind="stack",
            baseline=baseline,
        )
    )
    return tuple(arms)


# -- which peers run on which backend ---------------------------------------


@attrs.frozen(kw_only=True)
class Probe:
    """One feature of one peer, tried on both backends."""

    library: str
    feature: str
    run: Callable[[], Awaitable[object]]


def _flaky(fails: int = 1) -> Callable[[], Awaitable[str]]:
    left = fails

    async def op() -> str:
        nonlocal left
        if left > 0:
            left -= 1
            raise _BoomError
        return "ok"

    return op


def _retry_probe(make: Callable[..., Variant]) -> Callable[[], Awaitable[Any]]:
    async def run() -> Any:
        return await make(_flaky())()

    return run


def _open_probe(make: Callable[..., Variant]) -> Callable[[], Awaitable[Any]]:
    async def run() -> Any:
        call, rejected = await _opened(make)
        try:
            await call()
        except rejected:
            return "rejected"
        raise AssertionError("the circuit did not open")

    return run


def _contended(
    make: Callable[[Callable[[], Awaitable[Any]]], Variant],
) -> Callable[[], Awaitable[Any]]:
    async def run() -> Any:
        async def slow() -> None:
            await anyio.sleep(0.01)

        call = make(slow)
        async with anyio.create_task_group() as group:
            for _ in range(SLOTS + 2):
                group.start_soon(call)
        return "ok"

    return run


def _expired(
    make: Callable[[Callable[[], Awaitable[Any]]], Variant],
) -> Callable[[], Awaitable[Any]]:
    async def run() -> Any:
        async def slow() -> None:
            await anyio.sleep(1)

        try:
            await make(slow)()
        except TimeoutError:
            return "timed out"
        except Exception as exc:
            kind = type(exc)
            if "timeout" in f"{kind.__module__}.{kind.__name__}".lower():
                return "timed out"
            raise
        raise AssertionError("no timeout")

    return run


def _hyx_bulkhead_probe(fn: Callable[[], Awaitable[Any]]) -> Variant:
    from hyx.bulkhead import bulkhead  # noqa: PLC0415

    return bulkhead(max_concurrency=2, max_capacity=SLOTS + 2)(fn)


def _pyresilience_bulkhead_probe(
    fn: Callable[[], Awaitable[Any]],
) -> Variant:
    from pyresilience import BulkheadConfig, resilient  # noqa: PLC0415

    return resilient(bulkhead=BulkheadConfig(max_concurrent=2, max_wait=5))(fn)


def _hyx_timeout_probe(fn: Callable[[], Awaitable[Any]]) -> Variant:
    from hyx.timeout import timeout  # noqa: PLC0415

    return timeout(0.02)(fn)


def _pyresilience_timeout_probe(
    fn: Callable[[], Awaitable[Any]],
) -> Variant:
    from pyresilience import TimeoutConfig, resilient  # noqa: PLC0415

    return resilient(timeout=TimeoutConfig(seconds=0.02))(fn)


def _redress_timeout_probe(fn: Callable[[], Awaitable[Any]]) -> Variant:
    import redress  # noqa: PLC0415

    retry = redress.AsyncRetry(
        classifier=redress.default_classifier,
        strategy=redress.decorrelated_jitter(max_s=QUICK_WAIT),
        max_attempts=1,
        attempt_timeout_s=0.02,
    )
    return functools.partial(retry.call, fn)


def probes() -> list[Probe]:
    names = {
        "tenacity @retry": "tenacity",
        "stamina @retry": "stamina",
        "hyx @retry": "hyx",
        "pyresilience @resilient(retry)": "pyresilience",
    }
    found = [
        Probe(
            library=library,
            feature="retry, success",
            run=_wrap_probe(RETRIES[name]),
        )
        for name, library in names.items()
    ]
    found += [
        Probe(
            library=library,
            feature="retry after a failure (backoff sleep)",
            run=_retry_probe(RETRIES[name]),
        )
        for name, library in names.items()
    ]
    found += [
        Probe(
            library="redress",
            feature="retry after a failure, default sleeper",
            run=_retry_probe(
                functools.partial(redress_retry, trio_sleeper=False)
            ),
        ),
        Probe(
            library="redress",
            feature="retry after a failure, sleeper=trio.sleep",
            run=_retry_probe(redress_retry),
        ),
        Probe(
            library="redress",
            feature="attempt_timeout_s",
            run=_expired(_redress_timeout_probe),
        ),
    ]
    for name, make in BREAKERS.items():
        library = name.split()[0]
        found.append(
            Probe(
                library=library,
                feature="breaker, closed",
                run=_wrap_probe(make),
            )
        )
        found.append(
            Probe(
                library=library,
                feature="breaker, open (rejects)",
                run=_open_probe(make),
            )
        )
    found += [
        Probe(
            library="hyx",
            feature="timeout",
            run=_expired(_hyx_timeout_probe),
        ),
        Probe(
            library="hyx",
            feature="bulkhead, contended",
            run=_contended(_hyx_bulkhead_probe),
        ),
        Probe(
            library="pyresilience",
            feature="timeout",
            run=_expired(_pyresilience_timeout_probe),
        ),
        Probe(
            library="pyresilience",
            feature="bulkhead, contended",
            run=_contended(_pyresilience_bulkhead_probe),
        ),
    ]
    return sorted(found, key=lambda p: p.library)


def _wrap_probe(make: Callable[..., Variant]) -> Callable[[], Awaitable[Any]]:
    async def run() -> Any:
        return await make(noop)()

    return run


@attrs.frozen(kw_only=True)
class ProbeResult:
    library: str
    feature: str
    outcomes: dict[str, str]  # backend -> "ok" or the error


async def _try(probe: Probe) -> str:
    try:
        with anyio.fail_after(5):
            await probe.run()
    except Exception as exc:
        return describe(exc)
    return "ok"


async def _try_all(found: list[Probe]) -> list[str]:
    return [await _try(probe) for probe in found]


def compatibility(backends: tuple[str, ...]) -> list[ProbeResult]:
    """Try every probe on every backend; each loop is a fresh one."""
    found = probes()
    outcomes = {b: run_on(b, _try_all, found) for b in backends}
    return [
        ProbeResult(
            library=probe.library,
            feature=probe.feature,
            outcomes={b: outcomes[b][i] for b in backends},
        )
        for i, probe in enumerate(found)
    ]

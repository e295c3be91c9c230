"""
Floors: what the raw event-loop parts cost, and the floor pipeline.

Every policy is built from these parts, so they bound from below what any
resilience layer can cost: the breaker is a state check and a counter,
the bulkhead a ``CapacityLimiter``, the timeout a ``CancelScope`` with a
deadline, the recording an HdrHistogram bucket increment.

The *floor pipeline* is the whole pipeline written by hand from those raw
parts, with no abstraction at all: a breaker check, a retry loop,
``acquire_nowait``/``release``, ``CancelScope(deadline=...)``, and an
inlined histogram bucket increment.  Ours is measured against it: the
ratio is what the library's structure costs on top of the work itself.

On asyncio the parts are anyio's, as the library uses them there
(``anyio.CapacityLimiter``, ``anyio.CancelScope``), except the clock,
which is the loop's own ``loop.time()`` (as in the library).
"""

from __future__ import annotations

import asyncio

from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from math import floor
from typing import Any, Final

import anyio
import attrs
import trio

from hdrh.histogram import HdrHistogram

from ._harness import Arm, Factory, Variant


TIMEOUT: Final = 60.0  # seconds: a deadline that never fires
ATTEMPTS: Final = 3  # attempts in the retry loops
THRESHOLD: Final = 5  # failures that open the hand-written breaker
HDR_LOWEST: Final = 1  # microseconds, the library's histogram layout
HDR_HIGHEST: Final = 3_600_000_000  # microseconds: one hour
HDR_DIGITS: Final = 3


async def noop() -> None:
    """The operation under test: returns at once, no checkpoint."""


@attrs.frozen(kw_only=True)
class Kit:
    """The raw parts of one backend (build it inside the event loop)."""

    checkpoint: Callable[[], Awaitable[None]]
    cancel_scope: Callable[..., Any]
    fail_after: Callable[[float], AbstractContextManager[Any]]
    limiter: Callable[[int], Any]
    now: Callable[[], float]
    channel: Callable[[int], tuple[Any, Any]]

    @classmethod
    def for_backend(cls, backend: str) -> Kit:
        if backend == "trio":
            return cls(
                checkpoint=trio.lowlevel.checkpoint,
                cancel_scope=trio.CancelScope,
                fail_after=trio.fail_after,
                limiter=trio.CapacityLimiter,
                now=trio.current_time,
                channel=trio.open_memory_channel,
            )
        return cls(
            checkpoint=anyio.lowlevel.checkpoint,
            cancel_scope=anyio.CancelScope,
            fail_after=anyio.fail_after,
            limiter=anyio.CapacityLimiter,
            now=asyncio.get_running_loop().time,
            channel=anyio.create_memory_object_stream,
        )


def new_hdr() -> Any:
    """A raw hdrh histogram with the library's default layout."""
    return HdrHistogram(HDR_LOWEST, HDR_HIGHEST, HDR_DIGITS)


def _bare(_stack: object) -> Variant:
    return noop


def _checkpointed(backend: str) -> Factory:
    def make(_stack: object) -> Variant:
        checkpoint = Kit.for_backend(backend).checkpoint

        async def op() -> None:
            await checkpoint()

        return op

    return make


def _cancel_scope(backend: str) -> Factory:
    def make(_stack: object) -> Variant:
        kit = Kit.for_backend(backend)
        scope, now = kit.cancel_scope, kit.now

        async def op() -> None:
            with scope(deadline=now() + TIMEOUT):
                await noop()

        return op

    return make


def _fail_after(backend: str) -> Factory:
    def make(_stack: object) -> Variant:
        fail_after = Kit.for_backend(backend).fail_after

        async def op() -> None:
            with fail_after(TIMEOUT):
                await noop()

        return op

    return make


def asyncio_timeout(_stack: object) -> Variant:
    async def op() -> None:
        async with asyncio.timeout(TIMEOUT):
            await noop()

    return op


def _limiter_nowait(backend: str) -> Factory:
    def make(_stack: object) -> Variant:
        limiter = Kit.for_backend(backend).limiter(10)
        acquire, release = limiter.acquire_nowait, limiter.release

        async def op() -> None:
            acquire()
            try:
                await noop()
            finally:
                release()

        return op

    return make


def _limiter_async_with(backend: str) -> Factory:
    def make(_stack: object) -> Variant:
        limiter = Kit.for_backend(backend).limiter(10)

        async def op() -> None:
            async with limiter:
                await noop()

        return op

    return make


def _limiter_scope(backend: str) -> Factory:
    def make(_stack: object) -> Variant:
        kit = Kit.for_backend(backend)
        limiter = kit.limiter(10)
        acquire, release = limiter.acquire_nowait, limiter.release
        scope, now = kit.cancel_scope, kit.now

        async def op() -> None:
            acquire()
            try:
                with scope(deadline=now() + TIMEOUT):
                    await noop()
            finally:
                release()

        return op

    return make


def _channel(backend: str) -> Factory:
    def make(_stack: object) -> Variant:
        send, receive = Kit.for_backend(backend).channel(1)

        async def op() -> None:
            await send.send(None)
            await receive.receive()

        return op

    return make


def _channel_nowait(backend: str) -> Factory:
    def make(_stack: object) -> Variant:
        send, receive = Kit.for_backend(backend).channel(1)
        put, get = send.send_nowait, receive.receive_nowait

        async def op() -> None:
            put(None)
            get()

        return op

    return make


def _record_value(_stack: object) -> Variant:
    record = new_hdr().record_value

    async def op() -> None:
        record(1234)

    return op


def _inline_increment(_stack: object) -> Variant:
    hdr = new_hdr()
    counts = hdr.counts
    mask = hdr.sub_bucket_mask
    half = hdr.sub_bucket_half_count_magnitude
    unit = hdr.unit_magnitude

    async def op() -> None:
        value = 1234
        shift = (value | mask).bit_length() - half - 1
        counts[((shift - unit) << half) + (value >> shift)] += 1

    return op


def _two_clock_reads(backend: str) -> Factory:
    def make(_stack: object) -> Variant:
        now = Kit.for_backend(backend).now

        async def op() -> None:
            now()
            now()

        return op

    return make


def _anyio_clock(_stack: object) -> Variant:
    now = anyio.current_time

    async def op() -> None:
        now()
        now()

    return op


BARE: Final = "bare await op()"
CHECKPOINT: Final = "await op() with a checkpoint"
SCOPE: Final = "CancelScope(deadline) around op()"
LIMITER: Final = "acquire_nowait/release around op()"
LIMITER_SCOPE: Final = "acquire_nowait/release + CancelScope"
FLOOR_PIPELINE: Final = "floor pipeline (by hand)"
FLOOR_NO_TIMEOUT: Final = "floor pipeline, no timeout"


def floor_arms(backend: str) -> tuple[Arm, ...]:
    """Every raw part on *backend*, each against a bare await."""
    scope = "trio.CancelScope" if backend == "trio" else "anyio.CancelScope"
    limiter = (
        "trio.CapacityLimiter"
        if backend == "trio"
        else "anyio.CapacityLimiter"
    )
    arms = [
        Arm(label=BARE, factory=_bare, kind="floor"),
        Arm(label=CHECKPOINT, factory=_checkpointed(backend), kind="floor"),
        Arm(
            label=SCOPE,
            factory=_cancel_scope(backend),
            kind="floor",
            note=scope,
        ),
        Arm(
            label="fail_after(60) around op()",
            factory=_fail_after(backend),
            kind="floor",
            note=f"{backend if backend == 'trio' else 'anyio'}.fail_after",
        ),
        Arm(
            label=LIMITER,
            factory=_limiter_nowait(backend),
            kind="floor",
            note=limiter,
        ),
        Arm(
            label="async with CapacityLimiter",
            factory=_limiter_async_with(backend),
            kind="floor",
            note=limiter,
        ),
        Arm(
            label="memory channel send + receive",
            factory=_channel(backend),
            kind="floor",
            note="capacity 1",
        ),
        Arm(
            label="memory channel send_nowait + receive_nowait",
            factory=_channel_nowait(backend),
            kind="floor",
        ),
        Arm(
            label="HdrHistogram.record_value",
            factory=_record_value,
            kind="floor",
            note="hdrh, one value",
        ),
        Arm(
            label="inlined histogram bucket increment",
            factory=_inline_increment,
            kind="floor",
        ),
        Arm(
            label="two clock reads",
            factory=_two_clock_reads(backend),
            kind="floor",
            note=(
                "trio.current_time()" if backend == "trio" else "loop.time()"
            ),
        ),
    ]
    if backend == "asyncio":
        arms.append(
            Arm(
                label="two clock reads (anyio.current_time)",
                factory=_anyio_clock,
                kind="floor",
            )
        )
        arms.append(
            Arm(
                label="asyncio.timeout(60) around op()",
                factory=asyncio_timeout,
                kind="floor",
            )
        )
    return tuple(arms)


def scope_floor(backend: str) -> Arm:
    return Arm(label=SCOPE, factory=_cancel_scope(backend), kind="floor")


def fail_after_floor(backend: str) -> Arm:
    return Arm(
        label="fail_after(60) around op()",
        factory=_fail_after(backend),
        kind="floor",
        baseline=SCOPE,
    )


def limiter_floors(backend: str) -> tuple[Arm, ...]:
    return (
        Arm(label=LIMITER, factory=_limiter_nowait(backend), kind="floor"),
        Arm(
            label=LIMITER_SCOPE,
            factory=_limiter_scope(backend),
            kind="floor",
            baseline=LIMITER,
        ),
        Arm(
            label="async with CapacityLimiter",
            factory=_limiter_async_with(backend),
            kind="floor",
            baseline=LIMITER,
        ),
    )


def bare_floor() -> Arm:
    return Arm(label=BARE, factory=_bare, kind="floor")


def checkpoint_floor(backend: str) -> Arm:
    return Arm(
        label=CHECKPOINT,
        factory=_checkpointed(backend),
        kind="floor",
        baseline=BARE,
    )


def recording_floors() -> tuple[Arm, ...]:
    return (
        Arm(
            label="HdrHistogram.record_value",
            factory=_record_value,
            kind="floor",
        ),
        Arm(
            label="inlined histogram bucket increment",
            factory=_inline_increment,
            kind="floor",
        ),
    )


class _OpenError(Exception):
    """The hand-written breaker is open."""


def hand_pipeline(
    backend: str, timeout: float | None, op: Callable[[], Awaitable[Any]]
) -> Variant:
    """
    The whole pipeline by hand, from raw parts, around *op*.

    bulkhead( retry( breaker( timeout( op ) ) ) ) + one histogram bucket
    increment, in the library's order, with every abstraction inlined.
    Build it inside the event loop.
    """
    kit = Kit.for_backend(backend)
    limiter = kit.limiter(10)
    acquire, release = limiter.acquire_nowait, limiter.release
    scope, now = kit.cancel_scope, kit.now
    hdr = new_hdr()
    counts = hdr.counts
    mask = hdr.sub_bucket_mask
    half = hdr.sub_bucket_half_count_magnitude
    unit = hdr.unit_magnitude
    failures = 0

    async def call() -> Any:
        nonlocal failures
        acquire()
        try:
            for attempt in range(ATTEMPTS):
                if failures >= THRESHOLD:
                    raise _OpenError
                start = now()
                try:
                    if timeout is None:
                        result = await op()
                    else:
                        with scope(deadline=start + timeout) as cancel:
                            result = await op()
                        if cancel.cancelled_caught:
                            raise TimeoutError  # noqa: TRY301
                except Exception:
                    failures += 1
                    if attempt + 1 == ATTEMPTS:
                        raise
                    continue
                failures = 0
                # floor, not int(): int() of a float costs 3x more.
                value = floor((now() - start) * 1e6 + 0.5)
                shift = (value | mask).bit_length() - half - 1
                counts[((shift - unit) << half) + (value >> shift)] += 1
                return result
        finally:
            release()

    return call


def floor_pipeline(backend: str, timeout: float | None) -> Factory:
    def make(_stack: object) -> Variant:
        return hand_pipeline(backend, timeout, noop)

    return make


def floor_pipelines(backend: str) -> tuple[Arm, ...]:
    return (
        Arm(
            label=FLOOR_PIPELINE,
            factory=floor_pipeline(backend, TIMEOUT),
            kind="floor",
        ),
        Arm(
            label=FLOOR_NO_TIMEOUT,
            factory=floor_pipeline(backend, None),
            kind="floor",
            baseline=FLOOR_PIPELINE,
        ),
    )

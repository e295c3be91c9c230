"""
Floors: what the raw event-loop parts cost, and the hand-built equivalents.

Every policy is built from these parts, so they bound from below what any
resilience layer can cost: the breaker is a state check and a counter,
the bulkhead a ``CapacityLimiter``, the timeout a ``CancelScope`` with a
deadline, the recording an HdrHistogram bucket increment.

Each target compares ours with the cheapest way to write the same thing
by hand that still respects trio's conventions:

* the clock is read through the public API, looked up once per call
  (``trio.lowlevel.current_clock().current_time``, or the running loop's
  ``time`` on asyncio), never cached across calls;
* a slot is borrowed with ``acquire_on_behalf_of_nowait`` for a fresh
  token per call (so that one task may hold several slots, as ours
  allows), falling back to waiting for it when none is free;
* every rejection (an open circuit, here) is a full checkpoint
  (``trio.lowlevel.checkpoint()``) before a new exception is raised;
* a retry sleeps between attempts.

The *floor pipeline* is the whole pipeline written that way around one
call, with no abstraction at all: a breaker check, a retry loop, a
borrowed slot, ``CancelScope(deadline=...)``, and an inlined histogram
bucket increment.  Ours is measured against it: the ratio is what the
library's structure costs on top of the work itself.  The *minimal
client* is the same idea around an MCP call: the call inside a
``CapacityLimiter``, a failure counter, one ``move_on_after`` scope and
one histogram record.

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
DELAY: Final = 0.1  # seconds between attempts (never waited here)
THRESHOLD: Final = 5  # failures that open the hand-written breaker
SLOTS: Final = 10  # the hand-written bulkhead's slots (ours' default)
HDR_LOWEST: Final = 1  # microseconds, the library's histogram layout
HDR_HIGHEST: Final = 3_600_000_000  # microseconds: one hour
HDR_DIGITS: Final = 3

WOULD_BLOCK: Final = (trio.WouldBlock, anyio.WouldBlock)


async def noop() -> None:
    """The operation under test: returns at once, no checkpoint."""


class OpenCircuitError(Exception):
    """The hand-written breaker is open."""


def _trio_clock(
    current_clock: Callable[[], Any] = trio.lowlevel.current_clock,
) -> Callable[[], float]:
    return current_clock().current_time


def _asyncio_clock(
    running_loop: Callable[[], Any] = asyncio.get_running_loop,
) -> Callable[[], float]:
    return running_loop().time


@attrs.frozen(kw_only=True)
class Kit:
    """The raw parts of one backend (build it inside the event loop)."""

    checkpoint: Callable[[], Awaitable[None]]
    cancel_scope: Callable[..., Any]
    fail_after: Callable[[float], AbstractContextManager[Any]]
    move_on_after: Callable[[float], AbstractContextManager[Any]]
    limiter: Callable[[int], Any]
    now: Callable[[], float]
    # The running clock, looked up once per call: ``now = clock()``, then
    # ``now()`` for each reading (what the library does, through the
    # public API).  ``now`` above is the plain one-off reading.
    clock: Callable[[], Callable[[], float]]
    sleep: Callable[[float], Awaitable[None]]
    channel: Callable[[int], tuple[Any, Any]]

    @classmethod
    def for_backend(cls, backend: str) -> Kit:
        if backend == "trio":
            return cls(
                checkpoint=trio.lowlevel.checkpoint,
                cancel_scope=trio.CancelScope,
                fail_after=trio.fail_after,
                move_on_after=trio.move_on_after,
                limiter=trio.CapacityLimiter,
                now=trio.current_time,
                clock=_trio_clock,
                sleep=trio.sleep,
                channel=trio.open_memory_channel,
            )
        return cls(
            checkpoint=anyio.lowlevel.checkpoint,
            cancel_scope=anyio.CancelScope,
            fail_after=anyio.fail_after,
            move_on_after=anyio.move_on_after,
            limiter=anyio.CapacityLimiter,
            now=asyncio.get_running_loop().time,
            clock=_asyncio_clock,
            sleep=anyio.sleep,
            channel=anyio.create_memory_object_stream,
        )


def new_hdr() -> Any:
    """A raw hdrh histogram with the library's default layout."""
    return HdrHistogram(HDR_LOWEST, HDR_HIGHEST, HDR_DIGITS)


def hdr_parts() -> tuple[Any, int, int, int]:
    """
    What an inlined bucket increment needs of a fresh raw histogram.

    ``counts[((shift - unit) << half) + (value >> shift)] += 1`` with
    ``shift = (value | mask).bit_length() - half - 1`` records *value*.
    """
    hdr = new_hdr()
    return (
        hdr.counts,
        hdr.sub_bucket_mask,
        hdr.sub_bucket_half_count_magnitude,
        hdr.unit_magnitude,
    )


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
        scope, clock = kit.cancel_scope, kit.clock

        async def op() -> None:
            with scope(deadline=clock()() + TIMEOUT):
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
    """``acquire_nowait``/``release``: one slot per task at most."""

    def make(_stack: object) -> Variant:
        limiter = Kit.for_backend(backend).limiter(SLOTS)
        acquire, release = limiter.acquire_nowait, limiter.release

        async def op() -> None:
            acquire()
            try:
                await noop()
            finally:
                release()

        return op

    return make


def _limiter_on_behalf(backend: str) -> Factory:
    def make(_stack: object) -> Variant:
        limiter = Kit.for_backend(backend).limiter(SLOTS)
        acquire = limiter.acquire_on_behalf_of_nowait
        wait = limiter.acquire_on_behalf_of
        release = limiter.release_on_behalf_of

        async def op() -> None:
            token = object()
            try:
                acquire(token)
            except WOULD_BLOCK:
                await wait(token)
            try:
                await noop()
            finally:
                release(token)

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
        limiter = kit.limiter(SLOTS)
        acquire = limiter.acquire_on_behalf_of_nowait
        wait = limiter.acquire_on_behalf_of
        release = limiter.release_on_behalf_of
        scope, clock = kit.cancel_scope, kit.clock

        async def op() -> None:
            token = object()
            try:
                acquire(token)
            except WOULD_BLOCK:
                await wait(token)
            try:
                with scope(deadline=clock()() + TIMEOUT):
                    await noop()
            finally:
                release(token)

        return op

    return make


def _counter_breaker(backend: str) -> Factory:
    """A closed circuit by hand: one counter check, reset on success."""

    def make(_stack: object) -> Variant:
        checkpoint = Kit.for_backend(backend).checkpoint
        failures = 0

        async def op() -> None:
            nonlocal failures
            if failures >= THRESHOLD:
                await checkpoint()  # every rejection is a checkpoint
                raise OpenCircuitError
            try:
                await noop()
            except Exception:
                failures += 1
                raise
            failures = 0

        return op

    return make


def _try_except_retry(backend: str) -> Factory:
    """A retry by hand: try/except in a loop, a sleep between attempts."""

    def make(_stack: object) -> Variant:
        sleep = Kit.for_backend(backend).sleep

        async def op() -> None:
            attempt = 1
            while True:
                try:
                    return await noop()
                except Exception:
                    if attempt >= ATTEMPTS:
                        raise
                attempt += 1
                await sleep(DELAY)

        return op

    return make


def _open_by_hand(backend: str) -> Factory:
    """
    An open circuit by hand: the counter check, a full checkpoint, a new
    exception, raised by the breaker's function and caught by the caller.
    """

    def make(_stack: object) -> Variant:
        checkpoint = Kit.for_backend(backend).checkpoint
        failures = THRESHOLD

        async def call(fn: Callable[[], Awaitable[None]]) -> None:
            if failures >= THRESHOLD:
                await checkpoint()  # every rejection is a checkpoint
                raise OpenCircuitError
            await fn()

        async def op() -> None:
            try:
                await call(noop)
            except OpenCircuitError:
                return
            raise AssertionError("the circuit should be open")

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


def _clock_lookup_and_reads(backend: str) -> Factory:
    def make(_stack: object) -> Variant:
        clock = Kit.for_backend(backend).clock

        async def op() -> None:
            now = clock()
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
LIMITER_TASK: Final = "acquire_nowait/release around op()"
LIMITER: Final = "acquire_on_behalf_of_nowait/release_on_behalf_of"
LIMITER_SCOPE: Final = "acquire_on_behalf_of_nowait/release + CancelScope"
BREAKER: Final = "closed-state counter check around op()"
RETRY: Final = "try/except retry loop around op()"
RAISE: Final = "raise + catch a new exception"
OPEN: Final = "counter check + checkpoint + raise a new exception"
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
    clock = (
        "trio.lowlevel.current_clock().current_time"
        if backend == "trio"
        else "asyncio.get_running_loop().time"
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
            label=LIMITER_TASK,
            factory=_limiter_nowait(backend),
            kind="floor",
            note=f"{limiter}, one slot per task",
        ),
        Arm(
            label=LIMITER,
            factory=_limiter_on_behalf(backend),
            kind="floor",
            note=f"{limiter}, a fresh token per call",
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
        Arm(
            label="clock lookup + two reads",
            factory=_clock_lookup_and_reads(backend),
            kind="floor",
            note=clock,
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
    """The bulkhead's floor (first) and the other ways to take a slot."""
    return (
        Arm(
            label=LIMITER,
            factory=_limiter_on_behalf(backend),
            kind="floor",
            note="a fresh token per call",
        ),
        Arm(
            label=LIMITER_SCOPE,
            factory=_limiter_scope(backend),
            kind="floor",
            baseline=LIMITER,
        ),
        Arm(
            label=LIMITER_TASK,
            factory=_limiter_nowait(backend),
            kind="floor",
            baseline=LIMITER,
            note="one slot per task",
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


def breaker_floor(backend: str) -> Arm:
    return Arm(
        label=BREAKER,
        factory=_counter_breaker(backend),
        kind="floor",
        baseline=BARE,
        note="reset on success",
    )


def retry_floor(backend: str) -> Arm:
    return Arm(
        label=RETRY,
        factory=_try_except_retry(backend),
        kind="floor",
        baseline=BARE,
        note=f"{ATTEMPTS} attempts",
    )


def _raise_and_catch(_stack: object) -> Variant:
    async def op() -> None:
        try:
            raise OpenCircuitError  # noqa: TRY301
        except OpenCircuitError:
            return

    return op


def open_floors(backend: str) -> tuple[Arm, ...]:
    """The parts of a rejection, and the open circuit by hand (last)."""
    return (
        Arm(label=RAISE, factory=_raise_and_catch, kind="floor"),
        Arm(
            label=OPEN,
            factory=_open_by_hand(backend),
            kind="floor",
            baseline=BARE,
            note="one function deep, caught by the caller",
        ),
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
    limiter = kit.limiter(SLOTS)
    acquire = limiter.acquire_on_behalf_of_nowait
    wait = limiter.acquire_on_behalf_of
    release = limiter.release_on_behalf_of
    scope, clock = kit.cancel_scope, kit.clock
    checkpoint, sleep = kit.checkpoint, kit.sleep
    counts, mask, half, unit = hdr_parts()
    failures = 0

    async def call() -> Any:
        nonlocal failures
        now = clock()
        token = object()
        try:
            acquire(token)
        except WOULD_BLOCK:
            await wait(token)
        try:
            attempt = 1
            while True:
                if failures >= THRESHOLD:
                    await checkpoint()  # every rejection is a checkpoint
                    raise OpenCircuitError
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
                    if attempt >= ATTEMPTS:
                        raise
                else:
                    failures = 0
                    # floor, not int(): int() of a float costs 3x more.
                    value = floor((now() - start) * 1e6 + 0.5)
                    shift = (value | mask).bit_length() - half - 1
                    counts[((shift - unit) << half) + (value >> shift)] += 1
                    return result
                attempt += 1
                await sleep(DELAY)
        finally:
            release(token)

    return call


def minimal_client(
    backend: str, timeout: float, op: Callable[[], Awaitable[Any]]
) -> Variant:
    """
    A minimal resilient client by hand, around one SDK call *op*.

    The call inside a ``CapacityLimiter``, a failure counter (checked
    before, counted after), one ``move_on_after`` scope and one histogram
    record: the least a layer that bounds, times out, fails fast and
    measures can do.  Build it inside the event loop.
    """
    kit = Kit.for_backend(backend)
    limiter = kit.limiter(SLOTS)
    acquire = limiter.acquire_on_behalf_of_nowait
    wait = limiter.acquire_on_behalf_of
    release = limiter.release_on_behalf_of
    move_on_after, clock, checkpoint = (
        kit.move_on_after,
        kit.clock,
        kit.checkpoint,
    )
    counts, mask, half, unit = hdr_parts()
    failures = 0

    async def call() -> Any:
        nonlocal failures
        if failures >= THRESHOLD:
            await checkpoint()  # every rejection is a checkpoint
            raise OpenCircuitError
        now = clock()
        start = now()
        token = object()
        try:
            acquire(token)
        except WOULD_BLOCK:
            await wait(token)
        try:
            with move_on_after(timeout):
                result = await op()
                failures = 0
                value = floor((now() - start) * 1e6 + 0.5)
                shift = (value | mask).bit_length() - half - 1
                counts[((shift - unit) << half) + (value >> shift)] += 1
                return result
        except Exception:
            failures += 1
            raise
        finally:
            release(token)
        failures += 1  # the scope's deadline passed
        raise TimeoutError

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

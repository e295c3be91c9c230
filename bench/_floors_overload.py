"""
Hand-built floors for the overload policies of issue 13, success path.

Each is the cheapest way to write the policy's job by hand around one call
that still respects trio's conventions, as :mod:`bench._floors` explains:
the clock read through the public API, looked up once per call; every
rejection a full checkpoint before a new exception is raised; a slot
borrowed for a fresh token per call.  The success path makes no
checkpoint, as ours makes none (the operation, ``noop``, makes none
either): admission at once is synchronous in both.

They are written from the published descriptions (Finagle's retry
budget, GCRA, the SRE book's formula, Netflix's AIMD and gradient
limits), not from our modules, and they are deliberately plainer where a
hand-writer would be plainer: the budget's window is two halves of
``ttl`` instead of ten buckets, the throttle counts a call's accept in
the bucket of its arrival (one clock read per call).

Parameters match what the ``ours`` arms are given
(:mod:`bench._ours_overload`).
"""

from __future__ import annotations

import math
import random

from typing import Final

from ._floors import (
    ATTEMPTS,
    DELAY,
    SLOTS,
    WOULD_BLOCK,
    Kit,
    _try_except_retry,
    noop,
)
from ._harness import Arm, Factory, Variant


# The retry budget: RetryBudgetConfig's defaults.
BUDGET_PERCENT: Final = 0.2  # retries per call
BUDGET_MIN_PER_SECOND: Final = 10.0  # retries per second, always allowed
BUDGET_TTL: Final = 10.0  # seconds

# The rate limiter: fast enough that every call here conforms.
RATE: Final = 1e9  # calls per second
BURST: Final = 1  # calls at the same instant

# The throttle: ThrottlingConfig's defaults.
THROTTLE_K: Final = 2.0
THROTTLE_WINDOW: Final = 120.0  # seconds
THROTTLE_BUCKETS: Final = 120  # one per second

# The adaptive limit: AdaptiveLimitConfig's defaults.
INITIAL_LIMIT: Final = 20  # calls
MIN_LIMIT: Final = 1  # calls
MAX_LIMIT: Final = 200  # calls
GRADIENT_SMOOTHING: Final = 0.2
GRADIENT_TOLERANCE: Final = 1.5
GRADIENT_LONG_WINDOW: Final = 600  # samples
GRADIENT_WARMUP: Final = 10  # samples averaged before the EMA starts
GRADIENT_QUEUE: Final = 4  # calls
AIMD_RATIO: Final = 0.9
AIMD_TIMEOUT: Final = 5.0  # seconds


class RefusedByHandError(Exception):
    """A hand-written policy refused the call."""


def _budgeted_retry(backend: str) -> Factory:  # noqa: C901 (one closure, inlined on purpose)
    """
    A retry loop that asks a hand-written budget before each retry.

    The budget: retries over the last ``ttl`` (two halves of it, the
    current and the previous, as a sliding-window counter does) stay under
    ``percent`` of the calls plus ``min_per_second * ttl``.  A call that
    ends counts once, at its end.
    """

    def make(_stack: object) -> Variant:  # noqa: C901 (one closure, inlined on purpose)
        kit = Kit.for_backend(backend)
        clock, sleep = kit.clock, kit.sleep
        half = BUDGET_TTL / 2
        reserve = BUDGET_MIN_PER_SECOND * BUDGET_TTL
        period = -1.0
        calls = calls_before = retries = retries_before = 0

        def roll(t: float) -> None:
            nonlocal period, calls, calls_before, retries, retries_before
            current = t // half
            if current == period:
                return
            if current == period + 1:
                calls_before, retries_before = calls, retries
            else:
                calls_before = retries_before = 0
            calls = retries = 0
            period = current

        async def op() -> None:
            nonlocal calls, retries
            now = clock()
            attempt = 1
            while True:
                try:
                    result = await noop()
                except Exception:
                    if attempt >= ATTEMPTS:
                        raise
                    roll(now())
                    allowed = BUDGET_PERCENT * (calls + calls_before)
                    if retries + retries_before >= allowed + reserve:
                        raise  # the budget is spent: the last error
                    retries += 1
                else:
                    t = now()
                    if t // half != period:  # a new half (rare)
                        roll(t)
                    calls += 1
                    return result
                attempt += 1
                await sleep(DELAY)

        return op

    return make


def _gcra(backend: str, *, slot: bool) -> Factory:
    """
    GCRA by hand: a theoretical arrival time, one comparison per call.

    With *slot*, the call then borrows a slot of a ``CapacityLimiter``
    (the rate limiter outside the bulkhead, as the pipeline orders them).
    """

    def make(_stack: object) -> Variant:
        kit = Kit.for_backend(backend)
        clock, checkpoint = kit.clock, kit.checkpoint
        interval = 1.0 / RATE
        tolerance = (BURST - 1) * interval
        tat = -math.inf
        limiter = kit.limiter(SLOTS)
        acquire = limiter.acquire_on_behalf_of_nowait
        wait = limiter.acquire_on_behalf_of
        release = limiter.release_on_behalf_of

        async def rate_only() -> None:
            nonlocal tat
            t = clock()()
            if tat - t > tolerance:
                await checkpoint()  # every rejection is a checkpoint
                raise RefusedByHandError
            tat = (max(tat, t)) + interval
            await noop()

        async def rate_and_slot() -> None:
            nonlocal tat
            t = clock()()
            if tat - t > tolerance:
                await checkpoint()  # every rejection is a checkpoint
                raise RefusedByHandError
            tat = (max(tat, t)) + interval
            token = object()
            try:
                acquire(token)
            except WOULD_BLOCK:
                await wait(token)
            try:
                await noop()
            finally:
                release(token)

        return rate_and_slot if slot else rate_only

    return make


def _sre_throttle(backend: str, *, slot: bool) -> Factory:  # noqa: C901, PLR0915 (one closure, inlined on purpose)
    """
    The SRE book's client-side throttling by hand.

    Requests and accepts per one-second bucket over the window, their
    sums kept as buckets come and go; a call is dropped with probability
    ``max(0, (requests - k * accepts) / (requests + 1))``.  With *slot*,
    an admitted call then borrows a ``CapacityLimiter`` slot.
    """

    def make(_stack: object) -> Variant:  # noqa: PLR0915 (one closure, inlined on purpose)
        kit = Kit.for_backend(backend)
        clock, checkpoint = kit.clock, kit.checkpoint
        draw = random.Random(0).random
        width = THROTTLE_WINDOW / THROTTLE_BUCKETS
        size = THROTTLE_BUCKETS
        requests = [0] * size
        accepts = [0] * size
        newest = -1  # the newest bucket seen
        total_requests = total_accepts = 0
        limiter = kit.limiter(SLOTS)
        acquire = limiter.acquire_on_behalf_of_nowait
        wait = limiter.acquire_on_behalf_of
        release = limiter.release_on_behalf_of

        def clear_up_to(bucket: int) -> None:
            nonlocal newest, total_requests, total_accepts
            first = bucket - size + 1
            for old in range(max(newest + 1, first), bucket + 1):
                i = old % size
                total_requests -= requests[i]
                total_accepts -= accepts[i]
                requests[i] = accepts[i] = 0
            newest = bucket

        async def op() -> None:
            nonlocal total_requests, total_accepts
            bucket = int(clock()() // width)
            if bucket != newest:  # a new second (rare)
                clear_up_to(bucket)
            i = bucket % size
            excess = total_requests - THROTTLE_K * total_accepts
            drop = excess > 0 and draw() < excess / (total_requests + 1)
            requests[i] += 1
            total_requests += 1
            if drop:
                await checkpoint()  # every rejection is a checkpoint
                raise RefusedByHandError
            try:
                if slot:
                    token = object()
                    try:
                        acquire(token)
                    except WOULD_BLOCK:
                        await wait(token)
                    try:
                        await noop()
                    finally:
                        release(token)
                else:
                    await noop()
            except BaseException as exc:
                if not isinstance(exc, Exception) and bucket > newest - size:
                    requests[i] -= 1  # a cancelled call: no request
                    total_requests -= 1
                raise
            accepts[i] += 1
            total_accepts += 1

        return op

    return make


def _limited(backend: str, algorithm: str) -> Factory:  # noqa: C901, PLR0915 (one closure, inlined on purpose)
    """
    A ``CapacityLimiter`` whose ``total_tokens`` follows a hand-written
    AIMD or gradient update, fed by every call (no window).
    """

    def make(_stack: object) -> Variant:  # noqa: C901, PLR0915 (one closure, inlined on purpose)
        kit = Kit.for_backend(backend)
        clock = kit.clock
        limiter = kit.limiter(INITIAL_LIMIT)
        acquire = limiter.acquire_on_behalf_of_nowait
        wait = limiter.acquire_on_behalf_of
        release = limiter.release_on_behalf_of
        limit = INITIAL_LIMIT
        estimate = float(INITIAL_LIMIT)
        long_rtt = long_sum = 0.0
        samples = 0
        alpha = 2.0 / (GRADIENT_LONG_WINDOW + 1)

        def aimd(rtt: float, inflight: int, dropped: bool) -> int:
            if dropped or rtt > AIMD_TIMEOUT:
                new = int(limit * AIMD_RATIO)
            elif 2 * inflight >= limit:
                new = limit + 1
            else:
                return limit
            return MIN_LIMIT if new < MIN_LIMIT else min(new, MAX_LIMIT)

        def gradient(rtt: float, inflight: int, dropped: bool) -> int:  # noqa: ARG001
            nonlocal estimate, long_rtt, long_sum, samples
            if rtt <= 0.0:
                return limit
            if samples < GRADIENT_WARMUP:
                samples += 1
                long_sum += rtt
                long_rtt = long_sum / samples
            else:
                long_rtt += (rtt - long_rtt) * alpha
            if long_rtt > 2 * rtt:  # come down after an overload
                long_rtt *= 0.95
            if 2 * inflight < estimate:  # the caller limits, not the server
                return limit
            ratio = GRADIENT_TOLERANCE * long_rtt / rtt
            ratio = 0.5 if ratio < 0.5 else min(ratio, 1.0)
            target = estimate * ratio + GRADIENT_QUEUE
            estimate += (target - estimate) * GRADIENT_SMOOTHING
            estimate = min(max(estimate, float(MIN_LIMIT)), float(MAX_LIMIT))
            return int(estimate)

        update = aimd if algorithm == "aimd" else gradient

        async def op() -> None:
            nonlocal limit
            now = clock()
            token = object()
            try:
                acquire(token)
            except WOULD_BLOCK:
                await wait(token)
            start = now()
            inflight = limiter.borrowed_tokens
            try:
                await noop()
            except BaseException as exc:
                if isinstance(exc, Exception):  # cancelled: no sample
                    new = update(now() - start, inflight, True)  # noqa: FBT003
                    if new != limit:
                        limit = limiter.total_tokens = new
                release(token)
                raise
            new = update(now() - start, inflight, False)  # noqa: FBT003
            if new != limit:
                limit = limiter.total_tokens = new
            release(token)

        return op

    return make


BUDGET: Final = "retry loop + sliding-window budget (by hand)"
RETRY_PLAIN: Final = "try/except retry loop, no budget"
GCRA: Final = "GCRA check (by hand)"
GCRA_SLOT: Final = "GCRA check + borrowed slot (by hand)"
SRE: Final = "SRE throttle counters (by hand)"
SRE_SLOT: Final = "SRE throttle counters + borrowed slot (by hand)"
GRADIENT: Final = "CapacityLimiter + gradient update (by hand)"
AIMD: Final = "CapacityLimiter + AIMD update (by hand)"


def budget_floors(backend: str) -> tuple[Arm, ...]:
    return (
        Arm(
            label=BUDGET,
            factory=_budgeted_retry(backend),
            kind="floor",
            note=f"{ATTEMPTS} attempts, one clock read",
        ),
        Arm(
            label=RETRY_PLAIN,
            factory=_try_except_retry(backend),
            kind="floor",
            baseline=BUDGET,
        ),
    )


def rate_floors(backend: str) -> tuple[Arm, ...]:
    return (
        Arm(label=GCRA, factory=_gcra(backend, slot=False), kind="floor"),
        Arm(
            label=GCRA_SLOT,
            factory=_gcra(backend, slot=True),
            kind="floor",
            baseline=GCRA,
        ),
    )


def throttle_floors(backend: str) -> tuple[Arm, ...]:
    return (
        Arm(
            label=SRE,
            factory=_sre_throttle(backend, slot=False),
            kind="floor",
            note="k=2, 120 one-second buckets",
        ),
        Arm(
            label=SRE_SLOT,
            factory=_sre_throttle(backend, slot=True),
            kind="floor",
            baseline=SRE,
        ),
    )


def adaptive_floors(backend: str) -> tuple[Arm, ...]:
    return (
        Arm(
            label=GRADIENT,
            factory=_limited(backend, "gradient2"),
            kind="floor",
            note="every call a sample",
        ),
        Arm(
            label=AIMD,
            factory=_limited(backend, "aimd"),
            kind="floor",
            baseline=GRADIENT,
            note="every call a sample",
        ),
    )

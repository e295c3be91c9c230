"""
How a call runs through an ordered plan of policies.

The pipeline decides the order (:mod:`._pipeline`); this module runs a call
through it, knowing each policy only through :class:`~._policy.Policy`
and the retry loop only through :class:`RetryLoop`.  It holds no policy's
logic: it enters the policies in order, enters one cancel scope per
attempt for the earliest time limit, lets the retry policy decide after a
failed attempt, and hands every policy its outcome, innermost first.

There is no nursery per call (but for a hedged call, whose hedging
policy owns a task group for its concurrent attempts): a call has no
concurrency of its own to supervise, and every policy is a step or a
cancel scope in the caller's own task, so errors and cancellation
propagate exactly as if the operation had been awaited directly.  The
clock is read once when the call arrives and once when its attempt ends,
and every policy gets those two readings.

A call that succeeds at its first attempt runs in one coroutine of the
engine (:meth:`Plan.run`), which walks the policies' synchronous steps
itself: admission at once, the attempt, the outcomes and the books.  What
happens only on other paths has frames of its own: a wait to be admitted,
an attempt's cancel scope (:func:`_until`), the attempts after a failed
one (:meth:`Plan._retry`), hedged attempts.  A plan with no attempt
policy, no time limit and no hedging (``Plan.direct``) awaits the
operation with nothing around it.
"""

from __future__ import annotations

import functools
import math

from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar, final

import attrs

from ._stage import (
    AnyPolicy,
    Slow,
    Stage,
    admit,
    admit_slowly,
    refuse,
)
from ._timeouts import (
    DeadlineAware,
    DeadlineExpired,
    DeadlinePassed,
    clock,
    current_effective_deadline,
    deadline_scope,
)


T = TypeVar("T")


class RetryLoop(Protocol):
    """
    What the engine asks of the retry policy (:class:`~.RetryManager`).

    .. versionadded:: 0.1.0
    """

    def next_delay(  # noqa: PLR0917 (one call per failed attempt)
        self,
        exc: Exception,
        attempt: int,
        previous: float,
        start: float,
        now: float,
        deadline: float,
        retry_if: Callable[[Exception], bool] | None,
    ) -> float | None:
        """Seconds to wait before the next attempt, or ``None``: give up."""

    async def backoff(
        self, exc: Exception, attempt: int, delay: float
    ) -> None:
        """Wait *delay* seconds before the attempt after *attempt*."""

    def refused(self, rejection: Exception, attempt: int) -> None:
        """The call ends with *rejection*: no wait began (see the Plan)."""

    def leave(
        self,
        permit: object,
        now: float,
        elapsed: float,
        error: BaseException | None,
    ) -> None:
        """The call ended, as the retry loop saw it."""


class Hedger(Protocol):
    """What the engine asks of the hedging policy (:class:`~.Hedging`)."""

    async def run(
        self,
        attempt: Callable[[float], Awaitable[T]],
        now: Callable[[], float],
        start: float,
    ) -> T:
        """Run *attempt* once or more, concurrently; the first answer."""


class Ledger(Protocol):
    """Whoever keeps the books of a plan's calls (the pipeline)."""

    def settle(self, elapsed: float, error: BaseException | None) -> None:
        """A call ended after *elapsed* seconds, raising *error* or not."""


@final
@attrs.frozen(eq=False)
class Plan:
    """
    The policies of a pipeline, in order, ready to run calls.

    Args:
        call_policies: Entered once per call, outermost first.
        retry: The retry loop between the call and the attempt policies.
        attempt_policies: Entered once per attempt, outermost first.
        retry_if: Decides retries instead of the retry policy's own
            predicate, for calls through this plan.
        ledger: Told of every call that ends.
        hedging: Runs each attempt as one or more concurrent hedged
            attempts, each through the attempt policies on its own; the
            retry loop sees one result.
    """

    call_policies: tuple[AnyPolicy, ...] = ()
    retry: RetryLoop | None = None
    attempt_policies: tuple[AnyPolicy, ...] = ()
    retry_if: Callable[[Exception], bool] | None = None
    ledger: Ledger | None = None
    hedging: Hedger | None = None
    calls: Stage = attrs.field(init=False)
    attempts: Stage = attrs.field(init=False)
    direct: bool = attrs.field(init=False)
    """No attempt policy, no time limit, no hedging: one ``await``."""

    def __attrs_post_init__(self) -> None:
        calls = Stage.of(self.call_policies)
        attempts = Stage.of(self.attempt_policies)
        object.__setattr__(self, "calls", calls)
        object.__setattr__(self, "attempts", attempts)
        object.__setattr__(
            self,
            "direct",
            self.hedging is None
            and not attempts.gated
            and attempts.limit == calls.limit == math.inf,
        )

    async def run(  # noqa: C901, PLR0912, PLR0915 (the hot path, inline)
        self, fn: Callable[..., Awaitable[T]], args: Any
    ) -> T:
        """
        Run ``await fn(*args)`` through every policy of the plan.

        One coroutine for the call: the call policies, its first attempt
        and the books.  Only a failed attempt that the retry policy may
        retry costs more (:meth:`_retry`, which runs the attempts after
        it).  The call's deadline (the call policies' limit, ``inf`` for
        none) ends every attempt and every wait between attempts with
        :class:`DeadlineExpired`, which the call policy that set it turns
        into its own error.

        Raises:
            Exception: A policy's rejection or timeout, or the
                operation's own last error, unchanged.
        """
        now = clock()
        start = now()
        calls = self.calls
        permit: Any = None
        began = start  # when the first attempt begins
        if calls.gated:
            try:
                permit = admit(calls, start)
                if type(permit) is Slow:
                    permit = await admit_slowly(calls, start, permit)
                    began = now()
            except BaseException as exc:
                ledger = self.ledger
                if ledger is not None:
                    ledger.settle(now() - start, exc)
                raise
        error: BaseException | None = None
        try:
            admitted = False
            held: Any = None
            stage = self.attempts
            try:
                if self.direct:
                    # No attempt policy, no time limit, no hedging.
                    result = await fn(*args)
                elif self.hedging is not None:
                    result = await self.hedging.run(
                        functools.partial(
                            _attempt,
                            stage,
                            fn,
                            args,
                            start + calls.limit,
                            now,
                        ),
                        now,
                        began,
                    )
                else:
                    if stage.gated:
                        held = admit(stage, began)
                        if type(held) is Slow:
                            held = await admit_slowly(stage, began, held)
                        admitted = True
                    own = began + stage.limit
                    deadline = start + calls.limit
                    if own == deadline == math.inf:
                        result = await fn(*args)
                    else:
                        result = await _until(
                            fn, args, stage, held, own, deadline
                        )
            except BaseException as exc:
                error = exc
            end = now()
            if admitted:
                stage.leave(held, end, end - began, error)
            if error is not None:
                retry = self.retry
                if retry is None:
                    raise error  # noqa: TRY301 (the attempt's own error)
                result, end = await self._retry(
                    retry, now, fn, args, error, start, end
                )
        except BaseException as exc:
            # The frame would hold the error, whose traceback holds the
            # frame: a cycle per failed call.
            error = None
            end = now()
            retry = self.retry
            if retry is not None:
                retry.leave(None, end, 0.0, exc)
            if isinstance(exc, DeadlineExpired):
                error = calls.expire(permit)
                try:
                    self._settle(permit, end, end - start, error)
                    raise error from None
                finally:
                    error = None
            self._settle(permit, end, end - start, exc)
            raise
        elapsed = end - start
        retry = self.retry
        if retry is not None:
            retry.leave(None, end, elapsed, None)
        if calls.gated:
            calls.leave(permit, end, elapsed, None)
        ledger = self.ledger
        if ledger is not None:
            ledger.settle(elapsed, None)
        return result

    def _settle(
        self, permit: Any, end: float, elapsed: float, error: BaseException
    ) -> None:
        """A call that was admitted ended with *error*: tell the books."""
        calls = self.calls
        if calls.gated:
            calls.leave(permit, end, elapsed, error)
        ledger = self.ledger
        if ledger is not None:
            ledger.settle(elapsed, error)

    async def _retry(  # noqa: PLR0917 (private, one call site)
        self,
        retry: RetryLoop,
        now: Callable[[], float],
        fn: Callable[..., Awaitable[T]],
        args: Any,
        error: BaseException,
        start: float,
        end: float,
    ) -> tuple[T, float]:
        """
        The attempts after the first, which failed with *error* at *end*.

        Until an attempt returns, or the retry policy gives up: then the
        last attempt's error propagates, as it was raised.  Each attempt
        goes through the attempt policies on its own (:func:`_attempt`),
        or through the hedging policy.  Returns the result and the time
        the last attempt ended.
        """
        stage = self.attempts
        hedging = self.hedging
        deadline = start + self.calls.limit
        attempt = 1
        delay = 0.0
        try:
            while True:
                delay = await self._wait_to_retry(
                    retry, error, attempt, delay, start, end, deadline
                )
                if delay < 0.0:
                    raise error  # noqa: TRY301 (the attempt's own error)
                attempt += 1
                began = now()
                try:
                    if hedging is None:
                        result = await _attempt(
                            stage, fn, args, deadline, now, began
                        )
                    else:
                        result = await hedging.run(
                            functools.partial(
                                _attempt, stage, fn, args, deadline, now
                            ),
                            now,
                            began,
                        )
                except BaseException as exc:
                    error = exc
                    end = now()
                else:
                    return result, now()
        except BaseException:
            del error  # no cycle through this frame
            raise

    async def _wait_to_retry(  # noqa: PLR0917 (private, one call site)
        self,
        retry: RetryLoop,
        error: BaseException,
        attempt: int,
        previous: float,
        start: float,
        now: float,
        deadline: float,
    ) -> float:
        """
        Ask the retry policy about a failed attempt, and wait if it says so.

        A cancellation (any :class:`BaseException` that is not an
        :class:`Exception`) is never retried, and never shown to the retry
        policy as a failure.

        Before the wait, the attempt policies that can foresee their
        rejections (``rejection_at``) are asked about the attempt at its
        end: a wait for an attempt an open circuit would reject never
        begins.

        Returns:
            The delay waited, or -1.0 when the call ends with *error*.

        Raises:
            DeadlineExpired: The call's deadline passed during the wait.
            Exception: An attempt policy's foreseen rejection, raised
                after a checkpoint, with *error* as its ``__cause__``.
        """
        if not isinstance(error, Exception):
            return -1.0
        delay = retry.next_delay(
            error,
            attempt,
            previous,
            start,
            now,
            min(deadline, current_effective_deadline()),
            self.retry_if,
        )
        if delay is None:
            return -1.0
        for policy in self.attempts.foresee:
            rejection = policy.rejection_at(now, now + delay)
            if rejection is not None:
                try:
                    await refuse(policy, rejection)
                    retry.refused(rejection, attempt)
                    raise rejection from error
                finally:
                    del rejection, error  # no cycle through this frame
        if deadline == math.inf:
            await retry.backoff(error, attempt, delay)
            return delay
        with deadline_scope(deadline):
            await retry.backoff(error, attempt, delay)
            return delay
        raise DeadlineExpired


async def _attempt(  # noqa: PLR0917 (private: retries and hedges only)
    stage: Stage,
    fn: Callable[..., Awaitable[T]],
    args: Any,
    deadline: float,
    now: Callable[[], float],
    began: float,
) -> T:
    """
    One attempt, begun at *began*, through the attempt policies.

    What :meth:`Plan.run` does inline for a call's first attempt that is
    not hedged, for the attempts after it and for hedged attempts: each
    is admitted, limited and told its outcome (a cancelled hedge's
    included) on its own.
    """
    permit: Any = None
    admitted = False
    error: BaseException | None = None
    try:
        if stage.gated:
            permit = admit(stage, began)
            if type(permit) is Slow:
                permit = await admit_slowly(stage, began, permit)
            admitted = True
        own = began + stage.limit
        if own == deadline == math.inf:
            return await fn(*args)
        return await _until(fn, args, stage, permit, own, deadline)
    except BaseException as exc:
        error = exc
        raise
    finally:
        if admitted:
            end = now()
            stage.leave(permit, end, end - began, error)
        error = None  # no cycle through this frame


async def _until(  # noqa: PLR0917 (private, one call site)
    fn: Callable[..., Awaitable[T]],
    args: Any,
    stage: Stage,
    permit: Any,
    own: float,
    deadline: float,
) -> T:
    """
    Await ``fn(*args)`` until the attempt's limit *own* or the call's.

    One cancel scope, for whichever comes first, or none for a
    :class:`DeadlineAware` operation, which enforces the deadline in a
    scope of its own.

    Raises:
        Exception: The attempt's limit passed first: the error of the
            attempt policy that set it (a failure the retry may retry).
        DeadlineExpired: The call's *deadline* passed first, for the call
            policy that set it.
    """
    limit = min(own, deadline)
    if type(fn) is DeadlineAware:
        try:
            result: T = await fn.run(limit, *args)
        except DeadlinePassed:
            pass
        else:
            return result
    else:
        with deadline_scope(limit):
            return await fn(*args)
    if deadline <= own:
        raise DeadlineExpired
    raise stage.expire(permit)

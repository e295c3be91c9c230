"""
The retry policy: whether, and when, to try a failed call again.

The engine (:mod:`._engine`) runs the attempts; after each failed one it
asks :meth:`RetryManager.next_delay`, which decides from the error, the
attempt number, the time budget and the caller's deadline, with the pure
delay math of :mod:`._backoff`, and counts the outcome.  Nothing is
allocated and no clock is read for a call whose first attempt succeeds.
"""

from __future__ import annotations

import logging
import math
import random

from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar, final

import attrs

from ._backoff import compute_delay
from ._config import RetryConfig
from ._engine import Plan
from ._errors import (
    BulkheadError,
    CircuitBreakerError,
    PermanentError,
    TemporaryError,
)
from ._timeouts import sleep


T = TypeVar("T")

logger: Final = logging.getLogger("resilient_mcp")

_testing: bool = False  # set by resilient_mcp.testing.set_testing()

PROGRAMMING_ERRORS: Final = (
    ArithmeticError,
    AssertionError,
    AttributeError,
    ImportError,
    LookupError,
    NameError,
    NotImplementedError,
    RecursionError,
    SyntaxError,
    TypeError,
    ValueError,
)
"""
Python's built-in errors that say the code is wrong, not the service:
never retried by default, whatever their message.  ``KeyError`` and
``IndexError`` are lookup errors; ``ConfigurationError``, pydantic's
``ValidationError`` and ``UnicodeError`` are value errors.
"""


def _set_testing(on: bool) -> None:
    global _testing  # noqa: PLW0603
    _testing = on


def _by_type(exc: Exception) -> bool | None:
    """Whether *exc*'s type alone says to retry it; ``None``: it does not."""
    if isinstance(exc, CircuitBreakerError | BulkheadError):
        return False
    if isinstance(exc, TimeoutError | ConnectionError):
        return True
    if isinstance(exc, PROGRAMMING_ERRORS):
        return False
    return None


def _retry_after(exc: Exception) -> float | None:
    """*exc*'s finite ``retry_after`` (a server's ``Retry-After``), if any."""
    hint = getattr(exc, "retry_after", None)
    if isinstance(hint, int | float) and math.isfinite(hint):
        return float(hint)
    return None


def _config_or_default(config: RetryConfig | None) -> RetryConfig:
    return RetryConfig() if config is None else config


@attrs.frozen(kw_only=True)
class RetryMetrics:
    """
    A snapshot of a retry manager's counters.

    ``total_calls == successful_calls + failed_calls + cancelled_calls``.

    .. versionadded:: 0.1.0
    """

    name: str
    """The retry manager's name."""
    total_calls: int
    """Calls that ended, in every outcome."""
    successful_calls: int
    """Calls that returned, on any attempt."""
    failed_calls: int
    """Calls that raised after their last attempt."""
    cancelled_calls: int
    """Calls whose caller was cancelled: never retried, never a failure."""
    retried_calls: int
    """Calls that needed at least one retry, whatever their outcome."""
    total_attempts: int
    """Attempts made, first attempts included."""
    total_retries: int
    """Attempts after the first (``total_attempts - total_calls``)."""
    exhausted_calls: int
    """Failed calls that used up ``max_attempts``."""
    budget_exhausted_calls: int
    """Failed calls stopped by ``max_elapsed`` or the caller's deadline."""
    non_retryable_failures: int
    """Failed calls whose error was not retryable."""
    retry_budget_exhausted_calls: int = 0
    """Failed calls whose retry a retry budget refused (see
    :class:`~resilient_mcp.RetryBudget`)."""


@final
@attrs.define(eq=False, repr=False, on_setattr=attrs.setters.NO_OP)
class RetryManager:
    """
    Try a failing call again, waiting longer each time.

    Like redialling a busy number: the first retry comes after
    ``initial_delay`` seconds, each further one waits ``backoff_factor``
    times longer (never more than ``max_delay``), and a little jitter keeps
    a crowd of callers from redialling in lockstep.

    >>> retry = RetryManager(RetryConfig(max_attempts=5, initial_delay=0.5))
    >>> # result = await retry.call(fetch, url)

    Args:
        config: The configuration; ``None`` for the defaults.
        name: A name for logs and metrics.
        rng: The random source for jitter; pass a seeded
            :class:`random.Random` for repeatable delays.

    .. versionadded:: 0.1.0
    """

    config: RetryConfig = attrs.field(
        default=None, converter=_config_or_default
    )
    name: str = attrs.field(default="default", kw_only=True)
    rng: random.Random = attrs.field(factory=random.Random, kw_only=True)

    _successes: int = attrs.field(init=False, default=0)
    _failures: int = attrs.field(init=False, default=0)
    _cancelled: int = attrs.field(init=False, default=0)
    _retried: int = attrs.field(init=False, default=0)
    _retries: int = attrs.field(init=False, default=0)
    _exhausted: int = attrs.field(init=False, default=0)
    _budget: int = attrs.field(init=False, default=0)
    _non_retryable: int = attrs.field(init=False, default=0)
    _refused_by_budget: int = attrs.field(init=False, default=0)
    # The plan of call(), made on first use.
    _plan: Plan | None = attrs.field(init=False, default=None)

    def __repr__(self) -> str:
        return (
            f"<RetryManager {self.name!r} max_attempts="
            f"{self.config.max_attempts}, {self._retries} retries so far>"
        )

    async def call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """
        Run ``await fn(*args)``, retrying retryable failures.

        Args:
            fn: An async callable; pass keyword arguments with
                :func:`functools.partial`.
            *args: Its positional arguments.

        Returns:
            What *fn* returned on the first attempt that succeeded.

        Raises:
            Exception: A non-retryable error at once, unchanged; or, once
                the attempts or the time budget run out, the last error,
                unchanged but for a note saying how many attempts were
                made.  Cancellation is never retried.
        """
        plan = self._plan
        if plan is None:
            plan = self._plan = Plan(retry=self)
        return await plan.run(fn, args)

    def is_retryable(self, exc: BaseException) -> bool:
        """
        Decide whether *exc* is worth another attempt.

        In this order: cancellation and other non-:class:`Exception`
        errors never are.  :class:`TemporaryError` always is and
        :class:`PermanentError` never.  Otherwise ``is_retryable`` decides
        when configured.  Errors from an open circuit or a full bulkhead
        are not retried: retrying them at once cannot help.  Every
        :class:`TimeoutError` and :class:`ConnectionError` (subclasses
        included) is retried, and Python's programming errors
        (:data:`PROGRAMMING_ERRORS`: :class:`TypeError`,
        :class:`ValueError`, :class:`KeyError`, ...) never are, whatever
        their message.  Any other error is retryable when one of
        ``retryable_errors`` occurs, case-insensitively, in its message or
        its type name.

        .. versionchanged:: 0.1.0
           Timeouts and connection errors are retried, and programming
           errors are not, by type.
        """
        if not isinstance(exc, Exception):
            return False
        if isinstance(exc, TemporaryError):
            return True
        if isinstance(exc, PermanentError):
            return False
        predicate = self.config.is_retryable
        if predicate is not None:
            return bool(predicate(exc))
        by_type = _by_type(exc)
        if by_type is not None:
            return by_type
        fragments = self.config.retryable_errors
        text = str(exc).lower()
        kind = type(exc).__name__.lower()
        return any(f in text or f in kind for f in fragments)

    # -- the retry loop's interface (see _engine.RetryLoop) -------------

    def next_delay(  # noqa: PLR0917 (one call per failed attempt)
        self,
        exc: Exception,
        attempt: int,
        previous: float,
        start: float,
        now: float,
        deadline: float,
        retry_if: Callable[[Exception], bool] | None = None,
    ) -> float | None:
        """
        Decide, after attempt number *attempt* failed with *exc* at *now*.

        Args:
            exc: The attempt's error.
            attempt: Its number, from 1.
            previous: The delay before it (ignored for the first).
            start: Event-loop time the call started (for ``max_elapsed``).
            now: Event-loop time the attempt ended.
            deadline: The caller's deadline (``inf`` for none): no wait
                that would end after it is started.
            retry_if: Decides retryability instead of
                :meth:`is_retryable` (cancellation is never retried).

        Returns:
            Seconds to wait before the next attempt (then the engine
            calls :meth:`backoff`, or :meth:`refused` when a policy would
            reject that attempt); or ``None`` to give up and let *exc*
            propagate, which is then counted and, after more than one
            attempt or a refused ``Retry-After``, carries a note saying
            why.
        """
        config = self.config
        retryable = self.is_retryable if retry_if is None else retry_if
        why: str | None = None
        if not retryable(exc):
            self._non_retryable += 1
            if attempt > 1:
                why = "not retryable"
        elif attempt >= config.max_attempts:
            self._exhausted += 1
            why = "attempts exhausted"
        else:
            if attempt == 1:
                previous = config.initial_delay
            hint = None if _testing else _retry_after(exc)
            cap = config.max_retry_after
            if hint is not None and cap is not None and hint > cap:
                why = (
                    f"the server asked to wait {hint:g}s, more than "
                    f"max_retry_after ({cap:g}s)"
                )
            else:
                delay = self._delay(attempt, previous, hint)
                why = self._over_budget(now + delay, start, deadline)
                if why is None:
                    return delay
            self._budget += 1
        self._failures += 1
        if why is not None:
            self._note(exc, attempt, why)
        return None

    async def backoff(
        self, exc: Exception, attempt: int, delay: float
    ) -> None:
        """
        Wait *delay* seconds before retrying after attempt *attempt*.

        Logs the "Retrying in" line first, and counts the retry
        once the wait is over.
        """
        if attempt == 1:
            self._retried += 1
        logger.info(
            "%s: attempt %d/%d failed (%s: %s); Retrying in %.3fs",
            self.name,
            attempt,
            self.config.max_attempts,
            type(exc).__name__,
            exc,
            delay,
        )
        await sleep(delay)
        self._retries += 1

    def refused(self, rejection: Exception, attempt: int) -> None:
        """
        The call ends with *rejection* instead of a wait.

        An attempt policy (an open circuit breaker) would reject the next
        attempt when the wait ended, so no wait began: the call fails
        with that policy's error (a failure that is not retryable).
        """
        self._non_retryable += 1
        self._failures += 1
        self._note(
            rejection,
            attempt,
            "the next attempt would be rejected when the wait ended",
        )

    def give_up(self, exc: Exception, attempt: int, why: str) -> None:
        """
        The call ends with *exc* after attempt *attempt*, for *why*.

        For a retry loop around this manager that refuses a retry this
        manager wanted (a retry budget): counted as a failure (in
        ``retry_budget_exhausted_calls``), with the note saying *why*.
        """
        self._refused_by_budget += 1
        self._failures += 1
        self._note(exc, attempt, why)

    def leave(
        self,
        permit: object,
        now: float,
        elapsed: float,
        error: BaseException | None,
    ) -> None:
        """
        Count how a call ended (failures are counted as they give up).

        A call cancelled is never a failure, and never retried.
        """
        if error is None:
            self._successes += 1
        elif not isinstance(error, Exception):
            self._cancelled += 1

    def _delay(
        self, attempt: int, previous: float, hint: float | None
    ) -> float:
        if _testing:
            return 0.0
        delay = compute_delay(self.config, attempt - 1, previous, self.rng)
        # A server's own word (Retry-After) beats our guess, up to
        # max_retry_after (checked before).
        if hint is not None:
            delay = max(delay, hint)
        return delay

    def _over_budget(
        self, wake: float, start: float, deadline: float
    ) -> str | None:
        max_elapsed = self.config.max_elapsed
        if max_elapsed is not None and wake - start > max_elapsed:
            return f"max_elapsed of {max_elapsed:g}s would be exceeded"
        if wake >= deadline:
            return "the caller's deadline would pass during the wait"
        return None

    @staticmethod
    def _note(exc: BaseException, attempts: int, why: str) -> None:
        plural = "attempt" if attempts == 1 else "attempts"
        exc.add_note(
            f"resilient_mcp: gave up after {attempts} {plural} ({why})"
        )

    def metrics(self) -> RetryMetrics:
        """
        Take a snapshot of the retry counters.

        Returns:
            A frozen :class:`RetryMetrics`.
        """
        total = self._successes + self._failures + self._cancelled
        return RetryMetrics(
            name=self.name,
            total_calls=total,
            successful_calls=self._successes,
            failed_calls=self._failures,
            cancelled_calls=self._cancelled,
            retried_calls=self._retried,
            total_attempts=total + self._retries,
            total_retries=self._retries,
            exhausted_calls=self._exhausted,
            budget_exhausted_calls=self._budget,
            non_retryable_failures=self._non_retryable,
            retry_budget_exhausted_calls=self._refused_by_budget,
        )

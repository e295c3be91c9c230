"""
The whole exception tree of resilient_mcp, and its error triage.

Every error the library raises on its own account derives from
:class:`ResilienceError`.  Errors that callers already know how to catch
also derive from the standard type they expect: a :class:`CallTimeout` is
a :class:`TimeoutError`.  Errors raised by the wrapped operation itself
are never wrapped: when retries run out, the last real error is re-raised
unchanged (with a note saying how many attempts were made).
"""

from __future__ import annotations

import enum

from typing import TYPE_CHECKING, Any


if TYPE_CHECKING:
    from ._breaker_core import CircuitState


def _rebuild(
    cls: type[BaseException], args: tuple[Any, ...], state: dict[str, Any]
) -> BaseException:
    """
    Unpickle an error of ours: its ``args``, then every attribute.

    ``__init__`` is not called again: a subclass may take other arguments
    than those the message was built from.
    """
    error = cls.__new__(cls, *args)
    error.args = args
    error.__dict__.update(state)
    return error


def _seconds(value: object) -> str:
    """*value* as a number of seconds, whatever it is: never fails."""
    if isinstance(value, int | float):
        return f"{value:g}"
    return repr(value)


class ResilienceError(Exception):
    """
    Root of every error raised by resilient_mcp itself.

    .. versionadded:: 0.1.0
    """

    def __reduce__(self) -> tuple[Any, ...]:
        # Every attribute travels, keyword-only ones included (the default
        # would call __init__ with ``args`` alone).
        return (_rebuild, (type(self), self.args, self.__dict__))


class TemporaryError(ResilienceError):
    """
    A failure that is expected to go away: always retried.

    Raise it from an operation to tell the retry policy that trying again
    is safe and useful, whatever its ``retryable_errors`` say.

    Args:
        message: What went wrong.
        cause: The underlying exception, if any; also set as ``__cause__``.
        retry_after: Seconds the failing service asked us to wait (for
            example an HTTP ``Retry-After`` header), or ``None``.  The retry
            policy never waits less than this before the next attempt.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        message: str,
        cause: BaseException | None = None,
        *,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.cause = cause
        self.retry_after = retry_after
        if cause is not None:
            # Declared as BaseException's own, for type checkers.
            self.__cause__: BaseException | None = cause


class PermanentError(ResilienceError):
    """
    A failure that no retry can fix: never retried.

    It also does not count against a circuit breaker by default, because
    it says something about the request (bad arguments, an unknown
    method), not about the health of the service.

    Args:
        code: A short machine-readable code (a string or an int, for
            example a JSON-RPC error code).
        message: What went wrong.

    .. versionadded:: 0.1.0
    """

    def __init__(self, code: str | int, message: str) -> None:
        super().__init__(f"[{code}] {message}")
        self.code = code
        self.message = message


class CircuitBreakerError(ResilienceError):
    """
    Raised instead of calling the operation while a circuit is open.

    Also raised in the half-open state for calls beyond the allowed number
    of concurrent probes.

    Attributes:
        name: The breaker's name.
        state: The breaker's state when the call was rejected (``None``:
            not said; the message then calls it open).
        retry_after: Seconds until the breaker will let a probe through, or
            ``None`` when that is not known (forced open, or half-open).

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        name: str,
        state: CircuitState | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.name = name
        self.state = state
        self.retry_after = retry_after
        where = "OPEN" if state is None else getattr(state, "name", state)
        when = ""
        if isinstance(retry_after, int | float):
            when = f"; retry after {retry_after:.3f}s"
        super().__init__(
            f"Circuit breaker {name!r} is {where}: call rejected{when}"
        )


class BulkheadError(ResilienceError):
    """
    Raised when a bulkhead has neither a free slot nor room in its queue.

    Attributes:
        resource_name: The bulkhead's name.
        queue_full: True when the call was rejected because the waiting
            queue was full (the only reason a call is rejected at once).

    .. versionadded:: 0.1.0
    """

    def __init__(self, resource_name: str, *, queue_full: bool = True) -> None:
        self.resource_name = resource_name
        self.queue_full = queue_full
        reason = "queue full" if queue_full else "no capacity"
        super().__init__(
            f"Bulkhead {resource_name!r} rejected the call: {reason}"
        )


class RateLimitedError(ResilienceError):
    """
    Raised when a rate limiter turns a call away: its turn was too far.

    A call over the rate waits for its turn up to the limiter's
    ``max_wait``; one whose turn is further away is rejected at once with
    this error, and the operation is not called.

    Attributes:
        name: The rate limiter's name.
        retry_after: Seconds until a call would be admitted (calls waiting
            already come first).

    .. versionadded:: 0.1.0
    """

    def __init__(self, name: str, *, retry_after: float) -> None:
        self.name = name
        self.retry_after = retry_after
        super().__init__(
            f"Rate limiter {name!r} rejected the call; retry after "
            f"{_seconds(retry_after)}s"
        )


class ThrottledError(ResilienceError):
    """
    Raised instead of sending a call that client-side throttling dropped.

    The :class:`~resilient_mcp.AdaptiveThrottle` rejects calls locally,
    at random, with the probability of the Google SRE book's adaptive
    throttling, while the backend has been refusing too many of them.

    Attributes:
        name: The throttle's name.
        probability: The rejection probability when the call was dropped.

    .. versionadded:: 0.1.0
    """

    def __init__(self, name: str, probability: float) -> None:
        self.name = name
        self.probability = probability
        super().__init__(
            f"Adaptive throttle {name!r} rejected the call locally "
            f"(rejection probability {_seconds(probability)})"
        )


class CallTimeout(ResilienceError, TimeoutError):  # noqa: N818 (STYLE.md)
    """
    A call did not finish within its time limit.

    It is a :class:`TimeoutError`, so ``except TimeoutError`` catches it.
    It is raised by the circuit breaker's and the pipeline's per-call
    timeout and by a bulkhead's ``request_timeout`` (which bounds the wait
    for a slot plus the run).

    Attributes:
        timeout: The limit that expired, in seconds.
        where: What imposed the limit, for example ``"bulkhead 'tools'"``.

    .. versionadded:: 0.1.0
    """

    def __init__(self, timeout: float, where: str) -> None:
        self.timeout = timeout
        self.where = where
        super().__init__(f"{where}: call timed out after {_seconds(timeout)}s")


class RecoveryAction(enum.Enum):
    """
    What to do about an error: the answer of :func:`classify_error`.

    .. versionadded:: 0.1.0
    """

    RETRY_WITH_BACKOFF = "retry_with_backoff"
    """A temporary error: retry with exponential backoff."""
    FAIL_FAST = "fail_fast"
    """The circuit is open: fail at once, don't retry now."""
    QUEUE_OR_REJECT = "queue_or_reject"
    """A bulkhead is full: queue the work elsewhere or reject it."""
    LOG_AND_FAIL = "log_and_fail"
    """A permanent error: log it and fail; retrying cannot help."""
    RETRY_LIMITED = "retry_limited"
    """Anything else: retry a limited number of times at most."""


def classify_error(exc: BaseException) -> RecoveryAction:
    """
    Triage an error: which :class:`RecoveryAction` suits it.

    Args:
        exc: Any exception.

    Returns:
        The recovery action for *exc*: :class:`TemporaryError` gives
        ``RETRY_WITH_BACKOFF``, :class:`CircuitBreakerError` ``FAIL_FAST``,
        :class:`BulkheadError` ``QUEUE_OR_REJECT``, :class:`PermanentError`
        ``LOG_AND_FAIL``, and anything else ``RETRY_LIMITED``.

    .. versionadded:: 0.1.0
    """
    if isinstance(exc, TemporaryError):
        return RecoveryAction.RETRY_WITH_BACKOFF
    if isinstance(exc, CircuitBreakerError):
        return RecoveryAction.FAIL_FAST
    if isinstance(exc, BulkheadError):
        return RecoveryAction.QUEUE_OR_REJECT
    if isinstance(exc, PermanentError):
        return RecoveryAction.LOG_AND_FAIL
    return RecoveryAction.RETRY_LIMITED

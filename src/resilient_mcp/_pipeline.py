"""
The composition of the policies, and the only place that sets their order.

A call goes through the bulkhead, then the retry loop, then the circuit
breaker, then the timeout, as the seed orders them:

    bulkhead( retry( breaker( timeout( operation ) ) ) )

* The bulkhead is outermost, so that a call holds one slot for all its
  attempts and a flood of retries cannot take more slots than callers.
* The retry loop is outside the breaker, so that every attempt is judged
  by the breaker and an open circuit stops the retries at once (an open
  circuit's error is not retryable).
* The timeout is innermost, per attempt, so that a timed-out attempt
  counts as a breaker failure and may be retried.

There is no nursery per call: a call has no concurrency of its own to
supervise, and each policy is a cancel scope or a ``try`` in the caller's
own task, so cancellation and errors propagate exactly as if the operation
had been awaited directly.

Each policy is a layer of its own (``_counted``, the bulkhead,
``_retrying``, ``_attempt``, the breaker's ``guard``), but most calls find
a free slot and a closed circuit and succeed at once, and for them the
layers cost more than the work: a coroutine frame and a clock read each.
So :meth:`ResiliencePipeline.call` runs that common case in one coroutine,
reading the clock once at the start and once at the end for every policy,
and hands anything else (a full bulkhead, an open or half-open circuit, a
failed first attempt) to the layers at the point where it happens.
"""

from __future__ import annotations

import enum
import math

from collections.abc import Awaitable, Callable, Mapping
from types import MappingProxyType
from typing import Any, Final, TypeVar, final

import attrs

from ._breaker import CLOSED, CircuitBreaker, CircuitBreakerMetrics
from ._bulkhead import Bulkhead, BulkheadMetrics
from ._config import BulkheadConfig, CircuitBreakerConfig, RetryConfig
from ._errors import BulkheadError, CallTimeout, CircuitBreakerError
from ._metrics import LatencyRecorder, LatencySnapshot
from ._retry import RetryManager, RetryMetrics
from ._timeouts import (
    WOULD_BLOCK,
    DeadlineAware,
    DeadlineExpired,
    DeadlinePassed,
    clock_and_scope,
    current_time,
    deadline_scope,
    run_bounded,
)
from .instrumentation._otel import CallTracer, call_tracer


T = TypeVar("T")


class Outcome(enum.Enum):
    """
    How a call through a pipeline ended; each call has exactly one.

    .. versionadded:: 0.1.0
    """

    SUCCESS = "success"
    """The operation returned."""
    CIRCUIT_OPEN = "circuit_open"
    """Rejected by an open circuit (fast fail)."""
    BULKHEAD_FULL = "bulkhead_full"
    """Rejected by a full bulkhead."""
    TIMEOUT = "timeout"
    """Ended by a timeout (the last attempt's, or the bulkhead's)."""
    RETRIES_EXHAUSTED = "retries_exhausted"
    """A retryable error that outlasted the attempts or the time budget."""
    ERROR = "error"
    """Any other error (not retryable, or no retry configured)."""
    CANCELLED = "cancelled"
    """The caller was cancelled: neither a success nor a failure."""


_OUTCOMES: Final = tuple(Outcome)
_INDEX: Final = {outcome: i for i, outcome in enumerate(_OUTCOMES)}
_SUCCESS: Final = _INDEX[Outcome.SUCCESS]
_CANCELLED: Final = _INDEX[Outcome.CANCELLED]

FAILURE_OUTCOMES: Final = tuple(
    o for o in Outcome if o not in (Outcome.SUCCESS, Outcome.CANCELLED)
)
"""The failure outcomes, in declaration order."""


@attrs.frozen(kw_only=True)
class PipelineMetrics:
    """
    A snapshot of a pipeline's counters and of its policies' metrics.

    ``total_requests == successful_requests + failed_requests +
    cancelled_requests``, and ``failed_requests`` is the sum of
    ``outcomes`` over the failure kinds.

    .. versionadded:: 0.1.0
    """

    name: str
    """The pipeline's name."""
    total_requests: int
    """Calls that ended."""
    successful_requests: int
    """Calls that returned."""
    failed_requests: int
    """Calls that raised (every kind of failure)."""
    cancelled_requests: int
    """Calls whose caller was cancelled."""
    retried_requests: int
    """Calls that needed at least one retry."""
    circuit_breaker_trips: int
    """Times the circuit opened."""
    bulkhead_rejections: int
    """Calls rejected by the bulkhead."""
    outcomes: Mapping[Outcome, int]
    """Calls per :class:`Outcome`, every outcome present."""
    circuit_breaker: CircuitBreakerMetrics | None
    """The breaker's own metrics, if there is a breaker."""
    retry: RetryMetrics | None
    """The retry manager's own metrics, if there is one."""
    bulkhead: BulkheadMetrics | None
    """The bulkhead's own metrics, if there is one."""
    latency: LatencySnapshot | None
    """
    Latency of every call that ended (all outcomes, from entering the
    pipeline to leaving it), if the pipeline records to a recorder.
    """


_UNSET: Any = object()


def _policy(value: Any) -> Any:
    # Configs become policies in __attrs_post_init__, named after the
    # pipeline (two pipelines' policies must not share the name "default").
    return value


@final
@attrs.define(eq=False, repr=False, on_setattr=attrs.setters.NO_OP)
class ResiliencePipeline:
    """
    Bulkhead, retry, circuit breaker and timeout around any async call.

    Each policy is optional; give a config to get a fresh policy, or an
    instance to share one between pipelines (one breaker per server, say,
    shared by every operation that calls it).

    >>> pipeline = ResiliencePipeline(
    ...     bulkhead=BulkheadConfig(name="tools"),
    ...     retry=RetryConfig(max_attempts=3),
    ...     circuit_breaker=CircuitBreakerConfig(failure_threshold=5),
    ...     timeout=10.0,
    ... )
    >>> # result = await pipeline.call(fetch, url)

    Args:
        bulkhead: A :class:`Bulkhead`, a :class:`BulkheadConfig`, or None.
        retry: A :class:`RetryManager`, a :class:`RetryConfig`, or None.
        circuit_breaker: A :class:`CircuitBreaker`, a
            :class:`CircuitBreakerConfig`, or None.
        timeout: Seconds each attempt may take, or ``None`` for no limit.
            By default, the breaker's ``request_timeout`` when there is a
            breaker, else none.  The breaker's own timeout is never
            applied a second time.
        name: A name for logs and metrics.
        recorder: A :class:`LatencyRecorder` that gets the duration of
            every call (all outcomes) under *record_key*; ``None`` to
            record nothing.
        record_key: The recorder key; the pipeline's *name* by default.
        retry_if: Decides which errors calls through *this* pipeline
            retry, instead of the retry manager's own ``is_retryable``
            (cancellation is never retried).  The MCP client uses it to
            retry a call that may have side effects only when the request
            provably never left the client.

    .. versionadded:: 0.1.0
    """

    bulkhead: Bulkhead | None = attrs.field(
        default=None, converter=_policy, kw_only=True
    )
    retry: RetryManager | None = attrs.field(
        default=None, converter=_policy, kw_only=True
    )
    circuit_breaker: CircuitBreaker | None = attrs.field(
        default=None, converter=_policy, kw_only=True
    )
    timeout: float | None = attrs.field(default=_UNSET, kw_only=True)
    name: str = attrs.field(default="default", kw_only=True)
    retry_if: Callable[[Exception], bool] | None = attrs.field(
        default=None, kw_only=True
    )
    recorder: LatencyRecorder | None = attrs.field(default=None, kw_only=True)
    record_key: str | None = attrs.field(default=None, kw_only=True)

    _where: str = attrs.field(init=False)
    _key: str = attrs.field(init=False)
    # Counts per outcome, indexed by _INDEX: a list, because hashing an
    # Enum member runs Python code (about 0.2 us twice per call).
    _counts: list[int] = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._build_policies()
        if self.timeout is _UNSET:
            breaker = self.circuit_breaker
            self.timeout = (
                breaker.config.request_timeout if breaker is not None else None
            )
        elif self.timeout is not None:
            timeout: Any = self.timeout
            if (
                not isinstance(timeout, int | float)
                or isinstance(timeout, bool)
                or not 0 < timeout < float("inf")
            ):
                from ._config import ConfigurationError  # noqa: PLC0415

                raise ConfigurationError(
                    "ResiliencePipeline.timeout must be a finite number of "
                    f"seconds > 0 or None, got {timeout!r}"
                )
            self.timeout = float(timeout)
        self._where = f"pipeline {self.name!r}"
        self._key = self.name if self.record_key is None else self.record_key
        self._counts = [0] * len(_OUTCOMES)

    def _build_policies(self) -> None:
        name = self.name
        bulkhead: Any = self.bulkhead
        if isinstance(bulkhead, BulkheadConfig):
            if bulkhead.name == "default":
                bulkhead = attrs.evolve(bulkhead, name=name)
            self.bulkhead = Bulkhead(bulkhead)
        retry: Any = self.retry
        if isinstance(retry, RetryConfig):
            self.retry = RetryManager(retry, name=name)
        breaker: Any = self.circuit_breaker
        if isinstance(breaker, CircuitBreakerConfig):
            self.circuit_breaker = CircuitBreaker(breaker, name=name)

    @property
    def key(self) -> str:
        """The key latencies are recorded under (``record_key`` or name)."""
        return self._key

    def __repr__(self) -> str:
        parts = [
            f"bulkhead={self.bulkhead!r}",
            f"retry={self.retry!r}",
            f"circuit_breaker={self.circuit_breaker!r}",
            f"timeout={self.timeout!r}",
        ]
        return f"<ResiliencePipeline {self.name!r} {', '.join(parts)}>"

    async def call(  # noqa: C901, PLR0912, PLR0915 (inlined hot path)
        self, fn: Callable[..., Awaitable[T]], *args: Any
    ) -> T:
        """
        Run ``await fn(*args)`` through every configured policy.

        Args:
            fn: An async callable; pass keyword arguments with
                :func:`functools.partial`.
            *args: Its positional arguments.

        Returns:
            What *fn* returned.

        Raises:
            BulkheadError: The bulkhead was full.
            CircuitBreakerError: The circuit was open.
            CallTimeout: An attempt, or the bulkhead's wait plus run, took
                too long (the last attempt's, when retries ran out).
            Exception: The operation's own last error, unchanged.
        """
        tracer = call_tracer()
        if tracer is not None:
            return await self._call_traced(tracer, fn, args)
        breaker = self.circuit_breaker
        if breaker is not None and breaker._state is not CLOSED:
            return await self._call_layered(fn, args)
        # The common case, every layer inlined into this one coroutine: a
        # free slot, a closed circuit, and a first attempt that succeeds.
        # Each policy does here exactly what its layer does (the comments
        # name the method), with one clock read at the start and one at
        # the end shared by all of them.  Anything else leaves this path
        # at the point where it happens, for the layers' own code.
        now, cancel_scope = clock_and_scope()
        start = now()
        bulkhead = self.bulkhead
        deadline = math.inf
        if bulkhead is not None:
            # Bulkhead.call_deferring_deadline
            borrower = object()
            limiter = bulkhead._limiter or bulkhead._make_limiter()
            try:
                limiter.acquire_on_behalf_of_nowait(borrower)
            except WOULD_BLOCK:
                queued = True
            else:
                queued = False
            if queued:  # outside the `except` block, as in Bulkhead.call
                return await self._call_layered(fn, args, start, borrower)
            bulkhead._zero_waits += 1
            bulkhead._active += 1
            if bulkhead._timeout is not None:
                deadline = start + bulkhead._timeout
        recorder = self.recorder
        retry = self.retry
        timeout = self.timeout
        permit = breaker._generation if breaker is not None else 0
        first: Exception | None = None
        try:
            try:
                try:
                    # run_bounded: one scope for the attempt's timeout and
                    # the bulkhead's deadline, none if both are infinite.
                    if timeout is None and deadline == math.inf:
                        result = await fn(*args)
                    else:
                        own = math.inf if timeout is None else start + timeout
                        limit = own
                        # A comparison, not min(): no call on the hot path.
                        if deadline < own:
                            limit = deadline
                        if type(fn) is DeadlineAware:
                            # It enforces the limit in a scope of its own.
                            try:
                                result = await fn.run(limit, *args)
                                expired = False
                            except DeadlinePassed:
                                expired = True
                        else:
                            with cancel_scope(deadline=limit) as scope:
                                result = await fn(*args)
                            expired = scope.cancelled_caught
                        if expired:
                            if own < deadline:
                                assert timeout is not None  # noqa: S101
                                raise CallTimeout(  # noqa: TRY301
                                    timeout,
                                    self._where
                                    if breaker is None
                                    else breaker._where,
                                )
                            raise DeadlineExpired  # noqa: TRY301
                except Exception as exc:
                    first = exc
                except BaseException:
                    # Cancelled, or the bulkhead's deadline passed: neither
                    # a failure nor retried (CircuitBreaker.guard,
                    # _retrying).
                    if breaker is not None:
                        breaker.on_cancel(permit)
                    if retry is not None:
                        retry._cancelled += 1
                    raise
                if first is None:
                    end = (
                        now()
                        if breaker is not None or recorder is not None
                        else 0.0
                    )
                    if breaker is not None:
                        if breaker._plain:
                            # CircuitBreaker.on_success, for count mode
                            # without a slow-call limit.
                            breaker._successes += 1
                            breaker._last_success = end
                            if permit == breaker._generation:
                                breaker._cur_successes += 1
                        else:
                            breaker.on_success(permit, end, end - start)
                    if retry is not None:
                        retry._successes += 1
                else:
                    # The first attempt failed: on to the retry loop, out
                    # of the `except` block, still holding the slot.
                    if breaker is not None:
                        breaker.on_failure(permit, now(), first)
                    if retry is None:
                        raise first
                    result = await self._retry_after(
                        first, fn, args, start, deadline
                    )
                    end = now()
            except DeadlineExpired:
                # Bulkhead.call_deferring_deadline: its deadline passed.
                assert bulkhead is not None  # noqa: S101
                assert bulkhead._timeout is not None  # noqa: S101
                bulkhead._timed_out += 1
                raise CallTimeout(bulkhead._timeout, bulkhead._where) from None
            finally:
                if bulkhead is not None:
                    bulkhead._active -= 1
                    bulkhead._completed += 1
                    limiter.release_on_behalf_of(borrower)
        except Exception as exc:
            # _counted, and the recording in _call_layered.
            self._counts[_INDEX[self._classify(exc)]] += 1
            if recorder is not None:
                recorder.record(self._key, now() - start)
            raise
        except BaseException:
            self._counts[_CANCELLED] += 1
            if recorder is not None:
                recorder.record(self._key, now() - start)
            raise
        self._counts[_SUCCESS] += 1
        if recorder is not None:
            recorder.record(self._key, end - start)
        return result

    async def _call_layered(
        self,
        fn: Callable[..., Awaitable[T]],
        args: tuple[Any, ...],
        start: float | None = None,
        borrower: object = None,
    ) -> T:
        """
        :meth:`call` through every policy's own layer, for the uncommon.

        *start* is when the call entered :meth:`call`, if it has read the
        clock; *borrower* the queued call's token if the bulkhead has
        already turned it away from a free slot.
        """
        recorder = self.recorder
        if recorder is None:
            return await self._counted(fn, args, borrower)
        if start is None:
            start = current_time()
        try:
            return await self._counted(fn, args, borrower)
        finally:
            recorder.record(self._key, current_time() - start)

    async def _call_traced(
        self,
        tracer: CallTracer,
        fn: Callable[..., Awaitable[T]],
        args: tuple[Any, ...],
    ) -> T:
        """:meth:`call` inside an OpenTelemetry span (only when enabled)."""
        entered = current_time()
        runs = 0
        first_run: float | None = None

        async def attempt(*attempt_args: Any) -> T:
            nonlocal runs, first_run
            runs += 1
            if first_run is None:
                first_run = current_time()
            return await fn(*attempt_args)

        span = tracer.start(self.name)
        error: BaseException | None = None
        try:
            try:
                return await self._counted(attempt, args)
            finally:
                if self.recorder is not None:
                    self.recorder.record(self._key, current_time() - entered)
        except BaseException as exc:
            error = exc
            raise
        finally:
            if error is None:
                outcome = Outcome.SUCCESS
            elif isinstance(error, Exception):
                outcome = self._classify(error)
            else:
                outcome = Outcome.CANCELLED
            breaker = self.circuit_breaker
            bulkhead = self.bulkhead
            state = breaker.state if breaker is not None else None
            waited = (
                first_run - entered
                if bulkhead is not None and first_run is not None
                else None
            )
            tracer.finish(
                span,
                outcome=outcome.value,
                attempts=max(runs, 1),
                breaker_name=breaker.name if breaker is not None else None,
                breaker_state=state,
                breaker_failures=(
                    breaker.metrics().current_failures
                    if breaker is not None
                    else None
                ),
                bulkhead_name=bulkhead.name if bulkhead is not None else None,
                bulkhead_wait=waited,
                error=error,
            )

    async def _counted(
        self,
        fn: Callable[..., Awaitable[T]],
        args: tuple[Any, ...],
        borrower: object = None,
    ) -> T:
        result: T
        bulkhead = self.bulkhead
        try:
            if borrower is not None:
                # Queued: Bulkhead.call_deferring_deadline's slow half.
                assert bulkhead is not None  # noqa: S101
                result = await bulkhead._call_queued(
                    self._retrying, (math.inf, fn, args), borrower
                )
            elif bulkhead is not None:
                result = await bulkhead.call_deferring_deadline(
                    self._retrying, fn, args
                )
            else:
                result = await self._retrying(math.inf, fn, args)
        except Exception as exc:
            self._counts[_INDEX[self._classify(exc)]] += 1
            raise
        except BaseException:
            self._counts[_CANCELLED] += 1
            raise
        self._counts[_SUCCESS] += 1
        return result

    async def _retrying(
        self,
        deadline: float,
        fn: Callable[..., Awaitable[T]],
        args: tuple[Any, ...],
    ) -> T:
        # *deadline* is the bulkhead's, handed down so that the first
        # attempt enforces it in its own cancel scope (one scope per call).
        retry = self.retry
        if retry is None:
            return await self._attempt(deadline, fn, args)
        # The retry manager's fast path, inlined: one try, one counter.
        start = current_time() if retry.config.max_elapsed is not None else 0.0
        try:
            result = await self._attempt(deadline, fn, args)
        except Exception as exc:
            first = exc
        except BaseException:
            retry._cancelled += 1
            raise
        else:
            retry._successes += 1
            return result
        return await self._retry_after(first, fn, args, start, deadline)

    async def _retry_after(
        self,
        first: Exception,
        fn: Callable[..., Awaitable[T]],
        args: tuple[Any, ...],
        start: float,
        deadline: float,
    ) -> T:
        """The retry loop after a failed first attempt, in the same slot."""
        retry = self.retry
        assert retry is not None  # noqa: S101
        again = (math.inf, fn, args)
        retried: T
        if deadline == math.inf:
            retried = await retry.retry_after_failure(
                self._attempt, again, first, start, self.retry_if
            )
            return retried
        # From here the bulkhead's deadline bounds the waits between
        # attempts too, so it gets a scope of its own.
        with deadline_scope(deadline):
            retried = await retry.retry_after_failure(
                self._attempt, again, first, start, self.retry_if
            )
            return retried
        raise DeadlineExpired

    async def _attempt(
        self,
        deadline: float,
        fn: Callable[..., Awaitable[T]],
        args: tuple[Any, ...],
    ) -> T:
        breaker = self.circuit_breaker
        if breaker is not None:
            return await breaker.guard(self.timeout, fn, args, deadline)
        timeout = self.timeout
        if timeout is None and deadline == math.inf:
            return await fn(*args)
        return await run_bounded(
            fn, args, timeout, self._where, deadline, current_time()
        )

    def _classify(self, exc: Exception) -> Outcome:
        if isinstance(exc, CircuitBreakerError):
            return Outcome.CIRCUIT_OPEN
        if isinstance(exc, BulkheadError):
            return Outcome.BULKHEAD_FULL
        if isinstance(exc, TimeoutError):
            return Outcome.TIMEOUT
        # A retryable error only escapes the retry loop once the attempts
        # or the time budget are spent.
        retry = self.retry
        if retry is not None and (self.retry_if or retry.is_retryable)(exc):
            return Outcome.RETRIES_EXHAUSTED
        return Outcome.ERROR

    def metrics(self) -> PipelineMetrics:
        """
        Take a snapshot of the pipeline's counters.

        Returns:
            A frozen :class:`PipelineMetrics`.
        """
        counts = dict(zip(_OUTCOMES, self._counts, strict=True))
        breaker = self.circuit_breaker
        retry = self.retry
        bulkhead = self.bulkhead
        breaker_metrics = breaker.metrics() if breaker is not None else None
        retry_metrics = retry.metrics() if retry is not None else None
        bulkhead_metrics = bulkhead.metrics() if bulkhead is not None else None
        failed = sum(counts[o] for o in FAILURE_OUTCOMES)
        return PipelineMetrics(
            name=self.name,
            total_requests=sum(counts.values()),
            successful_requests=counts[Outcome.SUCCESS],
            failed_requests=failed,
            cancelled_requests=counts[Outcome.CANCELLED],
            retried_requests=(
                retry_metrics.retried_calls if retry_metrics else 0
            ),
            circuit_breaker_trips=(
                breaker_metrics.trips if breaker_metrics else 0
            ),
            bulkhead_rejections=counts[Outcome.BULKHEAD_FULL],
            outcomes=MappingProxyType(counts),
            circuit_breaker=breaker_metrics,
            retry=retry_metrics,
            bulkhead=bulkhead_metrics,
            latency=(
                self.recorder.snapshot_or_empty(self._key)
                if self.recorder is not None
                else None
            ),
        )

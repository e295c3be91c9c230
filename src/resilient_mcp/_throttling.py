"""
Client-side adaptive throttling, as the Google SRE book describes it.

Chapter 21 of *Site Reliability Engineering* ("Handling Overload"): each
client counts, over the last two minutes, the ``requests`` it attempted
and the ``accepts`` the backend took, and rejects a new request locally
with probability::

    max(0, (requests - k * accepts) / (requests + 1))

While the backend accepts every request, ``requests <= k * accepts`` and
nothing is dropped.  Once it refuses more than ``1 - 1/k`` of them, the
client starts dropping the excess itself, before it costs the backend
anything, in proportion to how much is refused.  Locally rejected
requests still count as requests (as in the book), so the rejection
probability keeps rising while the backend keeps refusing, and falls
back to zero once the window holds only accepted calls again.

The window is a ring of time buckets, read only at the times the engine
passes (the event loop's clock): memory is ``buckets`` pairs of counts,
whatever the call rate.
"""

from __future__ import annotations

import math
import random
import weakref

from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar, final

import attrs

from ._config import (
    _fail,
    _int_ge,
    _is_number,
    _optional_callable,
    _seconds,
    _seed,
    to_seconds,
)
from ._engine import Plan
from ._errors import PermanentError, ThrottledError
from ._policy import PolicyBase
from ._timeouts import current_time


T = TypeVar("T")

DEFAULT_K: Final = 2.0  # requests allowed per accept (the SRE book's K)
DEFAULT_WINDOW: Final = 120.0  # seconds (the book's two minutes)
DEFAULT_BUCKETS: Final = 120  # buckets per window


def _check_k(inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not _is_number(value) or math.isinf(value) or value < 1:
        _fail(inst, attribute, "a finite number >= 1", value)


@attrs.frozen(kw_only=True)
class ThrottlingConfig:
    """
    How eagerly a client drops calls the backend would refuse anyway.

    A call is rejected locally with probability
    ``max(0, (requests - k * accepts) / (requests + 1))``, where
    ``requests`` and ``accepts`` are counted over the last ``window``
    seconds (see :class:`AdaptiveThrottle` for what each one counts).

    .. versionadded:: 0.1.0
    """

    k: float = attrs.field(
        default=DEFAULT_K, converter=to_seconds, validator=_check_k
    )
    """
    Requests allowed per accepted request before local rejections begin
    (the book's K, 2 by default).  At least 1: with ``k < 1`` a client
    would drop calls of a backend that accepts all of them.  Lower is
    more aggressive; higher lets more requests through to a struggling
    backend.
    """

    window: float = attrs.field(
        default=DEFAULT_WINDOW, converter=to_seconds, validator=_seconds()
    )
    """Seconds of history the counts cover."""

    buckets: int = attrs.field(default=DEFAULT_BUCKETS, validator=_int_ge(1))
    """
    Buckets the window is divided into: it slides ``window / buckets``
    seconds (1 s by default) at a time.
    """

    seed: int | None = attrs.field(default=None, validator=_seed)
    """
    Seed of the throttle's own :class:`random.Random`, for reproducible
    rejections; ``None`` seeds it from the operating system.
    """

    is_accepted: Callable[[Exception], bool] | None = attrs.field(
        default=None, validator=_optional_callable
    )
    """
    Decides whether a call that raised was accepted by the backend.
    ``None`` accepts only a :class:`~resilient_mcp.PermanentError` (a bad
    request the backend answered); every other error is not an accept.
    Cancellation is never either, whatever this says.
    """


@attrs.frozen(kw_only=True)
class ThrottlingMetrics:
    """
    A snapshot of an :class:`AdaptiveThrottle`.

    .. versionadded:: 0.1.0
    """

    name: str
    """The throttle's name."""
    k: float
    """The configured ``k``."""
    requests: int
    """Requests in the window (locally rejected ones included)."""
    accepts: int
    """Calls the backend accepted, in the window."""
    rejection_probability: float
    """The probability the next call is rejected locally, now."""
    total_requests: int
    """Calls that reached the throttle since it was made (every one)."""
    total_accepts: int
    """Accepted calls since the throttle was made."""
    throttled: int
    """Calls rejected locally since the throttle was made."""
    cancelled: int
    """
    Calls whose caller was cancelled (while running, or at the checkpoint
    of their rejection): their requests left the window at once.
    """


def _config_or_default(config: ThrottlingConfig | None) -> ThrottlingConfig:
    return ThrottlingConfig() if config is None else config


def _accepted_by_default(error: Exception) -> bool:
    return isinstance(error, PermanentError)


@final
@attrs.define(eq=False, repr=False, on_setattr=attrs.setters.NO_OP)
class AdaptiveThrottle(PolicyBase):
    """
    Drop calls locally, in proportion to how many the backend refuses.

    Like a shop that sees the warehouse sending back most of its orders:
    instead of sending every order and waiting for the refusal, it keeps
    back a share of them, the larger the more are refused, so the
    warehouse spends its time on the orders it can fill.  Unlike a
    circuit breaker, which stops all calls at once, the throttle lets
    through as many as the backend has been accepting (times ``k``).

    >>> throttle = AdaptiveThrottle(ThrottlingConfig(k=2.0), name="search")
    >>> # result = await throttle.call(search, "query")

    What counts, per call (entered once per call, outside the retries):

    * a *request*: every call that reaches the throttle, the ones it
      rejects locally included (as in the SRE book);
    * an *accept*: a call that returned, or whose final error (after
      the retries) ``is_accepted`` says the backend accepted (by default
      only a :class:`~resilient_mcp.PermanentError`).  Timeouts,
      :class:`~resilient_mcp.TemporaryError`, connection errors and the
      rejections of the policies inside it (an open circuit, a full
      bulkhead, a rate limit) are not accepts;
    * a cancelled call is neither: its request is taken back (if it is
      still in the window), as is a rejection whose caller was cancelled
      at its checkpoint.

    Share one throttle between the pipelines that call one backend.

    Args:
        config: The configuration; ``None`` for the defaults.
        name: A name for errors and metrics.
        rng: The source of randomness; ``None`` for a
            :class:`random.Random` seeded with the config's ``seed``.

    .. versionadded:: 0.1.0
    """

    config: ThrottlingConfig = attrs.field(
        default=None, converter=_config_or_default
    )
    name: str = attrs.field(default="default", kw_only=True)
    _rng: random.Random | None = attrs.field(
        default=None, kw_only=True, alias="rng"
    )
    _random: Callable[[], float] = attrs.field(init=False)
    # The ring: the counts of bucket b are at b % buckets, and _stamps
    # says which bucket a slot holds now.
    _requests: list[int] = attrs.field(init=False)
    _accepts: list[int] = attrs.field(init=False)
    _stamps: list[int] = attrs.field(init=False)
    _head: int | None = attrs.field(init=False, default=None)
    _width: float = attrs.field(init=False)
    _size: int = attrs.field(init=False)
    _k: float = attrs.field(init=False)
    _is_accepted: Callable[[Exception], bool] = attrs.field(init=False)
    # Sums over the window, kept as calls come and buckets go.
    _window_requests: int = attrs.field(init=False, default=0)
    _window_accepts: int = attrs.field(init=False, default=0)
    _total_requests: int = attrs.field(init=False, default=0)
    _total_accepts: int = attrs.field(init=False, default=0)
    _throttled: int = attrs.field(init=False, default=0)
    _cancelled: int = attrs.field(init=False, default=0)
    # The bucket each rejection was counted in, until its checkpoint
    # passes (see withdraw); errors are held weakly.
    _rejections: weakref.WeakKeyDictionary[Exception, int] = attrs.field(
        init=False, factory=weakref.WeakKeyDictionary
    )
    _plan: Plan | None = attrs.field(init=False, default=None)

    def __attrs_post_init__(self) -> None:
        config = self.config
        rng = self._rng
        if rng is None:
            rng = random.Random(config.seed)
        self._random = rng.random
        size = config.buckets
        self._requests = [0] * size
        self._accepts = [0] * size
        self._stamps = [-1] * size
        self._width = config.window / size
        self._size = size
        self._k = config.k
        self._is_accepted = config.is_accepted or _accepted_by_default

    def __repr__(self) -> str:
        return (
            f"<AdaptiveThrottle {self.name!r}: {self._window_requests} "
            f"requests, {self._window_accepts} accepts in the window, "
            f"{self._throttled} throttled>"
        )

    async def call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """
        Run ``await fn(*args)`` through the throttle.

        Returns:
            What *fn* returned.

        Raises:
            ThrottledError: The call was dropped locally; *fn* was not
                called.
            Exception: Whatever *fn* raised, unchanged.
        """
        plan = self._plan
        if plan is None:
            plan = self._plan = Plan(call_policies=(self,))
        return await plan.run(fn, args)

    # -- the window ------------------------------------------------------

    def _advance(self, now: float) -> int:
        """
        Slide the window to *now*; the current bucket.

        The slots of the buckets that begin are emptied (their old counts
        leave the sums): every slot then holds a bucket of the window.
        At most one pass over the ring, whatever the gap.
        """
        bucket = math.floor(now / self._width)
        head = self._head
        size = self.config.buckets
        if head is not None and bucket <= head:
            if bucket > head - size:
                return head  # the same bucket, or a clock a little behind
            # A clock a whole window behind: another event loop's (a
            # shared throttle used on trio, then asyncio).  Start over.
            head = None
        start = bucket - size + 1
        if head is not None:
            start = max(start, head + 1)
        requests, accepts, stamps = self._requests, self._accepts, self._stamps
        for b in range(start, bucket + 1):
            slot = b % size
            self._window_requests -= requests[slot]
            self._window_accepts -= accepts[slot]
            requests[slot] = accepts[slot] = 0
            stamps[slot] = b
        self._head = bucket
        return bucket

    def probability(self) -> float:
        """
        The probability the next call is rejected, as of the last call.

        ``max(0, (requests - k * accepts) / (requests + 1))`` over the
        window as the last call (or outcome) saw it; :meth:`metrics`
        reads it as of now.
        """
        return _formula(
            self._window_requests, self._window_accepts, self.config.k
        )

    # -- the policy interface --------------------------------------------

    def enter_nowait(self, now: float) -> int:
        """
        Admit the call, or drop it with the current probability.

        Either way, the call counts as a request.

        Returns:
            The permit: the bucket its request was counted in.

        Raises:
            ThrottledError: The call was dropped (counted as throttled).
        """
        bucket = math.floor(now / self._width)
        if bucket != self._head:  # a new bucket: slide (rare)
            bucket = self._advance(now)
        requests = self._window_requests
        accepts = self._window_accepts
        self._requests[bucket % self._size] += 1
        self._window_requests = requests + 1
        self._total_requests += 1
        k = self._k
        if requests <= k * accepts:
            return bucket
        probability = (requests - k * accepts) / (requests + 1)
        if self._random() >= probability:
            return bucket
        raise self._refuse(bucket, probability)

    def _refuse(self, bucket: int, probability: float) -> ThrottledError:
        """Count a rejection; the error to raise (no frame holds it)."""
        self._throttled += 1
        error = ThrottledError(self.name, probability)
        self._rejections[error] = bucket
        return error

    def leave(
        self,
        permit: int,
        now: float,
        elapsed: float,  # noqa: ARG002 (the Policy interface)
        error: BaseException | None,
    ) -> None:
        """Count an accept, or take back a cancelled call's request."""
        if error is None or (
            isinstance(error, Exception) and self._is_accepted(error)
        ):
            bucket = math.floor(now / self._width)
            if bucket != self._head:  # a new bucket: slide (rare)
                bucket = self._advance(now)
            self._accepts[bucket % self._size] += 1
            self._window_accepts += 1
            self._total_accepts += 1
        elif not isinstance(error, Exception):
            self._forget(permit)

    def withdraw(self, error: Exception) -> None:
        """A rejection whose caller was cancelled: neither counted."""
        bucket = self._rejections.pop(error, None)
        if bucket is not None:
            self._throttled -= 1
            self._forget(bucket)

    def _forget(self, bucket: int) -> None:
        """Take back the request of a cancelled call, counted in *bucket*."""
        self._cancelled += 1
        slot = bucket % self.config.buckets
        if self._stamps[slot] == bucket:  # still in the window
            self._requests[slot] -= 1
            self._window_requests -= 1

    # -- metrics -----------------------------------------------------------

    def metrics(self) -> ThrottlingMetrics:
        """
        Take a snapshot of the throttle's counts, as of now.

        Reading changes nothing: buckets that left the window since the
        last call are left out here, and dropped by the next call.
        Outside an event loop, the window is read as of the last call.

        Returns:
            A frozen :class:`ThrottlingMetrics`.
        """
        requests, accepts = self._window_requests, self._window_accepts
        now = _now_or_none()
        if now is not None and self._head is not None:
            first = math.floor(now / self._width) - self.config.buckets + 1
            if first > self._head - self.config.buckets + 1:
                live = [i for i, b in enumerate(self._stamps) if b >= first]
                requests = sum(self._requests[i] for i in live)
                accepts = sum(self._accepts[i] for i in live)
        return ThrottlingMetrics(
            name=self.name,
            k=self.config.k,
            requests=requests,
            accepts=accepts,
            rejection_probability=_formula(requests, accepts, self.config.k),
            total_requests=self._total_requests,
            total_accepts=self._total_accepts,
            throttled=self._throttled,
            cancelled=self._cancelled,
        )


def _formula(requests: int, accepts: int, k: float) -> float:
    return max(0.0, (requests - k * accepts) / (requests + 1))


def _now_or_none() -> float | None:
    try:
        return current_time()
    except Exception:  # no event loop running: as of the last call
        return None

"""
Fault injection on demand: latency, errors, hangs and dropped connections.

In the spirit of Polly's chaos strategies (Simmy): a :class:`FaultInjector`
holds a list of faults, each with an injection rate, and decides for every
call which of them strike.  :meth:`FaultInjector.wrap` puts it around any
async callable; :class:`~resilient_mcp.testing.chaos.ChaosTransport` puts
it between an MCP client and its transport, where it can also garble,
misaddress, inflate and reorder the server's answers.

Replaying a run
---------------

Every decision consumes exactly two draws per fault from a
:class:`random.Random` seeded with the injector's ``seed``, whatever the
outcome, so decision *n* is a function of ``(seed, n)`` alone: the same
seed gives the same faults to the same sequence of calls.  (Concurrent
calls are numbered in the order they reach the injector, which on trio
depends on its scheduler; the faults of the run as a whole are the same.)
Without a seed the injector picks one and shows it in its ``repr`` and
:meth:`FaultInjector.metrics`, so a failing run can be replayed.

Latency distributions map one uniform draw ``u`` in [0, 1) to seconds
(an inverse CDF), which is what keeps the number of draws fixed.
"""

from __future__ import annotations

import copy
import enum
import functools
import math
import random
import statistics

from collections.abc import Awaitable, Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any, Final, Protocol, TypeAlias, TypeVar, final

import anyio
import attrs

from .._config import ConfigurationError


T = TypeVar("T")

DEFAULT_OVERSIZED_BYTES: Final = 2 * 1024 * 1024  # bytes of padding
DEFAULT_MAX_HOLD: Final = 1.0  # seconds a reordered answer is held back
_SEED_BITS: Final = 32  # width of a seed picked for the user
_UNIT_NORMAL: Final = statistics.NormalDist()


class ChaosError(Exception):
    """
    What an :class:`Error` fault raises by default.

    .. versionadded:: 0.1.0
    """


class DroppedConnectionError(ConnectionResetError):
    """
    What a :class:`Drop` fault raises around a plain async callable.

    It is a :class:`ConnectionResetError`, so code written for real
    network failures handles it.

    .. versionadded:: 0.1.0
    """


def _fail(inst: object, attribute: attrs.Attribute[Any], rule: str) -> None:
    value = getattr(inst, attribute.name)
    raise ConfigurationError(
        f"{type(inst).__name__}.{attribute.name} must be {rule}, got {value!r}"
    )


def _finite(value: object, *, minimum: float = 0.0) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= minimum
    )


def _rate(inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not (_finite(value) and value <= 1):
        _fail(inst, attribute, "a probability in [0, 1]")


def _seconds(inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not _finite(value):
        _fail(inst, attribute, "a finite number of seconds >= 0")


def _optional_seconds(
    inst: Any, attribute: attrs.Attribute[Any], value: Any
) -> None:
    if value is not None and not _finite(value):
        _fail(inst, attribute, "a finite number of seconds >= 0 or None")


# -- latency distributions ---------------------------------------------------


class DelayDistribution(Protocol):
    """
    A latency distribution, as its inverse CDF.

    ``sample(u)`` maps one uniform draw *u* in [0, 1) to a delay in
    seconds; the injector draws *u*, so one call always consumes one draw.

    .. versionadded:: 0.1.0
    """

    def sample(self, u: float) -> float:
        """The delay, in seconds, at quantile *u* of the distribution."""
        ...


def _cap(value: float, cap: float | None) -> float:
    return value if cap is None else min(value, cap)


@final
@attrs.frozen
class FixedDelay:
    """
    Always the same delay.

    .. versionadded:: 0.1.0
    """

    seconds: float = attrs.field(converter=float, validator=_seconds)
    """The delay, in seconds."""

    def sample(self, u: float) -> float:  # noqa: ARG002 (the protocol)
        """``seconds``, whatever *u*."""
        return self.seconds


@final
@attrs.frozen
class UniformDelay:
    """
    A delay spread evenly between two bounds.

    .. versionadded:: 0.1.0
    """

    low: float = attrs.field(converter=float, validator=_seconds)
    """The shortest delay, in seconds."""
    high: float = attrs.field(converter=float, validator=_seconds)
    """The longest delay, in seconds; at least ``low``."""

    @high.validator
    def _check_high(self, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value < self.low:
            _fail(self, attribute, f">= low ({self.low!r})")

    def sample(self, u: float) -> float:
        """``low + u * (high - low)``."""
        return self.low + u * (self.high - self.low)


@final
@attrs.frozen(kw_only=True)
class ExponentialDelay:
    """
    Exponentially distributed delays: mostly short, now and then long.

    .. versionadded:: 0.1.0
    """

    mean: float = attrs.field(converter=float, validator=_seconds)
    """The mean delay, in seconds."""
    cap: float | None = attrs.field(default=None, validator=_optional_seconds)
    """The longest delay, in seconds, or ``None`` for no cap."""

    def sample(self, u: float) -> float:
        """The exponential quantile ``-mean * ln(1 - u)``, capped."""
        return _cap(-self.mean * math.log1p(-u), self.cap)


@final
@attrs.frozen(kw_only=True)
class LognormalDelay:
    """
    Log-normal delays: the long right tail of real service latencies.

    .. versionadded:: 0.1.0
    """

    median: float = attrs.field(converter=float, validator=_seconds)
    """The median delay, in seconds."""
    sigma: float = attrs.field(
        default=1.0, converter=float, validator=_seconds
    )
    """The standard deviation of the delay's logarithm (the tail's
    weight)."""
    cap: float | None = attrs.field(default=None, validator=_optional_seconds)
    """The longest delay, in seconds, or ``None`` for no cap."""

    def sample(self, u: float) -> float:
        """``median * exp(sigma * z)`` for the normal quantile *z* of *u*."""
        if self.median == 0 or u <= 0:
            return 0.0
        z = _UNIT_NORMAL.inv_cdf(u)
        return _cap(self.median * math.exp(self.sigma * z), self.cap)


def _delay(value: Any) -> Any:
    if _finite(value):
        return FixedDelay(value)
    return value


def _check_distribution(
    inst: Any, attribute: attrs.Attribute[Any], value: Any
) -> None:
    if not callable(getattr(value, "sample", None)):
        _fail(
            inst,
            attribute,
            "a finite number of seconds >= 0 or a DelayDistribution",
        )


# -- the faults --------------------------------------------------------------


@final
@attrs.frozen(kw_only=True)
class Latency:
    """
    Slow the call down: wait before calling (or before answering).

    Latency combines with the other faults: a call can be slowed down and
    then fail.  Around a callable the wait comes before the call; on a
    :class:`~resilient_mcp.testing.chaos.ChaosTransport` the server's
    answer is held back, so answers overtake each other as they would on a
    congested link.

    .. versionadded:: 0.1.0
    """

    delay: DelayDistribution = attrs.field(
        converter=_delay, validator=_check_distribution
    )
    """Seconds to wait, or a distribution to draw them from."""
    rate: float = attrs.field(default=1.0, validator=_rate)
    """Probability that a call is slowed down."""


def _error_factory(value: Any) -> Callable[[], BaseException]:
    if value is None:
        return functools.partial(ChaosError, "injected by resilient_mcp")
    if isinstance(value, BaseException):
        # A fresh copy per call: raising one instance again and again would
        # pile notes and tracebacks onto it.
        return functools.partial(copy.copy, value)
    if callable(value):
        return value  # type: ignore[no-any-return]
    raise ConfigurationError(
        "Error.error must be an exception, an exception class, a callable "
        f"returning an exception, or None, got {value!r}"
    )


@final
@attrs.frozen(kw_only=True)
class Error:
    """
    Fail the call instead of making it.

    Around a callable, the error is raised and the callable is not called.
    On a :class:`~resilient_mcp.testing.chaos.ChaosTransport` the request
    is not sent: it is answered with a JSON-RPC error, an
    :class:`mcp.MCPError`'s code, message and data, or ``-32603`` with the
    error's text for any other exception.

    .. versionadded:: 0.1.0
    """

    rate: float = attrs.field(validator=_rate)
    """Probability that a call fails."""
    error: Callable[[], BaseException] = attrs.field(
        default=None, converter=_error_factory
    )
    """
    What to raise: an exception class or a zero-argument callable
    returning an exception, or an exception instance (copied for every
    call).  ``None`` raises :class:`ChaosError`.
    """


@final
@attrs.frozen(kw_only=True)
class Hang:
    """
    Never answer: the call waits until its caller gives up.

    Around a callable, the call sleeps forever (cancellably) instead of
    running.  On a transport the request is swallowed: never sent, never
    answered.

    .. versionadded:: 0.1.0
    """

    rate: float = attrs.field(validator=_rate)
    """Probability that a call hangs."""


@final
@attrs.frozen(kw_only=True)
class Drop:
    """
    Drop the connection.

    On a transport the connection ends, as if the server had died: every
    request in flight fails and the client sees the end of the stream.
    Around a callable, :class:`DroppedConnectionError` is raised instead
    of calling.

    .. versionadded:: 0.1.0
    """

    rate: float = attrs.field(validator=_rate)
    """Probability that a call drops the connection."""


class Corruption(enum.Enum):
    """
    How a :class:`Corrupt` fault spoils the server's answer.

    .. versionadded:: 0.1.0
    """

    GARBLED_JSON = "garbled_json"
    """The answer is cut in half: text no JSON parser accepts."""
    UNKNOWN_ID = "unknown_id"
    """The answer carries a request id the client never sent."""
    SCHEMA_MISMATCH = "schema_mismatch"
    """Every field of the result has the wrong type: it fails the MCP
    schema of the result."""
    OUTPUT_SCHEMA_MISMATCH = "output_schema_mismatch"
    """A tool result's structured content is replaced by an object its
    output schema does not allow (results without structured content are
    left alone)."""
    OVERSIZED = "oversized"
    """The answer is padded (in its ``_meta``) to ``size`` bytes more."""


@final
@attrs.frozen(kw_only=True)
class Corrupt:
    """
    Spoil the server's answer to the request (transports only).

    .. versionadded:: 0.1.0
    """

    rate: float = attrs.field(validator=_rate)
    """Probability that an answer is spoilt."""
    kind: Corruption = attrs.field(
        validator=attrs.validators.instance_of(Corruption)
    )
    """How it is spoilt."""
    size: int = attrs.field(default=DEFAULT_OVERSIZED_BYTES)
    """Bytes of padding added by :attr:`Corruption.OVERSIZED`."""

    @size.validator
    def _check_size(self, attribute: attrs.Attribute[Any], value: Any) -> None:
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            _fail(self, attribute, "an integer >= 1")


@final
@attrs.frozen(kw_only=True)
class Reorder:
    """
    Deliver the server's answer out of order (transports only).

    The answer is held back until the next message from the server has
    been delivered, or for ``max_hold`` seconds if none comes.

    .. versionadded:: 0.1.0
    """

    rate: float = attrs.field(validator=_rate)
    """Probability that an answer is held back."""
    max_hold: float = attrs.field(
        default=DEFAULT_MAX_HOLD, converter=float, validator=_seconds
    )
    """Seconds an answer waits at most for another to overtake it."""


Fault: TypeAlias = Latency | Error | Hang | Drop | Corrupt | Reorder
"""Any fault a :class:`FaultInjector` can inject."""

Strike: TypeAlias = Error | Hang | Drop | Corrupt | Reorder
"""The faults that decide a call's fate; at most one strikes per call."""

_FAULT_TYPES: Final = (Latency, Error, Hang, Drop, Corrupt, Reorder)
_TRANSPORT_ONLY: Final = (Corrupt, Reorder)


def fault_name(fault: Fault) -> str:
    """
    The name a fault is counted under in :class:`ChaosMetrics`.

    ``"latency"``, ``"error"``, ``"hang"``, ``"drop"``, ``"reorder"``, or
    ``"corrupt:<kind>"`` (for example ``"corrupt:garbled_json"``).

    .. versionadded:: 0.1.0
    """
    if isinstance(fault, Corrupt):
        return f"corrupt:{fault.kind.value}"
    return type(fault).__name__.lower()


# -- decisions and the injector ----------------------------------------------


@final
@attrs.frozen(kw_only=True)
class Decision:
    """
    What the injector decided for one call.

    .. versionadded:: 0.1.0
    """

    index: int
    """The call's number, from 0, in the order calls reached the
    injector."""
    delay: float
    """Seconds of injected latency (0.0 for none)."""
    fault: Strike | None
    """The fault that strikes the call, or ``None``: it goes through."""

    @property
    def names(self) -> tuple[str, ...]:
        """The names of the faults injected into the call, latency first."""
        names: tuple[str, ...] = ("latency",) if self.delay > 0 else ()
        if self.fault is not None:
            names = (*names, fault_name(self.fault))
        return names


@final
@attrs.frozen(kw_only=True)
class ChaosMetrics:
    """
    A snapshot of a :class:`FaultInjector`'s counters.

    ``calls == passed + sum(injected.values()) - injected["latency"]``:
    latency is counted on top of whatever else happened to the call.

    .. versionadded:: 0.1.0
    """

    seed: int
    """The seed of the injector's random source (to replay the run)."""
    calls: int
    """Decisions made: calls (or requests) that reached the injector."""
    passed: int
    """Calls no fault other than latency struck."""
    injected: Mapping[str, int]
    """Faults injected, by :func:`fault_name` (every configured fault
    present)."""
    total_delay: float
    """Seconds of latency injected, summed over the calls."""

    @property
    def faults(self) -> int:
        """Faults injected in all, latency included."""
        return sum(self.injected.values())


def _faults(value: Iterable[Fault]) -> tuple[Fault, ...]:
    faults = tuple(value)
    for fault in faults:
        if not isinstance(fault, _FAULT_TYPES):
            raise ConfigurationError(
                "FaultInjector.faults must contain Latency, Error, Hang, "
                f"Drop, Corrupt or Reorder faults, got {fault!r}"
            )
    return faults


def _seed(value: object) -> int:
    if value is None:
        return random.SystemRandom().getrandbits(_SEED_BITS)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigurationError(
            f"FaultInjector.seed must be an integer or None, got {value!r}"
        )
    return value


@final
@attrs.define(eq=False, repr=False)
class FaultInjector:
    """
    Decide, call by call, which faults strike; and inject them.

    Like a stunt coordinator with a dice: for each call it throws the dice
    once per fault, in order.  A :class:`Latency` that comes up slows the
    call down; the first of the other faults that comes up decides its
    fate; if none does, the call goes through untouched::

        faults = [Latency(delay=0.05), Error(rate=0.3)]
        injector = FaultInjector(faults, seed=7)
        fetch = injector.wrap(fetch)  # any async callable
        transport = ChaosTransport(server, injector)  # or a transport

    Args:
        faults: The faults, in the order their dice are thrown.
        seed: Seeds the random source; ``None`` picks a seed, shown in
            ``repr`` and :meth:`metrics` so that the run can be replayed.
        enabled: Whether faults are injected at all; set the attribute
            to turn chaos on and off while a test runs.  Decisions are
            numbered (and the dice thrown) either way, so switching does
            not shift the decisions that follow.

    Raises:
        ConfigurationError: A fault or the seed is invalid.

    .. versionadded:: 0.1.0
    """

    faults: tuple[Fault, ...] = attrs.field(converter=_faults)
    seed: int = attrs.field(default=None, converter=_seed, kw_only=True)
    enabled: bool = attrs.field(default=True, kw_only=True)

    _rng: random.Random = attrs.field(init=False)
    _calls: int = attrs.field(init=False, default=0)
    _passed: int = attrs.field(init=False, default=0)
    _injected: dict[str, int] = attrs.field(init=False)
    _total_delay: float = attrs.field(init=False, default=0.0)
    _transport_only: bool = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._injected = {fault_name(fault): 0 for fault in self.faults}
        self._transport_only = any(
            isinstance(fault, _TRANSPORT_ONLY) for fault in self.faults
        )

    def __repr__(self) -> str:
        state = "enabled" if self.enabled else "disabled"
        return (
            f"<FaultInjector seed={self.seed} {state}, {self._calls} calls, "
            f"{sum(self._injected.values())} faults injected>"
        )

    def decide(self) -> Decision:
        """
        Number the next call and decide which faults strike it.

        Returns:
            The :class:`Decision`; its counters are already updated.
        """
        index = self._calls
        self._calls += 1
        delay = 0.0
        strike: Strike | None = None
        draw = self._rng.random
        for fault in self.faults:
            # Always two draws per fault, so that decision n depends on
            # (seed, n) only.
            hit, u = draw(), draw()
            if not self.enabled or hit >= fault.rate:
                continue
            if isinstance(fault, Latency):
                seconds = fault.delay.sample(u)
                if seconds > 0:
                    delay += seconds
                    self._injected["latency"] += 1
            elif strike is None:
                strike = fault
                self._injected[fault_name(fault)] += 1
        if strike is None:
            self._passed += 1
        self._total_delay += delay
        return Decision(index=index, delay=delay, fault=strike)

    async def call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """
        Run ``await fn(*args)``, or fail, hang or wait first, as decided.

        Args:
            fn: Any async callable; pass keyword arguments with
                :func:`functools.partial`.
            *args: Its positional arguments.

        Returns:
            What *fn* returned, when no fault struck.

        Raises:
            TypeError: The injector holds transport-only faults
                (:class:`Corrupt`, :class:`Reorder`).
            ChaosError: An :class:`Error` fault struck (or its own error).
            DroppedConnectionError: A :class:`Drop` fault struck.
            Exception: Whatever *fn* raised, unchanged.
        """
        if self._transport_only:
            raise TypeError(
                f"{self!r} holds Corrupt or Reorder faults, which only a "
                "ChaosTransport can inject"
            )
        decision = self.decide()
        if decision.delay > 0:
            await anyio.sleep(decision.delay)
        fault = decision.fault
        if fault is None:
            return await fn(*args)
        await anyio.lowlevel.checkpoint()
        if isinstance(fault, Error):
            raise fault.error()
        if isinstance(fault, Drop):
            raise DroppedConnectionError("injected by resilient_mcp")
        await anyio.sleep_forever()
        raise AssertionError("unreachable")  # pragma: no cover

    def wrap(
        self, fn: Callable[..., Awaitable[T]]
    ) -> Callable[..., Awaitable[T]]:
        """
        *fn*, with this injector's faults injected into every call.

        Keyword arguments are passed through.

        Raises:
            TypeError: The injector holds transport-only faults.
        """
        if self._transport_only:
            raise TypeError(
                f"{self!r} holds Corrupt or Reorder faults, which only a "
                "ChaosTransport can inject"
            )

        @functools.wraps(fn)
        async def chaotic(*args: Any, **kwargs: Any) -> T:
            if kwargs:
                return await self.call(functools.partial(fn, **kwargs), *args)
            return await self.call(fn, *args)

        return chaotic

    def metrics(self) -> ChaosMetrics:
        """
        Take a snapshot of the injector's counters.

        Returns:
            A frozen :class:`ChaosMetrics`.
        """
        return ChaosMetrics(
            seed=self.seed,
            calls=self._calls,
            passed=self._passed,
            injected=MappingProxyType(dict(self._injected)),
            total_delay=self._total_delay,
        )

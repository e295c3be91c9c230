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

The faults live in :mod:`._chaos_faults`, the latency distributions in
:mod:`._chaos_delays`; this module decides and injects.
"""

from __future__ import annotations

import functools
import random

from collections.abc import Awaitable, Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any, Final, TypeVar, final

import anyio
import attrs

from .._config import ConfigurationError
from ._chaos_faults import (
    Corrupt,
    Drop,
    DroppedConnectionError,
    Error,
    Fault,
    Hang,
    Latency,
    Reorder,
    Strike,
    fault_name,
)


T = TypeVar("T")

_SEED_BITS: Final = 32  # width of a seed picked for the user

_FAULT_TYPES: Final = (Latency, Error, Hang, Drop, Corrupt, Reorder)
_TRANSPORT_ONLY: Final = (Corrupt, Reorder)


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

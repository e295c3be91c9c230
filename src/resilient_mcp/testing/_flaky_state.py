"""
The configuration and the live, mutable state of the flaky test server.

Kept apart from the MCP wiring (:mod:`._flaky_app`) and the HTTP fault
injection (:mod:`._flaky_http`) so that both share one :class:`FlakyState`
per server: a ``configure`` tool call that changes the HTTP faults is seen
at once by the ASGI middleware, because they hold the same object.
"""

from __future__ import annotations

import math
import os
import random

from collections import Counter
from typing import Any, Final, Literal, TypeAlias, final

import attrs


DEFAULT_SERVER_NAME: Final = "flaky"
DEFAULT_HTTP_FAULT_STATUS: Final = 503  # HTTP status of an injected fault

CONTROL_TOOLS: Final = frozenset({"configure", "stats"})
"""Tools that are never delayed, failed or rejected: tests steer with them."""

Fate: TypeAlias = Literal["ok", "fail", "hang", "crash"]
"""What :meth:`FlakyState.fate` decides for one call of ``flaky``."""

HANDSHAKE_METHODS: Final = frozenset({"initialize", "server/discover"})
"""Requests that are never delayed, and spared by HTTP faults unless
``http_fault_handshake`` is set: connecting stays fast and predictable."""


def _rate(
    inst: object, attribute: attrs.Attribute[float], value: object
) -> None:
    if not (isinstance(value, int | float) and 0.0 <= value <= 1.0):
        raise ValueError(
            f"{type(inst).__name__}.{attribute.name} must be a probability "
            f"in [0, 1], got {value!r}"
        )


def _fates_add_up(
    inst: object, attribute: attrs.Attribute[float], value: object
) -> None:
    _rate(inst, attribute, value)
    total = inst.failure_rate + inst.hang_rate + value  # type: ignore[attr-defined]
    if total > 1.0:
        raise ValueError(
            f"{type(inst).__name__}: failure_rate + hang_rate + crash_rate "
            f"must be at most 1, got {total!r}"
        )


def _non_negative_seconds(
    inst: object, attribute: attrs.Attribute[float], value: object
) -> None:
    if not (
        isinstance(value, int | float) and math.isfinite(value) and value >= 0
    ):
        raise ValueError(
            f"{type(inst).__name__}.{attribute.name} must be a finite "
            f"number of seconds >= 0, got {value!r}"
        )


def _overload_factor(
    inst: object, attribute: attrs.Attribute[float], value: object
) -> None:
    if not (
        isinstance(value, int | float)
        and math.isfinite(value)
        and (value == 0 or value >= 1)
    ):
        raise ValueError(
            f"{type(inst).__name__}.{attribute.name} must be 0 (never "
            f"overloaded) or a finite number >= 1, got {value!r}"
        )


def _slow_factor(
    inst: object, attribute: attrs.Attribute[float], value: object
) -> None:
    if not (
        isinstance(value, int | float) and math.isfinite(value) and value >= 1
    ):
        raise ValueError(
            f"{type(inst).__name__}.{attribute.name} must be a finite "
            f"number >= 1, got {value!r}"
        )


def _http_status(
    inst: object, attribute: attrs.Attribute[int], value: object
) -> None:
    if not (isinstance(value, int) and 400 <= value <= 599):
        raise ValueError(
            f"{type(inst).__name__}.{attribute.name} must be an HTTP error "
            f"status (400-599), got {value!r}"
        )


@attrs.frozen(kw_only=True)
class FlakyServerConfig:
    """
    How the flaky server misbehaves when it starts.

    Every knob except ``name``, ``seed``, ``allow_crash`` and
    ``list_cache_ttl_ms`` can be changed later through the ``configure``
    tool.

    The capacity model (``capacity``, ``base_latency``,
    ``overload_factor``) makes a server that slows down as load grows and
    fails when overloaded, for load tests (``resilient-mcp load``).

    .. versionadded:: 0.1.0
    """

    name: str = DEFAULT_SERVER_NAME
    """The server's name, as the client sees it."""
    failure_rate: float = attrs.field(default=0.0, validator=_rate)
    """Probability that a call of the ``flaky`` tool fails."""
    hang_rate: float = attrs.field(default=0.0, validator=_rate)
    """Probability that a call of the ``flaky`` tool never answers."""
    crash_rate: float = attrs.field(default=0.0, validator=_fates_add_up)
    """Probability that a call of the ``flaky`` tool ends the server
    process (a JSON-RPC error when ``allow_crash`` is off).  The three
    rates are exclusive: their sum is at most 1."""
    latency: float = attrs.field(
        default=0.0, converter=float, validator=_non_negative_seconds
    )
    """Seconds added to every request except the handshake and the
    control tools."""
    capacity: int = attrs.field(default=0, validator=attrs.validators.ge(0))
    """Requests the server serves at full speed at once; 0 for no limit.
    With more in flight, each new one is slower (see
    :meth:`FlakyState.service_time`)."""
    base_latency: float = attrs.field(
        default=0.0, converter=float, validator=_non_negative_seconds
    )
    """Seconds a request takes while at most ``capacity`` are in flight
    (on top of ``latency``)."""
    overload_factor: float = attrs.field(
        default=0.0, converter=float, validator=_overload_factor
    )
    """With more than ``overload_factor * capacity`` requests in flight, a
    new one fails at once (a JSON-RPC ``-32603`` error); 0 never fails."""
    slow_rate: float = attrs.field(default=0.0, validator=_rate)
    """Probability that a request under the capacity model is slow: its
    service time is ``slow_factor`` times longer (a slow tail)."""
    slow_factor: float = attrs.field(
        default=10.0, converter=float, validator=_slow_factor
    )
    """How many times slower a slow request is (at least 1)."""
    seed: int | None = None
    """Seed of the server's random source (``None``: unpredictable)."""
    allow_crash: bool = True
    """Whether the ``crash`` tool really ends the process (``os._exit``);
    when false it answers with a JSON-RPC error instead.  Always turn it
    off for in-process servers."""
    list_cache_ttl_ms: int = attrs.field(
        default=0, validator=attrs.validators.ge(0)
    )
    """Cache hint (``ttlMs``) on the four list results; 0 disables the
    SDK's client-side cache."""
    http_status: int = attrs.field(
        default=DEFAULT_HTTP_FAULT_STATUS, validator=_http_status
    )
    """HTTP status of injected HTTP faults (typically 503 or 429)."""
    http_reject_count: int = attrs.field(
        default=0, validator=attrs.validators.ge(0)
    )
    """The next this many JSON-RPC requests get ``http_status``."""
    http_reject_rate: float = attrs.field(default=0.0, validator=_rate)
    """Probability that any other JSON-RPC request gets ``http_status``."""
    retry_after: str | None = None
    """``Retry-After`` value sent with injected faults (seconds or an
    HTTP date), or ``None`` for no header."""
    http_fault_handshake: bool = False
    """Whether HTTP faults also hit ``initialize`` and ``server/discover``.
    Off by default: a rejected ``server/discover`` makes an auto-mode
    client fall back to the 2025-11-25 protocol."""


@final
@attrs.define(eq=False, repr=False)
class FlakyState:
    """
    The live state of one flaky server: knobs, random source and counters.

    Pass your own instance to
    :func:`~resilient_mcp.testing.flaky_server.create_flaky_server` to
    watch an in-process server from a test.  All access happens on the
    server's event loop (every tool is async), so no lock is needed.

    Args:
        config: The initial knobs.

    .. versionadded:: 0.1.0
    """

    config: FlakyServerConfig = attrs.field(factory=FlakyServerConfig)

    failure_rate: float = attrs.field(init=False)
    """Current probability that ``flaky`` fails."""
    hang_rate: float = attrs.field(init=False)
    """Current probability that ``flaky`` never answers."""
    crash_rate: float = attrs.field(init=False)
    """Current probability that ``flaky`` ends the process."""
    fail_next: int = attrs.field(init=False, default=0)
    """The next this many ``flaky`` calls fail whatever the rate."""
    latency: float = attrs.field(init=False)
    """Current added latency, in seconds."""
    capacity: int = attrs.field(init=False)
    """Current capacity (requests at full speed); 0 for no limit."""
    base_latency: float = attrs.field(init=False)
    """Current seconds per request within capacity."""
    overload_factor: float = attrs.field(init=False)
    """Current overload threshold, in multiples of ``capacity``."""
    slow_rate: float = attrs.field(init=False)
    """Current probability that a request is slow."""
    slow_factor: float = attrs.field(init=False)
    """Current slowdown of a slow request."""
    slow_requests: int = attrs.field(init=False, default=0)
    """Requests that were drawn slow (see :meth:`slowdown`)."""
    in_flight: int = attrs.field(init=False, default=0)
    """Requests under the capacity model now (admitted, not yet answered)."""
    overload_rejections: int = attrs.field(init=False, default=0)
    """Requests failed at once because the server was overloaded."""
    http_status: int = attrs.field(init=False)
    """Current status of injected HTTP faults."""
    http_reject_count: int = attrs.field(init=False)
    """Injected HTTP faults still owed to the next requests."""
    http_reject_rate: float = attrs.field(init=False)
    """Current probability of an injected HTTP fault."""
    retry_after: str | None = attrs.field(init=False)
    """Current ``Retry-After`` value of injected HTTP faults."""
    rng: random.Random = attrs.field(init=False)
    """The server's only random source, seeded from the config."""
    counter: int = attrs.field(init=False, default=0)
    """The value the non-idempotent ``increment`` tool adds to."""
    requests: Counter[str] = attrs.field(init=False, factory=Counter)
    """JSON-RPC requests that reached the MCP layer, per method."""
    executions: Counter[str] = attrs.field(init=False, factory=Counter)
    """Tool bodies that actually ran, per tool (control tools excluded)."""
    http_rejections: int = attrs.field(init=False, default=0)
    """HTTP requests answered by the fault injector instead of the app."""

    def __attrs_post_init__(self) -> None:
        config = self.config
        self.failure_rate = config.failure_rate
        self.hang_rate = config.hang_rate
        self.crash_rate = config.crash_rate
        self.latency = config.latency
        self.capacity = config.capacity
        self.base_latency = config.base_latency
        self.overload_factor = config.overload_factor
        self.slow_rate = config.slow_rate
        self.slow_factor = config.slow_factor
        self.http_status = config.http_status
        self.http_reject_count = config.http_reject_count
        self.http_reject_rate = config.http_reject_rate
        self.retry_after = config.retry_after
        self.rng = random.Random(config.seed)

    def __repr__(self) -> str:
        return (
            f"<FlakyState {self.config.name!r} counter={self.counter} "
            f"requests={sum(self.requests.values())} "
            f"http_rejections={self.http_rejections}>"
        )

    def configure(
        self,
        *,
        failure_rate: float | None = None,
        hang_rate: float | None = None,
        crash_rate: float | None = None,
        fail_next: int | None = None,
        latency: float | None = None,
        http_status: int | None = None,
        http_reject_count: int | None = None,
        http_reject_rate: float | None = None,
        retry_after: str | None = None,
        capacity: int | None = None,
        base_latency: float | None = None,
        overload_factor: float | None = None,
        slow_rate: float | None = None,
        slow_factor: float | None = None,
    ) -> None:
        """
        Change some knobs; ``None`` leaves one as it is.

        Values are checked like :class:`FlakyServerConfig`'s; an empty
        *retry_after* removes the header.

        Raises:
            ValueError: A value is out of range; nothing was changed.
        """
        knobs = {
            "failure_rate": failure_rate,
            "hang_rate": hang_rate,
            "crash_rate": crash_rate,
            "latency": latency,
            "http_status": http_status,
            "http_reject_count": http_reject_count,
            "http_reject_rate": http_reject_rate,
            "capacity": capacity,
            "base_latency": base_latency,
            "overload_factor": overload_factor,
            "slow_rate": slow_rate,
            "slow_factor": slow_factor,
        }
        changes: dict[str, Any] = {
            k: v for k, v in knobs.items() if v is not None
        }
        current = {
            "failure_rate": self.failure_rate,
            "hang_rate": self.hang_rate,
            "crash_rate": self.crash_rate,
        }
        attrs.evolve(self.config, **(current | changes))  # or raises
        if fail_next is not None and fail_next < 0:
            raise ValueError(f"fail_next must be >= 0, got {fail_next!r}")
        for name, value in changes.items():
            setattr(self, name, value)
        if fail_next is not None:
            self.fail_next = fail_next
        if retry_after is not None:
            self.retry_after = retry_after or None

    def reset_counters(self) -> None:
        """Zero the counters (``counter`` included), not the knobs."""
        self.counter = 0
        self.requests.clear()
        self.executions.clear()
        self.http_rejections = 0
        self.overload_rejections = 0
        self.slow_requests = 0

    def service_time(self, in_flight: int) -> float:
        """
        Seconds a request takes with *in_flight* requests (itself included).

        ``base_latency * max(1, in_flight / capacity)``: full speed up to
        ``capacity`` requests at once, then slower in proportion, so that
        the server never answers more than ``capacity / base_latency``
        requests a second however many arrive.  Without a capacity, always
        ``base_latency``.
        """
        capacity = self.capacity
        if capacity <= 0:
            return self.base_latency
        return self.base_latency * max(1.0, in_flight / capacity)

    def slowdown(self) -> float:
        """
        Decide whether this request is slow, and count it.

        Called once per request under the capacity model; its service
        time is multiplied by the result.  Draws from :attr:`rng` only
        while ``slow_rate`` is positive, so a server without a slow share
        makes the same draws as before it had one.

        Returns:
            ``slow_factor`` with probability ``slow_rate`` (counted in
            :attr:`slow_requests`), else 1.
        """
        if self.slow_rate > 0.0 and self.rng.random() < self.slow_rate:
            self.slow_requests += 1
            return self.slow_factor
        return 1.0

    def overloaded(self, in_flight: int) -> bool:
        """
        Whether a request fails at once with *in_flight* (itself included).

        True beyond ``overload_factor * capacity``; never without a
        capacity or an overload factor.
        """
        factor = self.overload_factor
        return (
            self.capacity > 0
            and factor > 0
            and in_flight > factor * self.capacity
        )

    def should_fail(self) -> bool:
        """
        Decide whether this call of ``flaky`` fails, and count it.

        Returns:
            True while ``fail_next`` is positive (which it decrements), else
            true with probability ``failure_rate``.
        """
        if self.fail_next > 0:
            self.fail_next -= 1
            return True
        return self.rng.random() < self.failure_rate

    def fate(self) -> Fate:
        """
        Decide what this call of ``flaky`` does, and count it.

        One draw decides: below ``failure_rate`` it fails, in the next
        ``hang_rate`` it hangs, in the next ``crash_rate`` it crashes the
        process.  With only ``failure_rate`` set it agrees draw for draw
        with :meth:`should_fail`.

        Returns:
            ``"fail"`` while ``fail_next`` is positive (which it
            decrements), else ``"fail"``, ``"hang"``, ``"crash"`` or
            ``"ok"`` by the rates.
        """
        if self.fail_next > 0:
            self.fail_next -= 1
            return "fail"
        u = self.rng.random()
        fates: tuple[tuple[Fate, float], ...] = (
            ("fail", self.failure_rate),
            ("hang", self.hang_rate),
            ("crash", self.crash_rate),
        )
        for fate, rate in fates:
            if u < rate:
                return fate
            u -= rate
        return "ok"

    def should_reject_http(self) -> bool:
        """
        Decide whether the fault injector answers this HTTP request.

        Returns:
            True while ``http_reject_count`` is positive (which it
            decrements), else true with probability ``http_reject_rate``.
        """
        if self.http_reject_count > 0:
            self.http_reject_count -= 1
            return True
        if self.http_reject_rate > 0.0:
            return self.rng.random() < self.http_reject_rate
        return False

    def snapshot(self) -> dict[str, object]:
        """
        The counters and current knobs as plain JSON-able data.

        Returns:
            What the ``stats`` tool and the ``flaky://stats`` resource show,
            the server's process id (``pid``) included.
        """
        return {
            "pid": os.getpid(),
            "counter": self.counter,
            "requests": dict(self.requests),
            "executions": dict(self.executions),
            "http_rejections": self.http_rejections,
            "failure_rate": self.failure_rate,
            "hang_rate": self.hang_rate,
            "crash_rate": self.crash_rate,
            "fail_next": self.fail_next,
            "latency": self.latency,
            "capacity": self.capacity,
            "base_latency": self.base_latency,
            "overload_factor": self.overload_factor,
            "in_flight": self.in_flight,
            "overload_rejections": self.overload_rejections,
            "slow_rate": self.slow_rate,
            "slow_factor": self.slow_factor,
            "slow_requests": self.slow_requests,
            "http_status": self.http_status,
            "http_reject_count": self.http_reject_count,
            "http_reject_rate": self.http_reject_rate,
            "retry_after": self.retry_after,
        }

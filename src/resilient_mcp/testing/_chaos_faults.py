"""
The faults a :class:`~._chaos.FaultInjector` injects, and what they raise.

:class:`Latency` slows a call down; :class:`Error`, :class:`Hang` and
:class:`Drop` decide its fate anywhere; :class:`Corrupt` and
:class:`Reorder` spoil the server's answers, so only a
:class:`~resilient_mcp.testing.chaos.ChaosTransport` can inject them.
"""

from __future__ import annotations

import copy
import enum
import functools

from collections.abc import Callable
from typing import Any, Final, TypeAlias, final

import attrs

from .._config import ConfigurationError
from ._chaos_delays import (
    DelayDistribution,
    _check_distribution,
    _delay,
    _fail,
    _rate,
    _seconds,
)


DEFAULT_OVERSIZED_BYTES: Final = 2 * 1024 * 1024  # bytes of padding
DEFAULT_MAX_HOLD: Final = 1.0  # seconds a reordered answer is held back


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

"""
The configuration of a :class:`~._session.SessionSupervisor`.

Frozen and validated like the core configs in :mod:`resilient_mcp._config`:
invalid values fail at construction with a ``ConfigurationError``.
"""

from __future__ import annotations

import math

from collections.abc import Awaitable, Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final, TextIO

import attrs

from .._config import ConfigurationError, _seconds, to_seconds


if TYPE_CHECKING:
    import httpx2

    from mcp.client import Client


DEFAULT_CONNECT_TIMEOUT: Final = 10.0  # seconds
DEFAULT_RECONNECT_DELAY: Final = 0.1  # seconds
DEFAULT_RECONNECT_MAX_DELAY: Final = 10.0  # seconds
DEFAULT_RECONNECT_BACKOFF_FACTOR: Final = 2.0  # multiplier per failure
DEFAULT_CLOSE_TIMEOUT: Final = 5.0  # seconds


def _options(value: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(value or {}))


def _check_options(
    inst: object, attribute: attrs.Attribute[Any], value: Mapping[str, Any]
) -> None:
    if "server" in value:
        raise ConfigurationError(
            f"{type(inst).__name__}.{attribute.name} must not contain "
            "'server': pass the server to the supervisor"
        )


@attrs.frozen(kw_only=True)
class SessionConfig:
    """
    How a :class:`SessionSupervisor` connects, reconnects and closes.

    The reconnect delay after ``n`` consecutive failures is
    ``reconnect_delay * reconnect_backoff_factor ** (n - 1)``, capped at
    ``reconnect_max_delay``, with +-10 % jitter unless turned off.  A
    session that dies less than ``reconnect_max_delay`` seconds after it
    connected counts as a failure too, so a server that crashes right after
    every handshake is reconnected to ever more slowly; one that lived
    longer is replaced at once.

    .. versionadded:: 0.1.0
    """

    connect_timeout: float = attrs.field(
        default=DEFAULT_CONNECT_TIMEOUT,
        converter=to_seconds,
        validator=_seconds(),
    )
    """Seconds a connection attempt (transport, handshake and
    ``on_connect``) may take."""

    reconnect_delay: float = attrs.field(
        default=DEFAULT_RECONNECT_DELAY,
        converter=to_seconds,
        validator=_seconds(allow_zero=True),
    )
    """Seconds to wait after the first failure before trying again."""

    reconnect_max_delay: float = attrs.field(
        default=DEFAULT_RECONNECT_MAX_DELAY,
        converter=to_seconds,
        validator=_seconds(allow_zero=True),
    )
    """Cap on the reconnect delay, in seconds; at least
    ``reconnect_delay``."""

    reconnect_backoff_factor: float = attrs.field(
        default=DEFAULT_RECONNECT_BACKOFF_FACTOR, converter=to_seconds
    )
    """Multiplier applied to the delay after each further failure."""

    reconnect_jitter: bool = True
    """Vary each delay by +-10 %, so that many clients of one restarted
    server do not reconnect in lockstep."""

    eager_reconnect: bool = False
    """Connect at start and reconnect as soon as the backoff allows, even
    when no caller needs a session.  When false (the default), connection
    attempts happen only on demand."""

    close_timeout: float = attrs.field(
        default=DEFAULT_CLOSE_TIMEOUT,
        converter=to_seconds,
        validator=_seconds(),
    )
    """Seconds closing may take before the session task is cancelled."""

    client_options: Mapping[str, Any] = attrs.field(
        factory=dict, converter=_options, validator=_check_options
    )
    """Keyword arguments for every ``mcp.Client`` (``mode``,
    ``read_timeout_seconds``, ``cache``, callbacks, ...)."""

    on_connect: Callable[[Client], Awaitable[object]] | None = None
    """Awaited with each new client before it is published, in the
    supervisor's task and within ``connect_timeout`` (for example to call
    ``list_tools()`` once).  If it raises, the attempt has failed."""

    stdio_errlog: TextIO | None = None
    """Where a stdio server's stderr goes; ``sys.stderr`` when ``None``.
    It must have a ``fileno()``."""

    http_client_factory: Callable[[], httpx2.AsyncClient] | None = None
    """Builds the httpx2 client for URL servers (the SDK's default client
    when ``None``); the supervisor enters it and adds its status hook."""

    @reconnect_max_delay.validator
    def _check_max_delay(
        self, attribute: attrs.Attribute[Any], value: float
    ) -> None:
        if value < self.reconnect_delay:
            raise ConfigurationError(
                f"SessionConfig.{attribute.name} must be >= "
                f"reconnect_delay ({self.reconnect_delay!r}), got {value!r}"
            )

    @reconnect_backoff_factor.validator
    def _check_factor(
        self, attribute: attrs.Attribute[Any], value: object
    ) -> None:
        if not (isinstance(value, float) and 1 <= value < math.inf):
            raise ConfigurationError(
                f"SessionConfig.{attribute.name} must be a finite number "
                f">= 1, got {value!r}"
            )

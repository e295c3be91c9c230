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
DEFAULT_LOGIN_TIMEOUT: Final = 600.0  # seconds a person may take to log in


def _options(value: Any) -> Mapping[str, Any]:
    if value is None:
        value = {}
    if not isinstance(value, Mapping) or not all(
        isinstance(key, str) for key in value
    ):
        raise ConfigurationError(
            "SessionConfig.client_options must be a mapping of keyword "
            f"arguments (names to values) for mcp.Client, got {value!r}"
        )
    return MappingProxyType(dict(value))


def _fail(attribute: attrs.Attribute[Any], rule: str, value: object) -> None:
    raise ConfigurationError(
        f"SessionConfig.{attribute.name} must be {rule}, got {value!r}"
    )


def _bool(
    inst: object,  # noqa: ARG001 (attrs' validator signature)
    attribute: attrs.Attribute[Any],
    value: object,
) -> None:
    if not isinstance(value, bool):
        _fail(attribute, "True or False", value)


def _callable_or_none(
    inst: object,  # noqa: ARG001 (attrs' validator signature)
    attribute: attrs.Attribute[Any],
    value: object,
) -> None:
    if value is not None and not callable(value):
        _fail(attribute, "a callable or None", value)


def _auth(
    inst: object,  # noqa: ARG001 (attrs' validator signature)
    attribute: attrs.Attribute[Any],
    value: object,
) -> None:
    import httpx2  # noqa: PLC0415 (only to check the type)

    if value is not None and not isinstance(value, httpx2.Auth):
        _fail(attribute, "an httpx2.Auth or None", value)


def _errlog(
    inst: object,  # noqa: ARG001 (attrs' validator signature)
    attribute: attrs.Attribute[Any],
    value: Any,
) -> None:
    # The SDK hands it to the subprocess as its stderr, which needs a real
    # file descriptor: fail here rather than at the first connection.
    if value is None:
        return
    try:
        value.fileno()
    except (AttributeError, OSError, ValueError):
        _fail(attribute, "a file with a fileno() (or None)", value)


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

    reconnect_jitter: bool = attrs.field(default=True, validator=_bool)
    """Vary each delay by +-10 %, so that many clients of one restarted
    server do not reconnect in lockstep."""

    eager_reconnect: bool = attrs.field(default=False, validator=_bool)
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

    on_connect: Callable[[Client], Awaitable[object]] | None = attrs.field(
        default=None, validator=_callable_or_none
    )
    """Awaited with each new client before it is published, in the
    supervisor's task and within ``connect_timeout`` (for example to call
    ``list_tools()`` once).  If it raises, the attempt has failed."""

    stdio_errlog: TextIO | None = attrs.field(default=None, validator=_errlog)
    """Where a stdio server's stderr goes; ``sys.stderr`` when ``None``.
    It must have a ``fileno()``."""

    http_client_factory: Callable[[], httpx2.AsyncClient] | None = attrs.field(
        default=None, validator=_callable_or_none
    )
    """Builds the httpx2 client for URL servers (the SDK's default client
    when ``None``); the supervisor enters it and adds its status hook.
    Pass authentication as ``auth``, not here: an auth provider built
    inside the factory is a new one, without tokens, on every reconnect
    (an auth the factory's client carries is used as ``auth`` is)."""

    auth: httpx2.Auth | None = attrs.field(default=None, validator=_auth)
    """
    How URL servers are authenticated: an ``httpx2.Auth`` such as the
    SDK's ``mcp.client.auth.OAuthClientProvider``, its client credentials
    providers, or a static bearer token.  One object serves every
    connection the supervisor makes, so tokens survive reconnects.  See
    "Authentication" in the client guide for what happens on 401, 403,
    expiry and revocation.

    .. versionadded:: 0.1.0
    """

    login_timeout: float = attrs.field(
        default=DEFAULT_LOGIN_TIMEOUT,
        converter=to_seconds,
        validator=_seconds(),
    )
    """
    Seconds ``auth`` may spend on its own between two of its requests (a
    person logging in, in a browser).  That time does not count against
    ``connect_timeout`` nor against any call's timeout; past this limit
    the login fails with an ``AuthenticationError``.

    .. versionadded:: 0.1.0
    """

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

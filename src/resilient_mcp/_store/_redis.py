"""
:class:`RedisStore`: the policies' shared state in Redis, failing open.

Built on coredis (anyio-based, so it runs on trio and on asyncio).  Each
shared operation is one Lua script from :mod:`._lua`, registered once
and then called by its SHA1 (``EVALSHA``; coredis loads the script again
and retries once when the server answers ``NOSCRIPT``, after a restart).

Every request runs in a cancel scope of ``timeout`` seconds.  A request
that fails or times out makes the store *unavailable*: the policies then
decide alone at once, without waiting, and the next request is tried
``reconnect_interval`` seconds later; the first one that succeeds ends
the outage.  Each outage is logged twice, when it begins and when it
ends, however many calls it spans.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math

from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import Any, Final, Self, final

import anyio

from .._config import ConfigurationError
from .._timeouts import current_time
from . import _lua
from ._protocol import BreakerShape


logger: Final = logging.getLogger("resilient_mcp")

DEFAULT_PREFIX: Final = "resilient-mcp"
DEFAULT_TIMEOUT: Final = 0.005  # seconds a request may take
DEFAULT_RECONNECT_INTERVAL: Final = 1.0  # seconds between tries when down
CONNECT_TIMEOUT: Final = 1.0  # seconds to connect when the store opens
MICROS: Final = 1_000_000  # microseconds per second


def _check_seconds(owner: str, field: str, value: object) -> float:
    if (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ConfigurationError(
            f"{owner}.{field} must be a finite number of seconds > 0, "
            f"got {value!r}"
        )
    return float(value)


@final
class RedisStore:
    """
    Share the policies' state through Redis, and fail open when it fails.

    Like a whiteboard in a shared office: everyone writes their tallies
    on it and reads the totals, but when the board is out of reach, each
    keeps counting on their own notepad and goes back to the board when
    it is there again.

    Open it with ``async with``, which connects and loads the scripts
    (waiting a second at most: a Redis that is down or slow when the store
    opens is only an outage) and owns the task group of the counts sent
    without waiting; then pass it to the policies::

        async with RedisStore("redis://127.0.0.1:6379/0") as store:
            limiter = RateLimiter(RateLimiterConfig(rate=50), name="api",
                                  store=store)

    Every process that uses the same *prefix* and policy name shares one
    policy: give them the same configuration.  Keys are
    ``{prefix}:rate:{name}``, ``{prefix}:budget:{name}`` and
    ``{prefix}:breaker:{name}``, each with a TTL.

    Args:
        url: A Redis URL (``redis://host:port/db``, ``rediss://`` for TLS,
            ``unix://`` for a socket).
        prefix: The namespace of every key this store writes.
        timeout: Seconds a request may take before the policy decides
            alone (a cancel scope; the call waits no longer).
        reconnect_interval: Seconds between attempts while Redis is down
            or slow; meanwhile the policies do not ask it.

    Raises:
        ConfigurationError: *timeout* or *reconnect_interval* is not a
            positive number of seconds, or *prefix* is empty.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        timeout: float = DEFAULT_TIMEOUT,
        reconnect_interval: float = DEFAULT_RECONNECT_INTERVAL,
    ) -> None:
        value: object = prefix  # typed str, checked at run time too
        if not isinstance(value, str) or not value:
            raise ConfigurationError(
                f"RedisStore.prefix must be a non-empty string, got {prefix!r}"
            )
        self.url: Final = url
        self.prefix: Final = prefix
        self.timeout: Final = _check_seconds("RedisStore", "timeout", timeout)
        self.reconnect_interval: Final = _check_seconds(
            "RedisStore", "reconnect_interval", reconnect_interval
        )
        self._client: Any = None
        self._scripts: dict[str, Any] = {}
        self._stack: contextlib.AsyncExitStack | None = None
        self._tasks: anyio.abc.TaskGroup | None = None
        self._down_since: float | None = None
        self._next_try = -math.inf
        self._errors = 0

    def __repr__(self) -> str:
        state = "open" if self._tasks is not None else "closed"
        if self._down_since is not None:
            state += ", unavailable"
        return f"<RedisStore {self.prefix!r} {state}, {self._errors} errors>"

    @property
    def errors(self) -> int:
        """Requests that failed or timed out since the store opened."""
        return self._errors

    async def __aenter__(self) -> Self:
        import coredis  # noqa: PLC0415 (an optional dependency: [redis])

        async with contextlib.AsyncExitStack() as stack:
            client = coredis.Redis.from_url(self.url)
            await stack.enter_async_context(client)
            self._tasks = await stack.enter_async_context(
                anyio.create_task_group()
            )
            self._client = client
            self._scripts = {
                "gcra": client.register_script(_lua.GCRA),
                "budget": client.register_script(_lua.BUDGET),
                "hold": client.register_script(_lua.HOLD),
                "breaker": client.register_script(_lua.BREAKER),
            }
            self._stack = stack.pop_all()
        # Connect and load the scripts now, so that the first calls do
        # not pay for it; a Redis that is down or slow is only an outage.
        with anyio.move_on_after(CONNECT_TIMEOUT):
            try:
                for script in (
                    _lua.GCRA,
                    _lua.BUDGET,
                    _lua.HOLD,
                    _lua.BREAKER,
                ):
                    await client.script_load(script)
            except Exception as exc:
                self._failed(exc)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stack, self._stack = self._stack, None
        self._tasks = None
        self._client = None
        if stack is not None:
            await stack.__aexit__(exc_type, exc, tb)

    # -- StateStore --------------------------------------------------------

    def available(self) -> bool:
        """Whether the policies should ask Redis now (see the module)."""
        if self._down_since is None:
            return self._client is not None
        return current_time() >= self._next_try

    def start_soon(self, fn: Callable[[], Coroutine[Any, Any, None]]) -> bool:
        """Run ``await fn()`` in the store's task group, without waiting."""
        tasks = self._tasks
        if tasks is None:
            return False
        tasks.start_soon(fn)
        return True

    async def gcra(
        self, name: str, interval: float, tolerance: float, max_wait: float
    ) -> tuple[bool, float] | None:
        """Take a turn from the shared limiter *name* (see StateStore)."""
        reply = await self._run(
            "gcra",
            f"{self.prefix}:rate:{name}",
            [
                repr(interval * MICROS),
                repr(tolerance * MICROS),
                repr(max_wait * MICROS),
            ],
        )
        if reply is None:
            return None
        admitted, wait = reply
        return bool(admitted), float(wait) / MICROS

    def hold(self, name: str, seconds: float, tolerance: float) -> None:
        """Hold the shared limiter *name*, without waiting (StateStore)."""
        if seconds > 0 and self.available():
            self.start_soon(
                functools.partial(
                    self._run,
                    "hold",
                    f"{self.prefix}:rate:{name}",
                    [repr(seconds * MICROS), repr(tolerance * MICROS)],
                )
            )

    async def budget(
        self, name: str, delta: int, width: float, buckets: int
    ) -> int | None:
        """Add to and read the shared budget *name* (see StateStore)."""
        ttl = math.ceil(width * (buckets + 1) * 1000)  # milliseconds
        reply = await self._run(
            "budget",
            f"{self.prefix}:budget:{name}",
            [delta, repr(width * MICROS), buckets, ttl],
        )
        return None if reply is None else int(reply)

    async def breaker(
        self,
        name: str,
        shape: BreakerShape,
        generation: int,
        counts: tuple[int, int],
        op: int,
    ) -> tuple[int, float | None, bool] | None:
        """Report to and read the fleet's breaker *name* (StateStore)."""
        window = shape.width * shape.buckets
        ttl = math.ceil((window + 2 * shape.recovery) * 1000) + 1000  # ms
        reply = await self._run(
            "breaker",
            f"{self.prefix}:breaker:{name}",
            [
                generation,
                counts[0],
                counts[1],
                op,
                repr(shape.width * MICROS),
                shape.buckets,
                shape.threshold,
                repr(shape.rate),
                shape.minimum,
                repr(shape.recovery * MICROS),
                ttl,
            ],
        )
        if reply is None:
            return None
        gen, wait, granted = reply
        seconds = float(wait)
        return (
            int(gen),
            None if seconds < 0 else seconds / MICROS,
            bool(granted),
        )

    # -- failing open ------------------------------------------------------

    async def _run(self, script: str, key: str, args: list[Any]) -> Any:
        run = self._scripts.get(script)
        if run is None:
            return None
        try:
            with anyio.fail_after(self.timeout):
                reply = await run(keys=[key], args=args)
        except Exception as exc:  # Redis down, slow, or refusing
            self._failed(exc)
            return None
        if self._down_since is not None:
            self._recovered()
        return reply

    def _failed(self, exc: Exception) -> None:
        now = current_time()
        self._errors += 1
        self._next_try = now + self.reconnect_interval
        if self._down_since is None:
            self._down_since = now
            reason = (
                f"no answer within {self.timeout:g} s"
                if isinstance(exc, TimeoutError)
                else f"{type(exc).__name__}: {exc}"
            )
            logger.warning(
                "state store %s unavailable (%s): policies decide alone "
                "until it answers again",
                self.prefix,
                reason,
            )

    def _recovered(self) -> None:
        down = current_time() - (self._down_since or 0.0)
        self._down_since = None
        logger.warning(
            "state store %s answers again after %.1f s: policies share "
            "their state again",
            self.prefix,
            down,
        )

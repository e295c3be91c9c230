"""
One ``tools/call`` attempt, guarded by the tool's own circuit breaker.

A tool's ``is_error`` result is the tool's answer: it is returned, never
retried, and counted only by that tool's breaker (as a :class:`ToolError`).
What every attempt of one client shares (the tool breakers, the error
counts, the way to the session) is a :class:`ToolCalls`.

:meth:`ToolCall.run` drives the tool's breaker through its policy
interface (``enter_nowait`` and ``leave``), as the pipeline drives the
server's.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import Any, Final, Protocol, TypeVar, final

import attrs
import pydantic_core

from mcp.client import Client
from mcp_types import INVALID_PARAMS, CallToolResult

from .._breaker import CircuitBreaker
from .._config import CircuitBreakerConfig
from .._errors import (
    CallTimeout,
    CircuitBreakerError,
    PermanentError,
    ResilienceError,
)
from .._registry import BoundedRegistry
from .._timeouts import checkpoint, current_time
from ._client_config import ResilientClientConfig
from ._errors import RequestTimeoutError
from ._progress import call_with_progress


T = TypeVar("T")


class ToolError(ResilienceError):
    """
    What a tool's breaker counts for a ``CallToolResult(is_error=True)``.

    Never raised to the caller, who gets the result itself.
    """


class CallUntil(Protocol):
    """:meth:`SessionSupervisor.call_until`: a call on the live session."""

    def __call__(
        self, deadline: float, operation: Callable[[Client], Awaitable[T]], /
    ) -> Awaitable[T]: ...


def counts_against_tool(exc: BaseException) -> bool:
    """What a tool's breaker counts by default: its errors and timeouts."""
    return isinstance(exc, ToolError | RequestTimeoutError | CallTimeout)


def tool_breakers(
    config: CircuitBreakerConfig | None, *, name: str, max_size: int
) -> BoundedRegistry[str, CircuitBreaker] | None:
    """
    One breaker per tool, made on demand, or ``None`` when *config* is.

    The tool breakers count what :func:`counts_against_tool` says (unless
    the config says otherwise) and never time calls out themselves.
    """
    if config is None:
        return None
    tool_config = attrs.evolve(
        config,
        is_failure=config.is_failure or counts_against_tool,
        request_timeout=None,
    )
    return BoundedRegistry(
        lambda tool: CircuitBreaker(tool_config, name=f"{name}/{tool}"),
        max_size=max_size,
    )


def _error_counts(self: ToolCalls) -> BoundedRegistry[str, list[int]]:
    return BoundedRegistry(lambda _: [0], max_size=self.max_tracked_tools)


@final
@attrs.define(eq=False, repr=False, on_setattr=attrs.setters.NO_OP)
class ToolCalls:
    """
    What the ``tools/call`` attempts of one client share.

    Args:
        call_until: The supervisor's call on the live session.
        note_pushback: Called with every error an attempt raises (it
            remembers a ``Retry-After``).
        breakers: The per-tool breakers, or ``None`` when they are off.
        progress: The progress-aware timeout as ``(cap, step)`` (see
            :func:`~._progress.call_with_progress`), or ``None`` when
            progress does not extend the attempt timeout.
        max_tracked_tools: How many tools' error counts are kept.
    """

    call_until: CallUntil
    note_pushback: Callable[[BaseException], None]
    breakers: BoundedRegistry[str, CircuitBreaker] | None
    progress: tuple[float, float] | None
    max_tracked_tools: int
    errors: int = attrs.field(init=False, default=0)
    """Results with ``is_error=True``, over every tool."""
    error_counts: BoundedRegistry[str, list[int]] = attrs.field(
        init=False,
        default=attrs.Factory(_error_counts, takes_self=True),
    )
    """The same per tool (least recently used evicted), each in a list so
    that :meth:`ToolCall.run` counts in place."""

    @classmethod
    def from_config(
        cls,
        config: ResilientClientConfig,
        name: str,
        *,
        call_until: CallUntil,
        note_pushback: Callable[[BaseException], None],
    ) -> ToolCalls:
        """What *config* asks for, for the client named *name*."""
        timeout = config.attempt_timeout
        cap = config.progress_timeout_cap
        return cls(
            call_until=call_until,
            note_pushback=note_pushback,
            breakers=tool_breakers(
                config.tool_circuit_breaker,
                name=name,
                max_size=config.max_tracked_tools,
            ),
            progress=(
                (cap, timeout)
                if cap is not None and timeout is not None
                else None
            ),
            max_tracked_tools=config.max_tracked_tools,
        )

    def errors_of(self, name: str) -> int:
        """The ``is_error`` results of tool *name* (0 once evicted)."""
        errors = self.error_counts.peek(name)
        return errors[0] if errors else 0

    def breaker(self, name: str) -> CircuitBreaker | None:
        """The breaker of tool *name*, made if needed; ``None`` if off."""
        return self.breakers.get(name) if self.breakers is not None else None

    def peek_breaker(self, name: str) -> CircuitBreaker | None:
        """The breaker of tool *name* if it exists, without making it."""
        return self.breakers.peek(name) if self.breakers is not None else None


@final
@attrs.define(eq=False, on_setattr=attrs.setters.NO_OP)
class ToolCall:
    """One attempt at a ``tools/call``, guarded by the tool's breaker."""

    tools: ToolCalls
    name: str
    arguments: dict[str, Any] | None
    options: dict[str, Any]

    async def run(self, deadline: float) -> CallToolResult:
        """
        The attempt, cancelled at the event-loop time *deadline*.

        The pipeline hands its deadline down (see :class:`DeadlineAware`)
        and the supervisor enforces it in the one scope it enters anyway
        for an in-process call; a timeout reaches the tool's breaker as a
        cancellation, as when the pipeline's own scope enforced it.  The
        tool's breaker is a policy like the server's: entered before the
        call (a rejection is a checkpoint), told the outcome after, with
        an ``is_error`` result as a :class:`ToolError`.
        """
        owner = self.tools
        registry = owner.breakers
        breaker = registry.get(self.name) if registry is not None else None
        permit = 0
        start = 0.0
        if breaker is not None:
            start = current_time()
            try:
                permit = breaker.enter_nowait(start)
            except CircuitBreakerError:
                await checkpoint()  # every rejection is a checkpoint
                raise
        error: BaseException | None = None
        try:
            result = await self._send(deadline)
        except Exception as exc:
            owner.note_pushback(exc)
            error = exc
            raise
        except BaseException as exc:
            error = exc
            raise
        finally:
            if breaker is not None:
                now = current_time()
                if error is None and result.is_error:
                    error = ToolError(self.name)
                breaker.leave(permit, now, now - start, error)
            error = None  # no cycle through this frame
        if result.is_error:
            owner.errors += 1  # in place: no frame of a method of its own
            owner.error_counts.get(self.name)[0] += 1
        return result

    def _send(self, deadline: float) -> Awaitable[CallToolResult]:
        """The SDK's ``tools/call`` on the live session, until *deadline*."""
        owner = self.tools
        progress = owner.progress
        if progress is None:
            # Client.call_tool(client, name=..., ...) when called with the
            # client: no coroutine frame of ours around the SDK's.
            request = partial(
                Client.call_tool,
                name=self.name,
                arguments=self.arguments,
                **self.options,
            )
            return owner.call_until(deadline, request)
        return call_with_progress(
            owner.call_until,
            self.name,
            self.arguments,
            self.options,
            progress,
            deadline,
        )


def check_arguments(name: object, arguments: object) -> None:
    """
    Refuse, before any policy sees the call, a call the SDK cannot send.

    A tool name must be a non-empty string: the SDK would send an empty
    or ``None`` name to the server, and the per-tool books could not file
    the call (an empty key).  The arguments must be a JSON-serialisable
    mapping with string keys: the SDK would raise a bare pydantic,
    serialisation or Unicode error from inside the call, where the
    server's breaker counted it as the server's failure; nothing was
    sent, and no retry can help.  Values are serialised as the SDK does
    (pydantic's JSON serialiser: dates, UUIDs, models are fine); the
    message names types, never values.

    Raises:
        PermanentError: With code ``-32602`` (invalid params).
    """
    if type(name) is not str or not name:
        what = "an empty string" if name == "" else type(name).__name__
        raise PermanentError(
            INVALID_PARAMS,
            f"the tool name must be a non-empty string, not {what}",
        )
    if arguments is None:
        return
    if type(arguments) is dict:
        # The common case, without serialising anything: string keys, and
        # values that surely serialise (numbers, bools, None, ASCII text).
        # A loop, not all() over a generator: no frame per call.
        for key, value in arguments.items():
            kind = type(value)
            if type(key) is not str or (
                kind not in _PLAIN_TYPES
                and (kind is not str or not value.isascii())
            ):
                break
        else:
            return
    problem: str | None = None
    if not isinstance(arguments, Mapping):
        problem = f"must be a mapping, not {type(arguments).__name__}"
    elif not all(isinstance(key, str) for key in arguments):
        problem = "must have string keys only"
    else:
        try:
            pydantic_core.to_json(arguments)
        except ValueError as exc:  # PydanticSerializationError: types only
            problem = f"are not JSON-serialisable ({exc})"
    if problem is not None:
        raise PermanentError(
            INVALID_PARAMS, f"tool {name!r}: the arguments {problem}"
        )


_PLAIN_TYPES: Final = frozenset({int, float, bool, type(None)})

"""
One load run: an MCP server, called through :class:`ResilientMCPClient`.

:func:`run_load` connects, checks that the tool exists, runs the
open-loop timetable (:func:`~._schedule.run_open_loop`) with the
``.hlog`` writer beside it, and adds up the report from the scheduler's
counts and the differences of the client's metrics over the run.
:func:`client_config` and :func:`load_config` build the client's
configuration from the command line's presets.
"""

from __future__ import annotations

import importlib
import os
import shlex

from collections.abc import Mapping, Sequence
from typing import Any, Final

import anyio
import attrs

from .._breaker import CircuitBreaker, CircuitState
from .._config import CircuitBreakerConfig
from .._mcp import ResilientClientConfig, ResilientMCPClient, ServerSource
from .._outcomes import Outcome
from .._timeouts import current_time
from ._report import NOT_REJECTIONS, LoadReport
from ._schedule import LoadPlan, Tally, Timeline, run_open_loop
from ._series import (
    DEFAULT_HLOG_INTERVAL,
    LATENCY,
    SERVICE,
    SeriesLog,
    new_hlog,
    write_intervals,
)


NEVER_OPENS: Final = 2**31 - 1  # failures: a breaker that never opens


def server_source(words: Sequence[str]) -> tuple[ServerSource, str]:
    """
    What to connect to, and how to name it in the report.

    One ``http://`` or ``https://`` word is a streamable HTTP URL; anything
    else is a command that serves MCP over stdio, run with this process's
    environment.

    Raises:
        ValueError: *words* is empty.
    """
    if not words:
        raise ValueError("name a server: a URL or a command")
    first = words[0]
    if len(words) == 1 and first.startswith(("http://", "https://")):
        return first, first
    from mcp.client.stdio import StdioServerParameters  # noqa: PLC0415

    params = StdioServerParameters(
        command=first, args=list(words[1:]), env=dict(os.environ)
    )
    return params, shlex.join(words)


def load_config(spec: str) -> ResilientClientConfig:
    """
    The configuration named ``module:attribute``.

    The attribute is a :class:`ResilientClientConfig`, or a function that
    takes no argument and returns one.

    Raises:
        ValueError: *spec* is not ``module:attribute``.
        TypeError: It names no configuration.
        ImportError: The module could not be imported.
    """
    module_name, _, name = spec.partition(":")
    if not module_name or not name:
        raise ValueError(f"--config takes module:attribute, got {spec!r}")
    value: Any = importlib.import_module(module_name)
    for part in name.split("."):
        value = getattr(value, part, None)
    if callable(value) and not isinstance(value, ResilientClientConfig):
        value = value()
    if not isinstance(value, ResilientClientConfig):
        raise TypeError(
            f"{spec} is not a ResilientClientConfig (nor a function "
            f"returning one): {value!r}"
        )
    return value


def client_config(
    base: ResilientClientConfig | None = None,
    *,
    attempts: int | None = None,
    breaker: bool = True,
    bulkhead: bool = True,
    timeout: float | None = None,
) -> ResilientClientConfig:
    """
    *base* (the defaults if ``None``) with the command line's presets.

    Args:
        base: The configuration to start from.
        attempts: Attempts per call (1: no retries); ``None`` keeps
            *base*'s.
        breaker: False for circuit breakers that never open (the server's
            and the tools').
        bulkhead: False for no ``tools`` bulkhead.
        timeout: Seconds per attempt; ``None`` keeps *base*'s.

    Raises:
        ConfigurationError: A value is out of range.
    """
    config = ResilientClientConfig() if base is None else base
    changes: dict[str, Any] = {}
    if attempts is not None:
        changes["retry"] = attrs.evolve(config.retry, max_attempts=attempts)
    if not breaker:
        changes["circuit_breaker"] = CircuitBreakerConfig(
            failure_threshold=NEVER_OPENS
        )
        changes["tool_circuit_breaker"] = None
    if not bulkhead:
        changes["bulkheads"] = {**config.bulkheads, "tools": None}
    if timeout is not None:
        changes["timeout"] = timeout
    return attrs.evolve(config, **changes) if changes else config


@attrs.frozen
class _Counts:
    """The client's counters that the report takes differences of."""

    failures: Mapping[Outcome, int]
    attempts: int
    calls: int

    @classmethod
    def of(cls, client: ResilientMCPClient) -> _Counts:
        operation = client.metrics().operations.get("tools/call")
        failures = {} if operation is None else dict(operation.failures)
        # Every pipeline of a client shares its retry manager.
        for pipeline in client.pipelines():
            retry = pipeline.metrics().retry
            if retry is not None:
                return cls(failures, retry.total_attempts, retry.total_calls)
        return cls(failures, 0, 0)


async def _check_tool(client: ResilientMCPClient, tool: str) -> None:
    names = [t.name for t in (await client.list_tools()).tools]
    if tool not in names:
        offered = ", ".join(sorted(names)) or "none"
        raise ValueError(
            f"the server has no tool {tool!r} (its tools: {offered})"
        )


def _failures(
    tally: Tally, before: _Counts, after: _Counts
) -> tuple[dict[str, int], int]:
    """The failures by outcome, and how many the client rejected."""
    counted = {
        outcome.value: after.failures.get(outcome, 0)
        - before.failures.get(outcome, 0)
        for outcome in after.failures
    }
    failures = {k: v for k, v in counted.items() if v}
    rejected = sum(v for k, v in failures.items() if k not in NOT_REJECTIONS)
    raised = tally.failed - tally.tool_errors
    extra = {
        "tool_error": tally.tool_errors,
        "unfinished": tally.unfinished,
        "other": raised - sum(failures.values()),
    }
    failures.update({k: v for k, v in extra.items() if v})
    return failures, rejected


async def run_load(
    server: ServerSource,
    plan: LoadPlan,
    *,
    tool: str,
    arguments: Mapping[str, Any] | None = None,
    config: ResilientClientConfig | None = None,
    hlog: str | os.PathLike[str] | None = None,
    hlog_interval: float = DEFAULT_HLOG_INTERVAL,
    target: str | None = None,
) -> LoadReport:
    """
    Call *tool* on *server* on *plan*'s timetable, and report.

    Args:
        server: Anything :class:`ResilientMCPClient` connects to.
        plan: The rate, duration and bounds.
        tool: The tool to call.
        arguments: Its arguments, the same for every call.
        config: The client's configuration (``None``: the defaults).
        hlog: Where to write the latency series as an ``.hlog`` interval
            log (replaced if it exists), or ``None``.
        hlog_interval: Seconds per interval of the log.
        target: The server's name in the report (default: ``str(server)``).

    Returns:
        The report.

    Raises:
        ValueError: The server has no tool *tool*.
        OSError: The ``.hlog`` file could not be written.
    """
    args = None if arguments is None else dict(arguments)
    series = SeriesLog()
    timeline = Timeline()

    def circuit_changed(
        breaker: CircuitBreaker,  # noqa: ARG001 (a listener's signature)
        old: CircuitState,  # noqa: ARG001
        new: CircuitState,
    ) -> None:
        timeline.circuit_changed(new.value, current_time())

    async def call() -> bool:
        result = await client.call_tool(tool, args)
        return not result.is_error

    async with ResilientMCPClient(
        server, config=config, name="load"
    ) as client:
        await _check_tool(client, tool)
        before = _Counts.of(client)
        client.circuit_breaker.add_listener(circuit_changed)
        if hlog is None:
            tally = await run_open_loop(
                plan, call, series=series, timeline=timeline
            )
        else:
            stream, writer = new_hlog(hlog)
            with stream:
                async with anyio.create_task_group() as tasks:
                    await tasks.start(
                        write_intervals, series, writer, hlog_interval
                    )
                    tally = await run_open_loop(
                        plan, call, series=series, timeline=timeline
                    )
                    tasks.cancel_scope.cancel()
        client.circuit_breaker.remove_listener(circuit_changed)
        after = _Counts.of(client)
    failures, rejected = _failures(tally, before, after)
    return LoadReport(
        target=str(server) if target is None else target,
        tool=tool,
        rate=plan.rate,
        duration=plan.duration,
        max_in_flight=plan.max_in_flight,
        offered=tally.offered,
        started=tally.started,
        shed=tally.shed,
        succeeded=tally.succeeded,
        failed=tally.failed + tally.unfinished,
        failures=failures,
        rejected=rejected,
        late_starts=tally.late_starts,
        latency=series.histogram(LATENCY).snapshot(),
        service=series.histogram(SERVICE).snapshot(),
        calls=after.calls - before.calls,
        attempts=after.attempts - before.attempts,
        circuit_opens=timeline.opens,
        time_to_open=timeline.time_to_open,
        time_to_recover=timeline.time_to_recover,
    )

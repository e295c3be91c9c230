"""
One run: a scenario's load, through one client configuration.

The flaky server runs as a subprocess on 127.0.0.1 (an ephemeral port,
announced on its stdout).  The load is open loop
(:func:`resilient_mcp._load.run_open_loop`): the base rate for the whole
duration and, for a spike, a second timetable on top of it; a control
client changes the server at the scenario's event times.  Every request's
end time, latency (from its intended start) and outcome are recorded,
and the ``tools`` bulkhead's limit and the retry policy's counts are
sampled four times a second (the counts give the retry amplification of
a window of the run, not only of the whole run).
"""

from __future__ import annotations

import json
import sys

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Final

import anyio
import attrs

from resilient_mcp import (
    ResilientClientConfig,
    ResilientMCPClient,
    RetryConfig,
)
from resilient_mcp._load import LATENCY, LoadPlan, run_open_loop
from resilient_mcp._timeouts import current_time

from ._scenarios import (
    ALGORITHM,
    BASE_LATENCY,
    CAPACITY,
    Scenario,
    client_config,
)


SAMPLE_INTERVAL: Final = 0.25  # seconds between samples of the limit
DRAIN: Final = 20.0  # seconds the calls in flight at the end get
START_GUARD: Final = 30.0  # seconds the server gets to start


@attrs.define(kw_only=True)
class Run:
    """What one run recorded; times are seconds from the load's start."""

    scenario: str
    config: str
    duration: float
    ends: list[tuple[float, float, bool]] = attrs.Factory(list)
    """Per request that ended: (end time, latency, succeeded)."""
    limits: list[tuple[float, int, int]] = attrs.Factory(list)
    """Samples of the ``tools`` bulkhead: (time, limit, running)."""
    retries: list[tuple[float, int, int]] = attrs.Factory(list)
    """Samples of the retry policy's counts since the run began: (time,
    calls that ended, attempts made)."""
    offered: int = 0
    shed: int = 0
    unfinished: int = 0
    calls: int = 0
    """Calls that reached the client's retry policy."""
    attempts: int = 0
    """Attempts the client's retry policy made."""
    server_executions: int = 0
    """Times the server ran the scenario's tool."""
    failures: dict[str, int] = attrs.Factory(dict)
    """The client's failures of ``tools/call``, by outcome."""
    server_requests: int = 0
    """``tools/call`` requests that reached the server (hedges and
    retries included; the control client's excluded)."""
    slow_requests: int = 0
    """Requests the server drew slow (its slow share)."""
    hedging: dict[str, int] = attrs.Factory(dict)
    """The client's hedging metrics over the run (empty without)."""


@attrs.define
class _Recorder:
    """
    Stands in for the scheduler's :class:`SeriesLog`, keeping every end.

    The call records its outcome in :attr:`pending`; the scheduler
    records the request's latency right after the call returns, with no
    checkpoint in between, so the two belong to the same request.
    """

    run: Run
    origin: float
    pending: bool = False

    def record(self, name: str, seconds: float) -> None:
        if name == LATENCY:
            at = current_time() - self.origin
            self.run.ends.append((at, seconds, self.pending))


def server_command(scenario: Scenario) -> list[str]:
    """The flaky server's command line for *scenario*."""
    command = [
        sys.executable,
        "-m",
        "resilient_mcp.testing.flaky_server",
        "http",
        "--port",
        "0",
        "--capacity",
        str(CAPACITY),
        "--base-latency",
        str(BASE_LATENCY),
        "--seed",
        "1",
        "--no-crash",
    ]
    for key, value in scenario.server.items():
        command += [f"--{key.replace('_', '-')}", str(value)]
    return command


@asynccontextmanager
async def flaky_server(scenario: Scenario) -> AsyncIterator[str]:
    """Start the flaky server for *scenario*; yield its MCP URL."""
    process = await anyio.open_process(
        server_command(scenario), stderr=None, stdout=-1
    )
    try:
        assert process.stdout is not None
        buffer = b""
        with anyio.fail_after(START_GUARD):
            while b"\n" not in buffer:
                buffer += await process.stdout.receive()
        info = json.loads(buffer.split(b"\n", 1)[0])
        yield str(info["url"])
    finally:
        process.terminate()
        with anyio.move_on_after(5, shield=True):
            await process.wait()
        if process.returncode is None:
            process.kill()
        await process.aclose()


def _control_config() -> ResilientClientConfig:
    # The control client: no bulkhead, no retries, no budget.
    return ResilientClientConfig(
        retry=RetryConfig(max_attempts=1),
        retry_budget=None,
        bulkheads={"tools": None},
    )


async def _stats(control: ResilientMCPClient) -> dict[str, Any]:
    result = await control.call_tool("stats", {})
    content = result.structured_content or {}
    stats: dict[str, Any] = content.get("result", content)
    return stats


def _retry_counts(client: ResilientMCPClient) -> tuple[int, int]:
    for pipeline in client.pipelines():
        retry = pipeline.metrics().retry
        if retry is not None:
            return retry.total_calls, retry.total_attempts
    return 0, 0


def _plans(
    scenario: Scenario, max_in_flight: int
) -> list[tuple[LoadPlan, float]]:
    """The timetables of *scenario*, each with its delay."""
    plans = [
        (
            LoadPlan(
                rate=scenario.rate,
                duration=scenario.duration,
                max_in_flight=max_in_flight,
                drain=DRAIN,
            ),
            0.0,
        )
    ]
    spike = scenario.spike
    if spike is not None:
        extra = LoadPlan(
            rate=spike.rate,
            duration=spike.duration,
            max_in_flight=max_in_flight,
            drain=DRAIN,
        )
        plans.append((extra, spike.start))
    return plans


HEDGING_COUNTS: Final = (
    "calls",
    "hedged_calls",
    "hedges",
    "hedge_wins",
    "budget_rejections",
    "suppressed_by_slowdown",
)


def _hedging_counts(client: ResilientMCPClient) -> dict[str, int]:
    """The ``tools/call`` pipeline's hedging counters (empty without)."""
    for pipeline in client.pipelines():
        hedging = pipeline.metrics().hedging
        if pipeline.name == "tools/call" and hedging is not None:
            return {k: int(getattr(hedging, k)) for k in HEDGING_COUNTS}
    return {}


async def _counts(
    scenario: Scenario,
    client: ResilientMCPClient,
    control: ResilientMCPClient,
) -> dict[str, Any]:
    """The client's calls, attempts and hedges; the server's counters."""
    calls, attempts = _retry_counts(client)
    stats = await _stats(control)
    return {
        "calls": calls,
        "attempts": attempts,
        "executions": int(stats["executions"].get(scenario.tool, 0)),
        # Counted on arrival, the stats call that reads it included.
        "requests": int(stats["requests"].get("tools/call", 0)),
        "slow": int(stats.get("slow_requests", 0)),
        "hedging": _hedging_counts(client),
    }


async def _finish(
    run: Run,
    scenario: Scenario,
    client: ResilientMCPClient,
    control: ResilientMCPClient,
    before: dict[str, Any],
) -> None:
    """Add the differences of the counts over the run to *run*."""
    after = await _counts(scenario, client, control)
    run.calls = after["calls"] - before["calls"]
    run.attempts = after["attempts"] - before["attempts"]
    run.server_executions = after["executions"] - before["executions"]
    # Less the one stats call after the run (the one before counted
    # itself in *before*).
    run.server_requests = after["requests"] - before["requests"] - 1
    run.slow_requests = after["slow"] - before["slow"]
    run.hedging = {
        k: v - before["hedging"].get(k, 0) for k, v in after["hedging"].items()
    }
    operation = client.metrics().operations.get("tools/call")
    if operation is not None:
        run.failures = {
            outcome.value: count
            for outcome, count in operation.failures.items()
            if count
        }


async def _sample(
    run: Run,
    client: ResilientMCPClient,
    tools: Any,
    origin: float,
    before: dict[str, Any],
) -> None:
    """Sample the ``tools`` bulkhead and the retry counts, until cancelled."""
    bulkhead = tools.bulkhead
    while True:
        at = current_time() - origin
        if bulkhead is not None:
            m = bulkhead.metrics()
            run.limits.append((at, m.limit, m.active_requests))
        calls, attempts = _retry_counts(client)
        run.retries.append(
            (at, calls - before["calls"], attempts - before["attempts"])
        )
        await anyio.sleep(SAMPLE_INTERVAL)


async def run_scenario(
    scenario: Scenario,
    config_name: str,
    *,
    max_in_flight: int = 1000,
    algorithm: str = ALGORITHM,
) -> Run:
    """Run *scenario* with configuration *config_name* against a new server."""
    config = client_config(scenario, config_name, algorithm)
    run = Run(
        scenario=scenario.name, config=config_name, duration=scenario.duration
    )
    async with (
        flaky_server(scenario) as url,
        ResilientMCPClient(
            url, config=_control_config(), name="control"
        ) as control,
        ResilientMCPClient(url, config=config, name=config_name) as client,
    ):
        await client.list_tools()
        tools = next(p for p in client.pipelines() if p.name == "tools/call")
        before = await _counts(scenario, client, control)
        arguments = dict(scenario.arguments)
        recorder = _Recorder(run, current_time())
        series: Any = recorder  # the scheduler only calls record()

        async def call() -> bool:
            try:
                result = await client.call_tool(scenario.tool, arguments)
            except Exception:
                ok = False
            else:
                ok = not result.is_error
            recorder.pending = ok
            return ok

        async def load(plan: LoadPlan, delay: float) -> None:
            await anyio.sleep(delay)
            tally = await run_open_loop(plan, call, series=series)
            run.offered += tally.offered
            run.shed += tally.shed
            run.unfinished += tally.unfinished

        async def events() -> None:
            for event in scenario.events:
                await anyio.sleep_until(recorder.origin + event.at)
                await control.call_tool("configure", dict(event.knobs))

        async with anyio.create_task_group() as outer:
            outer.start_soon(
                _sample, run, client, tools, recorder.origin, before
            )
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(events)
                for plan, delay in _plans(scenario, max_in_flight):
                    tasks.start_soon(load, plan, delay)
            outer.cancel_scope.cancel()
        await _finish(run, scenario, client, control, before)
        run.retries.append(
            (current_time() - recorder.origin, run.calls, run.attempts)
        )
    return run

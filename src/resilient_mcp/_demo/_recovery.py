"""
The demo's recovery phases: the circuit breaker, and the session.

Every sentence these phases print is made from counts taken while the
phase ran: what each call raised, how many attempts reached the server's
tool (the server's own counter), the client's metrics and its session
supervisor's counters.  Nothing is assumed about what should have
happened, so the story stays true for every seed and every retry or
breaker setting.
"""

from __future__ import annotations

import enum

from typing import TYPE_CHECKING, Any, Final

import attrs
import trio

from .._errors import CircuitBreakerError, ResilienceError


if TYPE_CHECKING:
    from .._mcp import ResilientMCPClient, SessionMetrics
    from ._report import Progress
    from ._server import _DemoServer


RECOVERY_TIMEOUT: Final = 2.0  # seconds the demo's circuit stays open
PROBE_LIMIT: Final = 10  # probe calls at most, to close the circuit
SETTLE_POLLS: Final = 200  # polls for the supervisor to count a loss
SETTLE_POLL: Final = 0.01  # seconds between those polls


class Fate(enum.Enum):
    """How one demo call ended."""

    OK = "ok"
    FAILED = "failed"
    CIRCUIT_OPEN = "circuit_open"


@attrs.frozen(kw_only=True)
class CallRecord:
    """One call of a step: how it ended, and what it cost the server."""

    fate: Fate
    reached: int
    """Attempts of this call that reached the tool (the server's count)."""
    retried: bool
    """Whether the client retried it (its ``retried_requests`` grew)."""


@attrs.frozen(kw_only=True)
class StepCounts:
    """What happened in one step of the error-recovery phase."""

    failure_rate: float
    calls: tuple[CallRecord, ...]
    state_before: str
    state_after: str
    trips: int
    """Times the server's circuit opened during the step."""

    @property
    def reached(self) -> int:
        """Attempts that reached the tool."""
        return sum(call.reached for call in self.calls)

    def count(self, fate: Fate, *, retried: bool | None = None) -> int:
        """Calls that ended with *fate* (and were retried, or not)."""
        return sum(
            call.fate is fate and retried in (None, call.retried)
            for call in self.calls
        )

    @property
    def failed_fast(self) -> int:
        """Calls the open circuit rejected before any attempt ran."""
        return sum(
            call.fate is Fate.CIRCUIT_OPEN and call.reached == 0
            for call in self.calls
        )


def describe_step(step: StepCounts) -> list[str]:
    """The sentences that tell what *step* counted."""
    n = len(step.calls)
    stopped = step.count(Fate.CIRCUIT_OPEN) - step.failed_fast
    outcomes = [
        f"{step.count(Fate.OK, retried=False)} succeeded at once",
        f"{step.count(Fate.OK, retried=True)} succeeded after a retry",
        f"{step.count(Fate.FAILED)} failed",
    ]
    if stopped:
        outcomes.append(f"{stopped} stopped by the circuit opening")
    if step.failed_fast:
        outcomes.append(
            f"{step.failed_fast} failed fast on the open circuit "
            "without reaching the tool"
        )
    head = (
        f"tool failing {step.failure_rate:.0%} of the time: {n} calls, "
        f"{step.reached} attempts reached the tool"
    )
    lines = [head, ", ".join(outcomes)]
    if step.trips:
        lines.append(
            f"circuit {step.state_before} -> {step.state_after}: "
            f"it opened {_times(step.trips)} during this step "
            "(every failed attempt counts, retries included)"
        )
    elif step.state_before == step.state_after:
        lines.append(f"circuit stayed {step.state_after}")
    else:
        lines.append(f"circuit {step.state_before} -> {step.state_after}")
    return lines


def _times(n: int) -> str:
    return "once" if n == 1 else f"{n} times"


async def _flaky_executions(client: ResilientMCPClient) -> int:
    stats = await _control(client, "stats")
    executions: dict[str, int] = stats["executions"]
    return executions.get("flaky", 0)


async def _control(
    client: ResilientMCPClient, tool: str, **arguments: Any
) -> Any:
    # The demo's own control channel to the server: straight to the live
    # session, around the breaker that may (rightly) be stopping the
    # application's calls.  The control tools are never delayed or failed.
    live = await client.supervisor.connect()
    result = await live.client.call_tool(tool, arguments)
    return result.structured_content


async def run_step(
    client: ResilientMCPClient, failure_rate: float, calls: int
) -> StepCounts:
    """Make the tool fail at *failure_rate*, call it *calls* times."""
    await _control(client, "configure", failure_rate=failure_rate)
    state_before = client.circuit_breaker.state.name
    trips_before = client.metrics().circuit_breaker_trips
    executions = await _flaky_executions(client)
    records = []
    for _ in range(calls):
        retried = client.metrics().retried_requests
        try:
            await client.call_tool("flaky", {})
            fate = Fate.OK
        except CircuitBreakerError:
            fate = Fate.CIRCUIT_OPEN
        except ResilienceError:
            fate = Fate.FAILED
        now = await _flaky_executions(client)
        records.append(
            CallRecord(
                fate=fate,
                reached=now - executions,
                retried=client.metrics().retried_requests > retried,
            )
        )
        executions = now
    return StepCounts(
        failure_rate=failure_rate,
        calls=tuple(records),
        state_before=state_before,
        state_after=client.circuit_breaker.state.name,
        trips=client.metrics().circuit_breaker_trips - trips_before,
    )


async def phase_errors(
    client: ResilientMCPClient, progress: Progress
) -> list[StepCounts]:
    """
    Phase 2: retries, the circuit opening, failing fast, closing again.

    Returns:
        The counts of the two failing steps, in order.
    """
    progress.phase(2, "error recovery: retries and the circuit breaker")
    steps = []
    for rate in (0.2, 1.0):
        step = await run_step(client, rate, 10)
        steps.append(step)
        for line in describe_step(step):
            progress.line(line)
    # The server recovers while the circuit is open; probes close it.
    await _control(client, "configure", failure_rate=0.0)
    await trio.sleep(RECOVERY_TIMEOUT)
    state = client.circuit_breaker.state.name
    progress.line(
        f"the tool works again; {RECOVERY_TIMEOUT:g}s later the circuit "
        f"is {state}"
    )
    probes = ok = 0
    while client.circuit_breaker.state.name != "CLOSED":
        if probes == PROBE_LIMIT:
            break
        probes += 1
        try:
            await client.call_tool("flaky", {})
            ok += 1
        except ResilienceError:
            pass
    progress.line(
        f"{ok} of {probes} probe calls succeeded: circuit "
        f"{client.circuit_breaker.state.name}"
    )
    return steps


def describe_session(
    before: SessionMetrics, after: SessionMetrics, recovered_in: float
) -> str:
    """How the supervisor got from *before* to *after*, in a sentence."""
    attempts = after.connect_attempts - before.connect_attempts
    failed = after.connect_failures - before.connect_failures
    return (
        f"recovered in {recovered_in * 1000:.0f} ms: session "
        f"{after.generation} (was {before.generation}), "
        f"{attempts} connection attempt{'s' * (attempts != 1)}, "
        f"{failed} failed"
    )


async def _crash(
    client: ResilientMCPClient, server: _DemoServer
) -> tuple[str, bool]:
    """Crash the server; what the call raised, and whether it retried."""
    retried = client.metrics().retried_requests
    lost = client.supervisor.metrics().sessions_lost
    try:
        await client.call_tool("crash", {})
        raised = "nothing"
    except ResilienceError as exc:
        raised = type(exc).__name__
    await server.restart_after_crash()
    # The supervisor counts the loss in its own task; wait (bounded) for
    # it, so that the counts read next include it.
    for _ in range(SETTLE_POLLS):
        if client.supervisor.metrics().sessions_lost > lost:
            break
        await trio.sleep(SETTLE_POLL)
    return raised, client.metrics().retried_requests > retried


async def phase_session(
    client: ResilientMCPClient, server: _DemoServer, progress: Progress
) -> tuple[SessionMetrics, SessionMetrics]:
    """
    Phase 4: the server process dies twice; the client recovers each time.

    The second crash comes right after reconnecting: a session lost that
    soon counts as a failed connect, so the next attempt backs off.

    Returns:
        The supervisor's counters before the phase and after it.
    """
    progress.phase(4, "session recovery: the server process dies")
    first = client.supervisor.metrics()
    for crash in (1, 2):
        before = client.supervisor.metrics()
        start = trio.current_time()
        raised, retried = await _crash(client, server)
        lost = client.supervisor.metrics()
        why = "retried" if retried else "not retried (not safe to repeat)"
        progress.line(
            f"crash {crash}: the tool ended the server process; the call "
            f"raised {raised}, {why}; sessions lost: "
            f"{lost.sessions_lost - before.sessions_lost}"
        )
        if not lost.consecutive_failures:
            progress.line(
                "the lost session had been up long enough to count as "
                "stable: the client may reconnect at once"
            )
        else:
            wait = lost.reconnect_in or 0.0
            progress.line(
                "a session lost this soon after connecting counts as a "
                f"failed connect (failures in a row: "
                f"{lost.consecutive_failures}): it starts a reconnect "
                f"backoff, {wait:.2f}s of it left"
            )
        result = await client.call_tool("echo", {"text": "back"})
        text = (result.structured_content or {}).get("result")
        after = client.supervisor.metrics()
        recovered_in = trio.current_time() - start
        progress.line(
            f"next call answered {text!r}; "
            + describe_session(before, after, recovered_in)
        )
    return first, client.supervisor.metrics()

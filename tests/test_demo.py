"""
The demo, run the way a user runs it: a subprocess, real servers, real time.

Each test is bounded by a generous hang guard; none asserts on speed.
"""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys

from pathlib import Path

import httpx2
import pytest
import trio

import resilient_mcp

from resilient_mcp import Outcome
from resilient_mcp.__main__ import main
from resilient_mcp._demo._phases import _client_config
from resilient_mcp._demo._recovery import phase_errors
from resilient_mcp._demo._report import Progress
from resilient_mcp._hlog import read_hlog
from resilient_mcp._mcp import ResilientClientMetrics, ResilientMCPClient
from resilient_mcp.testing.flaky_server import (
    FlakyServerConfig,
    FlakyState,
    create_flaky_server,
)


HANG_GUARD = 90  # seconds; the demo itself finishes well within 60
PACKAGE_ROOT = str(Path(resilient_mcp.__file__).resolve().parent.parent)


async def start_demo(tmp_path: Path, *extra: str) -> trio.Process:
    """Start ``python -m resilient_mcp demo`` writing into *tmp_path*."""
    return await trio.lowlevel.open_process(
        [
            sys.executable,
            "-m",
            "resilient_mcp",
            "demo",
            "--metrics-port",
            "0",
            "--log-file",
            str(tmp_path / "app.log"),
            "--hlog",
            str(tmp_path / "demo.hlog"),
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": PACKAGE_ROOT},
    )


async def read_until(stream, marker: bytes, sink: bytearray) -> None:
    """Read *stream* into *sink* until *marker* appears."""
    while marker not in sink:
        chunk = await stream.receive_some()
        if not chunk:
            raise AssertionError(f"stream ended before {marker!r}: {sink!r}")
        sink += chunk


async def drain(stream, sink: bytearray) -> None:
    """Read *stream* into *sink* until it ends."""
    while chunk := await stream.receive_some():
        sink += chunk


@pytest.mark.slow
@pytest.mark.parametrize("transport", ["stdio", "http"])
async def test_demo_runs_and_accounts_for_everything(tmp_path, transport):
    """
    The demo exits 0, serves /metrics, and leaves its log and .hlog.

    The log has the seed's greppable lines; the .hlog holds one latency
    per request.  Both replace what a previous run left (the README's
    demo command, run twice in one directory).
    """
    (tmp_path / "app.log").write_text("a previous run\n")
    (tmp_path / "demo.hlog").write_text("a previous run\n")
    out, err = bytearray(), bytearray()
    with trio.fail_after(HANG_GUARD):
        process = await start_demo(tmp_path, "--transport", transport)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(drain, process.stderr, err)
            await read_until(process.stdout, b"/metrics\n", out)
            line = out.decode().splitlines()[0]
            url = line.split()[-1]
            async with httpx2.AsyncClient() as http:
                scrape = (await http.get(url)).text
            await drain(process.stdout, out)
            status = await process.wait()

    text = out.decode()
    assert 0 == status, err.decode()
    assert "every request accounted for" in text
    assert "circuit_breaker_trips" in text
    assert "resilient_mcp_circuit_breaker_state" in scrape
    assert "bulkhead_queue" in scrape
    log = (tmp_path / "app.log").read_text()
    assert "Circuit breaker state changed: CLOSED -> OPEN" in log
    assert "Circuit breaker state changed: HALF_OPEN -> CLOSED" in log
    assert "Retrying in" in log
    assert "BulkheadError" in log
    assert_session_phase(text)
    last = [line.split(": ", 1)[1] for line in log.splitlines()[-3:]]
    assert last[0].startswith("session: 3 connected, 2 lost")
    assert last[1].startswith("every request accounted for: ")
    assert last[2].startswith("log: ")
    hlog = read_hlog(tmp_path / "demo.hlog")
    total = int(text.split("total_requests")[1].split()[0])
    untagged = sum(
        interval.histogram().count
        for interval in hlog.intervals
        if interval.tag is None
    )
    assert total == untagged


CRASH = re.compile(
    r"crash (\d): the tool ended the server process; the call raised "
    r"SessionLostError, not retried \(not safe to repeat\); "
    r"sessions lost: (\d+)"
)
RECOVERED = re.compile(
    r"next call answered 'back'; recovered in \d+ ms: session (\d+) "
    r"\(was (\d+)\), (\d+) connection attempts?, (\d+) failed"
)
FINAL_SESSION = re.compile(
    r"session: (\d+) connected, (\d+) lost, (\d+) failed connection "
    r"attempts"
)


def assert_session_phase(text: str) -> None:
    """
    Phase 4 shows two crashes and two recoveries, and its counts add up.

    The first session was long-lived, so its loss reconnects at once; the
    second was lost right after connecting, which counts as a failed
    connect and starts the reconnect backoff.
    """
    phase = text.split("== Phase 4")[1].split("== Phase 5", maxsplit=1)[0]
    crashes = CRASH.findall(phase)
    recoveries = [tuple(map(int, r)) for r in RECOVERED.findall(phase)]
    final = FINAL_SESSION.search(text)

    assert [("1", "1"), ("2", "1")] == crashes, phase
    assert [2, 3] == [new for new, *_ in recoveries], phase
    assert [1, 2] == [old for _, old, *_ in recoveries], phase
    assert "up long enough to count as stable" in phase
    assert "counts as a failed connect (failures in a row: 1)" in phase
    assert final is not None
    connects, lost, failed = map(int, final.groups())
    assert 2 == lost
    assert 1 + sum(a - f for *_, a, f in recoveries) == connects
    assert sum(f for *_, f in recoveries) == failed


@pytest.mark.slow
async def test_ctrl_c_stops_cleanly(tmp_path):
    """SIGINT mid-run ends the demo with status 130 and no server left."""
    out, err = bytearray(), bytearray()
    with trio.fail_after(HANG_GUARD):
        process = await start_demo(tmp_path)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(drain, process.stderr, err)
            await read_until(process.stdout, b"Phase 2", out)
            process.send_signal(signal.SIGINT)
            await drain(process.stdout, out)
            status = await process.wait()

    assert 130 == status, err.decode()
    assert "interrupted" in err.decode()
    # The stdio server ran in the demo's folder; none is left there.
    assert [] == servers_in(tmp_path)


def servers_in(folder: Path) -> list[int]:
    """Pids of flaky servers whose working directory is *folder*."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            cwd = (entry / "cwd").resolve()
        except OSError:
            continue  # gone, or not ours to look at
        if b"flaky_server" in cmdline and cwd == folder.resolve():
            found.append(int(entry.name))
    return found


def test_demo_help_lists_its_options(capsys):
    """``resilient-mcp demo --help`` documents the command."""
    assert 0 == main(["demo", "--help"])
    help_text = capsys.readouterr().out
    for option in ("--transport", "--seed", "--metrics-port", "--no-metrics"):
        assert option in help_text
    assert "seed's" not in help_text
    assert 0 == main(["--help"])
    assert "seed's" not in capsys.readouterr().out


class RecordingProgress(Progress):
    """Progress that also notes, at each line, what was counted so far."""

    def __init__(self, state: FlakyState) -> None:
        super().__init__(io.StringIO())
        self.state = state
        self.client: ResilientMCPClient | None = None
        self.lines: list[tuple[str, int, ResilientClientMetrics]] = []
        self.states: list[str] = []

    def line(self, text: str) -> None:
        """Record *text* with the server's and the client's counts."""
        assert self.client is not None
        self.lines.append(
            (
                text,
                self.state.executions["flaky"],
                self.client.metrics(),
            )
        )
        self.states.append(self.client.circuit_breaker.state.name)
        super().line(text)


STEP = re.compile(
    r"tool failing (\d+)% of the time: (\d+) calls, "
    r"(\d+) attempts reached the tool"
)
OUTCOMES = re.compile(
    r"(\d+) succeeded at once, (\d+) succeeded after a retry, (\d+) failed"
    r"(?:, (\d+) stopped by the circuit opening)?"
    r"(?:, (\d+) failed fast on the open circuit without reaching the tool)?"
)
CIRCUIT = re.compile(
    r"circuit (\w+) -> (\w+): it opened (once|\d+ times) during this step "
    r"\(every failed attempt counts, retries included\)"
    r"|circuit stayed (\w+)"
)
PROBES = re.compile(r"(\d+) of (\d+) probe calls succeeded: circuit (\w+)")


def number(text: str | None) -> int:
    """A count from a sentence; an omitted clause counts 0."""
    if text is None:
        return 0
    return 1 if text == "once" else int(text.split()[0])


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5, 7, 11, 42])
async def test_error_phase_tells_what_was_counted(seed, autojump_clock):
    """
    Every number phase 2 prints is what the server and the client counted.

    Against an in-process flaky server seeded like the demo's, each step's
    attempts are the tool's own executions, its outcomes the client's
    outcome counts, and its circuit sentence the breaker's trips and
    state, for every seed: with seed 7 the circuit opens during the 20 %
    step, and the 100 % step then says that no attempt reached the tool.
    """
    state = FlakyState(FlakyServerConfig(seed=seed))
    progress = RecordingProgress(state)
    client = ResilientMCPClient(
        create_flaky_server(state=state), config=_client_config()
    )
    async with client:
        progress.client = client
        start = client.metrics()
        steps = await phase_errors(client, progress)
        circuit = client.circuit_breaker.state.name

    lines = progress.lines
    assert 8 == len(lines)
    previous_executions, previous = 0, start
    for k, rate in enumerate((20, 100)):
        (head, executions, metrics), (outcomes, *_), (circuit_line, *_) = (
            lines[3 * k : 3 * k + 3]
        )
        step = STEP.fullmatch(head)
        said = OUTCOMES.fullmatch(outcomes)
        circuit_said = CIRCUIT.fullmatch(circuit_line)
        assert step is not None, head
        assert said is not None, outcomes
        assert circuit_said is not None, circuit_line
        at_once, after_retry, failed, stopped, fast = map(
            number, said.groups()
        )
        circuit_open = (
            metrics.failures[Outcome.CIRCUIT_OPEN]
            - (previous.failures[Outcome.CIRCUIT_OPEN])
        )
        trips = metrics.circuit_breaker_trips - previous.circuit_breaker_trips

        assert rate == int(step[1])
        assert 10 == int(step[2])
        assert executions - previous_executions == int(step[3])
        assert 10 == at_once + after_retry + failed + stopped + fast
        assert (
            metrics.successful_requests - previous.successful_requests
            == at_once + after_retry
        )
        assert circuit_open == stopped + fast
        assert (
            metrics.retried_requests - previous.retried_requests >= after_retry
        )
        # Each call that succeeded after a retry made two attempts or
        # more; each other call but the fast failures made one or more.
        assert at_once + 2 * after_retry + failed + stopped <= int(step[3])
        assert fast == steps[k].failed_fast
        if trips:
            assert trips == number(circuit_said[3])
            assert progress.states[3 * k + 2] == circuit_said[2]
        else:
            assert progress.states[3 * k + 2] == circuit_said[4]
        previous_executions, previous = executions, metrics
    assert lines[6][0].endswith(f"the circuit is {progress.states[6]}")
    recovered = PROBES.fullmatch(lines[7][0])
    assert recovered is not None, lines[7][0]
    probes_ok = (
        lines[7][2].successful_requests - lines[6][2].successful_requests
    )
    assert probes_ok == int(recovered[1])
    assert circuit == recovered[3]
    assert "CLOSED" == circuit
    assert 1 <= sum(step.trips for step in steps)

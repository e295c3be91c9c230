"""
The demo, run the way a user runs it: a subprocess, real servers, real time.

Each test is bounded by a generous hang guard; none asserts on speed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from pathlib import Path

import httpx2
import pytest
import trio

import resilient_mcp

from resilient_mcp.__main__ import main
from resilient_mcp._hlog import read_hlog


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
    hlog = read_hlog(tmp_path / "demo.hlog")
    total = int(text.split("total_requests")[1].split()[0])
    untagged = sum(
        interval.histogram().count
        for interval in hlog.intervals
        if interval.tag is None
    )
    assert total == untagged


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

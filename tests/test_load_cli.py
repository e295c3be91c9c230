"""
``resilient-mcp load`` as a program.

Its ``.hlog`` read back by ``hist``, its usage errors, and one real run
over streamable HTTP on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys

from pathlib import Path
from typing import Final

import pytest

import resilient_mcp

from resilient_mcp.__main__ import main
from resilient_mcp._cli import _load as load_cli
from resilient_mcp._hlog import read_hlog
from resilient_mcp._load import LoadPlan, _schedule, _series, run_load
from resilient_mcp.testing.flaky_server import (
    FlakyServerConfig,
    FlakyState,
    create_flaky_server,
)


PACKAGE_ROOT: Final = str(Path(resilient_mcp.__file__).resolve().parents[1])
STARTUP_TIMEOUT: Final = 20.0  # seconds for the server to listen
RUN_TIMEOUT: Final = 120.0  # seconds for a whole command (two cores, shared)


def child_env():
    """This environment, importing the resilient_mcp the tests import."""
    return {**os.environ, "PYTHONPATH": PACKAGE_ROOT, "PYTHONUNBUFFERED": "1"}


def run_cli(*args):
    """Run ``python -m resilient_mcp ARGS`` to the end; its result."""
    return subprocess.run(
        [sys.executable, "-m", "resilient_mcp", *args],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        env=child_env(),
        check=False,
    )


def summary_counts(text):
    """The count column of ``hist summary``, by tag."""
    rows = [line.split() for line in text.splitlines()[1:]]
    return {row[0]: int(row[1]) for row in rows}


async def test_the_hlog_is_read_back_by_hist_summary(autojump_clock, tmp_path):
    """
    The run's .hlog is read back by ``resilient-mcp hist summary``.

    It holds the latency and service series, one tagged line per series
    per interval, and the real program counts every request that ended in
    both.
    """
    state = FlakyState(FlakyServerConfig(base_latency=0.05, allow_crash=False))
    path = tmp_path / "run.hlog"

    report = await run_load(
        create_flaky_server(state=state),
        LoadPlan(rate=10, duration=3),
        tool="echo",
        arguments={"text": "x"},
        hlog=path,
        hlog_interval=1.0,
    )
    result = run_cli("hist", "summary", str(path))

    assert (30, 30) == (report.offered, report.succeeded)
    assert (0, "") == (result.returncode, result.stderr)
    assert {"latency": 30, "service": 30} == summary_counts(result.stdout)
    intervals = [i for i in read_hlog(path).intervals if i.tag == "latency"]
    # Cut every second from the start; the last when the run ended, as
    # the last request (started at 2.9 s) answered.
    origin = intervals[0].start  # the reader adds the log's base time
    assert [(0.0, 1.0), (1.0, 1.0), (2.0, 0.95)] == [
        (round(i.start - origin, 3), i.length) for i in intervals
    ]
    assert [10, 10, 10] == [i.count for i in intervals]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--args", "[1"], "--args is not JSON"),
        (["--args", "[1]"], "--args must be a JSON object"),
        (["--rate", "0"], "LoadPlan.rate must be"),
        (["--hlog-interval", "0"], "--hlog-interval must be > 0"),
        (["--config", "resilient_mcp"], "module:attribute"),
        (["--attempts", "0"], "max_attempts"),
    ],
)
def test_bad_options_fail_in_one_line(capsys, options, message):
    """A bad option is reported in one line, before connecting."""
    status = main(
        [
            "load",
            "--tool",
            "echo",
            "--rate",
            "1",
            "--duration",
            "1",
            *options,
            "http://127.0.0.1:9/mcp",
        ]
    )
    out, err = capsys.readouterr()

    assert (1, "") == (status, out)
    assert message in err
    assert err.startswith("resilient-mcp load: ")
    assert 1 == err.count("\n")


@pytest.fixture
def http_server():
    """
    A flaky server over streamable HTTP on an ephemeral port: its URL.

    It has a small capacity, and is killed when the test ends.
    """
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "resilient_mcp.testing.flaky_server",
            "http",
            "--port",
            "0",
            "--capacity",
            "4",
            "--base-latency",
            "0.02",
            "--overload-factor",
            "3",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=child_env(),
    )
    try:
        ready, _, _ = select.select([process.stdout], [], [], STARTUP_TIMEOUT)
        assert ready, "the flaky server did not start"
        yield json.loads(process.stdout.readline())["url"]
    finally:
        process.kill()
        process.wait(timeout=10)
        process.stdout.close()


@pytest.mark.slow
def test_a_real_run_over_http_counts_every_request(http_server, tmp_path):
    """
    A real run over streamable HTTP counts every request once.

    ``python -m resilient_mcp load`` against the flaky server, 2 s at 50
    requests a second: every request of the timetable is counted once,
    and its .hlog holds every one that ended.
    """
    path = tmp_path / "http.hlog"

    result = run_cli(
        "load",
        http_server,
        "--tool",
        "echo",
        "--args",
        '{"text": "hi"}',
        "--rate",
        "50",
        "--duration",
        "2",
        "--drain",
        "20",
        "--hlog",
        str(path),
        "--json",
    )
    report = json.loads(result.stdout)
    ended = report["started"] - report["failures"].get("unfinished", 0)
    summary = run_cli("hist", "summary", str(path))

    assert (0, "") == (result.returncode, result.stderr)
    assert 100 == report["offered"]
    assert report["offered"] == (
        report["succeeded"] + report["failed"] + report["shed"]
    )
    assert report["failed"] == sum(report["failures"].values())
    assert report["succeeded"] > 0
    assert ended == report["latency"]["count"] == report["service"]["count"]
    assert {"latency": ended, "service": ended} == summary_counts(
        summary.stdout
    )


@pytest.mark.slow
def test_a_run_over_stdio_counts_every_request():
    """
    A stdio command after ``--`` is the server.

    The load generator starts it with its own environment, and counts
    every request of a short run.
    """
    result = run_cli(
        "load",
        "--tool",
        "echo",
        "--args",
        '{"text": "hi"}',
        "--rate",
        "20",
        "--duration",
        "0.5",
        "--attempts",
        "1",
        "--json",
        "--",
        sys.executable,
        "-m",
        "resilient_mcp.testing.flaky_server",
        "stdio",
        "--base-latency",
        "0.01",
    )
    report = json.loads(result.stdout)

    assert (0, "") == (result.returncode, result.stderr)
    assert (10, 10, 0) == (
        report["offered"],
        report["succeeded"] + report["failed"],
        report["shed"],
    )
    assert (10, 10) == (report["calls"], report["attempts"])
    assert report["target"].endswith(
        "-m resilient_mcp.testing.flaky_server stdio --base-latency 0.01"
    )


def test_the_command_line_shows_the_engine_defaults():
    """
    The help's defaults are the engine's.

    The command line keeps its own copies so that it need not import the
    engine (and the MCP SDK) to build its parser.
    """
    assert (
        _schedule.DEFAULT_MAX_IN_FLIGHT,
        _schedule.DEFAULT_DRAIN,
        _series.DEFAULT_HLOG_INTERVAL,
    ) == (
        load_cli.DEFAULT_MAX_IN_FLIGHT,
        load_cli.DEFAULT_DRAIN,
        load_cli.DEFAULT_HLOG_INTERVAL,
    )


def test_building_the_parser_does_not_import_the_sdk():
    """``resilient-mcp --help`` lists ``load`` without importing ``mcp``."""
    code = (
        "import sys; from resilient_mcp._cli import build_parser; "
        "build_parser(); print('mcp' in sys.modules)"
    )

    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        env=child_env(),
        check=True,
    )

    assert "False\n" == result.stdout

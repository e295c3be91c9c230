"""
``resilient-mcp demo --fleet``, run the way a user runs it.

A subprocess, a real flaky server, real client processes and a real
redis-server.
The run skips, saying why, where the redis-server binary is missing
(tests/_redis_server.py); it is bounded by a generous hang guard and
asserts on counts, never on speed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

from pathlib import Path

import pytest

import resilient_mcp

from _redis_server import BINARY, MISSING
from resilient_mcp._demo._fleet import FAILURE_THRESHOLD
from resilient_mcp._hlog import read_hlog


pytestmark = pytest.mark.slow

HANG_GUARD = 120  # seconds; the demo itself takes about 10
PACKAGE_ROOT = str(Path(resilient_mcp.__file__).resolve().parent.parent)
FLEET = 4


def _demo(tmp_path: Path, *extra: str, env: dict[str, str] | None = None):
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "resilient_mcp",
            "demo",
            "--hlog",
            str(tmp_path / "demo.hlog"),
            *extra,
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env or {**os.environ, "PYTHONPATH": PACKAGE_ROOT},
        timeout=HANG_GUARD,
        check=False,
    )


@pytest.mark.skipif(BINARY is None, reason=MISSING)
def test_the_fleet_demo_opens_every_breaker_after_the_fleets_failures(
    tmp_path,
):
    """Four processes share one breaker: few calls reach the dead server."""
    done = _demo(tmp_path, "--fleet", str(FLEET))

    assert 0 == done.returncode, done.stderr
    out = done.stdout
    reached = int(re.search(r"; (\d+) calls reached it before", out)[1])
    per_process = [
        int(n)
        for n in re.findall(
            r"process \d+: (\d+) calls reached the server", out
        )
    ]
    assert FLEET == len(per_process)
    assert sum(per_process) == reached
    assert reached <= FAILURE_THRESHOLD + FLEET < FAILURE_THRESHOLD * FLEET
    assert (
        f"at most {FAILURE_THRESHOLD} + {FLEET} = {FAILURE_THRESHOLD + FLEET}"
        in out
    )
    by_fleet = sum(n < FAILURE_THRESHOLD for n in per_process)
    assert (
        f"{by_fleet} of {FLEET} processes found the circuit open before" in out
    )
    assert by_fleet >= FLEET - 1  # one process at most fails alone
    assert re.search(r"first rejection to the last's: \d+ ms", out)
    # Every process wrote its dump; the demo merged them and showed it.
    hlogs = [tmp_path / f"fleet-{i}.hlog" for i in range(FLEET)]
    assert "resilient-mcp hist merge " + " ".join(map(str, hlogs)) in out
    merged = read_hlog(tmp_path / "fleet.hlog")
    count = sum(i.count for i in merged.intervals if i.tag == "tools/call")
    assert reached + FLEET == count  # every failure, and each rejection
    assert re.search(rf"tools/call\s+{count}\s", out)


def test_the_fleet_demo_without_redis_says_how_to_get_it(tmp_path):
    """No redis-server on the PATH and no --redis: exit 2, one line."""
    bare = tmp_path / "bin"
    bare.mkdir()
    env = {
        **os.environ,
        "PYTHONPATH": PACKAGE_ROOT,
        "PATH": str(bare),
    }
    assert shutil.which("redis-server", path=env["PATH"]) is None

    done = _demo(tmp_path, "--fleet", str(FLEET), env=env)

    assert 2 == done.returncode
    assert "" == done.stdout
    lines = done.stderr.strip().splitlines()
    assert 1 == len(lines)
    assert "apt-get install redis-server" in lines[0]
    assert "--redis" in lines[0]


def test_the_fleet_demo_shares_through_the_redis_it_is_given(
    redis_server, tmp_path
):
    """With --redis URL the fleet shares through that server, not its own."""
    done = _demo(tmp_path, "--fleet", "2", "--redis", redis_server.url)

    assert 0 == done.returncode, done.stderr
    assert f"sharing their breaker through {redis_server.url}\n" in done.stdout
    assert "requests to Redis that failed or were too slow: 0" in done.stdout

"""
Every Python snippet in README.md runs as written, in a fresh interpreter.

The snippets are read from the README itself, so a change that breaks one
fails here.  A snippet that talks to the flaky server gets one started by
the README's own command, on an ephemeral port of 127.0.0.1; every wait on
a subprocess is bounded.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys

from pathlib import Path

import pytest
import trio

import resilient_mcp


README = Path(__file__).resolve().parent.parent / "README.md"
PACKAGE_ROOT = str(Path(resilient_mcp.__file__).resolve().parent.parent)
HANG_GUARD = 60  # seconds; every snippet finishes in a few
SERVER_COMMAND = "python3 -m resilient_mcp.testing.flaky_server"
README_URL = "http://127.0.0.1:8000/mcp"


def python_blocks(text: str) -> list[str]:
    """The bodies of the README's fenced ``python`` blocks, in order."""
    flags = re.MULTILINE | re.DOTALL
    return re.findall(r"^```python\n(.*?)^```$", text, flags)


def server_command(text: str) -> list[str]:
    """The README's command that starts the flaky server, on port 0."""
    (line,) = [
        line for line in text.splitlines() if line.startswith(SERVER_COMMAND)
    ]
    argv = shlex.split(line)
    argv[0] = sys.executable
    argv[argv.index("--port") + 1] = "0"
    return argv


BLOCKS = python_blocks(README.read_text(encoding="utf-8"))


def test_readme_has_its_snippets():
    """The README shows the MCP client, the pipeline on trio and asyncio."""
    assert 3 == len(BLOCKS)
    assert any(README_URL in block for block in BLOCKS)
    assert any("asyncio.run(" in block for block in BLOCKS)


async def run_snippet(source: str, tmp_path: Path, *argv: str) -> str:
    """Run *source* as a script in a fresh interpreter; its stdout."""
    script = tmp_path / "snippet.py"
    script.write_text(source, encoding="utf-8")
    result = await trio.run_process(
        [sys.executable, str(script), *argv],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": PACKAGE_ROOT},
    )
    out = result.stdout.decode()
    assert 0 == result.returncode, result.stderr.decode()
    return out


async def start_flaky_server(argv: list[str]) -> tuple[trio.Process, str]:
    """Start the flaky server; the process and its announced URL."""
    process = await trio.lowlevel.open_process(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": PACKAGE_ROOT},
    )
    assert process.stdout is not None
    line = b""
    while b"\n" not in line:
        chunk = await process.stdout.receive_some()
        assert chunk, "the flaky server exited at start"
        line += chunk
    return process, json.loads(line.partition(b"\n")[0])["url"]


@pytest.mark.slow
@pytest.mark.parametrize(
    "block",
    [block for block in BLOCKS if README_URL not in block],
    ids=["trio", "asyncio"],
)
async def test_pipeline_snippet_runs(block, tmp_path):
    """A pipeline snippet prints the call's result and nothing fails."""
    with trio.fail_after(HANG_GUARD):
        out = await run_snippet(block, tmp_path)

    assert "https://example.org: 200 OK" == out.splitlines()[0]


@pytest.mark.slow
async def test_mcp_client_snippet_runs_against_the_readme_server(tmp_path):
    """
    The MCP snippet against the server the README starts says it all.

    It prints each call's answer or error, then the accounting, with the
    latency in milliseconds.
    """
    (block,) = [block for block in BLOCKS if README_URL in block]
    argv = server_command(README.read_text(encoding="utf-8"))
    with trio.fail_after(HANG_GUARD):
        process, url = await start_flaky_server(argv)
        try:
            out = await run_snippet(block, tmp_path, url)
        finally:
            process.kill()
            await process.wait()
            assert process.stdout is not None
            await process.stdout.aclose()

    lines = out.splitlines()
    assert 6 == len(lines), out
    for i, line in enumerate(lines[:5]):
        assert line.startswith(f"call {i}"), out
        assert "None" not in line
    summary = re.fullmatch(
        r"(\d+) of (\d+) requests succeeded, (\d+) needed a retry, "
        r"p99 latency \d+\.\d ms",
        lines[5],
    )
    assert summary is not None, out
    succeeded = sum(line.startswith("call") for line in lines[:5]) - sum(
        "failed" in line for line in lines[:5]
    )
    assert succeeded == int(summary[1])
    assert 5 == int(summary[2])


CLIENT_DOC = README.parent / "docs" / "client.md"


@pytest.mark.slow
async def test_client_page_first_snippet_runs_against_the_readme_server(
    tmp_path,
):
    """
    docs/client.md's first snippet, pointed at the flaky server, works.

    The page starts the server as the README does; the test moves it to an
    ephemeral port and the snippet's URL with it.
    """
    text = CLIENT_DOC.read_text(encoding="utf-8")
    block = python_blocks(text)[0]
    argv = server_command(README.read_text(encoding="utf-8"))
    with trio.fail_after(HANG_GUARD):
        process, url = await start_flaky_server(argv)
        try:
            out = await run_snippet(block.replace(README_URL, url), tmp_path)
        finally:
            process.kill()
            await process.wait()
            assert process.stdout is not None
            await process.stdout.aclose()

    assert README_URL in block
    assert SERVER_COMMAND in text
    tools, answer, latency = out.splitlines()
    assert "'flaky'" in tools
    assert answer.startswith(("False {", "True None"))
    assert re.fullmatch(r"p99 \d+\.\d ms", latency)


DESIGN_JARGON = re.compile(r"seed's|seed design", re.IGNORECASE)


def test_docs_do_not_cite_our_design_document():
    """
    README, docs, help and docstrings speak plain words to users.

    Users have never read the design document the project started from,
    so nothing they read refers to "the seed's" settings or recipes.
    """
    root = README.parent
    files = [
        README,
        *sorted((root / "docs").glob("*.md")),
        *sorted((root / "src").rglob("*.py")),
    ]

    found = [
        f"{path.relative_to(root)}:{n}: {line.strip()}"
        for path in files
        for n, line in enumerate(path.read_text("utf-8").splitlines(), 1)
        if DESIGN_JARGON.search(line)
    ]
    assert [] == found


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["trio", "asyncio"])
async def test_quickstart_example_runs(backend, tmp_path):
    """``examples/quickstart.py``, which the README names, runs and reports."""
    example = README.parent / "examples" / "quickstart.py"
    with trio.fail_after(HANG_GUARD):
        out = await run_snippet(
            example.read_text(encoding="utf-8"), tmp_path, backend
        )

    assert "python3 examples/quickstart.py" in README.read_text("utf-8")
    assert re.fullmatch(
        r"\d+/20 succeeded, \d+ needed a retry, breaker [A-Z_]+",
        out.splitlines()[-1],
    )

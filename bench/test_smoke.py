"""
Smoke test for the benchmarks: ``python -m bench --quick`` runs end to end.

It checks that every benchmark runs and writes its outputs, never how fast
anything is.  Run it with ``pytest bench/test_smoke.py``.
"""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys

from pathlib import Path

import pytest

from resilient_mcp.__main__ import main as cli
from resilient_mcp._hlog import read_hlog


ROOT = Path(__file__).resolve().parent.parent
TIME_LIMIT = 60  # seconds; the quick run takes about 15 on two cores

pytestmark = pytest.mark.timeout(TIME_LIMIT + 10)


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bench")
    completed = subprocess.run(  # noqa: S603 (our own module)
        [sys.executable, "-m", "bench", "--quick", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=TIME_LIMIT,
        check=False,
    )
    assert 0 == completed.returncode, completed.stderr
    return out


def test_report_has_every_section(results):
    """The quick run writes latest.md with targets, comparisons and scale."""
    report = (results / "latest.md").read_text(encoding="utf-8")

    for heading in (
        "## Targets",
        "## Comparisons",
        "## Scale",
        "## Which peers run on trio",
        "### Full pipeline: ours, the floor, and peer stacks (trio)",
        (
            "### Full pipeline: ours, the floor, and peer stacks "
            "(asyncio under asyncio.run)"
        ),
        "### MCP call_tool round trip, stdio (trio)",
        # Issue 13: the overload policies, success path, vs their floors.
        "### Retry budget, success on the first attempt (trio)",
        "### Rate limiter, a conforming call (trio)",
        "### Adaptive throttling, an admitted call (trio)",
        "### Adaptive bulkhead with a free slot (trio)",
    ):
        assert heading in report
    assert "| not run |" not in report  # every target found its numbers


def test_hlogs_parse_with_a_histogram_per_round(results):
    """Each comparison's .hlog parses, and every interval holds values."""
    paths = sorted(results.glob("*.hlog"))

    assert {
        "pipeline-trio.hlog",
        "pipeline-asyncio-run.hlog",
        "mcp-stdio-asyncio.hlog",
        "retry-budget-trio.hlog",
        "rate-limit-trio.hlog",
        "throttling-trio.hlog",
        "adaptive-trio.hlog",
    } <= {p.name for p in paths}
    for path in paths:
        parsed = read_hlog(path)
        assert parsed.intervals
        assert all(i.tag for i in parsed.intervals)
        assert all(i.histogram().count > 0 for i in parsed.intervals)


def test_hist_cli_reads_the_hlogs(results):
    """``resilient-mcp hist summary --input-unit ns`` reads what we wrote."""
    out = io.StringIO()

    with contextlib.redirect_stdout(out):
        code = cli(
            [
                "hist",
                "summary",
                "--input-unit",
                "ns",
                "--unit",
                "us",
                str(results / "pipeline-trio.hlog"),
            ]
        )

    assert 0 == code
    assert "floor-pipeline-by-hand" in out.getvalue()

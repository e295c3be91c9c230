"""
docs/performance.md reports the targets as the benchmark report does.

The page's "Results" table restates the "Targets" table of
bench/results/latest.md, one row per target (the report gives the two
latency recordings a row each, the page one row for both).  Each row's
status is plainly ``met`` or ``missed, <by how much>``, and says the same as
the report's (issue 12: the page called a target "met at normal speed"
that its own table reported missed).
"""

from __future__ import annotations

import re

from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "performance.md"
REPORT = ROOT / "bench" / "results" / "latest.md"


def _table_after(text: str, heading: str) -> list[list[str]]:
    """The cells of the first Markdown table under *heading*."""
    section = text.split(f"\n{heading}\n", 1)[1]
    rows = []
    for line in section.splitlines():
        if line.startswith("|"):
            rows.append([cell.strip() for cell in line.strip("|").split("|")])
        elif rows:
            break
    return rows[2:]  # no header, no |---| line


def _report_statuses() -> list[tuple[str, str]]:
    """(met or missed, by how much) per target, as the page groups them."""
    statuses: list[tuple[str, str]] = []
    merge_next_recording = False
    for target, _limit, _measured, status, by in _table_after(
        REPORT.read_text(), "## Targets"
    ):
        verdict = status.strip("*")
        recording = target.startswith("Latency recording")
        if recording and merge_next_recording:
            # The page has one row for both recordings: met if both are.
            if verdict == "missed":
                statuses[-1] = (verdict, by)
        else:
            statuses.append((verdict, by))
        merge_next_recording = recording
    return statuses


def _page_statuses() -> list[str]:
    """The status cell of each row of the page's Results table."""
    rows = _table_after(PAGE.read_text(), "## Results")
    return [row[-1] for row in rows]


def test_page_says_plainly_met_or_missed() -> None:
    """Every status on the page is ``met`` or ``missed, <by how much>``."""
    unclear = [
        status
        for status in _page_statuses()
        # A ratio target says by how many percent; the absolute one (the
        # latency recording) by how many nanoseconds.
        if not re.fullmatch(
            r"met|missed, (\d+% (over|slower)|\d+ ns over)", status
        )
    ]

    assert [] == unclear


def test_page_agrees_with_report_row_by_row() -> None:
    """Each target is met or missed on the page as in the report."""
    expected = [
        verdict if verdict == "met" else f"missed, {by.split(' (')[0]}"
        for verdict, by in _report_statuses()
    ]

    assert expected == _page_statuses()


def test_page_counts_as_report_does() -> None:
    """The page's count of met targets is the report's."""
    report = REPORT.read_text()
    missed, total = map(
        int, re.search(r"(\d+) of (\d+) targets missed", report).groups()
    )
    page = PAGE.read_text()

    assert (
        f"**{total - missed} of the {total} targets are met; "
        f"{missed} are missed.**"
    ) in page

"""
``resilient-mcp hist``: show, summary, merge, diff, plot, and bad input.

``tests/data/sample.hlog`` holds three 10 s intervals from a
LatencyRecorder with two keys; ``sample.hgrm`` and ``sample-search.hgrm``
are what Java's ``HistogramLogProcessor -outputValueUnitRatio 1000``
printed for it (untagged, and with ``-tag tools/call:search``), and
``sample-summary.txt`` is what ``hist summary`` prints for it.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys

from pathlib import Path

import pytest

from resilient_mcp.__main__ import main
from resilient_mcp._cli._common import CliError
from resilient_mcp._cli._hist_report import (
    SummaryRow,
    by_tag,
    load,
    select,
    summarize,
)
from resilient_mcp._hlog import HlogWriter, read_hlog
from resilient_mcp._metrics import LatencyHistogram, LatencyRecorder


DATA = Path(__file__).parent / "data"
SAMPLE = str(DATA / "sample.hlog")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SUMMARY = (DATA / "sample-summary.txt").read_text()


def run(capsys, *argv: str) -> tuple[int, str, str]:
    """Run the CLI in-process; return its status, stdout and stderr."""
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def java_table(name: str) -> str:
    """A Java .hgrm file, without the two header lines Java adds."""
    lines = (DATA / name).read_text().splitlines(keepends=True)
    return "".join(lines[2:])


def test_show_prints_javas_distribution(capsys):
    """Show prints exactly the table Java's HistogramLogProcessor prints."""
    assert (0, java_table("sample.hgrm"), "") == run(
        capsys, "hist", "show", SAMPLE
    )


def test_show_tag_prints_javas_tagged_distribution(capsys):
    """Show --tag T is Java's HistogramLogProcessor -tag T."""
    assert (0, java_table("sample-search.hgrm"), "") == run(
        capsys, "hist", "show", "--tag", "tools/call:search", SAMPLE
    )


def test_show_units(capsys):
    """--unit scales the values; us shows recorded microseconds."""
    _, in_us, _ = run(capsys, "hist", "show", "--unit", "us", SAMPLE)
    _, in_s, _ = run(capsys, "hist", "show", "--unit", "s", SAMPLE)

    assert "#[Max     =  2191359.000, Total count    =         4205]" in (
        in_us.splitlines()
    )
    assert "#[Max     =        2.191, Total count    =         4205]" in (
        in_s.splitlines()
    )


def test_input_unit(capsys, tmp_path):
    """--input-unit ns reads values recorded in nanoseconds."""
    histogram = LatencyHistogram()
    histogram.record_us(2_500_000)  # 2.5 ms, in nanoseconds
    path = tmp_path / "java.hlog"
    with path.open("w") as stream:
        writer = HlogWriter(stream)
        writer.write_header(0.0)
        writer.write_interval(histogram, start=0.0, length=1.0)

    status, out, _ = run(
        capsys, "hist", "summary", "--input-unit", "ns", str(path)
    )

    assert 0 == status
    assert "(untagged)      1  2.500607  2.500607" in out


def test_show_per_tag(capsys):
    """--per-tag prints one distribution per tag, untagged first."""
    status, out, _ = run(capsys, "hist", "show", "--per-tag", SAMPLE)

    assert 0 == status
    assert [
        "#[Tag: (untagged)]",
        "#[Tag: tools/call:search]",
        "#[Tag: tools/list]",
    ] == [line for line in out.splitlines() if line.startswith("#[Tag")]
    assert java_table("sample-search.hgrm") in out


def test_show_key_matches_its_quoted_tag(capsys, tmp_path):
    """--tag accepts the operation key as well as the written tag."""
    recorder = LatencyRecorder()
    recorder.record("my tool", 0.002)
    path = tmp_path / "t.hlog"
    with path.open("w") as stream:
        writer = HlogWriter(stream)
        writer.write_header(0.0)
        recorder.dump_interval(writer, start=0.0, length=1.0)

    by_key = run(capsys, "hist", "show", "--tag", "my tool", str(path))
    by_tag = run(capsys, "hist", "show", "--tag", "my%20tool", str(path))

    assert by_key == by_tag
    assert (
        "#[Max     =        2.000, Total count    =            1]"
        in (by_key[1])
    )


def test_show_unknown_tag(capsys):
    """An unknown tag is one error line that lists the tags; status 1."""
    assert (
        1,
        "",
        (
            f"resilient-mcp: error: no 'nope' histograms in {SAMPLE} (tags: "
            "(untagged), tools/call:search, tools/list); pick one with "
            "--tag, or use --per-tag\n"
        ),
    ) == run(capsys, "hist", "show", "--tag", "nope", SAMPLE)


def test_summary(capsys):
    """Summary prints one line per tag: count, percentiles and max."""
    assert (0, SUMMARY, "") == run(capsys, "hist", "summary", SAMPLE)


def test_summarize_and_select():
    """The functions behind the commands work on loaded files."""
    files = load([SAMPLE])

    rows = summarize(files)

    assert (
        SummaryRow(
            tag="tools/list",
            count=2100,
            percentiles=(1501, 2853, 3557, 5179, 6439),
            max=7223,
        )
        == rows[2]
    )
    assert 2105 == select(files, "tools/call:search").count
    assert [None, "tools/call:search", "tools/list"] == list(by_tag(files))
    with pytest.raises(CliError, match="no 'x' histograms"):
        select(files, "x")


def test_merge_adds_files_and_intervals(capsys, tmp_path):
    """Merge writes one interval per tag with every count added up."""
    out = tmp_path / "merged.hlog"

    status, stdout, _ = run(
        capsys, "hist", "merge", SAMPLE, SAMPLE, "-o", str(out)
    )

    assert 0 == status
    assert (
        f"wrote {out}: 3 histograms ((untagged), tools/call:search, "
        "tools/list) from 18 intervals, 8410 untagged values\n"
    ) == stdout
    merged = read_hlog(out)
    assert [
        (None, 8410),
        ("tools/call:search", 4210),
        ("tools/list", 4200),
    ] == [(i.tag, i.count) for i in merged.intervals]
    assert [(1_700_000_000.0, 30.0)] * 3 == [
        (i.start, i.length) for i in merged.intervals
    ]
    doubled = (
        SUMMARY.replace("4205", "8410")
        .replace("2105", "4210")
        .replace("2100", "4200")
    )
    assert (0, doubled, "") == run(capsys, "hist", "summary", str(out))


def test_merge_never_overwrites_without_force(capsys, tmp_path):
    """An existing output is kept (status 1) unless --force is given."""
    out = tmp_path / "merged.hlog"
    out.write_text("precious")

    refused = run(capsys, "hist", "merge", SAMPLE, "-o", str(out))
    kept = out.read_text()
    forced = run(capsys, "hist", "merge", SAMPLE, "-o", str(out), "--force")

    assert (
        1,
        "",
        f"resilient-mcp: error: {out} exists; pass --force to overwrite it\n",
    ) == refused
    assert "precious" == kept
    assert 0 == forced[0]
    assert 3 == len(read_hlog(out).intervals)


def test_diff(capsys, tmp_path):
    """Diff shows both files' statistics and the ratio B/A."""
    doubled = tmp_path / "doubled.hlog"
    main(["hist", "merge", SAMPLE, SAMPLE, "-o", str(doubled)])
    capsys.readouterr()

    status, out, _ = run(capsys, "hist", "diff", SAMPLE, str(doubled))

    assert 0 == status
    assert (
        f"""\
A: {SAMPLE}
B: {doubled}
tag: (untagged)
                   A         B    B/A
count           4205      8410  2.000
mean(ms)      10.522    10.522  1.000
p50(ms)        3.287     3.287  1.000
p90(ms)       21.663    21.663  1.000
p95(ms)       31.567    31.567  1.000
p99(ms)       63.583    63.583  1.000
p99.9(ms)   1240.063  1240.063  1.000
p99.99(ms)  2191.359  2191.359  1.000
max(ms)     2191.359  2191.359  1.000
"""
        == out
    )


def test_diff_per_tag_with_a_missing_tag(capsys, tmp_path):
    """--per-tag compares every tag; one missing on a side reads 0 and -."""
    recorder = LatencyRecorder()
    recorder.record("tools/list", 0.003)
    only = tmp_path / "only.hlog"
    with only.open("w") as stream:
        writer = HlogWriter(stream)
        writer.write_header(0.0)
        recorder.dump_interval(writer, start=0.0, length=1.0)

    status, out, _ = run(
        capsys, "hist", "diff", "--per-tag", str(only), SAMPLE
    )

    assert 0 == status
    assert [
        "tag: (untagged)",
        "tag: tools/call:search",
        "tag: tools/list",
    ] == [line for line in out.splitlines() if line.startswith("tag:")]
    assert "count           0      2105    -" in out


def test_plot_writes_a_png(capsys, tmp_path):
    """Plot draws the percentile spectrum into a PNG file."""
    pytest.importorskip("matplotlib")
    out = tmp_path / "spectrum.png"

    status, stdout, _ = run(
        capsys, "hist", "plot", SAMPLE, "--per-tag", "-o", str(out)
    )

    assert (0, f"wrote {out}: 3 lines\n") == (status, stdout)
    assert PNG_MAGIC == out.read_bytes()[:8]


def test_plot_per_tag_of_several_files(capsys, tmp_path):
    """With several files, --per-tag draws a line per file and tag."""
    pytest.importorskip("matplotlib")
    out = tmp_path / "spectrum.svg"

    status, stdout, _ = run(
        capsys, "hist", "plot", "--per-tag", SAMPLE, SAMPLE, "-o", str(out)
    )

    assert (0, f"wrote {out}: 6 lines\n") == (status, stdout)
    assert "sample.hlog [tools/list]" in out.read_text()


def test_plot_never_overwrites_without_force(capsys, tmp_path):
    """Plot refuses an existing output unless --force is given."""
    pytest.importorskip("matplotlib")
    out = tmp_path / "spectrum.svg"
    out.write_bytes(b"precious")

    refused = run(capsys, "hist", "plot", SAMPLE, "-o", str(out))
    kept = out.read_bytes()
    forced = run(
        capsys,
        "hist",
        "plot",
        SAMPLE,
        SAMPLE,
        "--log-y",
        "--force",
        "-o",
        str(out),
    )

    assert 1 == refused[0]
    assert b"precious" == kept
    assert 0 == forced[0]
    assert b"<svg" in out.read_bytes()


def test_plot_unknown_format(capsys, tmp_path):
    """An output suffix matplotlib cannot write is one error line."""
    pytest.importorskip("matplotlib")
    out = tmp_path / "spectrum.xyz"

    status, _, err = run(capsys, "hist", "plot", SAMPLE, "-o", str(out))

    assert (
        1,
        f"resilient-mcp: error: {out}: unknown image format 'xyz'\n",
    ) == (
        status,
        err,
    )
    assert not out.exists()


def test_plot_without_matplotlib(tmp_path):
    """Without matplotlib, plot says to install resilient-mcp[plot]."""
    out = tmp_path / "spectrum.png"
    script = (
        "import sys; sys.modules['matplotlib'] = None; "
        "from resilient_mcp.__main__ import main; "
        f"sys.exit(main(['hist', 'plot', {SAMPLE!r}, '-o', {str(out)!r}]))"
    )

    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert (
        1,
        (
            "resilient-mcp: error: plotting needs matplotlib: pip install "
            "'resilient-mcp[plot]'\n"
        ),
    ) == (result.returncode, result.stderr)
    assert not out.exists()


def payload() -> str:
    """A valid encoded histogram."""
    histogram = LatencyHistogram()
    histogram.record(0.001)
    return histogram.encode()


HEADER = "#[Histogram log format version 1.3]\n"
GOOD = f"0.000,1.000,1.000,{payload()}\n"
ENVELOPE = base64.b64decode(payload())[:8]
BAD_FILES = {
    "text": ("hello world\nthis is not an hlog\n", 1, "not an HdrHistogram"),
    "binary": (PNG_MAGIC.decode("latin-1") + "\0\0", 1, "binary data"),
    "empty": ("", 1, "the file is empty"),
    "truncated": (HEADER + GOOD + GOOD[:30], 3, "truncated"),
    "base64": (HEADER + GOOD + "0,1,1,HISTF@@@@\n", 3, "not valid base64"),
    "zlib": (
        HEADER
        + "0,1,1,"
        + base64.b64encode(ENVELOPE[:4] + b"\0\0\0\4junk").decode()
        + "\n",
        2,
        "compressed payload is corrupt",
    ),
    "fields": (HEADER + GOOD + "0.000,1.000\n", 3, "4 comma-separated"),
    "number": (HEADER + f"soon,1.000,1.000,{payload()}\n", 2, "not a number"),
}


@pytest.mark.parametrize("kind", sorted(BAD_FILES))
@pytest.mark.parametrize("command", ["show", "summary", "merge", "plot"])
def test_bad_files_are_one_error_line(capsys, tmp_path, kind, command):
    """Each kind of bad file: status 1, one stderr line with file:line."""
    text, line, reason = BAD_FILES[kind]
    bad = tmp_path / f"{kind}.hlog"
    bad.write_bytes(text.encode("latin-1"))
    extra = (
        ["-o", str(tmp_path / "out")] if command in {"merge", "plot"} else []
    )

    status, out, err = run(capsys, "hist", command, SAMPLE, str(bad), *extra)

    assert (1, "") == (status, out)
    assert 1 == len(err.splitlines())
    assert err.startswith(f"resilient-mcp: error: {bad}:{line}: ")
    assert reason in err
    assert not (tmp_path / "out").exists()


def test_log_without_intervals(capsys, tmp_path):
    """A log with a header but no intervals has nothing to show: status 1."""
    empty = tmp_path / "empty.hlog"
    with empty.open("w") as stream:
        HlogWriter(stream).write_header(0.0)

    for command in ("summary", "merge"):
        extra = ["-o", str(tmp_path / "out")] if command == "merge" else []
        status, _, err = run(capsys, "hist", command, str(empty), *extra)

        assert (1, f"resilient-mcp: error: no histograms in {empty}\n") == (
            status,
            err,
        )
    assert not (tmp_path / "out").exists()


def test_output_in_a_missing_directory(capsys, tmp_path):
    """An output that cannot be created is one error line naming it."""
    pytest.importorskip("matplotlib")
    for command, name in (("merge", "m.hlog"), ("plot", "p.png")):
        out = tmp_path / "nowhere" / name
        status, _, err = run(capsys, "hist", command, SAMPLE, "-o", str(out))

        assert (
            1,
            f"resilient-mcp: error: {out}: No such file or directory\n",
        ) == (
            status,
            err,
        )


def test_bad_file_in_diff(capsys, tmp_path):
    """Diff reports a bad second file the same way."""
    bad = tmp_path / "bad.hlog"
    bad.write_text("nope\n")

    status, _, err = run(capsys, "hist", "diff", SAMPLE, str(bad))

    assert 1 == status
    assert err.startswith(f"resilient-mcp: error: {bad}:1: not an Hdr")


def test_missing_file(capsys, tmp_path):
    """A missing file is one error line naming it."""
    missing = tmp_path / "missing.hlog"

    assert (
        1,
        "",
        f"resilient-mcp: error: {missing}: No such file or directory\n",
    ) == run(capsys, "hist", "summary", str(missing))


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["hist"],
        ["hist", "nope"],
        ["hist", "show"],
        ["hist", "diff", SAMPLE],
        ["hist", "merge", SAMPLE],
        ["hist", "show", "--tag", "a", "--per-tag", SAMPLE],
        ["hist", "show", "--unit", "hours", SAMPLE],
    ],
)
def test_usage_errors_exit_2(capsys, argv):
    """Usage errors exit with status 2 and a usage message."""
    status, out, err = run(capsys, *argv)

    assert (2, "") == (status, out)
    assert "usage: resilient-mcp" in err


def test_help_exits_0(capsys):
    """--help prints the subcommands and exits 0."""
    status, out, _ = run(capsys, "hist", "--help")

    assert 0 == status
    for command in ("show", "summary", "merge", "diff", "plot"):
        assert command in out


def test_closed_pipe_ends_quietly():
    """Output to a pipe nobody reads (``| head``): no traceback, status 1."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "resilient_mcp", "hist", "show", SAMPLE],
            stdout=write_end,
            stderr=subprocess.PIPE,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write_end)

    assert (1, b"") == (result.returncode, result.stderr)


def test_python_dash_m(tmp_path):
    """Python -m resilient_mcp hist summary runs end to end."""
    result = subprocess.run(
        [sys.executable, "-m", "resilient_mcp", "hist", "summary", SAMPLE],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert (0, SUMMARY, "") == (
        result.returncode,
        result.stdout,
        result.stderr,
    )

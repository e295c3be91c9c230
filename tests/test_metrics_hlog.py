"""
HdrHistogram interval logs: the format, readers, and the periodic writer.
"""

from __future__ import annotations

import functools
import io
import os
import shutil
import subprocess

from pathlib import Path

import anyio
import pytest
import trio
import trio.testing

from hdrh.histogram import HdrHistogram
from hdrh.log import HistogramLogReader

from resilient_mcp._cli._hist_report import format_distribution
from resilient_mcp._config import ConfigurationError
from resilient_mcp._hlog import (
    HlogFormatError,
    HlogInterval,
    HlogWriter,
    histograms_by_tag,
    hlog_tag,
    key_from_tag,
    merge_by_tag,
    parse_hlog,
    read_hlog,
    run_hlog_writer,
    write_hlog,
    write_hlog_once,
)
from resilient_mcp._metrics import (
    HIGHEST_US,
    LatencyHistogram,
    LatencyRecorder,
)
from resilient_mcp.testing import run_virtual


START = 1_700_000_000.0  # Tue Nov 14 22:13:20 UTC 2023


def interval_fields(path: Path) -> list[str]:
    """The interval lines of a log, without their histogram payloads."""
    return [
        line.rsplit(",", 1)[0]
        for line in path.read_text().splitlines()
        if line and not line.startswith(("#", '"'))
    ]


def test_header_is_the_java_format():
    """The header is Java's: version, StartTime, BaseTime, legend."""
    out = io.StringIO()

    HlogWriter(out).write_header(START, comment=None)

    assert [
        "#[Histogram log format version 1.3]",
        (
            "#[StartTime: 1700000000.000 (seconds since epoch), "
            "Tue Nov 14 22:13:20 UTC 2023]"
        ),
        "#[BaseTime: 1700000000.000 (seconds since epoch)]",
        (
            '"StartTimestamp","Interval_Length","Interval_Max",'
            '"Interval_Compressed_Histogram"'
        ),
    ] == out.getvalue().splitlines()


def test_header_survives_an_impossible_date():
    """A start time no calendar can show still gives a valid header."""
    out = io.StringIO()
    writer = HlogWriter(out)

    writer.write_header(1e20, comment=None)

    assert (
        "#[StartTime: 100000000000000000000.000 (seconds since epoch), "
        "(not a date)]"
    ) == out.getvalue().splitlines()[1]
    assert "<HlogWriter 0 intervals to <_io.StringIO" in repr(writer)


def test_interval_line_format():
    """Lines read start, length and max (ms) to 3 decimals, then payload."""
    histogram = LatencyHistogram()
    histogram.record(0.012_345)
    out = io.StringIO()
    writer = HlogWriter(out)

    writer.write_interval(histogram, start=1.5, length=10.0)
    writer.write_interval(histogram, start=1.5, length=10.0, tag="a/b:c")

    assert [
        f"1.500,10.000,12.351,{histogram.encode()}",
        f"Tag=a/b:c,1.500,10.000,12.351,{histogram.encode()}",
    ] == out.getvalue().splitlines()
    assert 2 == writer.intervals


@pytest.mark.parametrize("tag", ["", "a,b", "a b", "a\nb"])
def test_bad_tags_are_refused(tag):
    """A tag that would break the line format raises ValueError."""
    with pytest.raises(ValueError, match="hlog tag"):
        HlogWriter(io.StringIO()).write_interval(
            LatencyHistogram(), start=0, length=1, tag=tag
        )


@pytest.mark.parametrize(
    ("key", "tag"),
    [
        ("tools/call:search", "tools/call:search"),
        ("my tool", "my%20tool"),
        ("a,b", "a%2Cb"),
        ("50%", "50%25"),
        ("tab\there", "tab%09here"),
        ("café", "caf%C3%A9"),
    ],
)
def test_tags_quote_keys_reversibly(key, tag):
    """Keys become tags without commas or whitespace, and come back."""
    assert tag == hlog_tag(key)
    assert key == key_from_tag(tag)


def recorded(path: Path) -> LatencyRecorder:
    """A recorder with known values, dumped once to *path*."""
    recorder = LatencyRecorder()
    for ms in range(1, 1001):
        recorder.record("tools/call:search", ms / 1000)
        if ms % 4 == 0:
            recorder.record("my tool", ms / 10_000)
    with path.open("w") as stream:
        writer = HlogWriter(stream)
        writer.write_header(START)
        recorder.dump_interval(writer, start=0.0, length=10.0)
    return recorder


def test_round_trip_through_our_reader(tmp_path):
    """read_hlog gets back every count and percentile that was dumped."""
    path = tmp_path / "calls.hlog"
    recorder = recorded(path)

    log = read_hlog(path)

    assert START == log.start_time
    assert [None, "my%20tool", "tools/call:search"] == log.tags()
    assert [(None, 1250), ("my%20tool", 250), ("tools/call:search", 1000)] == [
        (i.tag, i.count) for i in log.intervals
    ]
    assert [START] * 3 == [i.start for i in log.intervals]
    assert [START + 10] * 3 == [i.end for i in log.intervals]
    histograms = histograms_by_tag(log.intervals)
    for tag, key in [
        (None, None),
        ("my%20tool", "my tool"),
        ("tools/call:search", "tools/call:search"),
    ]:
        assert recorder.snapshot(key) == histograms[tag].snapshot()


def test_round_trip_through_hdrh_reader(tmp_path):
    """The hdrh package's HistogramLogReader reads our log."""
    path = tmp_path / "calls.hlog"
    recorder = recorded(path)

    reader = HistogramLogReader(str(path), HdrHistogram(1, HIGHEST_US, 3))
    try:
        histograms = []
        while (histogram := reader.get_next_interval_histogram()) is not None:
            histograms.append(histogram)
        start = reader.get_start_time_sec()
    finally:
        reader.close()

    assert START == start
    assert [None, "my%20tool", "tools/call:search"] == [
        h.get_tag() for h in histograms
    ]
    assert [1250, 250, 1000] == [h.get_total_count() for h in histograms]
    overall = recorder.histogram()
    assert [overall.max_value(), overall.min_value()] == [
        histograms[0].get_max_value(),
        histograms[0].get_min_value(),
    ]
    assert [START * 1000] * 3 == [h.get_start_time_stamp() for h in histograms]
    assert [
        recorder.snapshot("tools/call:search").p99,
        recorder.snapshot("tools/call:search").p50,
    ] == [
        histograms[2].get_value_at_percentile(99) / 1e6,
        histograms[2].get_value_at_percentile(50) / 1e6,
    ]


def test_write_hlog_once_dumps_the_totals(tmp_path):
    """write_hlog_once writes cumulative histograms and resets nothing."""
    recorder = LatencyRecorder()
    recorder.record("a", 0.001)
    recorder.start_interval()
    recorder.record("a", 0.002)
    recorder.record("b", 0.003)
    path = tmp_path / "now.hlog"

    write_hlog_once(recorder, path)

    log = read_hlog(path)
    assert [(None, 3), ("a", 2), ("b", 1)] == [
        (i.tag, i.count) for i in log.intervals
    ]
    assert ["0.000,0.000,3.001", "Tag=a,0.000,0.000,2.000"] == interval_fields(
        path
    )[:2]
    assert 3 == recorder.snapshot().count


def test_write_hlog_once_never_overwrites(tmp_path):
    """An existing file is kept unless overwrite=True."""
    path = tmp_path / "now.hlog"
    path.write_text("precious")

    with pytest.raises(FileExistsError):
        write_hlog_once(LatencyRecorder(), path)

    assert "precious" == path.read_text()
    write_hlog_once(LatencyRecorder(), path, overwrite=True)
    assert 1 == len(read_hlog(path).intervals)


async def test_periodic_writer_intervals(autojump_clock, tmp_path):
    """One interval per period, exact times, and a final one on cancel."""
    recorder = LatencyRecorder()
    recorder.record("before", 0.5)
    path = tmp_path / "calls.hlog"

    async with trio.open_nursery() as nursery:
        await nursery.start(run_hlog_writer, recorder, path, 10)
        recorder.record("a", 0.001)
        await trio.sleep(15)
        recorder.record("b", 0.002)
        await trio.sleep(10)
        nursery.cancel_scope.cancel()

    assert 25.0 == trio.current_time()
    assert [
        "0.000,10.000,1.000",
        "Tag=a,0.000,10.000,1.000",
        "10.000,10.000,2.000",
        "Tag=b,10.000,10.000,2.000",
        "20.000,5.000,0.000",
    ] == interval_fields(path)
    assert 3 == recorder.snapshot().count


async def test_periodic_writer_skips_missed_boundaries(
    autojump_clock, tmp_path
):
    """When the loop stalls past boundaries, one long interval covers it."""
    path = tmp_path / "calls.hlog"

    async with trio.open_nursery() as nursery:
        await nursery.start(run_hlog_writer, LatencyRecorder(), path, 10)
        await trio.testing.wait_all_tasks_blocked()
        autojump_clock.jump(35)
        await trio.sleep(10)
        nursery.cancel_scope.cancel()

    assert 45.0 == trio.current_time()
    assert [
        "0.000,35.000,0.000",
        "35.000,5.000,0.000",
        "40.000,5.000,0.000",
    ] == interval_fields(path)


async def test_no_empty_final_interval_on_a_boundary(autojump_clock, tmp_path):
    """Cancelled right after a dump, the writer adds no zero-length line."""
    path = tmp_path / "calls.hlog"

    async with trio.open_nursery() as nursery:
        await nursery.start(run_hlog_writer, LatencyRecorder(), path, 10)
        await trio.sleep(10)
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()

    assert 10.0 == trio.current_time()
    assert ["0.000,10.000,0.000"] == interval_fields(path)


async def test_one_writer_per_recorder(autojump_clock, tmp_path):
    """A second writer for the same recorder is refused; then allowed."""
    recorder = LatencyRecorder()

    async with trio.open_nursery() as nursery:
        await nursery.start(run_hlog_writer, recorder, tmp_path / "1.hlog", 1)
        with pytest.raises(RuntimeError, match="already has"):
            await nursery.start(
                run_hlog_writer, recorder, tmp_path / "2.hlog", 1
            )
        nursery.cancel_scope.cancel()

    async with trio.open_nursery() as nursery:
        await nursery.start(run_hlog_writer, recorder, tmp_path / "3.hlog", 1)
        nursery.cancel_scope.cancel()
    assert not (tmp_path / "2.hlog").exists()
    assert 0.0 == trio.current_time()


async def test_periodic_writer_never_overwrites(autojump_clock, tmp_path):
    """The writer refuses an existing file unless overwrite=True."""
    path = tmp_path / "calls.hlog"
    path.write_text("precious")
    recorder = LatencyRecorder()

    async with trio.open_nursery() as nursery:
        with pytest.raises(FileExistsError):
            await nursery.start(run_hlog_writer, recorder, path, 10)
        await nursery.start(
            functools.partial(run_hlog_writer, overwrite=True),
            recorder,
            path,
            10,
        )
        nursery.cancel_scope.cancel()

    assert "precious" != path.read_text()


@pytest.mark.parametrize("interval", [0, -1, float("inf"), float("nan"), "1"])
async def test_bad_interval(interval, tmp_path):
    """The interval must be a positive, finite number of seconds."""
    with pytest.raises(ConfigurationError, match="interval"):
        await run_hlog_writer(LatencyRecorder(), tmp_path / "x.hlog", interval)

    assert not (tmp_path / "x.hlog").exists()


def test_periodic_writer_on_asyncio(tmp_path):
    """The writer runs on asyncio too, on the loop's (virtual) clock."""
    recorder = LatencyRecorder()
    path = tmp_path / "calls.hlog"

    async def scenario() -> float:
        """Record for 12 s with a 5 s writer; return the final time."""
        async with anyio.create_task_group() as tg:
            await tg.start(run_hlog_writer, recorder, path, 5)
            recorder.record("a", 0.25)
            await anyio.sleep(12)
            tg.cancel_scope.cancel()
        return anyio.current_time()

    assert 12.0 == run_virtual(scenario, backend="asyncio")
    assert [
        "0.000,5.000,250.111",
        "Tag=a,0.000,5.000,250.111",
        "5.000,5.000,0.000",
        "10.000,2.000,0.000",
    ] == interval_fields(path)


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        (b"", 1, "the file is empty"),
        (b"hello, world\n", 1, "not an HdrHistogram log"),
        (b"\x89PNG\r\n\x1a\n\0\0\0", 1, "binary data"),
        (b"#[StartTime: soon (seconds since epoch)]\n", 1, "StartTime"),
        (b"#[Histogram log format version 1.3]\n1,2\n", 2, "4 comma"),
        (b'"StartTimestamp"\nTag=,1,2,3,x\n', 2, "needs a tag"),
        (b"#[BaseTime: 0 ]\nx,1,2,HIST\n", 2, "StartTimestamp is not"),
        (b"#[BaseTime: 0 ]\n1,nan,2,HIST\n", 2, "Interval_Length is not"),
        (b"#[BaseTime: 0 ]\n1,1,2,HIST$$\n", 2, "not valid base64"),
    ],
)
def test_parse_errors_name_the_line(text, line, reason):
    """Each malformed log raises HlogFormatError at the right line."""
    with pytest.raises(HlogFormatError, match=reason) as caught:
        parse_hlog(text, "x.hlog")

    assert ("x.hlog", line) == (caught.value.path, caught.value.line)
    assert str(caught.value).startswith(f"x.hlog:{line}: ")


def test_truncated_file_is_reported_as_such(tmp_path):
    """A log cut in the middle of its last line says it is truncated."""
    path = tmp_path / "calls.hlog"
    recorded(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 40])

    with pytest.raises(HlogFormatError, match="truncated") as caught:
        read_hlog(path)

    assert 8 == caught.value.line


def test_reader_is_lenient_where_java_is():
    """Blank lines, CRLF, other comments and no header are accepted."""
    histogram = LatencyHistogram()
    histogram.record(0.001)
    payload = histogram.encode()
    text = f"# a comment\r\n\r\n0.5,1.0,0.001,{payload}\r\n".encode()

    log = parse_hlog(text)

    assert [(None, 0.5, 1.0, 1)] == [
        (i.tag, i.start, i.length, i.count) for i in log.intervals
    ]
    assert log.start_time is None


def test_relative_and_absolute_timestamps():
    """Without BaseTime, Java's one-year rule tells relative from absolute."""
    payload = LatencyHistogram().encode()
    relative = f"#[StartTime: {START} x]\n2.0,1.0,0,{payload}\n"
    absolute = f"#[StartTime: {START} x]\n{START + 2},1.0,0,{payload}\n"

    assert START + 2 == parse_hlog(relative.encode()).intervals[0].start
    assert START + 2 == parse_hlog(absolute.encode()).intervals[0].start


def test_merge_by_tag_and_write_hlog(tmp_path):
    """Intervals add up per tag, spanning their times, and write back."""
    one, two = LatencyHistogram(), LatencyHistogram()
    one.record(0.001)
    two.record(0.004, 3)
    intervals = [
        HlogInterval.from_histogram(one, tag=None, start=100.0, length=10.0),
        HlogInterval.from_histogram(two, tag="x", start=105.0, length=10.0),
        HlogInterval.from_histogram(two, tag=None, start=130.0, length=5.0),
    ]

    merged = merge_by_tag(intervals)
    write_hlog(tmp_path / "m.hlog", merged.values())

    assert [(None, 100.0, 35.0, 4), ("x", 105.0, 10.0, 3)] == [
        (i.tag, i.start, i.length, i.count) for i in merged.values()
    ]
    assert ["0.000,35.000,4.001", "Tag=x,5.000,10.000,4.001"] == (
        interval_fields(tmp_path / "m.hlog")
    )
    assert 100.0 == read_hlog(tmp_path / "m.hlog").start_time


def find_jar() -> str | None:
    """The HdrHistogram jar: $HDRHISTOGRAM_JAR, or a Debian/Ubuntu path."""
    candidates = [os.environ.get("HDRHISTOGRAM_JAR", "")]
    candidates += sorted(
        str(p) for p in Path("/usr/share/java").glob("*dr*istogram*.jar")
    )
    return next((c for c in candidates if c and Path(c).is_file()), None)


JAVA = shutil.which("java")
JAR = find_jar()


@pytest.mark.skipif(
    JAVA is None or JAR is None,
    reason=(
        "needs java and the HdrHistogram jar: apt-get install "
        "default-jre-headless libhdrhistogram-java, or set HDRHISTOGRAM_JAR"
    ),
)
def test_java_histogram_log_processor_reads_our_log(tmp_path):
    """Java's HistogramLogProcessor prints our distribution, tag by tag."""
    path = tmp_path / "calls.hlog"
    recorder = recorded(path)
    assert JAVA is not None
    assert JAR is not None

    result = subprocess.run(
        [
            JAVA,
            "-cp",
            JAR,
            "org.HdrHistogram.HistogramLogProcessor",
            "-i",
            str(path),
            "-tag",
            "my%20tool",
            "-outputValueUnitRatio",
            "1000",
            "-o",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )

    distribution = (tmp_path / "out.hgrm").read_text().splitlines()
    expected = format_distribution(recorder.histogram("my tool"), 1000.0)
    assert expected.splitlines() == distribution[2:]
    assert "" == result.stderr
    intervals = (tmp_path / "out").read_text().splitlines()
    assert intervals[-1].startswith("10.000: I:250 ")

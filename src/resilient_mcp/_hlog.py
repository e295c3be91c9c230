"""
HdrHistogram interval logs (``.hlog``): writing, reading and merging.

An interval log is a text file with one line per histogram per time
interval, in the format of the Java ``HistogramLogWriter`` (version 1.3),
so that the Java ``HistogramLogProcessor``, the Python ``hdrh`` reader and
the HdrHistogram plotting tools all read what we write::

    #[Histogram log format version 1.3]
    #[StartTime: 1700000000.000 (seconds since epoch), Tue Nov 14 ...]
    #[BaseTime: 1700000000.000 (seconds since epoch)]
    "StartTimestamp","Interval_Length","Interval_Max","Interval_Compressed..."
    0.000,10.000,12.599,HISTFAAAAEV42pNpmSz...
    Tag=tools/call:search,0.000,10.000,8.191,HISTFAAAADx42pNpmSz...

Timestamps are seconds since the ``StartTime`` (wall-clock, read once);
interval lengths come from the event loop's clock, like every other
duration in the library.  ``Interval_Max`` is in milliseconds (values
are microseconds, divided by 1000), which is what the Java tools' default
"nanoseconds divided by a million" convention means, and is exact at
three decimals.  The recorder writes its overall histogram untagged, so
that tools which ignore tags (``HistogramLogProcessor`` without ``-tag``)
see everything, and each operation key as a tag.
"""

from __future__ import annotations

import contextlib
import math
import os
import string
import time
import urllib.parse

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Final, TextIO, final

import anyio
import attrs

from ._config import ConfigurationError
from ._errors import ResilienceError
from ._metrics import LatencyHistogram, merge_histograms
from ._timeouts import current_time


if TYPE_CHECKING:
    from anyio.abc import TaskStatus

    from ._metrics import LatencyRecorder


HLOG_FORMAT_VERSION: Final = "1.3"
MAX_VALUE_UNIT_RATIO: Final = 1000.0  # Interval_Max = max_us / this = ms
LEGEND: Final = (
    '"StartTimestamp","Interval_Length","Interval_Max",'
    '"Interval_Compressed_Histogram"'
)
DEFAULT_COMMENT: Final = (
    "[Written by resilient-mcp: values in microseconds, Interval_Max in "
    "milliseconds]"
)
_YEAR: Final = 365 * 24 * 3600.0  # seconds; Java's absolute-time cutoff
_TAG_SAFE: Final = "".join(c for c in string.punctuation if c not in ",%")
_DAYS: Final = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS: Final = (
    "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()  # noqa: SIM905
)


class HlogFormatError(ResilienceError, ValueError):
    """
    A file is not a valid HdrHistogram interval log.

    Raised by :func:`read_hlog`; the message names the file and the line.

    Args:
        path: The file.
        line: The 1-based line number of the problem.
        reason: What is wrong there.

    .. versionadded:: 0.1.0
    """

    def __init__(self, path: str, line: int, reason: str) -> None:
        super().__init__(f"{path}:{line}: {reason}")
        self.path = path
        self.line = line
        self.reason = reason


def hlog_tag(key: str) -> str:
    """
    The ``.hlog`` tag for an operation key.

    Tags end at the first comma and may not contain whitespace, so commas,
    whitespace, ``%`` and non-ASCII characters are percent-encoded (as in
    URLs); :func:`key_from_tag` reverses it.  ``tools/call:search`` stays
    as it is; ``"my tool"`` becomes ``my%20tool``.

    .. versionadded:: 0.1.0
    """
    return urllib.parse.quote(key, safe=_TAG_SAFE)


def key_from_tag(tag: str) -> str:
    """
    The operation key for an ``.hlog`` tag: the inverse of :func:`hlog_tag`.

    .. versionadded:: 0.1.0
    """
    return urllib.parse.unquote(tag)


def _human_date(epoch: float) -> str:
    # Java's Date.toString(), in UTC and in English whatever the locale.
    try:
        moment = datetime.fromtimestamp(epoch, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return "(not a date)"
    return (
        f"{_DAYS[moment.weekday()]} {_MONTHS[moment.month - 1]} "
        f"{moment:%d %H:%M:%S} UTC {moment.year}"
    )


@final
@attrs.define(eq=False, repr=False, on_setattr=attrs.setters.NO_OP)
class HlogWriter:
    """
    Write an interval log to a text stream, line by line.

    >>> import io
    >>> out = io.StringIO()
    >>> writer = HlogWriter(out)
    >>> writer.write_header(1700000000.0)
    >>> writer.write_interval(LatencyHistogram(), start=0.0, length=10.0)

    Args:
        stream: A text stream open for writing.
        max_value_unit_ratio: What the histograms' maximum is divided by
            for the ``Interval_Max`` column: 1000 turns microseconds into
            milliseconds.

    .. versionadded:: 0.1.0
    """

    stream: TextIO
    max_value_unit_ratio: float = attrs.field(
        default=MAX_VALUE_UNIT_RATIO, kw_only=True
    )
    intervals: int = attrs.field(init=False, default=0)
    """Interval lines written so far."""

    def __repr__(self) -> str:
        return f"<HlogWriter {self.intervals} intervals to {self.stream!r}>"

    def write_header(
        self, start_time: float, *, comment: str | None = DEFAULT_COMMENT
    ) -> None:
        """
        Write the version, start time, base time and legend lines.

        The base time equals the start time: interval timestamps are
        seconds since *start_time*.

        Args:
            start_time: Wall-clock seconds since the epoch.
            comment: A comment line to add (without the ``#``), or ``None``.
        """
        lines = [f"#[Histogram log format version {HLOG_FORMAT_VERSION}]"]
        if comment is not None:
            lines.append(f"#{comment}")
        lines.append(
            f"#[StartTime: {start_time:.3f} (seconds since epoch), "
            f"{_human_date(start_time)}]"
        )
        lines.append(f"#[BaseTime: {start_time:.3f} (seconds since epoch)]")
        lines.append(LEGEND)
        self.stream.write("\n".join(lines) + "\n")

    def write_interval(
        self,
        histogram: LatencyHistogram,
        *,
        start: float,
        length: float,
        tag: str | None = None,
    ) -> None:
        """
        Write one interval line.

        Args:
            histogram: The interval's histogram.
            start: Seconds since the log's base time.
            length: The interval's length, seconds.
            tag: The line's tag, or ``None`` for an untagged line.

        Raises:
            ValueError: *tag* is empty or contains a comma or whitespace
                (use :func:`hlog_tag`).
        """
        if tag is not None and (
            not tag or "," in tag or any(c.isspace() for c in tag)
        ):
            raise ValueError(
                f"an hlog tag must be non-empty, without commas or "
                f"whitespace, got {tag!r}"
            )
        prefix = "" if tag is None else f"Tag={tag},"
        top = histogram.max_value() / self.max_value_unit_ratio
        self.stream.write(
            f"{prefix}{start:.3f},{length:.3f},{top:.3f},"
            f"{histogram.encode()}\n"
        )
        self.intervals += 1

    def flush(self) -> None:
        """Flush the stream."""
        self.stream.flush()


def _create(path: str | os.PathLike[str], overwrite: bool) -> TextIO:
    return Path(path).open(
        "w" if overwrite else "x", encoding="utf-8", newline="\n"
    )


def _sync_to_disk(stream: TextIO) -> None:
    # Best effort: some files (pipes, some network mounts) cannot fsync,
    # and that must not replace the cancellation being propagated.
    with contextlib.suppress(OSError):
        os.fsync(stream.fileno())


def write_hlog_once(
    recorder: LatencyRecorder,
    path: str | os.PathLike[str],
    *,
    overwrite: bool = False,
) -> None:
    """
    Write everything *recorder* has recorded to a new ``.hlog`` file.

    The file holds a single interval with the cumulative histograms (what
    :meth:`LatencyRecorder.snapshot` reports): the overall one untagged,
    and one per operation key.  Its timestamp and length are 0: the
    recorder never reads a clock, so it does not know when the first value
    was recorded.  Nothing is reset, so this does not disturb a running
    :func:`run_hlog_writer`.

    Args:
        recorder: The recorder.
        path: The file to write.
        overwrite: Replace *path* if it exists.

    Raises:
        FileExistsError: *path* exists and *overwrite* is false.
        OSError: The file could not be written.

    .. versionadded:: 0.1.0
    """
    with _create(path, overwrite) as stream:
        writer = HlogWriter(stream)
        writer.write_header(time.time())
        recorder.dump_totals(writer, start=0.0, length=0.0)


def _interval(value: float | timedelta) -> float:
    seconds: object = (
        value.total_seconds() if isinstance(value, timedelta) else value
    )
    if (
        not isinstance(seconds, int | float)
        or isinstance(seconds, bool)
        or not 0 < seconds < math.inf
    ):
        raise ConfigurationError(
            f"run_hlog_writer interval must be a finite number of seconds "
            f"> 0, got {value!r}"
        )
    return float(seconds)


async def run_hlog_writer(
    recorder: LatencyRecorder,
    path: str | os.PathLike[str],
    interval: float | timedelta,
    *,
    overwrite: bool = False,
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """
    Write *recorder*'s latencies to an ``.hlog`` file every *interval*.

    Start it in a task group (or nursery) that you own, and cancel the
    group to stop it; it then writes a last, shorter interval with what
    was recorded since the previous one, and closes the file.

    .. code-block:: python

        async with anyio.create_task_group() as tg:
            await tg.start(run_hlog_writer, recorder, "calls.hlog", 10)
            ...  # the application
            tg.cancel_scope.cancel()

    Each interval holds what was recorded during it: the overall histogram
    untagged, and a tagged line per operation key that recorded anything.
    Values recorded before the writer started are left out of the first
    interval (they stay in the recorder's cumulative snapshot).  Interval
    boundaries are multiples of *interval* on the event loop's clock since
    the start; a boundary the loop was too busy to meet is skipped, not
    written as a burst of empty intervals.  Lines are written and flushed
    at each boundary, in the event loop's thread: they are small, and
    writing them inline keeps the boundaries exact.

    Args:
        recorder: The recorder to dump; one writer per recorder.
        path: The file to write.
        interval: Seconds between dumps, or a :class:`~datetime.timedelta`.
        overwrite: Replace *path* if it exists.
        task_status: Set by ``TaskGroup.start``, once the file is open and
            the first interval has begun.

    Raises:
        ConfigurationError: *interval* is not a positive number of seconds.
        RuntimeError: Another writer is running for *recorder*.
        FileExistsError: *path* exists and *overwrite* is false.
        OSError: The file could not be written.

    .. versionadded:: 0.1.0
    """
    period = _interval(interval)
    recorder._claim_writer()
    try:
        with _create(path, overwrite) as stream:
            writer = HlogWriter(stream)
            writer.write_header(time.time())
            writer.flush()
            recorder.start_interval()
            origin = last = current_time()
            task_status.started()
            ticks = 0
            try:
                while True:
                    ticks += 1
                    await anyio.sleep_until(origin + ticks * period)
                    now = current_time()
                    ticks = max(ticks, int((now - origin) / period))
                    recorder.dump_interval(
                        writer, start=last - origin, length=now - last
                    )
                    writer.flush()
                    last = now
            except anyio.get_cancelled_exc_class():
                # The last interval must reach the disk even though we are
                # being cancelled (typically because the application is
                # shutting down): the shield lets the fsync complete.
                with anyio.CancelScope(shield=True):
                    now = current_time()
                    if now > last or recorder._interval_count():
                        recorder.dump_interval(
                            writer, start=last - origin, length=now - last
                        )
                    writer.flush()
                    await anyio.to_thread.run_sync(_sync_to_disk, stream)
                raise
    finally:
        recorder._release_writer()


@attrs.frozen(kw_only=True)
class HlogInterval:
    """
    One interval line of an ``.hlog`` file.

    .. versionadded:: 0.1.0
    """

    tag: str | None
    """The line's tag, or ``None`` for an untagged line."""
    start: float
    """When the interval began: seconds since the epoch when the log
    says when it started, else the timestamp as written."""
    length: float
    """The interval's length, in seconds."""
    payload: str = attrs.field(repr=False)
    """The histogram, encoded (base64 V2 compressed) as in the file."""
    count: int
    """How many values the histogram holds."""
    line: int | None = None
    """The line number in the file (``None`` for a merged interval)."""

    @property
    def end(self) -> float:
        """When the interval ended, like :attr:`start`."""
        return self.start + self.length

    def histogram(self) -> LatencyHistogram:
        """
        Decode the interval's histogram.

        Intervals keep the compact encoded form, so that a long log does
        not hold hundreds of kilobytes of counters per line; each call
        decodes afresh.
        """
        return LatencyHistogram.decode(self.payload)

    @classmethod
    def from_histogram(
        cls,
        histogram: LatencyHistogram,
        *,
        tag: str | None,
        start: float,
        length: float,
    ) -> HlogInterval:
        """An interval holding *histogram* (encoded)."""
        return cls(
            tag=tag,
            start=start,
            length=length,
            payload=histogram.encode(),
            count=histogram.count,
        )


@attrs.frozen(kw_only=True)
class HlogFile:
    """
    The contents of an ``.hlog`` file.

    .. versionadded:: 0.1.0
    """

    path: str
    """The file it was read from."""
    start_time: float | None
    """The ``#[StartTime: ...]`` header, seconds since the epoch."""
    intervals: tuple[HlogInterval, ...]
    """The interval lines, in file order."""

    def tags(self) -> list[str | None]:
        """The tags of the intervals: ``None`` (untagged) first if any."""
        return _sorted_tags({i.tag for i in self.intervals})


def _sorted_tags(tags: Iterable[str | None]) -> list[str | None]:
    found = set(tags)
    ordered: list[str | None] = [None] if None in found else []
    ordered.extend(sorted(t for t in found if t is not None))
    return ordered


def _header_seconds(line: str, name: str) -> float | None:
    # The number after "#[StartTime: " or "#[BaseTime: ", up to a space.
    text = line[len(name) + 3 :].strip().split(" ", 1)[0]
    try:
        seconds = float(text)
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) else None


def _field(text: str, name: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise ValueError(f"{name} is not a number: {text!r}")
    return value


def _parse_interval(
    line: str,
) -> tuple[str | None, float, float, str, int]:
    tag = None
    rest = line
    if rest.startswith("Tag="):
        tag, comma, rest = rest[4:].partition(",")
        if not comma or not tag:
            raise ValueError("a 'Tag=' line needs a tag and then 4 fields")
    fields = rest.split(",", 3)
    if len(fields) != len(("start", "length", "max", "histogram")):
        raise ValueError(
            "expected 4 comma-separated fields (StartTimestamp, "
            f"Interval_Length, Interval_Max, histogram), found {len(fields)}"
        )
    start = _field(fields[0], "StartTimestamp")
    length = _field(fields[1], "Interval_Length")
    _field(fields[2], "Interval_Max")
    payload = fields[3].strip()
    try:
        count = LatencyHistogram.decode(payload).count
    except ValueError as exc:
        raise ValueError(f"corrupt histogram: {exc}") from None
    return tag, start, length, payload, count


@attrs.define
class _Parser:
    """The state of a Java ``HistogramLogReader``, one line at a time."""

    path: str
    start_time: float | None = None
    base_time: float | None = None
    looks_like_hlog: bool = False
    intervals: list[HlogInterval] = attrs.Factory(list)

    def fail(self, number: int, reason: str) -> HlogFormatError:
        return HlogFormatError(self.path, number, reason)

    def feed(self, number: int, raw: bytes, *, cut: bool) -> None:
        try:
            line = raw.decode("utf-8").rstrip("\r")
        except UnicodeDecodeError:
            line = "\0"
        if "\0" in line:
            raise self.fail(
                number, "binary data: not an HdrHistogram log, which is text"
            )
        if not line.strip():
            return
        if line.startswith("#"):
            self.comment(number, line)
        elif line.startswith('"StartTimestamp"'):
            self.looks_like_hlog = True
        else:
            self.interval(number, line, cut=cut)

    def comment(self, number: int, line: str) -> None:
        if line.startswith("#[Histogram log format version"):
            self.looks_like_hlog = True
        for name in ("StartTime", "BaseTime"):
            if line.startswith(f"#[{name}:"):
                seconds = _header_seconds(line, name)
                if seconds is None:
                    raise self.fail(number, f"unreadable {name} line")
                if name == "StartTime":
                    self.start_time = seconds
                else:
                    self.base_time = seconds
                self.looks_like_hlog = True

    def interval(self, number: int, line: str, *, cut: bool) -> None:
        try:
            tag, stamp, length, payload, count = _parse_interval(line)
        except ValueError as exc:
            if not self.looks_like_hlog and not self.intervals:
                reason = (
                    "not an HdrHistogram log: no log header, and this line "
                    "is not an interval line"
                )
            elif cut:
                reason = f"truncated: the file ends mid-line ({exc})"
            else:
                reason = str(exc)
            raise self.fail(number, reason) from None
        if self.base_time is None:
            # Java's rule for logs without a BaseTime line: timestamps
            # more than a year before the start time are relative to it.
            first = stamp if self.start_time is None else self.start_time
            self.base_time = first if stamp < first - _YEAR else 0.0
        self.intervals.append(
            HlogInterval(
                tag=tag,
                start=stamp + self.base_time,
                length=length,
                payload=payload,
                count=count,
                line=number,
            )
        )


def parse_hlog(data: bytes, path: str = "<hlog>") -> HlogFile:
    """
    Parse the contents of an ``.hlog`` file.

    Follows the Java ``HistogramLogReader``: ``#`` lines are comments,
    of which ``#[StartTime: ...]`` and ``#[BaseTime: ...]`` are read; the
    legend line is skipped; blank lines are ignored.  Without a
    ``BaseTime``, timestamps more than a year before the ``StartTime`` are
    taken as relative to it.

    Args:
        data: The file's bytes.
        path: The file's name, for error messages.

    Returns:
        The intervals, with absolute start times when the log has them.

    Raises:
        HlogFormatError: *data* is not a valid interval log; the message
            names the first bad line.

    .. versionadded:: 0.1.0
    """
    if not data.strip():
        raise HlogFormatError(
            path, 1, "the file is empty, not an HdrHistogram log"
        )
    lines = data.split(b"\n")
    cut = lines[-1] != b""  # the file ends mid-line
    if not cut:
        lines.pop()
    parser = _Parser(path)
    for number, raw in enumerate(lines, 1):
        parser.feed(number, raw, cut=cut and number == len(lines))
    return HlogFile(
        path=path,
        start_time=parser.start_time,
        intervals=tuple(parser.intervals),
    )


def read_hlog(path: str | os.PathLike[str]) -> HlogFile:
    """
    Read an ``.hlog`` file (see :func:`parse_hlog`).

    Raises:
        HlogFormatError: The file is not a valid interval log.
        OSError: The file could not be read.

    .. versionadded:: 0.1.0
    """
    return parse_hlog(Path(path).read_bytes(), os.fspath(path))


def _group(
    intervals: Iterable[HlogInterval],
) -> dict[str | None, list[HlogInterval]]:
    groups: dict[str | None, list[HlogInterval]] = {}
    for interval in intervals:
        groups.setdefault(interval.tag, []).append(interval)
    return {tag: groups[tag] for tag in _sorted_tags(groups)}


def histograms_by_tag(
    intervals: Iterable[HlogInterval],
) -> dict[str | None, LatencyHistogram]:
    """
    Add up the histograms of intervals, per tag.

    Args:
        intervals: Intervals from one or more logs.

    Returns:
        One histogram per tag, untagged first and then by tag.

    .. versionadded:: 0.1.0
    """
    return {
        tag: merge_histograms(i.histogram() for i in group)
        for tag, group in _group(intervals).items()
    }


def merge_by_tag(
    intervals: Iterable[HlogInterval],
) -> dict[str | None, HlogInterval]:
    """
    Add up intervals per tag, into one interval per tag.

    Args:
        intervals: Intervals from one or more logs.

    Returns:
        One interval per tag, untagged first and then by tag, spanning
        from the earliest start to the latest end of its tag's intervals.

    .. versionadded:: 0.1.0
    """
    merged = {}
    for tag, group in _group(intervals).items():
        start = min(i.start for i in group)
        merged[tag] = HlogInterval.from_histogram(
            merge_histograms(i.histogram() for i in group),
            tag=tag,
            start=start,
            length=max(i.end for i in group) - start,
        )
    return merged


def write_hlog(
    path: str | os.PathLike[str],
    intervals: Iterable[HlogInterval],
    *,
    start_time: float | None = None,
    comment: str | None = None,
    max_value_unit_ratio: float = MAX_VALUE_UNIT_RATIO,
    overwrite: bool = False,
) -> None:
    """
    Write intervals to a new ``.hlog`` file.

    Args:
        path: The file to write.
        intervals: The intervals, with absolute start times (as
            :func:`read_hlog` returns them).
        start_time: The log's ``StartTime``, seconds since the epoch; by
            default the earliest interval start.
        comment: A comment line for the header (without the ``#``).
        max_value_unit_ratio: What the maxima are divided by for the
            ``Interval_Max`` column (see :class:`HlogWriter`).
        overwrite: Replace *path* if it exists.

    Raises:
        FileExistsError: *path* exists and *overwrite* is false.
        OSError: The file could not be written.

    .. versionadded:: 0.1.0
    """
    intervals = list(intervals)
    if start_time is None:
        start_time = min((i.start for i in intervals), default=0.0)
    with _create(path, overwrite) as stream:
        writer = HlogWriter(stream, max_value_unit_ratio=max_value_unit_ratio)
        writer.write_header(start_time, comment=comment)
        for interval in intervals:
            writer.write_interval(
                interval.histogram(),
                start=interval.start - start_time,
                length=interval.length,
                tag=interval.tag,
            )

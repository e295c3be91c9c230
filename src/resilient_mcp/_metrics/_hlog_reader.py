"""
Reading ``.hlog`` interval logs, as the Java ``HistogramLogReader`` does.

:func:`parse_hlog` and :func:`read_hlog` turn a file into an
:class:`HlogFile` of :class:`HlogInterval` lines, which keep each
histogram encoded until it is asked for.  A file that breaks the format
(see :mod:`._hlog_format`) raises :class:`HlogFormatError` naming the
first bad line.
"""

from __future__ import annotations

import math
import os

from pathlib import Path
from typing import Final

import attrs

from ._histogram import LatencyHistogram
from ._hlog_format import HlogFormatError, sorted_tags


_YEAR: Final = 365 * 24 * 3600.0  # seconds; Java's absolute-time cutoff


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
        return sorted_tags({i.tag for i in self.intervals})


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

"""
Adding ``.hlog`` intervals up, per tag, and writing them back to a file.

What the ``resilient-mcp hist`` commands build on: intervals from one or
more logs (see :mod:`._hlog_reader`) are summed per tag into histograms
or into merged intervals, and :func:`write_hlog` writes intervals to a
new log.
"""

from __future__ import annotations

import os

from collections.abc import Iterable

from ._histogram import LatencyHistogram, merge_histograms
from ._hlog_format import MAX_VALUE_UNIT_RATIO, sorted_tags
from ._hlog_reader import HlogInterval
from ._hlog_writer import HlogWriter, create_log


def _group(
    intervals: Iterable[HlogInterval],
) -> dict[str | None, list[HlogInterval]]:
    groups: dict[str | None, list[HlogInterval]] = {}
    for interval in intervals:
        groups.setdefault(interval.tag, []).append(interval)
    return {tag: groups[tag] for tag in sorted_tags(groups)}


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
    with create_log(path, overwrite) as stream:
        writer = HlogWriter(stream, max_value_unit_ratio=max_value_unit_ratio)
        writer.write_header(start_time, comment=comment)
        for interval in intervals:
            writer.write_interval(
                interval.histogram(),
                start=interval.start - start_time,
                length=interval.length,
                tag=interval.tag,
            )

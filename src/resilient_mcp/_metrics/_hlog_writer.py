"""
Writing ``.hlog`` interval logs: line by line, once, or periodically.

:class:`HlogWriter` formats the lines (see :mod:`._hlog_format`);
:func:`write_hlog_once` dumps a recorder's totals, and
:func:`run_hlog_writer` is the task that cuts a recorder's intervals on
the event loop's clock and writes each one as it ends.
"""

from __future__ import annotations

import contextlib
import math
import os
import time

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Final, TextIO, final

import anyio
import attrs

from .._config import ConfigurationError
from .._timeouts import current_time
from ._histogram import LatencyHistogram
from ._hlog_format import (
    DEFAULT_COMMENT,
    HLOG_FORMAT_VERSION,
    LEGEND,
    MAX_VALUE_UNIT_RATIO,
)


if TYPE_CHECKING:
    from anyio.abc import TaskStatus

    from ._recorder import LatencyRecorder


_DAYS: Final = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS: Final = (
    "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()  # noqa: SIM905
)


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


def create_log(path: str | os.PathLike[str], overwrite: bool) -> TextIO:
    """Open *path* to write a log; it must not exist unless *overwrite*."""
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
    with create_log(path, overwrite) as stream:
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
    with recorder.claim_intervals(), create_log(path, overwrite) as stream:
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
                if now > last or recorder.interval_count:
                    recorder.dump_interval(
                        writer, start=last - origin, length=now - last
                    )
                writer.flush()
                await anyio.to_thread.run_sync(_sync_to_disk, stream)
            raise

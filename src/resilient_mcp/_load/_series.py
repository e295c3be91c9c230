"""
The load generator's latency series, and their ``.hlog`` interval log.

Two series per run, each an HdrHistogram: ``latency`` (from each
request's intended start) and ``service`` (from its actual start).  They
are written as tagged lines of an interval log (``Tag=latency``,
``Tag=service``) with :class:`~resilient_mcp._hlog.HlogWriter`, so that
``resilient-mcp hist`` reads them: ``hist summary run.hlog`` shows both,
``hist show --tag latency run.hlog`` one.  There is no untagged line: the
two series measure different things and must not be added up.
"""

from __future__ import annotations

import os
import time

from pathlib import Path
from typing import TYPE_CHECKING, Final, TextIO, final

import anyio
import attrs

from .._hlog import HlogWriter
from .._metrics import LatencyHistogram
from .._timeouts import current_time


if TYPE_CHECKING:
    from anyio.abc import TaskStatus


LATENCY: Final = "latency"
"""The series of latencies from each request's intended start."""
SERVICE: Final = "service"
"""The series of service times, from each request's actual start."""
SERIES: Final = (LATENCY, SERVICE)
DEFAULT_HLOG_INTERVAL: Final = 1.0  # seconds per .hlog interval


@final
@attrs.define(eq=False, repr=False)
class SeriesLog:
    """
    A histogram per series for the current interval, and the totals.

    .. versionadded:: 0.1.0
    """

    names: tuple[str, ...] = SERIES
    _current: dict[str, LatencyHistogram] = attrs.field(init=False)
    _totals: dict[str, LatencyHistogram] = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._current = {name: LatencyHistogram() for name in self.names}
        self._totals = {name: LatencyHistogram() for name in self.names}

    def __repr__(self) -> str:
        counts = ", ".join(
            f"{name}={self.histogram(name).count}" for name in self.names
        )
        return f"<SeriesLog {counts}>"

    def record(self, name: str, seconds: float) -> None:
        """Record *seconds* in series *name*."""
        self._current[name].record(seconds)

    def dump(self, writer: HlogWriter, *, start: float, length: float) -> None:
        """Write the current interval of every series, then start anew."""
        for name in self.names:
            current = self._current[name]
            writer.write_interval(
                current, start=start, length=length, tag=name
            )
            self._totals[name].add(current)
            current.reset()

    def histogram(self, name: str) -> LatencyHistogram:
        """Everything series *name* recorded: a new histogram."""
        total = self._totals[name].copy()
        total.add(self._current[name])
        return total


async def write_intervals(
    series: SeriesLog,
    writer: HlogWriter,
    interval: float = DEFAULT_HLOG_INTERVAL,
    *,
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """
    Write *series* to *writer* every *interval* seconds until cancelled.

    Intervals are cut on the event loop's clock from the start (what was
    recorded before goes to the first one); when cancelled, the task
    writes the last, shorter interval, then lets the cancellation go on.
    The header is the caller's to write.
    """
    origin = last = current_time()
    task_status.started()
    ticks = 0
    try:
        while True:
            ticks += 1
            await anyio.sleep_until(origin + ticks * interval)
            now = current_time()
            series.dump(writer, start=last - origin, length=now - last)
            writer.flush()
            last = now
    except anyio.get_cancelled_exc_class():
        now = current_time()
        series.dump(writer, start=last - origin, length=now - last)
        writer.flush()
        raise


def new_hlog(path: str | os.PathLike[str]) -> tuple[TextIO, HlogWriter]:
    """
    Create (or replace) the ``.hlog`` file *path*, its header written.

    Raises:
        OSError: The file could not be written.
    """
    stream = Path(path).open("w", encoding="utf-8", newline="\n")  # noqa: SIM115 (the caller closes it)
    writer = HlogWriter(stream)
    writer.write_header(time.time())
    return stream, writer

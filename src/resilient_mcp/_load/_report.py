"""
The load generator's report: what was offered, what came back, how fast.

:class:`LoadReport` is built from the scheduler's counts
(:class:`~._schedule.Tally`), the two latency series, the circuit's
timeline and the client's metrics; it prints as text
(:meth:`LoadReport.format_text`) or JSON (:meth:`LoadReport.as_dict`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import attrs

from .._metrics import LatencySnapshot


NOT_REJECTIONS: Final = frozenset({"error", "timeout", "retries_exhausted"})
"""Failure outcomes of calls that reached for the server; every other
failure outcome (``circuit_open``, ``bulkhead_full``, and whichever the
pipeline adds) is a call the client refused on its own."""

PERCENTILES: Final = (
    ("p50", "p50"),
    ("p90", "p90"),
    ("p99", "p99"),
    ("p99.9", "p999"),
    ("max", "max"),
)


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f} ms"


def _seconds(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.3f} s"


@attrs.frozen(kw_only=True)
class LoadReport:
    """
    The results of one ``resilient-mcp load`` run.

    Every request of the timetable is counted once:
    ``offered == succeeded + failed + shed``, and ``failed`` is the sum of
    ``failures``.

    .. versionadded:: 0.1.0
    """

    target: str
    """The server, as given."""
    tool: str
    """The tool called."""
    rate: float
    """Requests per second asked for."""
    duration: float
    """Seconds during which requests were started."""
    max_in_flight: int
    """The cap on requests running at once."""
    offered: int
    """Requests in the timetable (``rate * duration``)."""
    started: int
    """Requests started."""
    shed: int
    """Requests never started by the end of the duration (the in-flight
    cap was reached, or the generator fell that far behind)."""
    succeeded: int
    """Requests that returned a result that is not an error."""
    failed: int
    """Requests that failed, in every way (see ``failures``)."""
    failures: Mapping[str, int]
    """Failed requests by outcome: the client's outcomes
    (``circuit_open``, ``error``, ...), plus ``tool_error`` (error
    results), ``unfinished`` (still running when the drain ended) and
    ``other`` (failures the client did not count)."""
    rejected: int
    """Of ``failed``: calls the client refused without asking the server
    (every outcome but ``error``, ``timeout``, ``retries_exhausted``,
    ``tool_error``, ``unfinished`` and ``other``)."""
    late_starts: int
    """Requests that started more than a millisecond after their intended
    time."""
    latency: LatencySnapshot
    """Seconds from each request's intended start to its end."""
    service: LatencySnapshot
    """Seconds from each request's actual start to its end."""
    calls: int
    """Calls the client's retry policy saw."""
    attempts: int
    """Attempts those calls made, first ones included."""
    circuit_opens: int
    """Times the server's circuit opened."""
    time_to_open: float | None
    """Seconds from the fault's start to the circuit's first opening."""
    time_to_recover: float | None
    """Seconds from the fault's start to the first success after the
    circuit closed again."""

    @property
    def offered_rate(self) -> float:
        """Requests offered per second."""
        return self.offered / self.duration

    @property
    def goodput(self) -> float:
        """Successful requests per second of the run's duration."""
        return self.succeeded / self.duration

    @property
    def retry_amplification(self) -> float | None:
        """Attempts per call; ``None`` when no call was made."""
        return self.attempts / self.calls if self.calls else None

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-able data (what ``--json`` prints)."""
        data = attrs.asdict(self, recurse=True)
        data["failures"] = dict(self.failures)
        data["offered_rate"] = self.offered_rate
        data["goodput"] = self.goodput
        data["retry_amplification"] = self.retry_amplification
        return data

    def format_text(self) -> str:
        """The report as lines of text, one figure per line."""
        lines = [
            f"target            {self.target}  tool {self.tool}",
            (
                f"offered           {self.offered} requests in "
                f"{self.duration:g} s ({self.offered_rate:.1f}/s)"
            ),
            (
                f"started           {self.started} ({self.late_starts} "
                f"late); shed {self.shed} (max in flight "
                f"{self.max_in_flight})"
            ),
            (
                f"succeeded         {self.succeeded} "
                f"(goodput {self.goodput:.1f}/s)"
            ),
            (
                f"failed            {self.failed}; rejected by the client "
                f"{self.rejected}"
            ),
        ]
        lines.extend(
            f"  {outcome:<20} {count}"
            for outcome, count in sorted(self.failures.items())
        )
        for title, snapshot in (
            ("latency", self.latency),
            ("service time", self.service),
        ):
            figures = "  ".join(
                f"{label} {_ms(getattr(snapshot, name))}"
                for label, name in PERCENTILES
            )
            lines.append(f"{title:<18}{figures}")
        amplification = self.retry_amplification
        lines.append(
            "retries           "
            + (
                "-"
                if amplification is None
                else f"{amplification:.2f} attempts per call "
                f"({self.attempts} attempts / {self.calls} calls)"
            )
        )
        lines.append(
            f"circuit           opened {self.circuit_opens} times; "
            f"time to open {_seconds(self.time_to_open)}, "
            f"time to recover {_seconds(self.time_to_recover)}"
        )
        return "\n".join(lines) + "\n"

"""
What the demo shows and checks: progress lines, the final table, the log.
"""

from __future__ import annotations

import logging

from typing import TYPE_CHECKING, Final, TextIO

import attrs


if TYPE_CHECKING:
    import argparse

    from .._mcp import ResilientClientMetrics


logger: Final = logging.getLogger("resilient_mcp.demo")


class DemoFailure(Exception):  # noqa: N818
    """The library did something the demo checks it never does."""


@attrs.define
class Progress:
    """Prints phase headings and one-line results, flushed at once."""

    out: TextIO
    quiet: bool = False

    def phase(self, number: int, title: str) -> None:
        """Announce a phase (and log it)."""
        logger.info("Phase %d: %s", number, title)
        if not self.quiet:
            print(f"\n== Phase {number}: {title}", file=self.out, flush=True)

    def line(self, text: str) -> None:
        """One line of progress (also logged)."""
        logger.info("%s", text)
        if not self.quiet:
            print(f"   {text}", file=self.out, flush=True)


def _check(metrics: ResilientClientMetrics) -> None:
    """The promises the demo holds the library to."""
    total = (
        metrics.successful_requests
        + metrics.failed_requests
        + metrics.cancelled_requests
    )
    if total != metrics.total_requests:
        msg = f"{metrics.total_requests} requests, but outcomes add to {total}"
        raise DemoFailure(msg)
    if metrics.failed_requests != sum(metrics.failures.values()):
        msg = "failures by kind do not add up to failed_requests"
        raise DemoFailure(msg)
    timed = sum(op.latency.count for op in metrics.operations.values())
    if timed != metrics.total_requests:
        msg = f"{metrics.total_requests} requests, {timed} latencies"
        raise DemoFailure(msg)
    if metrics.circuit_breaker_trips < 1:
        msg = "the circuit never opened under a failing server"
        raise DemoFailure(msg)
    if metrics.bulkhead_rejections < 1:
        msg = "the bulkhead rejected nothing under 20 concurrent calls"
        raise DemoFailure(msg)
    for name, bulkhead in metrics.bulkheads.items():
        if bulkhead.active_requests or bulkhead.queued_requests:
            msg = f"bulkhead {name!r} leaked a slot or a queue place"
            raise DemoFailure(msg)


def _print_final(
    metrics: ResilientClientMetrics, args: argparse.Namespace, out: TextIO
) -> None:
    """Print the final metrics, and log them: the log ends with them."""
    for line in _final_lines(metrics, args):
        if line.strip():
            logger.info("%s", line.strip())
        print(line, file=out)


def _final_lines(
    metrics: ResilientClientMetrics, args: argparse.Namespace
) -> list[str]:
    ms = 1000.0
    lines = ["\n== Phase 5: final metrics"]
    rows = [
        ("total_requests", metrics.total_requests),
        ("successful_requests", metrics.successful_requests),
        ("failed_requests", metrics.failed_requests),
        ("retried_requests", metrics.retried_requests),
        ("circuit_breaker_trips", metrics.circuit_breaker_trips),
        ("bulkhead_rejections", metrics.bulkhead_rejections),
        ("tool_errors", metrics.tool_errors),
        ("average_latency", f"{metrics.average_latency * ms:.3f} ms"),
        ("p50_latency", f"{metrics.p50_latency * ms:.3f} ms"),
        ("p95_latency", f"{metrics.p95_latency * ms:.3f} ms"),
        ("p99_latency", f"{metrics.p99_latency * ms:.3f} ms"),
        ("p99.9_latency", f"{metrics.p999_latency * ms:.3f} ms"),
        ("max_latency", f"{metrics.max_latency * ms:.3f} ms"),
    ]
    lines.extend(f"   {name:<24}{value}" for name, value in rows)
    failures = ", ".join(
        f"{outcome.value}={count}"
        for outcome, count in metrics.failures.items()
        if count
    )
    lines.append(f"   {'failures by kind':<24}{failures or 'none'}")
    lines.append("   per operation:")
    lines.extend(
        f"     {name:<26}{op.total_requests:>5} requests  "
        f"p50 {op.latency.p50 * ms:8.3f} ms  "
        f"p99 {op.latency.p99 * ms:8.3f} ms"
        for name, op in sorted(metrics.operations.items())
        if op.total_requests
    )
    session = metrics.session
    lines.append(
        f"   session: {session.connects} connected, "
        f"{session.sessions_lost} lost, "
        f"{session.connect_failures} failed connection attempts"
    )
    lines.append(
        f"   every request accounted for: {metrics.total_requests} = "
        f"{metrics.successful_requests} ok + {metrics.failed_requests} "
        f"failed + {metrics.cancelled_requests} cancelled"
    )
    lines.append(
        f"\nlog: {args.log_file}   latency log: {args.hlog} "
        f"(try: resilient-mcp hist summary {args.hlog})"
    )
    return lines

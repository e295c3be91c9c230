"""
``resilient-mcp demo``: the command that runs :mod:`resilient_mcp._demo`.
"""

from __future__ import annotations

import argparse
import sys

from typing import Final

import trio

from .._demo import run_demo


DEFAULT_LOG: Final = "app.log"
DEFAULT_HLOG: Final = "demo.hlog"
DEFAULT_METRICS_PORT: Final = 8080  # the usual Prometheus target port
MAX_FLEET: Final = 64  # client processes of demo --fleet at most


def add_demo_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    """Add ``demo`` to the top-level parser."""
    demo = subparsers.add_parser(
        "demo",
        help="show the client at work against a flaky MCP server of ours",
        description=(
            "Start a flaky MCP server of ours in a subprocess and call it "
            "through ResilientMCPClient, in five phases: normal "
            "operations; error recovery (retries, the circuit breaker "
            "opening and closing); bulkhead isolation; session recovery "
            "(the server process dies and the client reconnects); and the "
            "final metrics.  Every sentence it prints is made from what "
            "was counted.  Exits 0 when every request was accounted for."
        ),
    )
    demo.add_argument(
        "--transport",
        choices=("stdio", "http"),
        default="stdio",
        help="how to reach the server (default: stdio)",
    )
    demo.add_argument(
        "--seed",
        type=int,
        default=1,
        help="seed for the server's failures and the workload (default: 1)",
    )
    demo.add_argument(
        "--metrics-port",
        type=int,
        default=DEFAULT_METRICS_PORT,
        help="port for /metrics on 127.0.0.1; 0 picks a free one "
        "(default: 8080)",
    )
    demo.add_argument(
        "--no-metrics",
        action="store_true",
        help="do not serve /metrics",
    )
    demo.add_argument(
        "--log-file",
        default=DEFAULT_LOG,
        help=f"where to write the log, replacing it (default: {DEFAULT_LOG})",
    )
    demo.add_argument(
        "--hlog",
        default=DEFAULT_HLOG,
        help=(
            "where to write the latency log, replacing it "
            f"(default: {DEFAULT_HLOG})"
        ),
    )
    demo.add_argument(
        "--quiet", action="store_true", help="print only the final metrics"
    )
    demo.add_argument(
        "--fleet",
        type=_processes,
        default=None,
        metavar="N",
        help=(
            "instead of the five phases: run N client processes against "
            "one failing server, sharing their breaker through Redis, and "
            "show it opening for all of them (needs the redis extra); "
            "each writes fleet-I.hlog next to --hlog"
        ),
    )
    demo.add_argument(
        "--redis",
        default=None,
        metavar="URL",
        help=(
            "with --fleet: the Redis to share through (default: start a "
            "redis-server from the PATH on a free port of 127.0.0.1)"
        ),
    )
    demo.set_defaults(handler=run_demo_command)


def _processes(value: str) -> int:
    number = int(value)
    if not 1 <= number <= MAX_FLEET:
        msg = f"must be between 1 and {MAX_FLEET}, got {value}"
        raise argparse.ArgumentTypeError(msg)
    return number


def run_demo_command(args: argparse.Namespace) -> int:
    """The ``demo`` command: run the demo, map the outcome to a status."""
    try:
        if args.fleet is not None:
            from .._demo._fleet import run_fleet_demo  # noqa: PLC0415

            return trio.run(run_fleet_demo, args)
        return trio.run(run_demo, args)
    except KeyboardInterrupt:
        print("\ninterrupted; everything was shut down", file=sys.stderr)
        return 130

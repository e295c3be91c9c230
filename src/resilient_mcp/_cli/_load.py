"""
``resilient-mcp load``: drive an MCP server at a constant arrival rate.

The command line parses the options into a :class:`~.._load.LoadPlan` and
a client configuration and calls :func:`~.._load.run_load`; the engine
lives in :mod:`resilient_mcp._load`, imported (with the MCP SDK) only when
the command runs.

Exit codes: 0 when the run completed (whatever the server did), 1 when it
could not run (no such tool, server unreachable, bad ``--args`` or
``--config``, the ``.hlog`` not writable), 2 for usage errors.
"""

from __future__ import annotations

import argparse
import json
import sys

from typing import Any, Final

import trio

from ._common import PROG, CliError


DEFAULT_MAX_IN_FLIGHT: Final = 1000  # requests (as _load.LoadPlan)
DEFAULT_DRAIN: Final = 30.0  # seconds (as _load.LoadPlan)
DEFAULT_HLOG_INTERVAL: Final = 1.0  # seconds (as _load.write_intervals)


def add_load_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    """Add ``load`` to the top-level parser."""
    load = subparsers.add_parser(
        "load",
        help="call an MCP tool at a constant rate and report what happened",
        description=(
            "Call one tool of an MCP server through ResilientMCPClient at "
            "a constant arrival rate (open loop, as wrk2: request i starts "
            "at i/rate whatever became of the others), and report the "
            "offered load, goodput, latency percentiles measured from each "
            "request's intended start (and the service time from its "
            "actual start), retry amplification, rejections, and when the "
            "circuit opened and the service recovered.  SERVER is a "
            "streamable HTTP URL, or a command serving MCP over stdio "
            "(put it after --)."
        ),
    )
    load.add_argument(
        "server", nargs="+", metavar="SERVER", help="a URL, or a command"
    )
    load.add_argument(
        "--tool", required=True, help="the tool to call (required)"
    )
    load.add_argument(
        "--args",
        default="{}",
        metavar="JSON",
        help="the tool's arguments, a JSON object (default: {})",
    )
    load.add_argument(
        "--rate",
        type=float,
        required=True,
        help="requests per second (required)",
    )
    load.add_argument(
        "--duration",
        type=float,
        required=True,
        help="seconds during which requests start (required)",
    )
    load.add_argument(
        "--max-in-flight",
        type=int,
        default=DEFAULT_MAX_IN_FLIGHT,
        help="the most requests running at once; later ones wait, and "
        "those not started by the end are shed "
        f"(default: {DEFAULT_MAX_IN_FLIGHT})",
    )
    load.add_argument(
        "--drain",
        type=float,
        default=DEFAULT_DRAIN,
        help="seconds the requests still running at the end get to finish "
        f"(default: {DEFAULT_DRAIN:g})",
    )
    load.add_argument(
        "--hlog",
        metavar="PATH",
        default=None,
        help="write the latency and service series to this .hlog file, "
        "replacing it",
    )
    load.add_argument(
        "--hlog-interval",
        type=float,
        default=DEFAULT_HLOG_INTERVAL,
        help="seconds per .hlog interval "
        f"(default: {DEFAULT_HLOG_INTERVAL:g})",
    )
    load.add_argument(
        "--json", action="store_true", help="print the report as JSON"
    )
    client = load.add_argument_group("client configuration")
    client.add_argument(
        "--config",
        metavar="MODULE:ATTR",
        default=None,
        help="a ResilientClientConfig (or a function returning one) to "
        "start from; the options below change it",
    )
    client.add_argument(
        "--attempts",
        type=int,
        default=None,
        help="attempts per call, 1 for no retries",
    )
    client.add_argument(
        "--no-breaker",
        action="store_true",
        help="circuit breakers that never open",
    )
    client.add_argument(
        "--no-bulkhead", action="store_true", help="no tools bulkhead"
    )
    client.add_argument(
        "--timeout", type=float, default=None, help="seconds per attempt"
    )
    load.set_defaults(handler=run_load_command)


def _arguments(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise CliError(f"--args is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise CliError(f"--args must be a JSON object, got {text}")
    return value


def _check_interval(seconds: float) -> None:
    if not seconds > 0:
        raise CliError(f"--hlog-interval must be > 0, got {seconds:g}")


def run_load_command(args: argparse.Namespace) -> int:
    """The ``load`` command: build the run, run it, print the report."""
    # The engine imports the MCP SDK: only this command needs it.
    from .._errors import ResilienceError  # noqa: PLC0415
    from .._load import (  # noqa: PLC0415
        LoadPlan,
        client_config,
        load_config,
        run_load,
        server_source,
    )

    try:
        arguments = _arguments(args.args)
        _check_interval(args.hlog_interval)
        plan = LoadPlan(
            rate=args.rate,
            duration=args.duration,
            max_in_flight=args.max_in_flight,
            drain=args.drain,
        )
        base = None if args.config is None else load_config(args.config)
        config = client_config(
            base,
            attempts=args.attempts,
            breaker=not args.no_breaker,
            bulkhead=not args.no_bulkhead,
            timeout=args.timeout,
        )
        server, target = server_source(args.server)
        report = trio.run(
            lambda: run_load(
                server,
                plan,
                tool=args.tool,
                arguments=arguments,
                config=config,
                hlog=args.hlog,
                hlog_interval=args.hlog_interval,
                target=target,
            )
        )
    except (
        CliError,
        ResilienceError,
        ValueError,
        ImportError,
        OSError,
    ) as exc:
        print(f"{PROG} load: {exc}", file=sys.stderr)  # noqa: T201
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)  # noqa: T201
        return 130
    if args.json:
        sys.stdout.write(json.dumps(report.as_dict(), indent=2) + "\n")
    else:
        sys.stdout.write(report.format_text())
    return 0

"""
A misbehaving MCP server for testing resilient clients.

Use it in-process::

    from resilient_mcp.testing.flaky_server import (
        FlakyServerConfig, create_flaky_server,
    )
    server = create_flaky_server(FlakyServerConfig(failure_rate=0.3, seed=1))
    async with mcp.Client(server) as client: ...

or as a subprocess, over stdio or streamable HTTP::

    python -m resilient_mcp.testing.flaky_server stdio --failure-rate 0.3
    python -m resilient_mcp.testing.flaky_server http --port 0 --retry-after 1

A capacity model makes it a target for load tests: ``--capacity 10
--base-latency 0.05 --overload-factor 4`` serves 10 requests at once in
50 ms each, slows down in proportion beyond that, and fails requests at
once beyond 40 in flight (see :func:`create_flaky_server`);
``--slow-rate 0.01`` makes 1 % of requests ``--slow-factor`` (10) times
slower, a slow tail.

In HTTP mode the server prints one JSON line to stdout once it accepts
connections, ``{"event": "listening", "host": ..., "port": ..., "url":
...}``, and writes the same object to ``--port-file`` when given; that is
how a test finds an ephemeral port.  The MCP endpoint is ``/mcp``.

See :func:`create_flaky_server` for the tools, resources and prompts.
"""

from __future__ import annotations

import argparse
import json
import sys

from pathlib import Path
from typing import TYPE_CHECKING

import anyio

from ._flaky_app import ITEM_TEMPLATE, create_flaky_server
from ._flaky_http import (
    DEFAULT_HOST,
    MCP_PATH,
    HTTPFaultMiddleware,
    create_flaky_http_app,
    serve_http,
    write_port_file,
)
from ._flaky_state import CONTROL_TOOLS, FlakyServerConfig, FlakyState


if TYPE_CHECKING:
    from collections.abc import Sequence


__all__ = [
    "CONTROL_TOOLS",
    "DEFAULT_HOST",
    "ITEM_TEMPLATE",
    "MCP_PATH",
    "FlakyServerConfig",
    "FlakyState",
    "HTTPFaultMiddleware",
    "create_flaky_http_app",
    "create_flaky_server",
    "main",
]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m resilient_mcp.testing.flaky_server",
        description="An MCP server that fails, stalls and crashes on demand.",
    )
    sub = parser.add_subparsers(dest="transport", required=True)
    stdio = sub.add_parser("stdio", help="serve over stdin/stdout")
    http = sub.add_parser("http", help="serve streamable HTTP with uvicorn")
    for p in (stdio, http):
        p.add_argument("--name", default="flaky", help="server name")
        p.add_argument(
            "--failure-rate",
            type=float,
            default=0.0,
            help="probability that the flaky tool fails (default 0)",
        )
        p.add_argument(
            "--hang-rate",
            type=float,
            default=0.0,
            help="probability that the flaky tool never answers (default 0)",
        )
        p.add_argument(
            "--crash-rate",
            type=float,
            default=0.0,
            help="probability that the flaky tool ends the process",
        )
        p.add_argument(
            "--latency",
            type=float,
            default=0.0,
            help="seconds added to every non-control request (default 0)",
        )
        p.add_argument(
            "--capacity",
            type=int,
            default=0,
            help="requests served at full speed at once; more are slower "
            "in proportion (default 0: no limit)",
        )
        p.add_argument(
            "--base-latency",
            type=float,
            default=0.0,
            help="seconds a request takes within capacity (default 0)",
        )
        p.add_argument(
            "--overload-factor",
            type=float,
            default=0.0,
            help="fail requests at once beyond this many times capacity "
            "in flight (default 0: never)",
        )
        p.add_argument(
            "--slow-rate",
            type=float,
            default=0.0,
            help="probability that a request is --slow-factor times "
            "slower (default 0)",
        )
        p.add_argument(
            "--slow-factor",
            type=float,
            default=10.0,
            help="how many times slower a slow request is (default 10)",
        )
        p.add_argument("--seed", type=int, default=None, help="random seed")
        p.add_argument(
            "--no-crash",
            action="store_true",
            help="make the crash tool answer an error instead of exiting",
        )
        p.add_argument(
            "--list-cache-ttl-ms",
            type=int,
            default=0,
            help="ttlMs cache hint on list results (default 0: no cache)",
        )
    stdio.add_argument(
        "--backend",
        choices=("asyncio", "trio"),
        default="asyncio",
        help="event loop of the server (default asyncio)",
    )
    http.add_argument("--host", default=DEFAULT_HOST)
    http.add_argument(
        "--port", type=int, default=0, help="0 picks an ephemeral port"
    )
    http.add_argument(
        "--port-file",
        type=Path,
        default=None,
        help="also write the listening announcement (JSON) to this file",
    )
    http.add_argument(
        "--http-status",
        type=int,
        default=503,
        help="status of injected HTTP faults (default 503)",
    )
    http.add_argument(
        "--http-reject-count",
        type=int,
        default=0,
        help="answer the next N JSON-RPC requests with --http-status",
    )
    http.add_argument(
        "--http-reject-rate",
        type=float,
        default=0.0,
        help="probability of answering any request with --http-status",
    )
    http.add_argument(
        "--http-fault-handshake",
        action="store_true",
        help="let HTTP faults hit initialize and server/discover too",
    )
    http.add_argument(
        "--retry-after",
        default=None,
        help="Retry-After value of injected faults (seconds or HTTP date)",
    )
    return parser


def _config(args: argparse.Namespace) -> FlakyServerConfig:
    http = args.transport == "http"
    return FlakyServerConfig(
        name=args.name,
        failure_rate=args.failure_rate,
        hang_rate=args.hang_rate,
        crash_rate=args.crash_rate,
        latency=args.latency,
        capacity=args.capacity,
        base_latency=args.base_latency,
        overload_factor=args.overload_factor,
        slow_rate=args.slow_rate,
        slow_factor=args.slow_factor,
        seed=args.seed,
        allow_crash=not args.no_crash,
        list_cache_ttl_ms=args.list_cache_ttl_ms,
        http_status=args.http_status if http else 503,
        http_reject_count=args.http_reject_count if http else 0,
        http_reject_rate=args.http_reject_rate if http else 0.0,
        retry_after=args.retry_after if http else None,
        http_fault_handshake=http and args.http_fault_handshake,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """
    Run the flaky server from the command line.

    Args:
        argv: The arguments, without the program name; ``sys.argv[1:]``
            when ``None``.

    Returns:
        The process exit status.

    .. versionadded:: 0.1.0
    """
    args = _parser().parse_args(argv)
    try:
        config = _config(args)
    except ValueError as exc:
        print(f"flaky_server: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    state = FlakyState(config)
    server = create_flaky_server(state=state)
    if args.transport == "stdio":
        anyio.run(server.run_stdio_async, backend=args.backend)
        return 0
    port_file: Path | None = args.port_file

    def announce(host: str, port: int) -> None:
        info = {
            "event": "listening",
            "host": host,
            "port": port,
            "url": f"http://{host}:{port}{MCP_PATH}",
        }
        if port_file is not None:
            write_port_file(port_file, info)
        print(json.dumps(info), flush=True)  # noqa: T201

    serve_http(
        create_flaky_http_app(server, state),
        host=args.host,
        port=args.port,
        announce=announce,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

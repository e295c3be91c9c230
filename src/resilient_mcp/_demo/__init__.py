"""
``resilient-mcp demo``: a scripted workload against a real flaky server.

The demo starts an MCP server of ours in a subprocess (stdio by default,
streamable HTTP with ``--transport http``) whose tools succeed, fail at a
rate, slow down and crash, and runs five phases through
:class:`~resilient_mcp.ResilientMCPClient`:

1. normal operations;
2. error recovery: retries, the circuit opening, failing fast, probing and
   closing again, each sentence made from the counts of that step;
3. bulkhead isolation: 20 concurrent tool calls against a small tools
   bulkhead while resource reads go on unharmed;
4. session recovery: the server process dies twice, the second time right
   after the client reconnected, and a new one takes over each time;
5. final metrics, checked: every request accounted for exactly once.

While it runs it prints progress, serves ``/metrics`` (127.0.0.1:8080 by
default), logs to ``app.log`` (breaker transitions, retries, rejections, and
the final metrics last), and writes
an ``.hlog`` latency log that ``resilient-mcp hist show`` reads.  It exits
non-zero if the library misbehaved.

``demo --fleet N`` runs :mod:`._fleet` instead: N client processes
sharing one circuit breaker through Redis against one failing server.
"""

from __future__ import annotations

import logging
import sys

from typing import TYPE_CHECKING, Final

import trio

from ._phases import PHASE_LIMIT, _run_phases
from ._report import DemoFailure, Progress, _print_final
from ._server import _DemoServer


if TYPE_CHECKING:
    import argparse


__all__ = ["run_demo"]

logger: Final = logging.getLogger("resilient_mcp.demo")


def _configure_logging(path: str) -> logging.Handler:
    handler = logging.FileHandler(path, mode="w", encoding="utf-8")
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger("resilient_mcp")
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    root.propagate = False
    return handler


async def run_demo(args: argparse.Namespace) -> int:
    """
    Run the demo in the current trio run.

    Returns:
        0 when every check passed, 1 when the library misbehaved or a
        phase overran its time limit.
    """
    handler = _configure_logging(args.log_file)
    progress = Progress(sys.stdout, quiet=args.quiet)
    try:
        async with _DemoServer(args) as server:
            try:
                metrics = await _run_phases(args, server, progress)
            except BaseExceptionGroup as group:
                raise _single(group) from None
    except DemoFailure as exc:
        logger.error("demo check failed: %s", exc)  # noqa: TRY400
        print(f"resilient-mcp demo: FAILED: {exc}", file=sys.stderr)
        return 1
    except trio.TooSlowError:
        logger.error("a demo phase overran its time limit")  # noqa: TRY400
        print(
            "resilient-mcp demo: FAILED: a phase overran its time limit "
            f"({PHASE_LIMIT:g}s)",
            file=sys.stderr,
        )
        return 1
    except OSError as exc:
        print(f"resilient-mcp demo: {exc}", file=sys.stderr)
        return 1
    else:
        _print_final(metrics, args, sys.stdout)
        return 0
    finally:
        logging.getLogger("resilient_mcp").removeHandler(handler)
        handler.close()


def _single(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one real error inside nested groups, or the group itself."""
    leaves: list[BaseException] = []
    pending: list[BaseException] = [group]
    while pending:
        exc = pending.pop()
        if isinstance(exc, BaseExceptionGroup):
            pending.extend(exc.exceptions)
        else:
            leaves.append(exc)
    return leaves[0] if len(leaves) == 1 else group

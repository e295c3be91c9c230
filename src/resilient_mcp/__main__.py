"""
The ``resilient-mcp`` command: ``python -m resilient_mcp COMMAND ...``.

A thin dispatcher: each command registers a subparser and a handler
(:mod:`resilient_mcp._cli`), and the handlers call library functions.
Commands:

``hist``
    Inspect, merge, compare and plot HdrHistogram interval logs
    (:mod:`resilient_mcp._cli._hist`).
``demo``
    Run a scripted workload against a flaky MCP server of ours
    (:mod:`resilient_mcp._cli._demo`, running :mod:`resilient_mcp._demo`).
``load``
    Call an MCP tool at a constant arrival rate and report what happened
    (:mod:`resilient_mcp._cli._load`, running :mod:`resilient_mcp._load`).
"""

from __future__ import annotations

import os
import sys

from typing import TYPE_CHECKING

from ._cli import build_parser


if TYPE_CHECKING:
    import argparse

    from collections.abc import Callable


def main(argv: list[str] | None = None) -> int:
    """
    Run the ``resilient-mcp`` command line.

    Args:
        argv: The arguments, without the program name; ``None`` for
            :data:`sys.argv`.

    Returns:
        The exit status: 0 for success, 1 for a failure (reported in one
        line on stderr), 2 for a usage error.

    .. versionadded:: 0.1.0
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0), or a usage error (2)
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        return 1
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        status = handler(args)
        sys.stdout.flush()  # here, so that a closed pipe is caught below
    except BrokenPipeError:
        # The reader went away (`... | head`): stop quietly, and keep the
        # interpreter from complaining when it flushes stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    return status


if __name__ == "__main__":
    sys.exit(main())

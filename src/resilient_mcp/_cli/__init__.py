"""
The ``resilient-mcp`` command line: one module per command group.

:func:`build_parser` registers every command;
:func:`resilient_mcp.__main__.main` parses and dispatches.  Commands:

``hist``
    Inspect, merge, compare and plot HdrHistogram interval logs
    (:mod:`._hist`, doing the work with :mod:`._hist_report` and
    :mod:`._hist_plot`).
``demo``
    Run a scripted workload against a flaky MCP server of ours
    (:mod:`._demo`, running :mod:`resilient_mcp._demo`).
``load``
    Call an MCP tool at a constant arrival rate and report what happened
    (:mod:`._load`, running :mod:`resilient_mcp._load`).
"""

from __future__ import annotations

import argparse

from ._common import PROG
from ._demo import add_demo_parser
from ._hist import add_hist_parser
from ._load import add_load_parser


__all__ = ["build_parser"]


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser, with every command registered."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Tools for resilient-mcp, the MCP resilience layer.",
    )
    commands = parser.add_subparsers(
        title="commands", metavar="COMMAND", required=True
    )
    add_hist_parser(commands)
    add_demo_parser(commands)
    add_load_parser(commands)
    return parser

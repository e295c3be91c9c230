"""
``resilient-mcp load``: an open-loop load generator for MCP servers.

The modules, from the bottom up:

- ``_series``: the two latency series (from the intended start, and from
  the actual start) and their ``.hlog`` interval log;
- ``_schedule``: the open-loop timetable (:class:`LoadPlan`), the
  scheduler (:func:`run_open_loop`), its counts (:class:`Tally`) and the
  circuit's timeline (:class:`Timeline`);
- ``_report``: :class:`LoadReport`, as text or JSON;
- ``_run``: one run against an MCP server through
  :class:`~resilient_mcp.ResilientMCPClient` (:func:`run_load`), and the
  client configuration presets of the command line.

Importing this package imports the MCP SDK; the command line imports it
only when the ``load`` command runs.
"""

from ._report import LoadReport
from ._run import client_config, load_config, run_load, server_source
from ._schedule import LoadPlan, Tally, Timeline, run_open_loop
from ._series import LATENCY, SERVICE, SeriesLog, new_hlog, write_intervals


__all__ = [
    "LATENCY",
    "SERVICE",
    "LoadPlan",
    "LoadReport",
    "SeriesLog",
    "Tally",
    "Timeline",
    "client_config",
    "load_config",
    "new_hlog",
    "run_load",
    "run_open_loop",
    "server_source",
    "write_intervals",
]

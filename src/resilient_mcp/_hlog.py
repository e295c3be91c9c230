"""
HdrHistogram interval logs (``.hlog``): writing, reading and merging.

The code lives in :mod:`resilient_mcp._metrics`, next to the histograms
it writes and reads (``_hlog_format``, ``_hlog_writer``, ``_hlog_reader``
and ``_hlog_merge``); this module gathers the names under one roof.
"""

from ._metrics._hlog_format import HlogFormatError, hlog_tag, key_from_tag
from ._metrics._hlog_merge import histograms_by_tag, merge_by_tag, write_hlog
from ._metrics._hlog_reader import (
    HlogFile,
    HlogInterval,
    parse_hlog,
    read_hlog,
)
from ._metrics._hlog_writer import HlogWriter, run_hlog_writer, write_hlog_once


__all__ = [
    "HlogFile",
    "HlogFormatError",
    "HlogInterval",
    "HlogWriter",
    "histograms_by_tag",
    "hlog_tag",
    "key_from_tag",
    "merge_by_tag",
    "parse_hlog",
    "read_hlog",
    "run_hlog_writer",
    "write_hlog",
    "write_hlog_once",
]

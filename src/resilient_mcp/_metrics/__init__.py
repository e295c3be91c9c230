"""
Latency histograms, and a recorder that keeps one per operation.

The only package that imports ``hdrh``.  Values are recorded in whole
microseconds into HdrHistograms, so that percentiles are exact to the
configured number of significant digits, never a running maximum passed
off as a percentile.

The modules, from the bottom up:

- ``_layout``: the settings and their validation, seconds to
  microseconds, and the parts of ``hdrh``'s histogram we rely on;
- ``_counts``: a histogram's counters, sparse until they fill, and
  recording, adding and clearing them;
- ``_values``: the frozen results (``LatencySnapshot``, ...);
- ``_stats``: percentiles, mean and the percentile table, computed from
  the counters by the Java HdrHistogram's definitions;
- ``_codec``: decoding an encoded histogram without trusting it;
- ``_histogram``: ``LatencyHistogram`` and ``merge_histograms``;
- ``_hlog_format``: the ``.hlog`` format's constants, tags and error;
- ``_recorder``: ``LatencyRecorder``;
- ``_hlog_writer``, ``_hlog_reader`` and ``_hlog_merge``: ``.hlog``
  files, which the rest of the library imports through
  :mod:`resilient_mcp._hlog`.

This module only re-exports the names the rest of the library imports
from it.
"""

from ._histogram import LatencyHistogram, merge_histograms
from ._layout import HIGHEST_US
from ._recorder import LatencyRecorder
from ._stats import DEFAULT_TICKS_PER_HALF_DISTANCE
from ._values import LatencyRecorderMetrics, LatencySnapshot, PercentileRow


__all__ = [
    "DEFAULT_TICKS_PER_HALF_DISTANCE",
    "HIGHEST_US",
    "LatencyHistogram",
    "LatencyRecorder",
    "LatencyRecorderMetrics",
    "LatencySnapshot",
    "PercentileRow",
    "merge_histograms",
]

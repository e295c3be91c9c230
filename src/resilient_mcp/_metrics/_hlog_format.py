"""
HdrHistogram interval logs (``.hlog``): the format, and operation tags.

An interval log is a text file with one line per histogram per time
interval, in the format of the Java ``HistogramLogWriter`` (version 1.3),
so that the Java ``HistogramLogProcessor``, the Python ``hdrh`` reader and
the HdrHistogram plotting tools all read what we write::

    #[Histogram log format version 1.3]
    #[StartTime: 1700000000.000 (seconds since epoch), Tue Nov 14 ...]
    #[BaseTime: 1700000000.000 (seconds since epoch)]
    "StartTimestamp","Interval_Length","Interval_Max","Interval_Compressed..."
    0.000,10.000,12.599,HISTFAAAAEV42pNpmSz...
    Tag=tools/call:search,0.000,10.000,8.191,HISTFAAAADx42pNpmSz...

Timestamps are seconds since the ``StartTime`` (wall-clock, read once);
interval lengths come from the event loop's clock, like every other
duration in the library.  ``Interval_Max`` is in milliseconds (values
are microseconds, divided by 1000), which is what the Java tools' default
"nanoseconds divided by a million" convention means, and is exact at
three decimals.  The recorder writes its overall histogram untagged, so
that tools which ignore tags (``HistogramLogProcessor`` without ``-tag``)
see everything, and each operation key as a tag.

Writing is in :mod:`._hlog_writer`, reading in :mod:`._hlog_reader`, and
adding logs up in :mod:`._hlog_merge`; :mod:`resilient_mcp._hlog`
re-exports them.
"""

from __future__ import annotations

import string
import urllib.parse

from collections.abc import Iterable
from typing import Final

from .._errors import ResilienceError


HLOG_FORMAT_VERSION: Final = "1.3"
MAX_VALUE_UNIT_RATIO: Final = 1000.0  # Interval_Max = max_us / this = ms
LEGEND: Final = (
    '"StartTimestamp","Interval_Length","Interval_Max",'
    '"Interval_Compressed_Histogram"'
)
DEFAULT_COMMENT: Final = (
    "[Written by resilient-mcp: values in microseconds, Interval_Max in "
    "milliseconds]"
)


_TAG_SAFE: Final = "".join(c for c in string.punctuation if c not in ",%")


class HlogFormatError(ResilienceError, ValueError):
    """
    A file is not a valid HdrHistogram interval log.

    Raised by :func:`read_hlog`; the message names the file and the line.

    Args:
        path: The file.
        line: The 1-based line number of the problem.
        reason: What is wrong there.

    .. versionadded:: 0.1.0
    """

    def __init__(self, path: str, line: int, reason: str) -> None:
        super().__init__(f"{path}:{line}: {reason}")
        self.path = path
        self.line = line
        self.reason = reason


def hlog_tag(key: str) -> str:
    """
    The ``.hlog`` tag for an operation key.

    Tags end at the first comma and may not contain whitespace, so commas,
    whitespace, ``%`` and non-ASCII characters are percent-encoded (as in
    URLs); :func:`key_from_tag` reverses it.  ``tools/call:search`` stays
    as it is; ``"my tool"`` becomes ``my%20tool``.

    .. versionadded:: 0.1.0
    """
    return urllib.parse.quote(key, safe=_TAG_SAFE)


def key_from_tag(tag: str) -> str:
    """
    The operation key for an ``.hlog`` tag: the inverse of :func:`hlog_tag`.

    .. versionadded:: 0.1.0
    """
    return urllib.parse.unquote(tag)


def sorted_tags(tags: Iterable[str | None]) -> list[str | None]:
    """The distinct *tags*: ``None`` (untagged) first if any, then sorted."""
    found = set(tags)
    ordered: list[str | None] = [None] if None in found else []
    ordered.extend(sorted(t for t in found if t is not None))
    return ordered

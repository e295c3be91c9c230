"""
The ``hdrh`` histogram as this package sees it: settings, layout, units.

The bottom layer of :mod:`resilient_mcp._metrics`: the default settings,
their validation, the conversion of seconds to microseconds, and a typed
view of the parts of :class:`hdrh.histogram.HdrHistogram` we use, whose
layout arithmetic (value to counts-array index and back) every other
module borrows.
"""

from __future__ import annotations

import functools
import math

from typing import Final, Protocol

from hdrh.histogram import HdrHistogram

from .._config import ConfigurationError


LOWEST_US: Final = 1  # microseconds
HIGHEST_US: Final = 3_600_000_000  # microseconds: one hour
SIGNIFICANT_FIGURES: Final = 3  # decimal digits of precision
US_PER_SECOND: Final = 1_000_000
LAYOUT_CACHE_SIZE: Final = 32  # layouts whose shared template is kept


class CountsArray(Protocol):
    """The ctypes array of counters inside an ``hdrh`` histogram."""

    def __getitem__(self, index: int) -> int: ...
    def __setitem__(self, index: int, value: int) -> None: ...


class Encoder(Protocol):
    """The ``hdrh`` encoder, which owns the counts array."""

    def add(self, other: Encoder) -> None: ...


class Hdr(Protocol):
    """The parts of :class:`hdrh.histogram.HdrHistogram` we rely on."""

    lowest_trackable_value: int
    highest_trackable_value: int
    significant_figures: int
    unit_magnitude: int
    sub_bucket_half_count_magnitude: int
    sub_bucket_count: int
    sub_bucket_mask: int
    bucket_count: int
    counts_len: int
    word_size: int
    counts: CountsArray
    encoder: Encoder
    total_count: int
    min_value: int
    max_value: int

    def get_value_from_index(self, index: int) -> int: ...
    def get_lowest_equivalent_value(self, value: int) -> int: ...
    def get_highest_equivalent_value(self, value: int) -> int: ...
    def record_value(self, value: int, count: int = 1) -> bool: ...
    def encode(self) -> bytes: ...


def new_hdr(lowest: int, highest: int, digits: int) -> Hdr:
    """A new, empty dense histogram: ``hdrh``'s whole counts array."""
    hdr: Hdr = HdrHistogram(lowest, highest, digits)
    return hdr


@functools.lru_cache(maxsize=LAYOUT_CACHE_SIZE)
def template(lowest: int, highest: int, digits: int) -> Hdr:
    """
    An empty dense histogram of a layout, shared by its sparse ones.

    Sparse histograms borrow its layout arithmetic (index to value, bucket
    bounds) and never write to it.
    """
    return new_hdr(lowest, highest, digits)


floor: Final = math.floor
"""Rounds down to an int: ``int()`` of a float is about 3x slower."""


def to_us(seconds: float, top: int) -> int:
    """Round *seconds* to microseconds in ``[0, top]`` (NaN reads 0)."""
    if seconds >= top / US_PER_SECOND:
        return top
    if seconds > 0.0:
        return floor(seconds * US_PER_SECOND + 0.5)
    return 0


def check_int(name: str, value: object, low: int, high: int) -> int:
    """
    *value*, if it is an int (not a bool) from *low* to *high*.

    Raises:
        ConfigurationError: It is not; the message names *name*.
    """
    if (
        not isinstance(value, int)
        or isinstance(value, bool)
        or not low <= value <= high
    ):
        raise ConfigurationError(
            f"{name} must be an integer from {low} to {high}, got {value!r}"
        )
    return value


def check_range(owner: str, lowest: int, highest: int, digits: int) -> None:
    """
    Check a histogram's settings; *owner* names it in the message.

    Raises:
        ConfigurationError: A setting is out of range.
    """
    check_int(f"{owner}.lowest_us", lowest, 1, 2**62)
    check_int(f"{owner}.highest_us", highest, 2 * lowest, 2**62)
    check_int(f"{owner}.significant_figures", digits, 1, 5)

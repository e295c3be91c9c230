"""
The inline recording path is ``HdrHistogram.record_value``, only faster.

``LatencyHistogram`` and ``LatencyRecorder`` compute the counts-array index
themselves and bump the counters directly.  These properties show that the
resulting histogram is the one ``record_value`` builds, counter for
counter, for any layout and any values, so every percentile is identical.
"""

from __future__ import annotations

import math

from hdrh.histogram import HdrHistogram
from hypothesis import given, settings
from hypothesis import strategies as st

from resilient_mcp._metrics import (
    HIGHEST_US,
    LatencyHistogram,
    LatencyRecorder,
)
from resilient_mcp._metrics._counts import index_of as _index_of


PERCENTILES = (0.0, 10.0, 50.0, 90.0, 99.0, 99.9, 99.99, 100.0)


@st.composite
def layouts(draw: st.DrawFn) -> tuple[int, int, int]:
    """A histogram's lowest, highest and significant digits."""
    lowest = draw(st.sampled_from([1, 2, 3, 7, 1000, 1024, 4096, 12345]))
    highest = draw(st.integers(2 * lowest, 2**36))
    digits = draw(st.integers(1, 4))
    return lowest, highest, digits


def state(hdr: HdrHistogram) -> tuple[bytes, int, int, int]:
    """Everything recording changes in an hdrh histogram."""
    return bytes(hdr.counts), hdr.total_count, hdr.min_value, hdr.max_value


@settings(max_examples=100, deadline=None)
@given(layout=layouts(), data=st.data())
def test_index_is_hdrh_index(layout, data):
    """The inline index of any value is the counter hdrh would bump."""
    hdr = HdrHistogram(*layout)
    value = data.draw(st.integers(0, layout[1]))

    assert hdr._counts_index_for(value) == _index_of(hdr, value)


@settings(max_examples=60, deadline=None)
@given(layout=layouts(), data=st.data())
def test_record_us_builds_the_record_value_histogram(layout, data):
    """record_us leaves the histogram exactly as record_value would."""
    lowest, highest, digits = layout
    values = data.draw(
        st.lists(
            st.tuples(st.integers(0, highest), st.integers(1, 5)), max_size=50
        )
    )
    reference = HdrHistogram(lowest, highest, digits)
    fast = LatencyHistogram(
        lowest_us=lowest, highest_us=highest, significant_figures=digits
    )

    for value, count in values:
        reference.record_value(value, count)
        fast.record_us(value, count)

    assert state(reference) == state(fast.hdr)


@settings(max_examples=50, deadline=None)
@given(
    values=st.lists(
        st.tuples(st.sampled_from("abc"), st.integers(0, HIGHEST_US)),
        min_size=1,
        max_size=100,
    )
)
def test_recorder_gives_record_value_percentiles(values):
    """Per key and overall, the recorder's percentiles are record_value's."""
    recorder = LatencyRecorder()
    overall = HdrHistogram(1, HIGHEST_US, 3)
    per_key: dict[str, HdrHistogram] = {}

    for key, value in values:
        recorder.record(key, value / 1_000_000)
        overall.record_value(value)
        per_key.setdefault(key, HdrHistogram(1, HIGHEST_US, 3))
        per_key[key].record_value(value)

    for key, reference in per_key.items():
        assert state(reference) == state(recorder.histogram(key).hdr)
    fast = recorder.histogram().hdr
    assert state(overall) == state(fast)
    assert overall.get_percentile_to_value_dict(
        PERCENTILES
    ) == fast.get_percentile_to_value_dict(PERCENTILES)


def nearest_us(seconds: float) -> int:
    """*seconds* as whole microseconds, rounded half up, clamped."""
    if seconds * 1_000_000 >= HIGHEST_US:
        return HIGHEST_US
    if seconds <= 0:
        return 0
    return math.floor(seconds * 1_000_000 + 0.5)


@settings(max_examples=100, deadline=None)
@given(
    seconds=st.floats(allow_nan=False, allow_infinity=True),
    count=st.integers(1, 3),
)
def test_recording_seconds_never_fails(seconds, count):
    """Any float, however wild, is recorded in range: rounded or clamped."""
    histogram = LatencyHistogram()
    recorder = LatencyRecorder()

    histogram.record(seconds, count)
    recorder.record("op", seconds, count)

    expected = nearest_us(seconds)
    assert expected == histogram.hdr.max_value == histogram.hdr.min_value
    assert count == histogram.count == recorder.snapshot("op").count

"""
LatencyRecorder: percentiles, bounded keys, snapshots and intervals.
"""

from __future__ import annotations

import io
import math

from fractions import Fraction

import pytest

from hdrh.histogram import HdrHistogram
from hypothesis import given, settings
from hypothesis import strategies as st

from resilient_mcp._config import ConfigurationError
from resilient_mcp._hlog import HlogWriter, parse_hlog
from resilient_mcp._metrics import (
    HIGHEST_US,
    LatencyHistogram,
    LatencyRecorder,
    LatencyRecorderMetrics,
    LatencySnapshot,
)


BYTES_PER_HISTOGRAM = 188_416  # 23,552 eight-byte counters at the defaults
ONE_BUCKET_AT_MOST = 512  # bytes: the counters of a one-bucket histogram
REFERENCE = HdrHistogram(1, HIGHEST_US, 3)  # for bucket bounds only


def exact_percentile(ordered: list[int], percentile: str) -> int:
    """
    HdrHistogram's percentile of *ordered*, in exact arithmetic.

    The smallest value that at least *percentile* percent of the values
    are less than or equal to (nearest rank).
    """
    share = Fraction(percentile) / 100
    for rank, value in enumerate(ordered, 1):
        if rank >= share * len(ordered):
            return value
    return ordered[-1]


@settings(max_examples=100, deadline=None)
@given(
    values=st.lists(st.integers(0, HIGHEST_US), min_size=1, max_size=300)
    | st.lists(st.integers(900, 1_100), min_size=1, max_size=300)
)
def test_percentiles_are_exact_within_precision(values):
    """Each percentile is the exact one's bucket top: within 0.1% above."""
    recorder = LatencyRecorder()
    for value in values:
        recorder.record("op", value / 1_000_000)
    ordered = sorted(values)

    snapshot = recorder.snapshot("op")

    reported = {
        "50": snapshot.p50,
        "90": snapshot.p90,
        "95": snapshot.p95,
        "99": snapshot.p99,
        "99.9": snapshot.p999,
    }
    for percentile, seconds in reported.items():
        exact = exact_percentile(ordered, percentile)
        actual = round(seconds * 1_000_000)
        assert REFERENCE.get_highest_equivalent_value(exact) == actual
        assert 0 <= actual - exact <= exact / 1000
    assert len(values) == snapshot.count
    assert REFERENCE.get_lowest_equivalent_value(ordered[0]) == round(
        snapshot.min * 1_000_000
    )
    assert REFERENCE.get_highest_equivalent_value(ordered[-1]) == round(
        snapshot.max * 1_000_000
    )
    mean = sum(values) / len(values)
    assert math.isclose(mean, snapshot.mean * 1_000_000, rel_tol=1e-3)
    assert snapshot == recorder.snapshot()


def test_known_distribution():
    """1..1000 ms reads p50 = 500 ms ... p99.9 = 999 ms, as bucket tops."""
    recorder = LatencyRecorder()
    for ms in range(1, 1001):
        recorder.record("op", ms / 1000)

    snapshot = recorder.snapshot("op")

    assert (
        LatencySnapshot(
            count=1000,
            mean=0.500_504_858,
            min=0.001,
            p50=0.500_223,
            p90=0.900_095,
            p95=0.950_271,
            p99=0.990_207,
            p999=0.999_423,
            max=1.000_447,
        )
        == snapshot
    )


def test_empty_recorder_snapshot_is_zero():
    """The overall snapshot of a fresh recorder reads 0 everywhere."""
    zero = LatencySnapshot(
        count=0, mean=0, min=0, p50=0, p90=0, p95=0, p99=0, p999=0, max=0
    )

    assert zero == LatencyRecorder().snapshot()
    assert [] == LatencyRecorder().keys()


def test_snapshot_of_unknown_key_raises():
    """A key that was never recorded has no snapshot: KeyError says why."""
    recorder = LatencyRecorder()

    with pytest.raises(KeyError, match="never recorded, or evicted"):
        recorder.snapshot("nope")


def test_ten_thousand_keys_stay_bounded():
    """10,000 keys keep max_keys histograms; the overall count is exact."""
    recorder = LatencyRecorder(max_keys=100)

    for n in range(10_000):
        recorder.record(f"key-{n}", (n % 97 + 1) / 1000)

    assert 100 == len(recorder.keys())
    assert [f"key-{n}" for n in range(9_900, 10_000)] == sorted(
        recorder.keys(), key=lambda k: int(k.split("-")[1])
    )
    metrics = recorder.metrics()
    assert (
        LatencyRecorderMetrics(
            keys=100,
            max_keys=100,
            evicted_keys=9_900,
            total_count=10_000,
            histograms=101,
            histogram_bytes=metrics.histogram_bytes,
        )
        == metrics
    )
    # The evicted keys' dense histogram, and 100 one-bucket sparse ones.
    assert (
        BYTES_PER_HISTOGRAM
        < metrics.histogram_bytes
        < BYTES_PER_HISTOGRAM + 100 * ONE_BUCKET_AT_MOST
    )
    assert 10_000 == recorder.snapshot().count
    assert 0.097_023 == recorder.snapshot().max  # 97 ms, bucket top
    assert 1 == recorder.snapshot("key-9999").count


def test_eviction_is_least_recently_used():
    """Recording a key refreshes it; the stalest key is the one evicted."""
    recorder = LatencyRecorder(max_keys=2)
    recorder.record("a", 0.001)
    recorder.record("b", 0.002)
    recorder.record("a", 0.003)

    recorder.record("c", 0.004)

    assert ["a", "c"] == recorder.keys()
    assert 2 == recorder.snapshot("a").count
    assert 4 == recorder.snapshot().count


def test_readmitted_key_starts_afresh():
    """An evicted key that comes back has only its new values."""
    recorder = LatencyRecorder(max_keys=1)
    recorder.record("a", 0.5)
    recorder.record("b", 0.001)

    recorder.record("a", 0.002)

    assert 1 == recorder.snapshot("a").count
    assert 0.002 == recorder.snapshot("a").max


def test_default_histogram_bytes():
    """One histogram at the defaults is 188,416 bytes of counters."""
    assert BYTES_PER_HISTOGRAM == LatencyRecorder().metrics().histogram_bytes


def test_record_count():
    """record(..., count=n) is n recordings of the same value."""
    recorder = LatencyRecorder()

    recorder.record("op", 0.25, count=4)

    assert 4 == recorder.snapshot("op").count
    assert 0.250_111 == recorder.snapshot().p50  # 250 ms, bucket top


def test_wild_values_are_clamped():
    """Negative, NaN and beyond-range durations are recorded, clamped."""
    recorder = LatencyRecorder(highest_us=10_000_000)

    for seconds in (-1.0, math.nan, 1e300, math.inf, 11.0):
        recorder.record("op", seconds)

    snapshot = recorder.snapshot("op")
    assert 5 == snapshot.count
    assert 0.0 == snapshot.min
    assert 10.002_431 == snapshot.p50  # 10 s, bucket top
    assert REFERENCE.get_highest_equivalent_value(10_000_000) == round(
        snapshot.max * 1_000_000
    )


def test_empty_key_is_rejected():
    """An empty key would become an untagged hlog line: ValueError."""
    with pytest.raises(ValueError, match="non-empty"):
        LatencyRecorder().record("", 0.1)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"lowest_us": 0}, "lowest_us must be an integer from 1"),
        ({"highest_us": 1}, "highest_us must be an integer from 2"),
        ({"significant_figures": 6}, "significant_figures"),
        ({"max_keys": 0}, "max_keys must be an integer from 1"),
        ({"max_keys": True}, "max_keys"),
    ],
)
def test_bad_settings_are_configuration_errors(kwargs, match):
    """Out-of-range settings fail at construction, naming the field."""
    with pytest.raises(ConfigurationError, match=match):
        LatencyRecorder(**kwargs)


def java_corrected(value: int, expected: int) -> list[int]:
    """Java's recordValueWithExpectedInterval, as a list of values."""
    values = [value]
    if expected <= 0:
        return values
    missing = value - expected
    while missing >= expected:
        values.append(missing)
        missing -= expected
    return values


@settings(max_examples=100, deadline=None)
@given(value=st.integers(0, 100_000), expected=st.integers(-10, 20_000))
def test_record_corrected_follows_java(value, expected):
    """Coordinated-omission correction records Java's back-filled values."""
    recorder = LatencyRecorder()
    reference = HdrHistogram(1, HIGHEST_US, 3)
    for missing in java_corrected(value, expected):
        reference.record_value(missing)

    recorder.record_corrected("op", value / 1e6, expected / 1e6)

    for hdr in (recorder.histogram("op").hdr, recorder.histogram().hdr):
        assert bytes(reference.counts) == bytes(hdr.counts)
        assert reference.total_count == hdr.total_count


def test_record_corrected_example():
    """A 1 s stall back-fills 900 ms to 100 ms; a fast call adds itself."""
    recorder = LatencyRecorder()

    recorder.record_corrected("op", 1.0, 0.1)
    recorder.record_corrected("op", 0.05, 0.1)

    assert 11 == recorder.snapshot("op").count
    assert 0.049_984 == recorder.snapshot("op").min  # bucket bottom
    assert 11 == recorder.snapshot().count


def test_histogram_record_corrected():
    """LatencyHistogram corrects coordinated omission the same way."""
    histogram = LatencyHistogram()

    histogram.record_corrected(0.35, 0.1)

    assert [
        REFERENCE.get_lowest_equivalent_value(us)
        for us in (350_000, 250_000, 150_000)
    ] == [
        histogram.hdr.get_value_from_index(i)
        for i in reversed(range(histogram.hdr.counts_len))
        if histogram.hdr.counts[i]
    ]


def dump(recorder: LatencyRecorder, start: float) -> list[tuple[str, int]]:
    """Dump one interval; return (tag, count) per line."""
    out = io.StringIO()
    writer = HlogWriter(out)
    writer.write_header(0.0)
    recorder.dump_interval(writer, start=start, length=10.0)
    log = parse_hlog(out.getvalue().encode())
    return [(i.tag or "", i.count) for i in log.intervals]


def test_dump_interval_resets_intervals_not_totals():
    """Each dump holds its interval only; snapshots stay cumulative."""
    recorder = LatencyRecorder()
    recorder.record("a", 0.001)
    recorder.record("b", 0.002)

    first = dump(recorder, 0.0)
    recorder.record("a", 0.003)
    second = dump(recorder, 10.0)
    third = dump(recorder, 20.0)

    assert [("", 2), ("a", 1), ("b", 1)] == first
    assert [("", 1), ("a", 1)] == second
    assert [("", 0)] == third
    assert 3 == recorder.snapshot().count
    assert 2 == recorder.snapshot("a").count
    assert 0.003_001 == recorder.snapshot("a").max  # 3 ms, bucket top
    assert 1 == recorder.snapshot("b").count
    assert 6 == recorder.metrics().histograms


def test_start_interval_keeps_values_out_of_the_next_dump():
    """start_interval moves what was recorded into the totals."""
    recorder = LatencyRecorder()
    recorder.record("a", 0.001)

    recorder.start_interval()

    assert [("", 0)] == dump(recorder, 0.0)
    assert 1 == recorder.snapshot("a").count


def test_histogram_is_a_copy():
    """recorder.histogram() returns an independent cumulative copy."""
    recorder = LatencyRecorder()
    recorder.record("a", 0.001)
    recorder.start_interval()
    recorder.record("a", 0.002)

    copy = recorder.histogram("a")
    recorder.record("a", 0.003)

    assert 2 == copy.count
    assert 3 == recorder.histogram("a").count


def test_repr_shows_live_state():
    """The repr shows keys, values and evictions."""
    recorder = LatencyRecorder(max_keys=1)
    recorder.record("a", 0.001)
    recorder.record("b", 0.001)

    assert "<LatencyRecorder 1/1 keys, 2 values, 1 evicted>" == repr(recorder)


def test_interval_count_is_what_the_next_dump_holds():
    """interval_count counts the values since the last interval began."""
    recorder = LatencyRecorder(max_keys=1)
    recorder.record("a", 0.001)
    recorder.record("b", 0.002, 2)  # evicts "a"; its value stays

    before = recorder.interval_count
    recorder.start_interval()
    recorder.record("b", 0.003)

    assert 3 == before
    assert 1 == recorder.interval_count
    assert 4 == recorder.snapshot().count


def test_claim_intervals_admits_one_writer_at_a_time():
    """A second claim fails while the first is held, and works after."""
    recorder = LatencyRecorder()

    with (
        recorder.claim_intervals(),
        pytest.raises(RuntimeError, match="already has"),
        recorder.claim_intervals(),
    ):
        pass
    with recorder.claim_intervals():
        pass

"""
:class:`LatencyRecorder`: a histogram per operation key, and the total.

The recorder keeps its histograms as bare counters (see :mod:`._counts`)
and hands out :class:`LatencyHistogram` objects only when asked, so that
:meth:`LatencyRecorder.record`, the hot path, is one dictionary lookup
(often skipped) and the inline index arithmetic of
:meth:`LatencyHistogram.record`.  It cuts the values into intervals that
:mod:`._hlog_writer` writes to ``.hlog`` files.
"""

from __future__ import annotations

import contextlib

from collections import OrderedDict
from collections.abc import Iterator
from typing import TYPE_CHECKING, Final, final

import attrs

from ._counts import (
    Full,
    Hist,
    Sparse,
    add_into,
    clear,
    counter_bytes,
    dense,
    new_sparse,
    record_value_corrected,
)
from ._histogram import LatencyHistogram
from ._hlog_format import hlog_tag
from ._layout import (
    HIGHEST_US,
    LOWEST_US,
    SIGNIFICANT_FIGURES,
    US_PER_SECOND,
    check_int,
    check_range,
    floor,
    new_hdr,
    to_us,
)
from ._stats import snapshot_of
from ._values import EMPTY_SNAPSHOT, LatencyRecorderMetrics, LatencySnapshot


if TYPE_CHECKING:
    from ._hlog_writer import HlogWriter


DEFAULT_MAX_KEYS: Final = 256  # operation keys with their own histogram


@final
@attrs.define(eq=False, repr=False, on_setattr=attrs.setters.NO_OP)
class LatencyRecorder:
    """
    Latency histograms per operation key, plus one over every key.

    Like a tally sheet with one column per operation and a total column:
    every call adds a mark to its operation's column and to the total.
    When the sheet runs out of columns, the column used least recently is
    erased for the newcomer; the total column keeps its marks, so the
    overall percentiles stay exact whatever happens to the keys.

    >>> recorder = LatencyRecorder()
    >>> recorder.record("tools/call:search", 0.120)
    >>> recorder.snapshot("tools/call:search").p50
    0.120063

    Values are stored in microseconds.  A key's histogram allocates its
    counters as buckets are first used, and a few hundred bytes cover a
    key whose latencies fill a few buckets; one that fills many costs at
    most a dense histogram's 184 KiB at the defaults (see
    ``docs/metrics.md``), so *max_keys* bounds the memory.  Recording is
    cheap (a dictionary lookup and a counter increment, no allocation once
    the key and its bucket are known); reading walks the counters.

    The total column is not written on every call: the overall histogram
    is the sum of the keys' histograms and of what evicted keys left
    behind, added up when it is read, bucket for bucket, so it is exactly
    the histogram of every value recorded.

    Histograms are kept twice: the current interval's, which
    :meth:`dump_interval` writes to an ``.hlog`` and clears, and the
    cumulative totals that :meth:`snapshot` reports.  The totals are only
    allocated once an interval has been dumped.

    Not thread-safe: record from one thread (the event loop's).

    Args:
        lowest_us: Smallest distinguishable value, microseconds.
        highest_us: Largest trackable value, microseconds (larger values
            are recorded as this); at least twice *lowest_us*.
        significant_figures: Decimal digits of precision (1 to 5).
        max_keys: The most operation keys to keep a histogram for.

    Raises:
        ConfigurationError: A setting is out of range.

    .. versionadded:: 0.1.0
    """

    lowest_us: int = attrs.field(default=LOWEST_US, kw_only=True)
    highest_us: int = attrs.field(default=HIGHEST_US, kw_only=True)
    significant_figures: int = attrs.field(
        default=SIGNIFICANT_FIGURES, kw_only=True
    )
    max_keys: int = attrs.field(default=DEFAULT_MAX_KEYS, kw_only=True)

    # The values of evicted keys, this interval and before.  Dense from
    # the start: it collects every evicted key's values, so it is the one
    # histogram bound to fill many buckets.
    _gone: Hist = attrs.field(init=False)
    _gone_totals: Hist | None = attrs.field(init=False, default=None)
    _pending: OrderedDict[str, Hist] = attrs.field(
        init=False, factory=OrderedDict
    )
    _totals: dict[str, Hist] = attrs.field(init=False, factory=dict)
    _evicted: int = attrs.field(init=False, default=0)
    _writing: bool = attrs.field(init=False, default=False)
    # The most recently used key and its histogram: recording it again
    # needs neither the lookup nor the move to the end of the LRU order,
    # where it already is.  Reset whenever that could stop being true.
    _last_key: str | None = attrs.field(init=False, default=None)
    _last_hist: Hist | None = attrs.field(init=False, default=None)
    # The layout, copied out of the histograms for the hot path.
    _mask: int = attrs.field(init=False)
    _half: int = attrs.field(init=False)
    _unit: int = attrs.field(init=False)
    _top_seconds: float = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        check_range(
            "LatencyRecorder",
            self.lowest_us,
            self.highest_us,
            self.significant_figures,
        )
        check_int("LatencyRecorder.max_keys", self.max_keys, 1, 2**31)
        gone = new_hdr(
            self.lowest_us, self.highest_us, self.significant_figures
        )
        self._gone = gone
        self._mask = gone.sub_bucket_mask
        self._half = gone.sub_bucket_half_count_magnitude
        self._unit = gone.unit_magnitude
        self._top_seconds = self.highest_us / US_PER_SECOND

    def __repr__(self) -> str:
        return (
            f"<LatencyRecorder {len(self._pending)}/{self.max_keys} keys, "
            f"{self._overall_count()} values, {self._evicted} evicted>"
        )

    def _new(self) -> Sparse:
        return new_sparse(
            self.lowest_us, self.highest_us, self.significant_figures
        )

    def _admit(self, key: str) -> Hist:
        if not key:
            raise ValueError("an operation key must be a non-empty string")
        pending = self._pending
        if len(pending) >= self.max_keys:
            # The stalest key's values stay in the overall histogram.
            old, hist = pending.popitem(last=False)
            self._gone = add_into(self._gone, hist)
            totals = self._totals.pop(old, None)
            if totals is not None:
                self._gone_totals = self._fold(totals, self._gone_totals)
            self._evicted += 1
        hist = pending[key] = self._new()
        return hist

    def record(self, key: str, seconds: float, count: int = 1) -> None:
        """
        Record that an operation took *seconds*.

        The value goes to *key*'s histogram, and so into the overall one.
        Seconds are rounded to the nearest microsecond; values above the
        range are recorded as its top, negative ones (and NaN) as 0.

        Args:
            key: The operation, for example ``"tools/call:search"``.
            seconds: How long it took.
            count: How many times to record it.

        Raises:
            ValueError: *key* is empty.
        """
        # to_us, record_value and index_of inlined: this is the hot path.
        # The common case first, in one chained comparison; the literal
        # is US_PER_SECOND without the global lookup.  NaN fails both
        # tests and is recorded as 0.  floor, not int(): the same for a
        # positive number, and int() of a float costs three times more.
        if 0.0 < seconds < self._top_seconds:
            value = floor(seconds * 1_000_000.0 + 0.5)
        elif seconds > 0.0:
            value = self.highest_us
        else:
            value = 0
        hist = self._last_hist
        if key != self._last_key or hist is None:
            pending = self._pending
            hist = pending.get(key)
            if hist is None:
                hist = self._admit(key)
            else:
                pending.move_to_end(key)
            self._last_key = key
            self._last_hist = hist
        half = self._half
        shift = (value | self._mask).bit_length() - half - 1
        index = ((shift - self._unit) << half) + (value >> shift)
        try:
            hist.counts[index] += count
        except Full:
            hist = self._last_hist = self._pending[key] = dense(hist)
            hist.counts[index] += count
        hist.total_count += count
        if value > hist.max_value:  # noqa: PLR1730
            hist.max_value = value
        if value < hist.min_value:  # noqa: PLR1730
            hist.min_value = value

    def record_corrected(
        self, key: str, seconds: float, expected_interval: float
    ) -> None:
        """
        Record *seconds*, correcting for coordinated omission.

        A load generator that waits for each answer before sending the next
        request stops measuring exactly when the service stalls: a 10 s
        stall costs one slow sample instead of the hundreds that callers
        arriving every *expected_interval* would have suffered.  This
        records the slow value, and then the values the missing requests
        would have seen: ``seconds - expected_interval``, ``seconds - 2 *
        expected_interval``, and so on while they are at least
        *expected_interval* (the semantics of Java's
        ``recordValueWithExpectedInterval``).

        Only use it when requests are issued at a known, fixed rate.

        Args:
            key: The operation.
            seconds: How long it took.
            expected_interval: Seconds between requests when nothing is
                slow; 0 or less records *seconds* alone.

        Raises:
            ValueError: *key* is empty.
        """
        top = self.highest_us
        value = to_us(seconds, top)
        expected = to_us(expected_interval, top)
        pending = self._pending
        hist = pending.get(key)
        if hist is None:
            hist = self._admit(key)
        else:
            pending.move_to_end(key)
        pending[key] = record_value_corrected(hist, value, expected, 1)
        self._last_key = None  # it may have been promoted

    def keys(self) -> list[str]:
        """The operation keys that have a histogram now, sorted."""
        return sorted(self._pending)

    def _interval(self) -> Hist:
        """A new histogram of every value of the current interval."""
        overall = add_into(self._new(), self._gone)
        for pending in self._pending.values():
            overall = add_into(overall, pending)
        return overall

    def _cumulative(self, key: str | None, *, fresh: bool = False) -> Hist:
        """The totals plus the current interval; a new histogram if *fresh*."""
        if key is None:
            overall = self._interval()
            if self._gone_totals is not None:
                overall = add_into(overall, self._gone_totals)
            for totals in self._totals.values():
                overall = add_into(overall, totals)
            return overall
        pending = self._pending.get(key)
        if pending is None:
            raise KeyError(
                f"no latencies for {key!r}: never recorded, or evicted "
                f"(the recorder keeps {self.max_keys} keys)"
            )
        found = self._totals.get(key)
        if found is None and not fresh:
            return pending
        combined: Hist = self._new()
        if found is not None:
            combined = add_into(combined, found)
        return add_into(combined, pending)

    def snapshot(self, key: str | None = None) -> LatencySnapshot:
        """
        Summarize every latency recorded for *key*, or overall.

        Cumulative since the recorder was created (for *key*: since it was
        last admitted); dumping intervals does not change it.

        Args:
            key: An operation key, or ``None`` for all operations.

        Returns:
            A frozen :class:`LatencySnapshot`.

        Raises:
            KeyError: The recorder has no histogram for *key*.
        """
        return snapshot_of(self._cumulative(key))

    def snapshot_or_empty(self, key: str) -> LatencySnapshot:
        """:meth:`snapshot` of *key*, or an empty one if it has none."""
        try:
            return self.snapshot(key)
        except KeyError:
            return EMPTY_SNAPSHOT

    def histogram(self, key: str | None = None) -> LatencyHistogram:
        """
        A copy of the cumulative histogram of *key*, or the overall one.

        Raises:
            KeyError: The recorder has no histogram for *key*.
        """
        return LatencyHistogram.from_hdr(self._cumulative(key, fresh=True))

    @property
    def interval_count(self) -> int:
        """
        How many values the current interval holds, over all keys.

        The values recorded since the recorder was created or since the
        last :meth:`start_interval` (or :meth:`dump_interval`): what the
        next :meth:`dump_interval` would write.
        """
        return self._gone.total_count + sum(
            pending.total_count for pending in self._pending.values()
        )

    def _overall_count(self) -> int:
        totals = self._gone_totals
        extra = totals.total_count if totals is not None else 0
        extra += sum(totals.total_count for totals in self._totals.values())
        return self.interval_count + extra

    def metrics(self) -> LatencyRecorderMetrics:
        """
        Take a snapshot of the recorder's bookkeeping.

        Returns:
            A frozen :class:`LatencyRecorderMetrics`.
        """
        hists: list[Hist] = [self._gone, *self._pending.values()]
        hists.extend(self._totals.values())
        if self._gone_totals is not None:
            hists.append(self._gone_totals)
        return LatencyRecorderMetrics(
            keys=len(self._pending),
            max_keys=self.max_keys,
            evicted_keys=self._evicted,
            total_count=self._overall_count(),
            histograms=len(hists),
            histogram_bytes=sum(counter_bytes(h) for h in hists),
        )

    def start_interval(self) -> None:
        """
        Start a new interval: move the current one into the totals.

        What was recorded so far stays in :meth:`snapshot` but will not
        appear in the next :meth:`dump_interval`.
        """
        self._gone_totals = self._fold(self._gone, self._gone_totals)
        totals = self._totals
        for key, pending in self._pending.items():
            if pending.total_count:
                totals[key] = self._fold(pending, totals.get(key))

    def _fold(self, pending: Hist, totals: Hist | None) -> Hist:
        """Add *pending* to *totals* (new if ``None``); clear *pending*."""
        totals = add_into(self._new() if totals is None else totals, pending)
        clear(pending)
        return totals

    def dump_interval(
        self, writer: HlogWriter, *, start: float, length: float
    ) -> int:
        """
        Write the current interval to *writer*, then start a new one.

        Writes the overall histogram untagged, then one line per key that
        recorded something in the interval, tagged with :func:`hlog_tag`
        of the key, in key order.  The cumulative totals
        (:meth:`snapshot`) are not affected.

        Args:
            writer: Where to write the interval lines.
            start: The interval's start, seconds since the log's start.
            length: The interval's length, seconds.

        Returns:
            How many lines were written.
        """
        writer.write_interval(
            LatencyHistogram.from_hdr(self._interval()),
            start=start,
            length=length,
        )
        lines = 1
        for key in sorted(self._pending):
            pending = self._pending[key]
            if pending.total_count:
                writer.write_interval(
                    LatencyHistogram.from_hdr(pending),
                    start=start,
                    length=length,
                    tag=hlog_tag(key),
                )
                lines += 1
        self.start_interval()
        return lines

    def dump_totals(
        self, writer: HlogWriter, *, start: float, length: float
    ) -> int:
        """
        Write the cumulative histograms to *writer* as one interval.

        Like :meth:`dump_interval`, with what :meth:`snapshot` reports
        instead of the current interval; nothing is reset.

        Returns:
            How many lines were written.
        """
        writer.write_interval(
            LatencyHistogram.from_hdr(self._cumulative(None)),
            start=start,
            length=length,
        )
        for key in sorted(self._pending):
            writer.write_interval(
                LatencyHistogram.from_hdr(self._cumulative(key)),
                start=start,
                length=length,
                tag=hlog_tag(key),
            )
        return 1 + len(self._pending)

    @contextlib.contextmanager
    def claim_intervals(self) -> Iterator[None]:
        """
        Hold the recorder's intervals for one periodic writer.

        :meth:`dump_interval` ends the interval for everyone: two writers
        dumping on their own schedules would each get a part of every
        interval.  :func:`run_hlog_writer` holds this claim while it runs;
        so can a periodic exporter of your own.

        Raises:
            RuntimeError: Another writer holds the claim.
        """
        if self._writing:
            raise RuntimeError(
                "this LatencyRecorder already has a periodic hlog writer; "
                "two would split each interval between their files"
            )
        self._writing = True
        try:
            yield
        finally:
            self._writing = False

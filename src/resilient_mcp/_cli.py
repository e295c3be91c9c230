"""
``resilient-mcp hist``: inspect, merge, compare and plot ``.hlog`` files.

The command line only parses arguments and prints; the work is done by
the functions below (:func:`load`, :func:`select`, :func:`summarize`,
:func:`format_distribution`, :func:`diff`, :func:`merge_files`,
:func:`plot_spectrum`), which the tests call directly.

Exit codes: 0 on success, 1 when an input file is bad, an output file
already exists (without ``--force``) or matplotlib is missing, and 2 for
usage errors (from :mod:`argparse`).
"""

from __future__ import annotations

import argparse
import math
import os
import sys

from collections.abc import Callable, Iterable, Sequence
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import IO, Final, TextIO

import attrs

from ._hlog import (
    HlogFile,
    HlogFormatError,
    HlogInterval,
    histograms_by_tag,
    key_from_tag,
    merge_by_tag,
    read_hlog,
    write_hlog,
)
from ._metrics import (
    DEFAULT_TICKS_PER_HALF_DISTANCE,
    LatencyHistogram,
    merge_histograms,
)


PROG: Final = "resilient-mcp"
UNITS: Final = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000}
"""Nanoseconds per unit, for ``--unit`` and ``--input-unit``."""
DEFAULT_UNIT: Final = "ms"  # what people read latencies in
DEFAULT_INPUT_UNIT: Final = "us"  # what LatencyRecorder records
UNTAGGED: Final = "(untagged)"  # how the untagged histograms are shown
SUMMARY_PERCENTILES: Final = (50.0, 90.0, 95.0, 99.0, 99.9)
DIFF_PERCENTILES: Final = (50.0, 90.0, 95.0, 99.0, 99.9, 99.99)
PLOT_EXTRA: Final = "resilient-mcp[plot]"


class CliError(Exception):
    """A problem to report in one line, with exit code 1."""


def scale(unit: str, input_unit: str = DEFAULT_INPUT_UNIT) -> float:
    """What recorded values are divided by to show them in *unit*."""
    return UNITS[unit] / UNITS[input_unit]


def tag_label(tag: str | None) -> str:
    """How a tag is shown: the untagged histograms read ``(untagged)``."""
    return UNTAGGED if tag is None else tag


def _decimals(ratio: float) -> int:
    # Enough decimals to show one recorded unit: 3 for us shown in ms.
    return max(0, round(math.log10(ratio))) if ratio > 1 else 0


def load(paths: Iterable[str | os.PathLike[str]]) -> list[HlogFile]:
    """
    Read ``.hlog`` files.

    Raises:
        CliError: A file could not be read, or is not a valid log; the
            message names the file (and the line).
    """
    files = []
    for path in paths:
        try:
            files.append(read_hlog(path))
        except HlogFormatError as exc:
            raise CliError(str(exc)) from None
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise CliError(f"{os.fspath(path)}: {reason}") from None
    return files


def _matches(interval: HlogInterval, tag: str | None) -> bool:
    if tag is None or interval.tag is None:
        return interval.tag == tag
    return tag in {interval.tag, key_from_tag(interval.tag)}


def _all_tags(files: Sequence[HlogFile]) -> list[str | None]:
    tags = {tag for f in files for tag in f.tags()}
    ordered: list[str | None] = [None] if None in tags else []
    ordered.extend(sorted(t for t in tags if t is not None))
    return ordered


def select(
    files: Sequence[HlogFile], tag: str | None = None
) -> LatencyHistogram:
    """
    Add up the intervals with *tag* over every file.

    Args:
        files: The logs.
        tag: A tag (as written in the files, or the operation key it
            encodes), or ``None`` for the untagged intervals, where the
            recorder puts its overall histogram.

    Returns:
        The sum of the matching intervals' histograms.

    Raises:
        CliError: No interval has *tag*; the message lists the tags.
    """
    found = [
        interval
        for f in files
        for interval in f.intervals
        if _matches(interval, tag)
    ]
    if not found:
        names = ", ".join(f.path for f in files)
        tags = ", ".join(tag_label(t) for t in _all_tags(files)) or "none"
        what = "untagged" if tag is None else f"{tag!r}"
        raise CliError(
            f"no {what} histograms in {names} (tags: {tags}); pick one "
            "with --tag, or use --per-tag"
        )
    return merge_histograms(interval.histogram() for interval in found)


def by_tag(files: Sequence[HlogFile]) -> dict[str | None, LatencyHistogram]:
    """
    Add up the intervals of every file, per tag.

    Returns:
        One histogram per tag, untagged first, then by tag.

    Raises:
        CliError: The files hold no intervals at all.
    """
    merged = histograms_by_tag(i for f in files for i in f.intervals)
    if not merged:
        names = ", ".join(f.path for f in files)
        raise CliError(f"no histograms in {names}")
    return merged


def merge_files(files: Sequence[HlogFile]) -> dict[str | None, HlogInterval]:
    """Add up the intervals of every file per tag (see ``merge_by_tag``)."""
    return merge_by_tag(i for f in files for i in f.intervals)


def java_fixed(value: float, decimals: int) -> str:
    """
    Format like Java's ``%.Nf``: round the shortest decimal form half up.

    Python rounds the exact binary value instead, so a level that prints
    as ...73437 here is ...73438 in Java's tables.
    """
    exact = Decimal(repr(value))
    return f"{exact.quantize(Decimal(1).scaleb(-decimals), ROUND_HALF_UP):f}"


def format_distribution(
    histogram: LatencyHistogram,
    ratio: float,
    ticks_per_half_distance: int = DEFAULT_TICKS_PER_HALF_DISTANCE,
) -> str:
    """
    The percentile distribution, as Java's ``outputPercentileDistribution``.

    Args:
        histogram: The histogram.
        ratio: What values are divided by for display.
        ticks_per_half_distance: Rows per halving of the distance to 100%.

    Returns:
        The table and its ``#[Mean ...]``, ``#[Max ...]`` and
        ``#[Buckets ...]`` footer, newline-terminated, character for
        character as Java prints them.
    """
    digits = histogram.significant_figures

    def fixed(value: float, decimals: int = digits) -> str:
        return java_fixed(value, decimals)

    header = (
        f"{'Value':>12} {'Percentile':>14} {'TotalCount':>10} "
        f"{'1/(1-Percentile)':>14}"
    )
    lines = [header, ""]
    for row in histogram.percentile_distribution(ticks_per_half_distance):
        line = (
            f"{fixed(row.value / ratio):>12} "
            f"{fixed(row.percentile / 100.0, 12):>2} {row.total_count:10d}"
        )
        if row.percentile < 100.0:
            line += f" {fixed(row.inverse, 2):>14}"
        lines.append(line)
    mean = fixed(histogram.mean_value() / ratio)
    stddev = fixed(histogram.stddev_value() / ratio)
    top = fixed(histogram.max_value() / ratio)
    lines.append(f"#[Mean    = {mean:>12}, StdDeviation   = {stddev:>12}]")
    lines.append(
        f"#[Max     = {top:>12}, Total count    = {histogram.count:12d}]"
    )
    lines.append(
        f"#[Buckets = {histogram.bucket_count:12d}, SubBuckets     = "
        f"{histogram.sub_bucket_count:12d}]"
    )
    return "\n".join(lines) + "\n"


@attrs.frozen(kw_only=True)
class SummaryRow:
    """One line of ``hist summary``: a tag's percentiles, raw units."""

    tag: str | None
    """The tag (``None``: untagged)."""
    count: int
    """How many values."""
    percentiles: tuple[int, ...]
    """The values at :data:`SUMMARY_PERCENTILES`."""
    max: int
    """The largest value."""


def summarize(files: Sequence[HlogFile]) -> list[SummaryRow]:
    """
    The count, percentiles and maximum per tag, over every file.

    Raises:
        CliError: The files hold no intervals at all.
    """
    return [
        SummaryRow(
            tag=tag,
            count=histogram.count,
            percentiles=tuple(
                histogram.values_at_percentiles(SUMMARY_PERCENTILES)
            ),
            max=histogram.max_value(),
        )
        for tag, histogram in by_tag(files).items()
    ]


def _percent(percentile: float) -> str:
    return f"p{percentile:g}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [
        max(len(line[column]) for line in [header, *rows])
        for column in range(len(header))
    ]
    lines = []
    for line in [header, *rows]:
        cells = [line[0].ljust(widths[0])]
        cells += [
            cell.rjust(width)
            for cell, width in zip(line[1:], widths[1:], strict=True)
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines) + "\n"


def format_summary(rows: Sequence[SummaryRow], unit: str, ratio: float) -> str:
    """``hist summary``'s table: one line per tag, values in *unit*."""
    decimals = _decimals(ratio)
    header = [
        "tag",
        "count",
        *(f"{_percent(p)}({unit})" for p in SUMMARY_PERCENTILES),
        f"max({unit})",
    ]
    lines = [
        [
            tag_label(row.tag),
            str(row.count),
            *(
                f"{v / ratio:.{decimals}f}"
                for v in (*row.percentiles, row.max)
            ),
        ]
        for row in rows
    ]
    return _table(header, lines)


@attrs.frozen(kw_only=True)
class DiffRow:
    """One line of ``hist diff``: a statistic of both logs, raw units."""

    name: str
    """``count``, ``mean``, ``p50`` ... or ``max``."""
    a: float
    """The first log's value."""
    b: float
    """The second log's value."""

    @property
    def ratio(self) -> float | None:
        """``b / a``, or ``None`` when *a* is 0."""
        return self.b / self.a if self.a else None


def diff(a: LatencyHistogram, b: LatencyHistogram) -> list[DiffRow]:
    """Count, mean, percentiles and maximum of *a* and *b*, side by side."""
    rows = [
        DiffRow(name="count", a=a.count, b=b.count),
        DiffRow(name="mean", a=a.mean_value(), b=b.mean_value()),
    ]
    rows += [
        DiffRow(name=_percent(p), a=va, b=vb)
        for p, va, vb in zip(
            DIFF_PERCENTILES,
            a.values_at_percentiles(DIFF_PERCENTILES),
            b.values_at_percentiles(DIFF_PERCENTILES),
            strict=True,
        )
    ]
    rows.append(DiffRow(name="max", a=a.max_value(), b=b.max_value()))
    return rows


def format_diff(
    rows: Sequence[DiffRow],
    unit: str,
    ratio: float,
    *,
    names: tuple[str, str],
    tag: str | None,
) -> str:
    """``hist diff``'s table: both values in *unit*, and their ratio."""
    decimals = _decimals(ratio)
    lines = []
    for row in rows:
        if row.name == "count":
            name, a, b = row.name, str(int(row.a)), str(int(row.b))
        else:
            name = f"{row.name}({unit})"
            a = f"{row.a / ratio:.{decimals}f}"
            b = f"{row.b / ratio:.{decimals}f}"
        shown = "-" if row.ratio is None else f"{row.ratio:.3f}"
        lines.append([name, a, b, shown])
    return f"A: {names[0]}\nB: {names[1]}\ntag: {tag_label(tag)}\n" + _table(
        ["", "A", "B", "B/A"], lines
    )


def _percentile_label(decade: int) -> str:
    # 10**decade on the 1/(1-p) axis is the percentile 100 - 100/10**decade.
    if decade == 0:
        return "0%"
    if decade == 1:
        return "90%"
    nines = "9" * (decade - 2)
    return f"99.{nines}%" if nines else "99%"


def plot_spectrum(
    series: Sequence[tuple[str, LatencyHistogram]],
    out: Path,
    *,
    unit: str,
    ratio: float,
    title: str | None = None,
    log_y: bool = False,
    force: bool = False,
) -> None:
    """
    Draw the percentile spectrum of each histogram into an image file.

    The x axis is ``1 / (1 - percentile)`` on a log scale, labelled
    0%, 90%, 99%, 99.9%...; the y axis is the latency in *unit*: the plot
    of the HdrHistogram plotter.

    Args:
        series: A label and a histogram per line.
        out: The image to write; its suffix picks the format (png, svg,
            pdf...).
        unit: The unit's name, for the axis label.
        ratio: What values are divided by to show them in *unit*.
        title: The plot's title.
        log_y: Put the latency on a log scale, for series of very
            different magnitudes.
        force: Replace *out* if it exists.

    Raises:
        CliError: matplotlib is not installed, the format is unknown, or
            *out* exists and *force* is false.
    """
    try:
        from matplotlib.figure import Figure  # noqa: PLC0415
    except ImportError:
        raise CliError(
            f"plotting needs matplotlib: pip install '{PLOT_EXTRA}'"
        ) from None
    figure = Figure(figsize=(10, 6), layout="constrained")
    fmt = out.suffix.lstrip(".").lower() or "png"
    if fmt not in figure.canvas.get_supported_filetypes():
        raise CliError(f"{out}: unknown image format {fmt!r}")
    axes = figure.subplots()
    widest = 10.0
    for label, histogram in series:
        rows = [
            r
            for r in histogram.percentile_distribution()
            if r.percentile < 100.0
        ]
        xs = [r.inverse for r in rows]
        widest = max([widest, *xs])
        axes.plot(xs, [r.value / ratio for r in rows], label=label)
    decades = math.ceil(math.log10(widest))
    axes.set_xscale("log")
    axes.set_xlim(1, 10**decades)
    axes.set_xticks(
        [10**d for d in range(decades + 1)],
        [_percentile_label(d) for d in range(decades + 1)],
    )
    axes.minorticks_off()
    if log_y:
        axes.set_yscale("log")
    else:
        axes.set_ylim(bottom=0)
    axes.set_xlabel("Percentile")
    axes.set_ylabel(f"Latency ({unit})")
    axes.set_title(title or "Latency by Percentile Distribution")
    axes.grid(visible=True, which="major", alpha=0.4)
    axes.legend(loc="upper left")
    with _Output(out, force) as stream:
        figure.savefig(stream, format=fmt, dpi=100)


class _Output:
    """A binary output file: not clobbered unless forced, removed on error."""

    def __init__(self, path: Path, force: bool) -> None:
        self.path = path
        try:
            self.stream = path.open("wb" if force else "xb")
        except FileExistsError:
            raise CliError(
                f"{path} exists; pass --force to overwrite it"
            ) from None
        except OSError as exc:
            raise CliError(f"{path}: {exc.strerror or exc}") from None

    def __enter__(self) -> IO[bytes]:
        return self.stream

    def __exit__(self, kind: object, value: object, traceback: object) -> None:
        self.stream.close()
        if kind is not None:
            self.path.unlink(missing_ok=True)


def _check_output(path: Path, force: bool) -> None:
    # Fail before reading the inputs; opening with "x" closes the race.
    if path.exists() and not force:
        raise CliError(f"{path} exists; pass --force to overwrite it")


def _ratio(args: argparse.Namespace) -> float:
    return scale(args.unit, args.input_unit)


def _show(args: argparse.Namespace, out: TextIO) -> None:
    files = load(args.files)
    ratio = _ratio(args)
    if args.per_tag:
        tables = [
            f"#[Tag: {tag_label(tag)}]\n" + format_distribution(h, ratio)
            for tag, h in by_tag(files).items()
        ]
        out.write("\n".join(tables))
        return
    out.write(format_distribution(select(files, args.tag), ratio))


def _summary(args: argparse.Namespace, out: TextIO) -> None:
    rows = summarize(load(args.files))
    out.write(format_summary(rows, args.unit, _ratio(args)))


def _merge(args: argparse.Namespace, out: TextIO) -> None:
    target = Path(args.output)
    _check_output(target, args.force)
    files = load(args.files)
    merged = merge_files(files)
    if not merged:
        raise CliError(f"no histograms in {', '.join(args.files)}")
    start_times = [f.start_time for f in files if f.start_time is not None]
    start = min([*start_times, *(i.start for i in merged.values())])
    try:
        write_hlog(
            target,
            merged.values(),
            start_time=start,
            comment=f"[Merged by resilient-mcp from {len(files)} logs]",
            max_value_unit_ratio=scale("ms", args.input_unit),
            overwrite=args.force,
        )
    except FileExistsError:
        raise CliError(
            f"{target} exists; pass --force to overwrite it"
        ) from None
    except OSError as exc:
        raise CliError(f"{target}: {exc.strerror or exc}") from None
    tags = ", ".join(tag_label(t) for t in merged)
    total = sum(i.count for i in merged.values() if i.tag is None)
    out.write(
        f"wrote {target}: {len(merged)} histograms ({tags}) from "
        f"{sum(len(f.intervals) for f in files)} intervals"
        + (f", {total} untagged values\n" if None in merged else "\n")
    )


def _diff(args: argparse.Namespace, out: TextIO) -> None:
    a, b = load([args.a]), load([args.b])
    ratio = _ratio(args)
    names = (args.a, args.b)
    if args.per_tag:
        tables = [
            format_diff(
                diff(_select_or_empty(a, tag), _select_or_empty(b, tag)),
                args.unit,
                ratio,
                names=names,
                tag=tag,
            )
            for tag in _all_tags([*a, *b])
        ]
        out.write("\n".join(tables))
        return
    rows = diff(select(a, args.tag), select(b, args.tag))
    out.write(format_diff(rows, args.unit, ratio, names=names, tag=args.tag))


def _select_or_empty(
    files: Sequence[HlogFile], tag: str | None
) -> LatencyHistogram:
    try:
        return select(files, tag)
    except CliError:
        return LatencyHistogram()


def _plot(args: argparse.Namespace, out: TextIO) -> None:
    target = Path(args.output)
    _check_output(target, args.force)
    files = load(args.files)
    series: list[tuple[str, LatencyHistogram]] = []
    for f in files:
        name = Path(f.path).name
        if args.per_tag:
            for tag, histogram in by_tag([f]).items():
                label = tag_label(tag)
                if len(files) > 1:
                    label = f"{name} [{label}]"
                series.append((label, histogram))
        else:
            series.append((name, select([f], args.tag)))
    plot_spectrum(
        series,
        target,
        unit=args.unit,
        ratio=_ratio(args),
        title=args.title,
        log_y=args.log_y,
        force=args.force,
    )
    out.write(f"wrote {target}: {len(series)} lines\n")


def _unit_parents() -> list[argparse.ArgumentParser]:
    display = argparse.ArgumentParser(add_help=False)
    display.add_argument(
        "--unit",
        choices=UNITS,
        default=DEFAULT_UNIT,
        help="unit to show latencies in (default: %(default)s)",
    )
    return [display, _input_unit_parent()]


def _input_unit_parent() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--input-unit",
        choices=UNITS,
        default=DEFAULT_INPUT_UNIT,
        help=(
            "unit the values were recorded in (default: %(default)s, as "
            "LatencyRecorder records; Java tools usually record ns)"
        ),
    )
    return parent


def _tag_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--tag",
        help=(
            "use the histograms with this tag (or operation key) instead "
            "of the untagged ones"
        ),
    )
    group.add_argument(
        "--per-tag",
        action="store_true",
        help="one result per tag instead of the untagged histograms",
    )


def add_hist_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    """Add ``hist`` and its subcommands to the top-level parser."""
    hist = subparsers.add_parser(
        "hist",
        help="inspect HdrHistogram interval logs (.hlog)",
        description=(
            "Inspect, merge, compare and plot HdrHistogram interval logs "
            "(.hlog), such as those written by run_hlog_writer.  Without "
            "--tag, the untagged histograms are used: the recorder's "
            "overall latencies."
        ),
    )
    commands = hist.add_subparsers(
        title="commands", metavar="COMMAND", required=True
    )
    units = _unit_parents()

    show = commands.add_parser(
        "show",
        parents=units,
        help="print the percentile distribution",
        description=(
            "Print the percentile distribution of the files' histograms, "
            "added together, in HdrHistogram's classic format."
        ),
    )
    show.add_argument("files", nargs="+", metavar="FILE")
    _tag_options(show)
    show.set_defaults(command_function=_show)

    summary = commands.add_parser(
        "summary",
        parents=units,
        help="one line per tag: count, percentiles, max",
        description=(
            "Print one line per tag (all files added together) with the "
            "count, p50, p90, p95, p99, p99.9 and max."
        ),
    )
    summary.add_argument("files", nargs="+", metavar="FILE")
    summary.set_defaults(command_function=_summary)

    merge = commands.add_parser(
        "merge",
        parents=[_input_unit_parent()],
        help="add files and intervals together into one .hlog",
        description=(
            "Add up every interval of every file, per tag, and write the "
            "sums as a new .hlog with one interval per tag."
        ),
    )
    merge.add_argument("files", nargs="+", metavar="FILE")
    merge.add_argument("-o", "--output", required=True, metavar="OUT")
    merge.add_argument(
        "--force", action="store_true", help="overwrite OUT if it exists"
    )
    merge.set_defaults(command_function=_merge)

    compare = commands.add_parser(
        "diff",
        parents=units,
        help="compare the percentiles of two files",
        description=(
            "Print the count, mean, percentiles and max of two files side "
            "by side, with the ratio B/A."
        ),
    )
    compare.add_argument("a", metavar="A")
    compare.add_argument("b", metavar="B")
    _tag_options(compare)
    compare.set_defaults(command_function=_diff)

    plot = commands.add_parser(
        "plot",
        parents=units,
        help="plot the percentile spectrum (needs matplotlib)",
        description=(
            "Plot latency against percentile (on a 1/(1-p) log axis), one "
            f"line per file or per tag.  Needs {PLOT_EXTRA}."
        ),
    )
    plot.add_argument("files", nargs="+", metavar="FILE")
    plot.add_argument("-o", "--output", required=True, metavar="OUT.png")
    plot.add_argument("--title", help="the plot's title")
    plot.add_argument(
        "--log-y",
        action="store_true",
        help="log scale for the latency axis",
    )
    plot.add_argument(
        "--force", action="store_true", help="overwrite OUT if it exists"
    )
    _tag_options(plot)
    plot.set_defaults(command_function=_plot)

    hist.set_defaults(handler=run_hist)


def run_hist(
    args: argparse.Namespace,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """
    Run a parsed ``hist`` command.

    Returns:
        The exit status: 0, or 1 after printing one error line.
    """
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    command: Callable[[argparse.Namespace, TextIO], None]
    command = args.command_function
    try:
        command(args, out)
    except CliError as exc:
        err.write(f"{PROG}: error: {exc}\n")
        return 1
    return 0

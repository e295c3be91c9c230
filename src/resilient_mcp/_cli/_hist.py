"""
``resilient-mcp hist``: inspect, merge, compare and plot ``.hlog`` files.

The command line only parses arguments and prints; the work is done by
the functions of :mod:`._hist_report` (:func:`~._hist_report.load`,
:func:`~._hist_report.select`, :func:`~._hist_report.summarize`,
:func:`~._hist_report.format_distribution`, :func:`~._hist_report.diff`,
:func:`~._hist_report.merge_files`) and :mod:`._hist_plot`
(:func:`~._hist_plot.plot_spectrum`), which the tests call directly.

Exit codes: 0 on success, 1 when an input file is bad, an output file
already exists (without ``--force``) or matplotlib is missing, and 2 for
usage errors (from :mod:`argparse`).
"""

from __future__ import annotations

import argparse
import sys

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO

from .._hlog import HlogFile, write_hlog
from .._metrics import LatencyHistogram
from ._common import PROG, CliError
from ._hist_plot import PLOT_EXTRA, plot_spectrum
from ._hist_report import (
    DEFAULT_INPUT_UNIT,
    DEFAULT_UNIT,
    UNITS,
    _all_tags,
    by_tag,
    diff,
    format_diff,
    format_distribution,
    format_summary,
    load,
    merge_files,
    scale,
    select,
    summarize,
    tag_label,
)


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

"""
``resilient-mcp hist plot``: the percentile spectrum, drawn by matplotlib.

matplotlib is optional (the ``plot`` extra) and imported only here, when a
plot is drawn.
"""

from __future__ import annotations

import math

from collections.abc import Sequence
from typing import IO, TYPE_CHECKING, Final

from ._common import CliError


if TYPE_CHECKING:
    from pathlib import Path

    from .._metrics import LatencyHistogram


PLOT_EXTRA: Final = "resilient-mcp[plot]"


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

"""The pieces every results figure is built from: a figure with its title and caption, a key
panel beside the plot, log axes with plain ticks, and a note where there is nothing to draw."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from dse.results.analysis import swept_params

# Characters per line of a key panel (monospace, x-small, in its side panel).
KEY_WIDTH = 60


def log_x_if_wide(ax: Axes, values: Sequence[float], span: float = 10.0) -> None:
    """A log x axis where the values span more than ``span``x: sizes, bytes and MACs of one sweep
    and its baselines do, and a linear axis would crowd the small ones into its first percent."""
    values = np.asarray([v for v in values if np.isfinite(v)], float)
    if len(values) and values.min() > 0 and values.max() / values.min() > span:
        log_x(ax)


def log_x(ax: Axes) -> None:
    ax.set_xscale("log")
    # Ticks at 1, 2 and 5 of each decade, written as plain numbers: matplotlib's default
    # labels minor ticks as 2x10^-1 where the axis spans under two decades, and they collide.
    ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def key_panel(ax: Axes, title: str, lines: Sequence[str], max_lines: int = 28, width: int = KEY_WIDTH) -> None:
    """A numbered key in its own panel beside the plot."""
    ax.axis("off")
    if len(lines) > max_lines:
        lines = [*lines[:max_lines - 1], f"    ... and {len(lines) - max_lines + 1} more (dse sweep status)"]
    # Long settings wrap under their number (the panel holds about 60 monospace characters), and the
    # key stays out of the constrained layout, which would otherwise shrink the plot to fit it.
    wrapped = [textwrap.fill(line, width, subsequent_indent=" " * 4) for line in lines]
    for text in (ax.text(0, 1, title, transform=ax.transAxes, va="top", ha="left", fontsize="small", weight="bold"),
                 ax.text(0, 0.94, "\n".join(wrapped), transform=ax.transAxes, va="top", ha="left", fontsize="x-small",
                         family="monospace", linespacing=1.3)):
        text.set_in_layout(False)


def new_figure(title: str, caption: str | None, frame: pd.DataFrame, *, ncols: int = 1, figsize=(6.4, 4.6),
               width_ratios: Sequence[float] | None = None):
    fig = Figure(figsize=figsize, layout="constrained")
    axes = fig.subplots(1, ncols, width_ratios=width_ratios)
    fig.suptitle(textwrap.fill(title, 64 * ncols))  # a long parameter name must not run off the frame
    caption = caption if caption is not None else frame.attrs.get("caption", "")
    if caption:
        fig.supxlabel(caption, fontsize="small", color="0.35")
    return fig, axes


def label_params_of(frame: pd.DataFrame) -> list[str]:
    return [p for p in swept_params(frame) if p in frame]


def note(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", wrap=True, color="0.3")

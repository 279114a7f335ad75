"""The Pareto figure: every trial faded, the front numbered with its settings in a key beside it."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from dse.arch.analytics import MIB
from dse.results.analysis import accuracy_metric, pareto_front, row_label
from dse.results.figure_parts import key_panel, label_params_of, log_x, log_x_if_wide, new_figure, note
from dse.results.labels import place_labels
from dse.results.metrics import metric


def pareto(trials: pd.DataFrame, x: str = "model_size_mb", y: str | None = None, *, label_params: Sequence[str] | None = None,
           caption: str | None = None, references: pd.DataFrame | None = None) -> Figure:
    """Every trial faded, the Pareto front of ``y`` vs ``x`` highlighted, connected and labelled.

    ``y`` defaults to the sweep's accuracy. Goals come from :mod:`~dse.results.metrics`
    (accuracy up, size and MACs down). Front points are labelled with their
    metaparameters (``label_params``, default the swept ones). ``references`` (rows with
    ``x``, ``y`` and a ``label``, e.g. :func:`~dse.results.frames.reference_points`) are
    drawn as labelled black crosses, outside the front.
    """
    y = y or accuracy_metric(trials)
    xm, ym = metric(x), metric(y)
    fig, (ax, key_ax) = new_figure(f"Pareto front: {ym.label} vs {xm.label}", caption, trials, ncols=2,
                                   figsize=(10.5, 4.8), width_ratios=(3, 1.9))
    shown = trials[trials[x].notna() & trials[y].notna()]
    for i, (status, group) in enumerate(shown.groupby("status", sort=True)):
        ax.scatter(group[x].astype(float) * xm.scale, group[y].astype(float) * ym.scale, color="0.55", alpha=0.35,
                   marker="osD^v"[i % 5], label=f"{status} ({len(group)})")
    front = trials[pareto_front(trials, {x: xm.goal, y: ym.goal})].sort_values(x)
    fx, fy = front[x].astype(float) * xm.scale, front[y].astype(float) * ym.scale
    if x == "compressed_bytes" and y.endswith("_compressed"):
        _float32_beside(ax, front, fx, fy, y.removesuffix("_compressed"), xm.scale)
    # A candidate suggested again (it resumes its run) is another trial on the same point.
    points = len(set(zip(fx, fy, strict=True)))
    ax.plot(fx, fy, "-o", color="C3",
            label=f"Pareto front ({points})" if points == len(front) else f"Pareto front ({points} points, {len(front)} trials)")
    params = list(label_params) if label_params is not None else label_params_of(trials)
    labels: dict[tuple[float, float], list[str]] = {}  # seeds of one configuration can land on one point
    for (_, row), px, py in zip(front.iterrows(), fx, fy, strict=True):
        labels.setdefault((px, py), []).append(row_label(row, params))
    references = _reference_points(references, x, y)
    if references is not None:
        ax.scatter(references["px"], references["py"], marker="X", color="black", s=36, zorder=3,
                   label=f"other families ({len(references)})")
    ax.margins(x=0.06, y=0.12)
    log_x_if_wide(ax, [*shown[x].astype(float) * xm.scale, *(references["px"] if references is not None else [])])
    ax.set_xlabel(xm.axis_label)
    ax.set_ylabel(ym.axis_label)
    if shown.empty:
        note(ax, f"no trial has both {x} and {y} yet")
        return fig
    handles, names = ax.get_legend_handles_labels()
    if len(shown) < len(trials):
        handles.append(Line2D([], [], ls="none"))
        names.append(f"not shown: {len(trials) - len(shown)} without {y} or {x}")
    ax.legend(handles, names, fontsize="small", loc="best")
    # Front points get numbers beside their markers and their settings in the key: long labels
    # on a crowded front cannot overlap there. The other families keep their short names.
    numbered = [(point, str(i)) for i, point in enumerate(labels, start=1)]
    key_lines = [f"{i:>2}  {py:5.1f}{ym.unit} {px:8.3g} {xm.unit}  {' / '.join(dict.fromkeys(texts))}"
                 for i, ((px, py), texts) in enumerate(labels.items(), start=1)]
    key_panel(key_ax, "Pareto front, by " + xm.label, key_lines)
    others = references if references is not None else pd.DataFrame({"px": [], "py": [], "label": []})
    place_labels(ax, [p for p, _ in numbered] + list(zip(others["px"], others["py"], strict=True)),
                 [t for _, t in numbered] + list(others["label"]),
                 markers=list(zip(shown[x].astype(float) * xm.scale, shown[y].astype(float) * ym.scale, strict=True)))
    return fig


def _reference_points(references: pd.DataFrame | None, x: str, y: str) -> pd.DataFrame | None:
    """Other families' trained points (``label``, display ``px``/``py``), or None."""
    if references is None or x not in references or y not in references:
        return None
    points = references[references[x].notna() & references[y].notna()]
    if points.empty:
        return None
    return pd.DataFrame({"label": points["label"].to_numpy(), "px": points[x].astype(float).to_numpy() * metric(x).scale,
                         "py": points[y].astype(float).to_numpy() * metric(y).scale})


def _float32_beside(ax: Axes, front: pd.DataFrame, fx: pd.Series, fy: pd.Series, float32_y: str, x_scale: float) -> None:
    """Each front point's float32 model (its size and uncompressed accuracy), joined to its file."""
    if float32_y not in front or front[float32_y].isna().all():
        return
    sx = front["model_size_mb"].astype(float) * MIB * x_scale
    sy = front[float32_y].astype(float) * metric(float32_y).scale
    for x0, y0, x1, y1 in zip(sx, sy, fx, fy, strict=True):
        ax.plot([x0, x1], [y0, y1], color="C3", lw=0.6, alpha=0.5, ls=":")
    ax.scatter(sx, sy, facecolors="none", edgecolors="C3", label="same models in float32")
    log_x(ax)  # float32 and compressed sizes lie an order of magnitude apart

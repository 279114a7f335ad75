"""Figures of a sweep: each function takes DataFrames and returns a matplotlib Figure.

Figures are built with the object-oriented API (``Figure`` rather than ``pyplot``), so
nothing here touches global state or needs a display; ``savefig`` renders PNG with Agg
and SVG with matplotlib's SVG backend. Every figure has a title, axis labels with units
and a caption line naming the sweep, dataset and epochs: ``caption=`` when given, else
the ``caption`` that :func:`~dse.results.frames.load` stores in the frame's ``attrs``.
Only :func:`draw_all` writes files.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from dse.contract import VAL_ACCURACIES, SweepLayout, TrialStatus, stored_param
from dse.results.analysis import (
    ResultsError,
    accuracy_metric,
    aggregate,
    param_importance,
    row_label,
    short_label,
    swept_params,
)
from dse.results.figure_parts import label_params_of, log_x_if_wide, new_figure, note
from dse.results.frames import SweepResults, describe, frames_from_study, reference_points
from dse.results.labels import place_labels
from dse.results.metrics import metric, param_label
from dse.results.pareto_plot import pareto

# A numeric parameter with at most this many values gets a Figure 3-style sweep plot.
MAX_SWEEP_LEVELS = 12
# Learning curves name every configuration in the legend up to this many.
MAX_LEGEND_ENTRIES = 12
LINESTYLE_OF_STATUS = {TrialStatus.COMPLETED: "-", TrialStatus.RUNNING: "-", TrialStatus.PRUNED: "--",
                       TrialStatus.PROMOTED: "--"}  # others: dotted


def metaparameter_sweep(agg: pd.DataFrame, param: str, metric_name: str = "val_top1", size_metric: str = "model_size_mb",
                        *, caption: str | None = None) -> Figure:
    """Accuracy (mean, error bars = std over seeds) and model size (twin axis) vs ``param``.

    The kind of the paper's Figure 3a (SR) and 3b (pct3x3). ``agg`` comes from
    :func:`~dse.results.frames.aggregate`; other swept parameters get one line each.
    """
    acc, size = metric(metric_name), metric(size_metric)
    fig, ax = new_figure(f"{acc.label} and {size.label} vs {param_label(param)}", caption, agg)
    twin = ax.twinx()
    for i, (label, group) in enumerate(_lines(agg, param)):
        group = group.sort_values(param)
        x = group[param].astype(float)
        mean, std = _values(group, f"{metric_name}_mean", acc.scale), _values(group, f"{metric_name}_std", acc.scale, 0.0)
        ax.errorbar(x, mean, yerr=std, marker="o", capsize=3, color=f"C{i}", label=label or acc.label)
        if f"{size_metric}_mean" in group:
            twin.plot(x, _values(group, f"{size_metric}_mean", size.scale), ls="--", marker="s", ms=4, color=f"C{i}", alpha=0.6)
    ax.set_xticks(sorted(agg[param].dropna().astype(float).unique()))
    ax.set_xlabel(param_label(param))
    ax.set_ylabel(f"{acc.axis_label}, mean ± std over seeds")
    twin.set_ylabel(f"{size.axis_label}, dashed")
    handles, labels = ax.get_legend_handles_labels()
    handles.append(Line2D([], [], color="0.4", ls="--", marker="s", ms=4))
    labels.append(size.label)
    ax.legend(handles, labels, fontsize="small", loc="lower right")
    return fig


def macro_comparison(agg: pd.DataFrame, param: str, metric_name: str = "val_top1", size_metric: str = "model_size_mb",
                     *, caption: str | None = None) -> Figure:
    """Bars of accuracy (± std over seeds) and model size per variant of ``param`` (Table 3 kind)."""
    acc, size = metric(metric_name), metric(size_metric)
    fig, (left, right) = new_figure(f"{param_label(param)} variants: {acc.label} and {size.label}", caption, agg,
                                    ncols=2, figsize=(9.0, 4.4))
    variants = sorted(dict.fromkeys(agg[param]), key=_variant_order)
    lines = list(_lines(agg, param))
    width = 0.8 / max(1, len(lines))
    for i, (label, group) in enumerate(lines):
        group = group.set_index(param).reindex(variants)
        x = np.arange(len(variants)) + (i - (len(lines) - 1) / 2) * width
        bars = left.bar(x, _values(group, f"{metric_name}_mean", acc.scale), width,
                        yerr=_values(group, f"{metric_name}_std", acc.scale, 0.0), capsize=3, color=f"C{i}", label=label or None)
        left.bar_label(bars, fmt="%.1f", fontsize="x-small", padding=2)
        if f"{size_metric}_mean" in group:
            bars = right.bar(x, _values(group, f"{size_metric}_mean", size.scale), width, color=f"C{i}", alpha=0.7)
            right.bar_label(bars, fmt="%.2f", fontsize="x-small", padding=2)
    labels = [short_label({param: v}) for v in variants]
    crowded = sum(map(len, labels)) > 50  # long labels (pool positions, groups) would overlap level
    for ax, ylabel in ((left, f"{acc.axis_label}, mean ± std"), (right, size.axis_label)):
        ax.set_xticks(np.arange(len(variants)), labels, rotation=25 if crowded else 0, ha="right" if crowded else "center",
                      fontsize="small" if crowded else None)
        ax.set_xlabel(param_label(param))
        ax.set_ylabel(ylabel)
    _zoom_to_bars(left, agg, metric_name, acc.scale)
    if any(label for label, _ in lines):  # above the bars, where it hides none of them
        left.legend(fontsize="x-small", loc="upper left", ncols=min(len(lines), 4), frameon=False)
        left.set_ylim(top=left.get_ylim()[1] + 0.12 * (left.get_ylim()[1] - left.get_ylim()[0]))
    return fig


def tradeoff(agg: pd.DataFrame, param: str, cost: str = "model_size_mb", metric_name: str = "val_top1", *,
             series: Mapping[str, Sequence[Any]] | None = None, caption: str | None = None) -> Figure:
    """Accuracy (mean ± std over seeds) against a cost, one labelled point per value of ``param``.

    ``series`` joins chosen values into named lines, e.g. ``{"fewer modules": [...],
    "fewer filters": [...]}``, to compare two ways of reaching the same cost; values
    are given as in the sweep file.
    """
    acc, cost_metric = metric(metric_name), metric(cost)
    fig, ax = new_figure(f"{acc.label} vs {cost_metric.label} by {param_label(param)}", caption, agg)
    rows = agg.set_index(param)
    x = _values(agg, f"{cost}_mean", cost_metric.scale)
    y = _values(agg, f"{metric_name}_mean", acc.scale)
    ax.errorbar(x, y, yerr=_values(agg, f"{metric_name}_std", acc.scale, 0.0), fmt="o", color="0.35", capsize=3,
                label="mean ± std over seeds")
    for i, (name, values) in enumerate((series or {}).items()):
        line = rows.reindex([stored_param(v) for v in values])
        ax.plot(_values(line, f"{cost}_mean", cost_metric.scale), _values(line, f"{metric_name}_mean", acc.scale),
                "-", color=f"C{i}", label=name)
    ax.margins(x=0.12, y=0.12)
    ax.set_xlabel(cost_metric.axis_label)
    ax.set_ylabel(f"{acc.axis_label}, mean ± std")
    log_x_if_wide(ax, x)
    ax.legend(fontsize="small", loc="lower right")
    shown = np.isfinite(x) & np.isfinite(y)
    place_labels(ax, list(zip(x[shown], y[shown], strict=True)), [short_label({param: v}) for v in agg[param][shown]])
    return fig


# The paper's order for macroarchitecture variants (Table 3: vanilla, simple, complex);
# anything else sorts after them by its text.
_VARIANT_ORDER = ("none", "simple", "complex", "v1.0", "v1.1", "small")


def _variant_order(value) -> tuple[int, list]:
    """The paper's order, then natural order of the text ('fires=4' before 'fires=10')."""
    text = str(value)
    natural = [(0, float(part), "") if re.fullmatch(r"\d+(\.\d+)?", part) else (1, 0.0, part)
               for part in re.split(r"(\d+(?:\.\d+)?)", text) if part]
    return (_VARIANT_ORDER.index(text) if text in _VARIANT_ORDER else len(_VARIANT_ORDER), natural)


def table(agg: pd.DataFrame, param: str | None = None, metrics: Sequence[str] = VAL_ACCURACIES,
          size_metric: str = "model_size_mb") -> pd.DataFrame:
    """The comparison as a table in display units: mean and std per metric, size, trials.

    Rows are indexed by the aggregate's grouping columns (``param`` first).
    """
    by = _by(agg)
    index = [param, *(c for c in by if c != param)] if param else by
    columns = {}
    for name in [*metrics, size_metric]:
        if f"{name}_mean" not in agg:
            continue
        info = metric(name)
        columns[info.axis_label] = agg[f"{name}_mean"] * info.scale
        if name != size_metric:
            columns[f"{info.label} std"] = agg[f"{name}_std"] * info.scale
    columns["trials"] = agg["trials"]
    result = pd.DataFrame(columns).round(3)
    if index:
        result.index = pd.MultiIndex.from_frame(agg[index]) if len(index) > 1 else pd.Index(agg[index[0]])
    return result.sort_index()


def learning_curves(curves: pd.DataFrame, metric_name: str = "val_top1", *, numbers: Sequence[int] | None = None,
                    caption: str | None = None) -> Figure:
    """``metric_name`` per epoch, one line per trial; a configuration's seeds share a colour.

    Pruned trials are dashed, failed ones dotted. ``numbers`` keeps only those trials.
    """
    info = metric(metric_name)
    fig, ax = new_figure(f"Learning curves: {info.label} per epoch", caption, curves)
    data = curves if numbers is None else curves[curves["number"].isin(list(numbers))]
    data = data[data[metric_name].notna()] if metric_name in data else data.iloc[0:0]
    params = label_params_of(curves)
    colors: dict[str, str] = {}  # configuration label -> colour; the first line of each names it
    for number, trial in data.groupby("number", sort=True):
        first = trial.iloc[0]
        label = row_label(first, params) or f"trial {number}"
        named = label in colors
        color = colors.setdefault(label, f"C{len(colors) % 10}")
        ax.plot(trial["epoch"], trial[metric_name].astype(float) * info.scale, color=color, marker=".",
                ls=LINESTYLE_OF_STATUS.get(first["status"], ":"), label=None if named else label)
    ax.set_xlabel("epoch")
    ax.set_ylabel(info.axis_label)
    if data.empty:
        note(ax, f"no per-epoch {metric_name} recorded yet")
        return fig
    ax.xaxis.get_major_locator().set_params(integer=True)
    handles, labels = ax.get_legend_handles_labels()
    if len(colors) > MAX_LEGEND_ENTRIES:
        handles, labels = [], []
    statuses = set(data["status"])
    for status in (TrialStatus.COMPLETED, TrialStatus.PRUNED, TrialStatus.PROMOTED):
        if status in statuses:
            handles.append(Line2D([], [], color="0.4", ls=LINESTYLE_OF_STATUS[status]))
            labels.append(str(status))
    if statuses - set(LINESTYLE_OF_STATUS):
        handles.append(Line2D([], [], color="0.4", ls=":"))
        labels.append("failed")
    ax.legend(handles, labels, fontsize="x-small", loc="lower right")
    return fig


def trial_curves(curves: pd.DataFrame, number: int, *, caption: str | None = None) -> Figure:
    """One trial in detail: train and val loss, train and val accuracy per epoch."""
    trial = curves[curves["number"] == number].sort_values("epoch")
    if trial.empty:
        raise ResultsError(f"trial {number} has no per-epoch history")
    first = trial.iloc[0]
    label = row_label(first, label_params_of(curves))
    fig, (left, right) = new_figure(f"Trial {number}: {label} ({first['status']})", caption, curves, ncols=2, figsize=(9.0, 4.0))
    for ax, names in ((left, ("train_loss", "val_loss")), (right, ("train_top1", *VAL_ACCURACIES))):
        for name in names:
            if name in trial and trial[name].notna().any():
                ax.plot(trial["epoch"], trial[name].astype(float) * metric(name).scale, marker=".", label=metric(name).label)
        ax.set_xlabel("epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.legend(fontsize="small")
    left.set_ylabel("loss (cross-entropy)")
    right.set_ylabel("accuracy (%)")
    return fig


def importance(source: pd.DataFrame | optuna.Study, metric_name: str | None = None, *, caption: str | None = None) -> Figure:
    """Parameter importance for ``metric_name`` (default: the sweep's accuracy), or why there is none."""
    trials = frames_from_study(source)[0] if isinstance(source, optuna.Study) else source
    metric_name = metric_name or accuracy_metric(trials)
    info = metric(metric_name)
    fig, ax = new_figure(f"Parameter importance for {info.label}", caption, trials)
    try:
        importances = param_importance(trials, metric_name).sort_values()
    except ResultsError as err:
        note(ax, f"not computed: {err}")
        ax.set_xlabel("importance (%)")
        ax.set_yticks([])
        return fig
    bars = ax.barh([param_label(p) for p in importances.index], importances.to_numpy() * 100, color="C0")
    ax.bar_label(bars, fmt="%.1f", fontsize="small", padding=2)
    ax.set_xlim(0, 112)
    ax.set_xlabel(f"importance (% of total, {importances.attrs['evaluator']})")
    ax.set_ylabel("swept parameter")
    return fig


def paper_comparison(comparison: pd.DataFrame, *, caption: str | None = None) -> Figure:
    """Changes against the paper's baseline: the paper's points beside the measured ones.

    ``comparison`` comes from :func:`dse.results.paper.compare`; bars are percentage
    points of accuracy gained or lost relative to SqueezeNet's own value of the parameter.
    """
    attrs = comparison.attrs
    param, others = attrs["param"], attrs["others"]
    measured = metric(attrs["measured"]).label
    paper_accuracy = {"top1": "ImageNet top-1", "top5": "ImageNet top-5"}[attrs["paper_accuracy"]]
    baseline = short_label({param: attrs["baseline"]})
    fig, ax = new_figure(f"{attrs['source']} vs measured: change from {baseline}", caption, comparison, figsize=(7.0, 4.6))
    values = list(dict.fromkeys(comparison[param]))
    series = [(f"paper ({paper_accuracy})", comparison.drop_duplicates(param), "paper Δ (pp)", "0.25")]
    rows = comparison[comparison["measured Δ (pp)"].notna()]
    groups = rows.groupby(others, dropna=False, sort=True) if others else [((), rows)]
    for i, (_, group) in enumerate(groups):
        label = row_label(group.iloc[0], others)
        series.append((f"measured ({measured}{', ' + label if label else ''})", group, "measured Δ (pp)", f"C{i}"))
    width = 0.8 / len(series)
    for i, (label, frame, column, color) in enumerate(series):
        indexed = frame.set_index(param)
        heights = indexed[column].reindex(values).astype(float)
        x = np.arange(len(values)) + (i - (len(series) - 1) / 2) * width
        errors = None
        if column == "measured Δ (pp)":  # the measured change's confidence interval over seeds
            low, high = (indexed[c].reindex(values).astype(float) for c in _interval_columns(comparison))
            errors = np.nan_to_num(np.vstack([heights - low, high - heights]))
        bars = ax.bar(x, heights.fillna(0.0), width, color=color, label=label, yerr=errors, capsize=2,
                      error_kw={"lw": 0.8})
        ax.bar_label(bars, labels=["n/a" if np.isnan(h) else f"{h:+.1f}" for h in heights], fontsize="x-small", padding=2)
    ax.axhline(0.0, color="0.5", lw=0.8)
    ax.set_xticks(np.arange(len(values)), [short_label({param: v}) for v in values])
    ax.set_xlabel(param_label(param))
    ax.set_ylabel("accuracy change vs baseline (pp), 95% interval")
    ax.legend(fontsize="x-small")
    return fig


def _interval_columns(comparison: pd.DataFrame) -> tuple[str, str]:
    low = next(c for c in comparison.columns if c.startswith("Δ ") and c.endswith(" low"))
    return low, low.removesuffix(" low") + " high"


def figures(results: SweepResults, references: pd.DataFrame | None = None) -> dict[str, Figure]:
    """The figures that fit what the sweep varied, by file stem.

    A numeric parameter with few values gets a sweep plot (Figure 3 kind), a categorical
    one a variant comparison (Table 3 kind); two or more objectives or swept parameters
    add Pareto fronts of accuracy vs size and vs MACs (and vs ONNX Runtime latency when
    measured), with ``references`` (default: the other families trained by the sweeps
    beside this one on its dataset, :func:`~dse.results.frames.reference_points`) as
    labelled markers; learning curves always; parameter importance when it can be computed.
    """
    trials, params = results.trials, swept_params(results.trials)
    caption = trials.attrs.get("caption") or describe(results.sweep)
    accuracy = accuracy_metric(trials)
    agg = aggregate(trials, by=params)
    complete = trials[trials["state"] == "COMPLETE"]
    drawn: dict[str, Figure] = {}
    # The cost beside accuracy: float32 size, or MACs where every candidate has the same
    # size (a sweep that only moves the pools changes compute, not parameters).
    cost = "macs" if complete["model_size_mb"].nunique() == 1 and complete["macs"].nunique() > 1 else "model_size_mb"
    for param in params:
        values = complete[param].dropna().unique()
        if len(values) < 2:
            continue
        slug = param.replace(".", "_")
        if _numeric(values):
            if len(values) <= MAX_SWEEP_LEVELS:
                drawn[f"sweep_{slug}"] = metaparameter_sweep(agg, param, accuracy, cost, caption=caption)
        else:
            drawn[f"compare_{slug}"] = macro_comparison(agg, param, accuracy, cost, caption=caption)
            if len(params) == 1:  # where the variants land against their cost
                drawn[f"tradeoff_{slug}"] = tradeoff(agg, param, cost, accuracy, caption=caption)
    if len(results.objectives) >= 2 or len(params) >= 2:
        references = reference_points(results) if references is None else references
        if cost == "model_size_mb":  # one size for all: a front against it would be a single column
            drawn["pareto_size"] = pareto(trials, "model_size_mb", accuracy, caption=caption, references=references)
        if trials["macs"].notna().any():
            drawn["pareto_macs"] = pareto(trials, "macs", accuracy, caption=caption, references=references)
        if "latency_ms" in trials and trials["latency_ms"].notna().any():
            drawn["pareto_latency"] = pareto(trials, "latency_ms", accuracy, caption=caption, references=references)
        compressed_accuracy = f"{accuracy.removesuffix('_compressed')}_compressed"
        if "compressed_bytes" in trials and trials["compressed_bytes"].notna().any() and compressed_accuracy in trials:
            drawn["pareto_compressed"] = pareto(trials, "compressed_bytes", compressed_accuracy, caption=caption)
    curve_metric = accuracy if accuracy in results.curves else "val_top1"
    drawn["learning_curves"] = learning_curves(results.curves, curve_metric, caption=caption)
    try:
        param_importance(trials, accuracy)
    except ResultsError:
        pass
    else:
        drawn["importance"] = importance(trials, accuracy, caption=caption)
    return drawn


def draw_all(results: SweepResults, directory: str | Path | None = None, formats: Sequence[str] = ("png", "svg")) -> list[Path]:
    """Save :func:`figures` as PNG and SVG under ``results/NAME/plots/`` (or ``directory``)."""
    directory = Path(directory) if directory is not None else SweepLayout(results.directory).plots
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for stem, fig in figures(results).items():
        for fmt in formats:
            path = directory / f"{stem}.{fmt}"
            fig.savefig(path, dpi=150)
            written.append(path)
    return written


# --------------------------------------------------------------------------- helpers


def _lines(agg: pd.DataFrame, param: str) -> Iterator[tuple[str, pd.DataFrame]]:
    """``agg`` split by the other grouping columns: one line (or bar series) each, with its label."""
    others = [c for c in _by(agg) if c != param]
    if not others:
        yield "", agg
        return
    for _, group in agg.groupby(others, dropna=False, sort=True):
        yield row_label(group.iloc[0], others), group


def _by(agg: pd.DataFrame) -> list[str]:
    by = agg.attrs.get("by")
    if by is None:
        stats = ("_mean", "_std", "_count")
        by = [c for c in agg.columns if c != "trials" and not c.startswith("config.") and not c.endswith(stats)]
    return list(by)


def _values(frame: pd.DataFrame, column: str, scale: float, fill: float = np.nan) -> np.ndarray:
    if column not in frame:
        return np.full(len(frame), fill)
    return frame[column].astype(float).fillna(fill).to_numpy() * scale


def _zoom_to_bars(ax: Axes, agg: pd.DataFrame, column: str, scale: float) -> None:
    """Accuracy differences between variants are small: start the axis near the lowest bar."""
    means = agg[f"{column}_mean"].dropna().astype(float) * scale if f"{column}_mean" in agg else pd.Series(dtype=float)
    if means.empty:
        return
    spread = max(float(means.max() - means.min()), 1.0)
    ax.set_ylim(max(0.0, float(means.min()) - 2 * spread), float(means.max()) + spread)


def _numeric(values: np.ndarray) -> bool:
    return all(isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool | np.bool_) for v in values)


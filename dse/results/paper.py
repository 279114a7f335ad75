"""The paper's design-space results, to set beside measured sweeps.

Iandola et al. 2016 (arXiv 1602.07360), ImageNet: Figure 3a (squeeze ratio sweep) and
Figure 3b (share of 3x3 filters) report top-5 accuracy and model size; Table 3 (bypass)
reports top-1 and top-5. Only the numbers the paper states (as collected in the
project's reference notes) are here; a point it describes only in words has a note
and no number. Sizes are the paper's "MB" (MiB of 32-bit weights).

Measured sweeps run on other data (Fashion-MNIST: 10 classes, so top-5 is saturated)
and budgets, so :func:`compare` lines up *changes against the paper's baseline* in
percentage points, not absolute accuracies.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from dse.results.analysis import CONFIDENCE, ResultsError, accuracy_metric, aggregate, compare_to_baseline, swept_params
from dse.results.frames import SweepResults, load_many
from dse.results.metrics import metric


@dataclass(frozen=True)
class PaperResult:
    source: str
    param: str  # the dotted sweep parameter it varies
    baseline: Any  # SqueezeNet's own value of ``param``
    accuracy: str  # "top1" or "top5": the accuracy the paper reports for every point
    setting: str  # what the paper held fixed
    points: tuple[dict[str, Any], ...]  # value, top1, top5 (%), size_mb, note


def _point(value: Any, top1: float | None = None, top5: float | None = None, size_mb: float | None = None,
           note: str = "") -> dict[str, Any]:
    return {"value": value, "top1": top1, "top5": top5, "size_mb": size_mb, "note": note}


PAPER: dict[str, PaperResult] = {
    "sr": PaperResult(
        source="Figure 3a", param="model.sr", baseline=0.125, accuracy="top5",
        setting="ImageNet; base_e = incr_e = 128, pct3x3 = 0.5, freq = 2; SR from 0.125 to 1.0",
        points=(
            _point(0.125, top5=80.3, size_mb=4.8, note="SqueezeNet"),
            _point(0.5, top5=85.6, size_mb=13.0, note="same model as Figure 3b at pct3x3 = 0.5"),
            _point(0.75, top5=86.0, size_mb=19.0, note="accuracy plateaus from here"),
            _point(1.0, note="larger than SR 0.75, no accuracy gain"),
        ),
    ),
    "pct3x3": PaperResult(
        source="Figure 3b", param="model.pct3x3", baseline=0.5, accuracy="top5",
        setting="ImageNet; base_e = incr_e = 128, freq = 2, SR = 0.5; pct3x3 from 0.01 to 0.99",
        points=(
            _point(0.5, top5=85.6, size_mb=13.0, note="plateau: more 3x3 filters only add size"),
        ),
    ),
    "bypass": PaperResult(
        source="Table 3", param="model.bypass", baseline="none", accuracy="top1",
        setting="ImageNet; SqueezeNet v1.0 (SR = 0.125, pct3x3 = 0.5)",
        points=(
            _point("none", top1=57.5, top5=80.3, size_mb=4.8, note="vanilla SqueezeNet"),
            _point("simple", top1=60.4, top5=82.5, size_mb=4.8, note="identity bypass, no extra parameters"),
            _point("complex", top1=58.8, top5=82.0, size_mb=7.7, note="1x1 conv bypass (secondary sources)"),
        ),
    ),
}

PAPER_COLUMNS = {"top1": "paper top-1 (%)", "top5": "paper top-5 (%)", "size_mb": "paper size (MB)", "note": "note"}


def paper_table(key: str) -> pd.DataFrame:
    """The paper's points for ``key`` ("sr", "pct3x3" or "bypass"), indexed by the parameter value."""
    result = _result(key)
    table = pd.DataFrame(result.points).astype({"top1": float, "top5": float, "size_mb": float})
    table = table.set_index("value").rename(columns=PAPER_COLUMNS)
    table.index.name = result.param
    table.attrs.update(source=result.source, setting=result.setting)
    return table


def load_sweeps(results_dir: str | Path, sweeps: Mapping[str, str]) -> tuple[dict[str, SweepResults], list[str]]:
    """Load ``{paper key: sweep name}`` from ``results_dir``: ``(found, one note per missing sweep)``."""
    loaded, missing = load_many(sweeps.values(), results_root=results_dir)
    found = {key: loaded[name] for key, name in sweeps.items() if name in loaded}
    notes = [f"skipping {key} ({_result(key).source}): {missing[name]}" for key, name in sweeps.items() if name in missing]
    return found, notes


def compare(key: str, trials: pd.DataFrame, metric_name: str | None = None) -> pd.DataFrame:
    """Paper points beside the measured means for the same parameter values.

    One row per measured configuration (the paper's parameter first, other swept
    parameters after) plus paper points nobody measured. ``paper Δ (pp)`` and
    ``measured Δ (pp)`` are the changes against the paper's baseline value (for the
    measured side: against the baseline within the same other parameters), with the
    measured change's 95% Welch interval over seeds (``Δ 95% low``/``high``) and its
    ``verdict`` (``within noise`` where the interval contains zero).
    """
    result = _result(key)
    metric_name = metric_name or accuracy_metric(trials)
    if result.param not in swept_params(trials):
        sweep = trials.attrs.get("sweep", "?")
        raise ResultsError(f"sweep {sweep} does not vary {result.param}, so it cannot be set beside the {result.source}")
    info = metric(metric_name)
    others = [p for p in swept_params(trials) if p != result.param]
    stats = compare_to_baseline(trials, result.param, result.baseline, metric_name)
    sizes = aggregate(trials, by=[result.param, *others])[[result.param, *others, "model_size_mb_mean"]]
    stats = stats.merge(sizes, on=[result.param, *others], how="left")
    measured = pd.DataFrame({
        result.param: stats[result.param],
        **{p: stats[p] for p in others},
        f"measured {info.axis_label}": stats["mean"] * info.scale,
        "measured std": stats["std"] * info.scale,
        "measured size (MB)": stats["model_size_mb_mean"],
        "trials": stats["n"],
        "measured Δ (pp)": stats["diff"] * info.scale,
        f"Δ {CONFIDENCE:.0%} low": stats["low"] * info.scale,
        f"Δ {CONFIDENCE:.0%} high": stats["high"] * info.scale,
        "verdict": stats["verdict"],
    })

    paper = paper_table(key).reset_index()
    paper_metric = PAPER_COLUMNS[result.accuracy]
    paper_base = paper.loc[paper[result.param] == result.baseline, paper_metric]
    paper["paper Δ (pp)"] = paper[paper_metric] - (paper_base.iloc[0] if len(paper_base) else float("nan"))
    table = paper.merge(measured, on=result.param, how="outer")
    table = table.sort_values([result.param, *others], key=lambda column: _order(column, result))
    table["trials"] = table["trials"].astype("Int64")
    table = table[[result.param, *others, *(c for c in table.columns if c not in (result.param, *others))]].reset_index(drop=True)
    numbers = [c for c in table.columns if c not in (result.param, *others) and pd.api.types.is_float_dtype(table[c])]
    table[numbers] = table[numbers].round(2)
    table.attrs.update(trials.attrs)
    table.attrs.update(paper=key, source=result.source, param=result.param, baseline=result.baseline, others=others,
                       paper_accuracy=result.accuracy, measured=metric_name)
    return table


def _result(key: str) -> PaperResult:
    if key not in PAPER:
        raise ResultsError(f"no paper result {key!r}; choose from {', '.join(PAPER)}")
    return PAPER[key]


def _order(column: pd.Series, result: PaperResult) -> pd.Series:
    """Numbers ascending; the paper's variants in the paper's order, then any others."""
    if pd.api.types.is_numeric_dtype(column):
        return column
    if column.name == result.param:
        order = {point["value"]: i for i, point in enumerate(result.points)}
        return column.map(order).fillna(len(order))
    return column.astype(str)

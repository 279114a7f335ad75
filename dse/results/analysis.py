"""What a sweep's trials say: seeds grouped, Pareto fronts, the best trial, labels, importance.

Functions here take the ``trials`` / ``curves`` frames of :func:`dse.results.load` (or
hand-made frames with the same columns) and return frames or series; nothing reads files.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import optuna
import pandas as pd

from dse.contract import OVERVIEW_METRICS, loaded_param, stored_param
from dse.errors import DseError
from dse.pareto import hypervolume as points_hypervolume
from dse.pareto import non_dominated
from dse.results.metrics import ACCURACIES, METRICS, SHORT_NAMES, metric

MIN_TRIALS_FOR_IMPORTANCE = 8


class ResultsError(DseError):
    """A results folder, study or table that cannot answer the question asked."""


def swept_params(frame: pd.DataFrame, *, seed: bool = False) -> list[str]:
    """The swept parameters recorded in ``frame.attrs`` (without ``seed`` unless asked).

    A frame read back from CSV has no attrs: then dotted columns that are not
    ``config.*`` count as swept parameters.
    """
    params = frame.attrs.get("params")
    if params is None:
        params = [c for c in frame.columns if "." in c and not c.startswith("config.")]
    return [p for p in params if seed or p != "seed"]


def accuracy_metric(frame: pd.DataFrame) -> str:
    """The accuracy the sweep optimizes (its first accuracy objective), else ``val_top1``."""
    for objective in frame.attrs.get("objectives", []):
        if objective["metric"] in ACCURACIES:
            return objective["metric"]
    return "val_top1"


def aggregate(trials: pd.DataFrame, by: Sequence[str] | None = None) -> pd.DataFrame:
    """Mean, std and count of every metric over the repeats (seeds) of each configuration.

    Only COMPLETE trials count. ``by`` defaults to every swept parameter except seed.
    Columns: the ``by`` columns, ``trials`` (how many were grouped), ``<metric>_mean``,
    ``<metric>_std``, ``<metric>_count`` for each metric with a value, then the
    ``config.*`` metaparameters of the group.
    """
    by = list(by) if by is not None else swept_params(trials)
    complete = trials[trials["state"] == "COMPLETE"]
    metrics = [m for m in METRICS if m in complete and complete[m].notna().any()]
    config = [c for c in complete.columns if c.startswith("config.") and c not in by]
    keys = by or (lambda _: 0)  # no swept parameter: all complete trials form one group
    grouped = complete.groupby(keys, dropna=False, sort=True)
    parts = [grouped.size().rename("trials")]
    if metrics:
        stats = grouped[metrics].agg(["mean", "std", "count"])
        stats.columns = [f"{name}_{stat}" for name, stat in stats.columns]
        parts.append(stats)
    if config:
        parts.append(grouped[config].first())
    table = pd.concat(parts, axis=1)
    table = table.reset_index(drop=not by)
    table.attrs.update({**trials.attrs, "by": by})
    return table


WITHIN_NOISE = "within noise"
CONFIDENCE = 0.95


def difference_interval(a: Sequence[float], b: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """``(mean(a) - mean(b), low, high)``: Welch's t interval of the difference of two means.

    Seeds of one configuration are few (2-3), so the interval uses Student's t with the
    Welch-Satterthwaite degrees of freedom rather than a normal or bootstrap one; with
    fewer than two values on a side there is no spread to judge by and the bounds are NaN.

    >>> diff, low, high = difference_interval([0.90, 0.92, 0.91], [0.85, 0.86, 0.84])
    >>> round(diff, 3), round(low, 3), round(high, 3)
    (0.06, 0.037, 0.083)
    """
    from scipy import stats

    a, b = np.asarray(a, float), np.asarray(b, float)
    diff = float(a.mean() - b.mean())
    if len(a) < 2 or len(b) < 2:
        return diff, float("nan"), float("nan")
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = float(np.sqrt(va + vb))
    if se == 0.0:
        return diff, diff, diff
    dof = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = float(stats.t.ppf(0.5 + confidence / 2, dof)) * se
    return diff, diff - half, diff + half


def verdict(low: float, high: float, goal: str = "maximize") -> str:
    """``better`` / ``worse`` when the interval excludes zero, else ``within noise``; ``n/a`` without one."""
    if np.isnan(low) or np.isnan(high):
        return "n/a (fewer than 2 seeds)"
    if low <= 0.0 <= high:
        return WITHIN_NOISE
    higher = low > 0.0
    return "better" if higher == (goal == "maximize") else "worse"


def compare_to_baseline(trials: pd.DataFrame, param: str, baseline: Any, metric_name: str | None = None,
                        confidence: float = CONFIDENCE) -> pd.DataFrame:
    """Every value of ``param`` against ``baseline``, with the other swept parameters held equal.

    One row per configuration: ``n`` seeds, ``mean`` and ``std`` of ``metric_name`` over
    them, ``diff`` (mean minus the baseline's mean), the ``low``/``high`` bounds of its
    Welch interval at ``confidence``, and ``verdict`` (``better``, ``worse`` or
    ``within noise`` when the interval contains zero). Values are in stored units
    (fractions for accuracies). Only COMPLETE trials count.
    """
    metric_name = metric_name or accuracy_metric(trials)
    goal = metric(metric_name).goal
    complete = trials[(trials["state"] == "COMPLETE") & trials[metric_name].notna()]
    others = [p for p in swept_params(trials) if p != param]
    rows = []
    for key, group in complete.groupby([param, *others], dropna=False, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        context = dict(zip(others, key[1:], strict=True))
        base = complete[complete[param] == stored_param(baseline)]
        for other, value in context.items():
            base = base[base[other] == value]
        values = group[metric_name].to_numpy(float)
        diff, low, high = (difference_interval(values, base[metric_name].to_numpy(float), confidence) if len(base)
                           else (float("nan"),) * 3)
        rows.append({param: key[0], **context, "n": len(values), "mean": values.mean(),
                     "std": values.std(ddof=1) if len(values) > 1 else float("nan"),
                     "diff": diff, "low": low, "high": high,
                     "verdict": "baseline" if key[0] == stored_param(baseline) else verdict(low, high, goal)})
    table = pd.DataFrame(rows, columns=[param, *others, "n", "mean", "std", "diff", "low", "high", "verdict"])
    table.attrs.update({**trials.attrs, "metric": metric_name, "baseline": baseline, "confidence": confidence})
    return table


def compare_pairs(trials: pd.DataFrame, param: str, pairs: Sequence[tuple[Any, Any]], metric_name: str | None = None,
                  confidence: float = CONFIDENCE) -> pd.DataFrame:
    """``metric_name`` of value ``a`` of ``param`` minus that of value ``b``, for each pair.

    For questions one baseline does not answer, such as a shallower network against a
    narrower one of the same size. Values may be given as in the sweep file (lists and
    mappings too). One row per pair: ``a``, ``b``, seeds ``n_a``/``n_b``, ``mean_a``/
    ``mean_b``, ``diff`` with its Welch interval ``low``/``high`` at ``confidence`` and a
    ``verdict`` for ``a`` (stored units: fractions for accuracies; COMPLETE trials only).
    """
    metric_name = metric_name or accuracy_metric(trials)
    complete = trials[(trials["state"] == "COMPLETE") & trials[metric_name].notna()]
    rows = []
    for a, b in pairs:
        va, vb = (complete.loc[complete[param] == stored_param(v), metric_name].to_numpy(float) for v in (a, b))
        if not len(va) or not len(vb):
            missing = a if not len(va) else b
            raise ResultsError(f"{param}={stored_param(missing)}: no completed trial to compare")
        diff, low, high = difference_interval(va, vb, confidence)
        rows.append({"a": stored_param(a), "b": stored_param(b), "n_a": len(va), "n_b": len(vb), "mean_a": va.mean(),
                     "mean_b": vb.mean(), "diff": diff, "low": low, "high": high,
                     "verdict": verdict(low, high, metric(metric_name).goal)})
    table = pd.DataFrame(rows, columns=["a", "b", "n_a", "n_b", "mean_a", "mean_b", "diff", "low", "high", "verdict"])
    table.attrs.update({**trials.attrs, "metric": metric_name, "param": param, "confidence": confidence})
    return table


def pareto_front(trials: pd.DataFrame, objectives: Any) -> pd.Series:
    """A boolean mask of the COMPLETE (and feasible) trials no other such trial dominates.

    ``objectives``: ``[{"metric": ..., "goal": "maximize" | "minimize"}, ...]``, pairs
    ``(metric, goal)``, a mapping ``{metric: goal}`` or metric names (with their usual
    goal). Trials missing an objective value are never on the front.

    >>> points = pd.DataFrame({"state": "COMPLETE", "acc": [0.9, 0.8, 0.7, 0.9], "mb": [5.0, 1.0, 2.0, 6.0]})
    >>> pareto_front(points, {"acc": "maximize", "mb": "minimize"}).tolist()
    [True, True, False, False]
    """
    goals = _goals(objectives)
    names = [name for name, _ in goals]
    candidates = trials[names].notna().all(axis=1)
    if "state" in trials:
        candidates &= trials["state"] == "COMPLETE"
    if "feasible" in trials:  # completed outside a constraint checked after training (say, compressed bytes)
        candidates &= trials["feasible"].astype("boolean").fillna(True).astype(bool)
    signs = np.array([1.0 if goal == "maximize" else -1.0 for _, goal in goals])
    points = trials.loc[candidates, names].to_numpy(float) * -signs  # smaller is better on every axis
    mask = pd.Series(False, index=trials.index, name="pareto")
    mask[candidates[candidates].index] = non_dominated(points)
    return mask


def hypervolume(trials: pd.DataFrame, objectives: Any, reference: Sequence[float]) -> float:
    """The volume the front dominates, bounded by the ``reference`` point (for two objectives, an area).

    The usual single number for "how good is this front": larger is better, and it
    grows with every point that extends or fills in the front. ``reference`` holds one
    value per objective, a worst case every counted point must beat (e.g. chance
    accuracy and the size limit); points that do not are ignored. Values are in stored
    units (fractions, MB). The same exact computation ranks ASHA's rungs
    (:func:`dse.pareto.hypervolume`).

    >>> points = pd.DataFrame({"state": "COMPLETE", "acc": [0.9, 0.8, 0.7], "mb": [2.0, 1.0, 3.0]})
    >>> round(hypervolume(points, {"acc": "maximize", "mb": "minimize"}, (0.5, 4.0)), 3)  # 0.3*3 + 0.1*2
    1.1
    >>> points["ms"] = [4.0, 1.0, 1.0]  # a third objective: the first point is past ms = 3, the third dominated
    >>> round(hypervolume(points, {"acc": "maximize", "mb": "minimize", "ms": "minimize"}, (0.5, 4.0, 3.0)), 3)
    1.8
    """
    goals = _goals(objectives)
    if len(reference) != len(goals):
        raise ResultsError(f"hypervolume: {len(goals)} objectives but a reference point of {len(reference)} values")
    front = trials[pareto_front(trials, objectives)]
    signs = np.array([1.0 if goal == "maximize" else -1.0 for _, goal in goals])
    points = front[[name for name, _ in goals]].to_numpy(float) * -signs  # smaller is better on every axis
    return points_hypervolume(points, np.asarray(reference, float) * -signs)


def hypervolume_over_time(trials: pd.DataFrame, objectives: Any, reference: Sequence[float]) -> pd.Series:
    """The front's :func:`hypervolume` as the sweep went: one value per trial completion,
    indexed by minutes since the sweep's first trial started (a step function, constant
    until the next completion; 0.0 at minute 0).

    What a sweep with a wall-clock budget is judged by: the front a user has at each moment,
    so two strategies compare at every time, not only where each happened to end.

    >>> t0 = pd.Timestamp("2026-12-02 12:00")
    >>> trials = pd.DataFrame({"state": ["COMPLETE", "PRUNED", "COMPLETE"], "acc": [0.8, 0.95, 0.9],
    ...     "mb": [1.0, 1.0, 2.0], "datetime_start": [t0] * 3,
    ...     "datetime_complete": [t0 + pd.Timedelta(minutes=m) for m in (2, 3, 5)]})
    >>> hypervolume_over_time(trials, {"acc": "maximize", "mb": "minimize"}, (0.5, 4.0)).round(3).to_dict()
    {0.0: 0.0, 2.0: 0.9, 3.0: 0.9, 5.0: 1.1}
    """
    start = trials["datetime_start"].min()
    done = trials[trials["datetime_complete"].notna()].sort_values("datetime_complete")
    minutes = [0.0] + [(t - start).total_seconds() / 60 for t in done["datetime_complete"]]
    values = [0.0] + [hypervolume(done.iloc[:i + 1], objectives, reference) for i in range(len(done))]
    series = pd.Series(values, index=pd.Index(minutes, name="minutes"), name="hypervolume")
    return series[~series.index.duplicated(keep="last")]


def hypervolume_at(curve: pd.Series, minutes: float) -> float:
    """The value of a :func:`hypervolume_over_time` curve at ``minutes`` (its last step at or before then)."""
    return float(curve[curve.index <= minutes].iloc[-1])


def _goals(objectives: Any) -> list[tuple[str, str]]:
    items = objectives.items() if isinstance(objectives, Mapping) else objectives
    goals = []
    for item in items:
        if isinstance(item, str):
            item = (item, metric(item).goal)
        elif isinstance(item, Mapping):
            item = (item["metric"], item["goal"])
        name, goal = item
        if goal not in ("maximize", "minimize"):
            raise ResultsError(f"objective {name}: goal must be 'maximize' or 'minimize', got {goal!r}")
        goals.append((name, goal))
    return goals


def best(trials: pd.DataFrame, metric_name: str | None = None) -> pd.Series:
    """The COMPLETE trial with the best value of ``metric_name`` (default: the sweep's accuracy)."""
    metric_name = metric_name or accuracy_metric(trials)
    complete = trials[(trials["state"] == "COMPLETE") & trials[metric_name].notna()]
    if complete.empty:
        raise ResultsError(f"no completed trial has {metric_name} yet")
    values = complete[metric_name]
    return complete.loc[values.idxmax() if metric(metric_name).goal == "maximize" else values.idxmin()]


def overview(trials: pd.DataFrame) -> pd.DataFrame:
    """The columns a reader scans first: status, swept parameters, objectives, size, time."""
    objectives = [o["metric"] for o in trials.attrs.get("objectives", [])]
    wanted = ["number", "status", "reason", *swept_params(trials, seed=True), *objectives, *OVERVIEW_METRICS, "duration_s"]
    return trials[[c for c in dict.fromkeys(wanted) if c in trials]]


def short_label(values: Mapping[str, Any]) -> str:
    """A point label from parameter values: ``sr=0.25 pct=0.5 simple``.

    >>> short_label({"model.sr": 0.25, "model.pct3x3": 0.5, "model.bypass": "simple"})
    'sr=0.25 pct=0.5 simple'
    >>> short_label({"model": '{"num_fires": 4, "base_e": 13}', "model.downsample_at": "[0, 0.25, 0.5]"})
    'fires=4 base=13 pools=0,0.25,0.5'
    """
    parts = []
    for param, value in values.items():
        key = param.rsplit(".", 1)[-1]
        value = loaded_param(value)
        if isinstance(value, Mapping):  # a linked group: {"num_fires": 4, "base_e": 13} -> fires=4 base=13
            parts.append(short_label({f"{param}.{k}": v for k, v in value.items()}))
        elif isinstance(value, list | tuple):
            parts.append(f"{SHORT_NAMES.get(key, key)}={','.join(f'{v:g}' if isinstance(v, float) else str(v) for v in value)}")
        elif key == "bypass":
            parts.append("vanilla" if value == "none" else str(value))
        elif isinstance(value, bool | np.bool_):
            parts.append(SHORT_NAMES.get(key, key) if value else f"no-{SHORT_NAMES.get(key, key)}")
        else:
            text = f"{value:g}" if isinstance(value, float | np.floating) else str(value)
            parts.append(f"{SHORT_NAMES.get(key, key)}={text}")
    return " ".join(parts)


def row_label(row: Mapping[str, Any], params: Sequence[str]) -> str:
    """The short label of one trial or aggregated row over ``params``."""
    return short_label({p: row[p] for p in params if p in row and not _missing(row[p])})


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def param_importance(trials: pd.DataFrame, metric_name: str | None = None) -> pd.Series:
    """Share of ``metric_name``'s variation due to each swept parameter (seed excluded).

    Uses Optuna's fANOVA when scikit-learn is installed, else PED-ANOVA, on an in-memory
    study rebuilt from the COMPLETE trials. ``attrs["evaluator"]`` names the method.

    Raises:
      ResultsError: fewer than two parameters vary, or too few trials completed.
    """
    metric_name = metric_name or accuracy_metric(trials)
    complete = trials[(trials["state"] == "COMPLETE") & trials[metric_name].notna()]
    varied = [p for p in swept_params(trials) if complete[p].nunique() > 1]
    if len(varied) < 2:
        raise ResultsError(f"parameter importance needs 2 or more varied parameters; this sweep varies {len(varied)}")
    if len(complete) < MIN_TRIALS_FOR_IMPORTANCE:
        raise ResultsError(f"parameter importance needs {MIN_TRIALS_FOR_IMPORTANCE} completed trials with "
                           f"{metric_name}; {len(complete)} so far")
    distributions = {p: _distribution(complete[p]) for p in varied}
    with _quiet_optuna():
        study = optuna.create_study(direction=metric(metric_name).goal)
        for _, row in complete.iterrows():
            params = {p: _python(row[p]) for p in varied if not pd.isna(row[p])}
            study.add_trial(optuna.trial.create_trial(
                params=params, distributions={p: distributions[p] for p in params}, value=float(row[metric_name])))
        evaluator, method = _importance_evaluator(len(complete))
        importances = optuna.importance.get_param_importances(study, evaluator=evaluator)
    series = pd.Series(importances, name=metric_name, dtype=float)
    series.attrs["evaluator"] = method
    return series


def _distribution(column: pd.Series) -> optuna.distributions.BaseDistribution:
    values = [_python(v) for v in column.dropna().unique()]
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        if all(isinstance(v, int) for v in values):
            return optuna.distributions.IntDistribution(min(values), max(values))
        return optuna.distributions.FloatDistribution(min(values), max(values))
    return optuna.distributions.CategoricalDistribution(sorted(values, key=str))


def _python(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _importance_evaluator(n_trials: int) -> tuple[optuna.importance.BaseImportanceEvaluator, str]:
    try:
        import sklearn  # noqa: F401  (fANOVA fits its forest with scikit-learn)
    except ImportError:
        # PED-ANOVA compares the top trials with all; keep at least two on top.
        quantile = min(0.5, max(0.1, 2 / n_trials))
        return optuna.importance.PedAnovaImportanceEvaluator(target_quantile=quantile), "PED-ANOVA"
    return optuna.importance.FanovaImportanceEvaluator(seed=0), "fANOVA"


@contextmanager
def _quiet_optuna() -> Iterator[None]:
    """Silence Optuna's study-created log line and small-sample warnings, then restore."""
    logger = logging.getLogger("optuna")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)

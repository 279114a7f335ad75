"""Sweep results: studies as DataFrames, aggregates over seeds, Pareto fronts and figures.

Typical use, from the repository root::

    import dse.results as dr
    results = dr.load("quickstart")            # results/quickstart/study.journal
    dr.aggregate(results.trials)               # mean / std / count over seeds
    dr.export(results)                         # trials, curves (Parquet, CSV), summary.csv
    dr.draw_all(results)                       # PNG + SVG in results/quickstart/plots/
"""

from dse.results import paper
from dse.results.analysis import (
    ResultsError,
    accuracy_metric,
    aggregate,
    best,
    compare_pairs,
    compare_to_baseline,
    difference_interval,
    hypervolume,
    hypervolume_at,
    hypervolume_over_time,
    overview,
    param_importance,
    pareto_front,
    short_label,
    swept_params,
)
from dse.results.frames import (
    SweepResults,
    baseline_points,
    describe,
    export,
    family_label,
    frames_from_study,
    list_sweeps,
    load,
    load_many,
    reference_points,
)
from dse.results.metrics import METRICS, Metric, metric
from dse.results.plots import (
    draw_all,
    figures,
    importance,
    learning_curves,
    macro_comparison,
    metaparameter_sweep,
    paper_comparison,
    pareto,
    table,
    tradeoff,
    trial_curves,
)

__all__ = [
    "METRICS", "Metric", "ResultsError", "SweepResults", "accuracy_metric", "aggregate", "baseline_points", "best",
    "compare_pairs", "compare_to_baseline", "describe", "difference_interval", "draw_all", "export", "family_label", "figures",
    "frames_from_study", "hypervolume", "hypervolume_at", "hypervolume_over_time",
    "importance", "learning_curves", "list_sweeps", "load", "load_many", "macro_comparison", "metaparameter_sweep", "metric",
    "overview", "paper", "paper_comparison", "param_importance", "pareto", "pareto_front", "reference_points", "short_label",
    "swept_params", "table", "tradeoff", "trial_curves",
]

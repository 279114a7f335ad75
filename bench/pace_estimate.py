"""How well does ASHA's budget-aware end predict how long a trial takes?

For every trial of the committed asha runs that trained 5 or more epochs itself (promotions
to the end, new candidates that went through every rung), predicts its duration from the
trials that finished before it started, and compares with the duration it had:

- ``dse.sweep.asha.Pace``: the run's own epoch train time, plus a fixed and a per-epoch cost
  besides training, fitted over the earlier trials;
- busy seconds per epoch: every earlier trial's duration over the epochs trained (its first
  version), scaled by the run's epoch train time.

    python bench/pace_estimate.py      # reads results/, trains nothing; seconds
"""

from __future__ import annotations

import glob
from pathlib import Path

import numpy as np
import optuna

from dse.results import frames
from dse.sweep.asha import Pace, epochs_trained

REPO = Path(__file__).resolve().parent.parent


def busy_per_epoch(trials):
    """The first version's estimate: ``(epochs, run) -> seconds``, or None before any trial trained."""
    busy, epochs_of, train_s = 0.0, {}, {}
    for trial in trials:
        history, run = trial.user_attrs.get("history"), trial.user_attrs.get("run")
        if not history or run is None:
            continue
        busy += trial.duration.total_seconds()
        epochs_of[run] = max(epochs_of.get(run, 0), history[-1]["epoch"])
        train_s[run] = float(np.mean([r["epoch_train_s"] for r in history]))
    if not epochs_of:
        return None
    mean = float(np.mean(list(train_s.values())))
    return lambda epochs, run=None: epochs * busy / sum(epochs_of.values()) * train_s.get(run, mean) / mean


def main() -> int:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    ratios: dict[str, list[float]] = {"Pace": [], "busy s per epoch": []}
    directories = sorted(glob.glob(str(REPO / "results/efficiency/*/efficiency_asha_seed*"))) + [str(REPO / "results/pareto")]
    for directory in map(Path, directories):
        trials = [t for t in frames._load_study(directory.name, directory, None).trials if t.datetime_complete]
        for trial, run, _, trained in epochs_trained(trials):
            earlier = [t for t in trials if t.datetime_complete <= trial.datetime_start]
            pace, busy = Pace.of(earlier), busy_per_epoch(earlier)
            if trained < 5 or pace is None or busy is None:
                continue
            actual = trial.duration.total_seconds()
            resumed = trained < trial.user_attrs["history"][-1]["epoch"]
            known = run if resumed else None  # a new candidate's speed is not known yet
            ratios["Pace"].append(pace.seconds(trained, known) / actual)
            ratios["busy s per epoch"].append(busy(trained, known) / actual)
    for name, values in ratios.items():
        print(f"{name}: predicted / actual duration, median {np.median(values):.2f}, "
              f"range {min(values):.2f}-{max(values):.2f}, {len(values)} trials")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

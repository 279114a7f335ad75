"""How many candidates can ASHA start against full-fidelity training, at a given budget?

``bench/sweep_efficiency.py`` asks for 3x the candidates of full-fidelity NSGA-II and a
larger front, in 20 minutes. This prints what the committed runs' own trial durations
allow, as a function of the budget: the best packing of trials at those durations (no
worker ever idle, each promotion at once), against which the target can be read:

- full fidelity: each of the W workers starts a candidate every ``full`` seconds until the
  budget ends (the last ones finish after it): ``W * ceil(B / full)`` candidates;
- ASHA, rungs at epochs 1, 3 and 9 (``sweeps/pareto.yaml``), reduction factor 3, with its
  budget-aware end: a candidate costs its first rung (``new``, its compile included), a
  third of a promotion 1 -> 3 and a ninth of a promotion 3 -> 9, so at most
  ``W * B / (new + up1 / 3 + up2 / 9)``; and it may start only while it could still pass
  every rung before the budget ends (``B - new - up1 - up2``), in which time the workers
  also promote a third of them, so at most ``W * (B - new - up1 - up2) / (new + up1 / 3)``.

Durations are medians over the runs in ``--runs`` (by default 2026-12-03's: one session,
both seeds, both arms): the full arms' trials, and the asha arms' first rungs and
promotions by the epochs they trained themselves. Seconds; it reads results/ and trains
nothing.

    python bench/asha_bound.py
    python bench/asha_bound.py --runs results/efficiency/2026-12-02-hv results/efficiency/2026-12-02-nsga
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import optuna

import dse.results as dr
from dse.results import frames
from dse.sweep.asha import PROMOTED_FROM, epochs_trained

REPO = Path(__file__).resolve().parent.parent
SESSION = ["results/efficiency/2026-12-03-finish", "results/efficiency/2026-12-03-pace"]
WORKERS = 2
BUDGETS_MIN = [20, 30, 45, 60, 90, 120, 240]
BUDGET_MIN = 20.0  # the runs' own budget


def durations(roots: list[str]) -> tuple[dict[str, list[float]], dict[str, int]]:
    """Trial seconds of the runs under ``roots``: the full arms' trials, the asha arms' first rungs
    and promotions; and each run's candidates started, as ``bench/sweep_efficiency.py`` counts them."""
    from sweep_efficiency import summarize

    found: dict[str, list[float]] = {"full": [], "new": [], "up1": [], "up2": []}
    started: dict[str, int] = {}
    for root in roots:
        for directory in sorted((REPO / root).glob("efficiency_*_seed*")):
            started[f"{root}/{directory.name}"] = summarize(dr.load(directory), BUDGET_MIN)[0]["started"]
            full = directory.name.startswith("efficiency_full_")
            trials = [t for t in frames._load_study(directory.name, directory, None).trials if t.datetime_complete]
            for trial, _, _, trained in epochs_trained(trials):
                seconds = trial.duration.total_seconds()
                last = trial.user_attrs["history"][-1]["epoch"]
                if full:
                    if last == trained == 9:
                        found["full"].append(seconds)
                elif PROMOTED_FROM not in trial.user_attrs and trained == last == 1:
                    found["new"].append(seconds)
                elif PROMOTED_FROM in trial.user_attrs and (last - trained, last) in ((1, 3), (3, 9)):
                    found["up1" if last == 3 else "up2"].append(seconds)
    return found, started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", default=SESSION, help="folders holding efficiency_{full,asha}_seed* runs")
    roots = parser.parse_args().runs
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    sys.path.insert(0, str(Path(__file__).parent))
    measured, started = durations(roots)
    missing = [name for name, values in measured.items() if not values]
    if missing:
        print(f"asha_bound: no {', '.join(missing)} trials in efficiency_{{full,asha}}_seed* runs under {' '.join(roots)}",
              file=sys.stderr)
        return 2
    cost = {name: float(np.median(values)) for name, values in measured.items()}
    print(f"median trial seconds, {' '.join(roots)}: " + ", ".join(
        f"{name} {cost[name]:.0f} ({len(measured[name])} trials)" for name in ("full", "new", "up1", "up2")))
    through = cost["new"] + cost["up1"] + cost["up2"]
    per_candidate = cost["new"] + cost["up1"] / 3 + cost["up2"] / 9
    print(f"a candidate through every rung: {through:.0f} s; ASHA's cost per candidate: {per_candidate:.0f} s, "
          f"full fidelity's {cost['full']:.0f} s (steady state {cost['full'] / per_candidate:.2f}x)\n")
    print("| budget, minutes | full, started | ASHA, best packing | ratio |")
    print("|---|---|---|---|")
    for minutes in BUDGETS_MIN:
        budget = 60.0 * minutes
        full = WORKERS * math.ceil(budget / cost["full"])
        asha = min(WORKERS * budget / per_candidate,
                   WORKERS * max(0.0, budget - through) / (cost["new"] + cost["up1"] / 3))
        print(f"| {minutes} | {full} | {asha:.1f} | {asha / full:.2f} |")
    counts = "; ".join(f"{run} {n}" for run, n in started.items())
    print(f"\ncandidates started in these runs ({BUDGET_MIN:.0f}-minute budgets): {counts}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

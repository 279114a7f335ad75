"""Does multi-objective early stopping find a better front in the same wall-clock time?

Runs the search space of ``sweeps/pareto.yaml`` (five metaparameters and the bypass,
size <= 1 MB) as NSGA-II twice per sampler seed, back to back, each with the same
wall-clock budget and the same local workers:

- ``full``: every candidate trains for all its epochs (what Optuna offers for several
  objectives: its pruners handle one);
- ``asha``: the same sampler with ``pruner: asha`` (dse's multi-objective successive
  halving), which pauses candidates outside the top 1/reduction_factor at each rung and
  promotes paused ones as they enter it.

Printed per run: candidates started (trained at least one step), candidates trained to
the end, and the hypervolume of the final front of test top-1 against float32 size over
the completed candidates, with the reference point (chance accuracy 0.1, the size limit
1 MB): larger is better. Results and the command go to ``bench/sweep_efficiency.md``.

    python bench/sweep_efficiency.py                            # 2 seeds x 2 arms x 20 min, about 80 min
    python bench/sweep_efficiency.py --minutes 2 --seeds 0 --output /tmp/smoke.md   # a smoke run

Both arms of a seed run back to back in this process's machine, so their ratio is what
to read; absolute counts differ between machines about 2x.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

import dse.results as dr
from dse.contract import TrialStatus
from dse.sweep.runner import run_sweep

REPO = Path(__file__).resolve().parent.parent
SPACE_FROM = REPO / "sweeps" / "pareto.yaml"
OBJECTIVES = {"test_top1": "maximize", "model_size_mb": "minimize"}
REFERENCE = (0.1, 1.0)  # chance accuracy on 10 classes, the sweep's size limit (MB)
ARMS = ("full", "asha")


def sweep_file(arm: str, seed: int, args: argparse.Namespace) -> Path:
    """The pareto sweep with this arm's pruner, a longer per-candidate budget (so there is
    something to stop early), the wall-clock budget and no trial cap, written to a scratch
    folder of its own (the sweep keeps its copy as ``sweep.yaml`` in its results)."""
    sweep = yaml.safe_load(SPACE_FROM.read_text())
    sweep["name"] = f"efficiency_{arm}_seed{seed}"
    scratch = Path(tempfile.mkdtemp(prefix=f"dse_{sweep['name']}_"))
    sweep["description"] = f"bench/sweep_efficiency.py: {arm} arm, sampler seed {seed}"
    sweep["base"].update(epochs=args.epochs, max_steps_per_epoch=args.steps_per_epoch)
    # Each arm compiles into an empty cache of its own, as a user's first sweep does: a cache
    # warmed by an earlier arm (or day) hides the compile of every new architecture, a fixed
    # cost per candidate that the arm starting more candidates pays more often.
    sweep["base"]["compilation_cache_dir"] = str(scratch / "jax_cache")
    sweep["sampler"] = {"name": "nsga2", "seed": seed, "population_size": args.population}
    sweep["budget"] = {"wall_clock_minutes": args.minutes}
    sweep["pruner"] = ({"name": "asha", "min_epochs": 1, "reduction_factor": args.reduction_factor} if arm == "asha"
                       else {"name": "none"})
    path = scratch / f"{sweep['name']}.yaml"
    path.write_text(yaml.safe_dump(sweep, sort_keys=False))
    return path


def summarize(results: dr.SweepResults, minutes: float) -> dict:
    trials = results.trials
    # The budget stops new trials, and the ones running finish: the full arm's run 9 epochs past
    # it, the asha arm's one or two. The front as it stands when the budget ends compares the
    # arms at one wall-clock time.
    budget_end = trials["datetime_start"].min() + pd.Timedelta(minutes=minutes)
    by_budget = trials[trials["datetime_complete"] <= budget_end]
    ran = trials[trials["datetime_complete"].notna() & trials["epochs_completed"].notna()]
    # A promotion, or a candidate bred again, continues its run's checkpoint: each run's epochs count once.
    busy = (ran["datetime_complete"] - ran["datetime_start"]).dt.total_seconds().sum()
    trained = trials["status"].isin([TrialStatus.COMPLETED, TrialStatus.PRUNED, TrialStatus.PROMOTED, TrialStatus.DIVERGED])
    # Each candidate counts once, by its run (its checkpoint folder): a promotion continues one
    # that started, and a candidate NSGA-II breeds again resumes its run (finished or paused).
    return {
        "started": int(trials.loc[trained, "run"].nunique()),
        "trained to the end": int(trials.loc[trials["status"] == TrialStatus.COMPLETED, "run"].nunique()),
        "infeasible (never trained)": int((trials["status"] == TrialStatus.INFEASIBLE).sum()),
        "hypervolume": dr.hypervolume(trials, OBJECTIVES, REFERENCE),
        "hypervolume at the budget": dr.hypervolume(by_budget, OBJECTIVES, REFERENCE),
        "epochs trained": int(ran.groupby("run")["epochs_completed"].max().sum()),
        "busy s": round(busy),  # worker-seconds inside trials: training, evaluation, compiles, checkpoints
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=20.0, help="wall-clock budget of each run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="NSGA-II sampler seeds")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=9, help="epochs of a candidate trained to the end")
    parser.add_argument("--steps-per-epoch", type=int, default=100, help="steps of 128 images per epoch")
    parser.add_argument("--reduction-factor", type=int, default=3)
    parser.add_argument("--population", type=int, default=8, help="NSGA-II population size")
    parser.add_argument("--results-root", type=Path, default=None, help="default: a temporary folder")
    parser.add_argument("--existing", action="append", default=[], metavar="ARM:SEED=DIR",
                        help="summarize this finished sweep folder as that arm and seed instead of running it "
                             "(e.g. asha:0=results/pareto, the committed run of sweeps/pareto.yaml, whose settings "
                             "are this bench's asha arm with seed 0)")
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "sweep_efficiency.md")
    args = parser.parse_args(argv)

    root = args.results_root or Path(tempfile.mkdtemp(prefix="dse_efficiency_"))
    existing = {tuple(key.split(":")): Path(directory) for key, directory in (e.split("=", 1) for e in args.existing)}
    rows = []
    for seed in args.seeds:
        for arm in ARMS:
            if (arm, str(seed)) in existing:
                results = dr.load(existing[arm, str(seed)])
                trials = results.trials
                wall = (trials["datetime_complete"].max() - trials["datetime_start"].min()).total_seconds()
                row = {"seed": seed, "arm": arm, **summarize(results, args.minutes), "wall s": round(wall),
                       "from": str(existing[arm, str(seed)])}
            else:
                path = sweep_file(arm, seed, args)
                t0 = time.perf_counter()
                run_sweep(path, workers=args.workers, results_root=root)
                row = {"seed": seed, "arm": arm, **summarize(dr.load(path.stem, results_root=root), args.minutes),
                       "wall s": round(time.perf_counter() - t0)}
            rows.append(row)
            print(row, flush=True)
    lines = ["| seed | arm | started | trained to the end | infeasible | hypervolume | at the budget | epochs trained "
             "| busy s per epoch | wall s | run |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['seed']} | {r['arm']} | {r['started']} | {r['trained to the end']} | "
              f"{r['infeasible (never trained)']} | {r['hypervolume']:.4f} | {r['hypervolume at the budget']:.4f} | "
              f"{r['epochs trained']} | "
              f"{r['busy s'] / max(1, r['epochs trained']):.1f} | {r['wall s']} | {r.get('from', 'this bench')} |"
              for r in rows]
    for seed in args.seeds:
        full, asha = (next(r for r in rows if r["seed"] == seed and r["arm"] == arm) for arm in ARMS)
        ratio = asha["started"] / max(1, full["started"])
        lines.append(f"\nseed {seed}: asha started {ratio:.1f}x the candidates of full; "
                     f"hypervolume {asha['hypervolume']:.4f} vs {full['hypervolume']:.4f} when all trials ended, "
                     f"{asha['hypervolume at the budget']:.4f} vs {full['hypervolume at the budget']:.4f} "
                     f"when the budget ended")
    command = "python bench/sweep_efficiency.py " + " ".join(argv if argv is not None else sys.argv[1:])
    text = (f"# Sweep efficiency: NSGA-II with and without multi-objective ASHA\n\n`{command.strip()}`; "
            f"hypervolume of test top-1 vs float32 MB, reference point {REFERENCE}"
            + (f"; runs made here are in {root}" if len(existing) < len(rows) else "") + "\n\n"
            + "\n".join(lines) + "\n")
    args.output.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

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
1 MB): larger is better, given when all trials ended and when the budget ended (the same
wall-clock time for both arms), and the minutes in which each arm's front was the larger.
Results and the command go to ``bench/sweep_efficiency.md``, the hypervolume of every run
over wall-clock time to ``bench/sweep_efficiency.png``.

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


def summarize(results: dr.SweepResults, minutes: float) -> tuple[dict, pd.Series]:
    """The run's counts and its front's hypervolume over time (test top-1 vs size, per completion)."""
    trials = results.trials
    curve = dr.hypervolume_over_time(trials, OBJECTIVES, REFERENCE)
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
        "hypervolume": float(curve.iloc[-1]),
        # The budget stops new trials, and the ones running finish: the full arm's run 9 epochs past
        # it, the asha arm's one or two. The front as it stands when the budget ends compares the
        # arms at one wall-clock time.
        "hypervolume at the budget": dr.hypervolume_at(curve, minutes),
        "epochs trained": int(ran.groupby("run")["epochs_completed"].max().sum()),
        "busy s": round(busy),  # worker-seconds inside trials: training, evaluation, compiles, checkpoints
    }, curve


def leads(asha: pd.Series, full: pd.Series, step: float = 0.1) -> str:
    """In words, when each arm's front was the larger one, on a grid of ``step`` minutes up to the later end."""
    end = max(asha.index.max(), full.index.max())
    grid = [i * step for i in range(int(end / step) + 2)]
    ahead = ["asha" if dr.hypervolume_at(asha, t) > dr.hypervolume_at(full, t) else
             "full" if dr.hypervolume_at(full, t) > dr.hypervolume_at(asha, t) else "" for t in grid]
    spans, begin = [], 0
    for i in range(1, len(grid) + 1):
        if i == len(grid) or ahead[i] != ahead[begin]:
            if ahead[begin]:
                spans.append(f"{ahead[begin]} {grid[begin]:.1f}-{grid[i - 1]:.1f}")
            begin = i
    return ", ".join(spans)


def plot_curves(curves: list[tuple[int, str, pd.Series]], minutes: float, path: Path) -> None:
    """Hypervolume over wall-clock minutes: one line per run (seed, arm, curve), seeds by colour, arms by style."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    palette = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    colours = {seed: palette[i % len(palette)] for i, seed in enumerate(sorted({seed for seed, _, _ in curves}))}
    labelled = set()
    for seed, arm, curve in curves:
        label = None if (seed, arm) in labelled else f"{arm}, seed {seed}"  # repeats share their arm's entry
        labelled.add((seed, arm))
        ax.step(curve.index, curve.values, where="post", color=colours[seed], linewidth=1.2,
                linestyle="-" if arm == "asha" else "--", label=label)
    ax.axvline(minutes, color="grey", linewidth=0.8, linestyle=":")
    ax.text(minutes, 0.96, " budget", color="grey", transform=ax.get_xaxis_transform())
    ax.set_xlabel("wall-clock minutes since the first trial started")
    ax.set_ylabel(f"hypervolume (test top-1 vs MB, ref {REFERENCE})")
    ax.set_ylim(bottom=0.6)
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def load_or_run(arm: str, seed: int, directory: Path | None, root: Path, args: argparse.Namespace) -> tuple[dict, pd.Series]:
    """One run's row and hypervolume curve: summarized from ``directory`` if given, else run now."""
    if directory is not None:
        results = dr.load(directory)
        trials = results.trials
        wall = (trials["datetime_complete"].max() - trials["datetime_start"].min()).total_seconds()
        summary, curve = summarize(results, args.minutes)
        return {"seed": seed, "arm": arm, **summary, "wall s": round(wall), "from": str(directory)}, curve
    path = sweep_file(arm, seed, args)
    t0 = time.perf_counter()
    run_sweep(path, workers=args.workers, results_root=root)
    summary, curve = summarize(dr.load(path.stem, results_root=root), args.minutes)
    return {"seed": seed, "arm": arm, **summary, "wall s": round(time.perf_counter() - t0), "from": "this bench"}, curve


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
                             "are this bench's asha arm with seed 0); repeat an ARM:SEED to give it several runs")
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "sweep_efficiency.md")
    args = parser.parse_args(argv)

    root = args.results_root or Path(tempfile.mkdtemp(prefix="dse_efficiency_"))
    existing: dict[tuple[str, int], list[Path]] = {}  # an arm and seed may be given several runs: their spread
    for spec in args.existing:
        key, directory = spec.split("=", 1)
        arm, seed = key.split(":")
        existing.setdefault((arm, int(seed)), []).append(Path(directory))
    runs = []  # (row, hypervolume curve) per run, in seed and arm order
    for seed in args.seeds:
        for arm in ARMS:
            for directory in existing.get((arm, seed), [None]):
                runs.append(load_or_run(arm, seed, directory, root, args))
                print(runs[-1][0], flush=True)
    rows = [row for row, _ in runs]
    plot = args.output.with_suffix(".png")
    plot_curves([(row["seed"], row["arm"], curve) for row, curve in runs], args.minutes, plot)
    lines = ["| seed | arm | started | trained to the end | infeasible | hypervolume | at the budget | epochs trained "
             "| busy s per epoch | wall s | run |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['seed']} | {r['arm']} | {r['started']} | {r['trained to the end']} | "
              f"{r['infeasible (never trained)']} | {r['hypervolume']:.4f} | {r['hypervolume at the budget']:.4f} | "
              f"{r['epochs trained']} | "
              f"{r['busy s'] / max(1, r['epochs trained']):.1f} | {r['wall s']} | {r['from']} |"
              for r in rows]
    for seed in args.seeds:
        arm_runs = {arm: [(row, curve) for row, curve in runs if row["seed"] == seed and row["arm"] == arm] for arm in ARMS}
        for full, full_curve in arm_runs["full"]:
            for asha, asha_curve in arm_runs["asha"]:
                ratio = asha["started"] / max(1, full["started"])
                lines.append(f"\nseed {seed}, asha {asha['from']} vs full {full['from']}: asha started {ratio:.1f}x "
                             f"the candidates of full; hypervolume {asha['hypervolume']:.4f} vs {full['hypervolume']:.4f} "
                             f"when all trials ended, {asha['hypervolume at the budget']:.4f} vs "
                             f"{full['hypervolume at the budget']:.4f} when the budget ended; larger front, by minute: "
                             f"{leads(asha_curve, full_curve)}")
    command = "python bench/sweep_efficiency.py " + " ".join(argv if argv is not None else sys.argv[1:])
    text = (f"# Sweep efficiency: NSGA-II with and without multi-objective ASHA\n\n`{command.strip()}`; "
            f"hypervolume of test top-1 vs float32 MB, reference point {REFERENCE}"
            + (f"; runs made here are in {root}" if any(r["from"] == "this bench" for r in rows) else "") + "\n\n"
            + "\n".join(lines) + f"\n\n![hypervolume over wall-clock time]({plot.name})\n")
    args.output.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

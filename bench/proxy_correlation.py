"""Do zero-cost proxies rank trained SqueezeNets? Spearman of synflow / NASWOT with val top-1, against params and MACs.

For every COMPLETE trial of the given sweeps (their studies under ``results/``; a sweep
whose journal is not committed, like the quickstart, is read from its exported
``trials.parquet``) this scores the trial's candidate at the initialisation its run
started from (the recorded ``config.*`` metaparameters, the trial's seed, the sweep's data
and normalisation: :func:`dse.sweep.proxies.proxy_scores`) and ranks the scores against
the trial's trained val top-1, per sweep and pooled. Trials that trained the same run
count once: within a sweep (the compression sweep trains each network once per bit width)
and in a pool (the SR sweep's SR 0.5 runs are the pct3x3 sweep's 50% runs, for example). Intervals are
95% percentile bootstraps over runs (2,000 resamples, seeded); ``vs params`` is the paired
bootstrap interval of the difference of Spearman coefficients on the same resamples.

    python bench/proxy_correlation.py                          # the committed sweeps -> bench/proxy_correlation.md
    python bench/proxy_correlation.py --sweeps downsample depth --output bench/proxy_correlation_new.md
    python bench/proxy_correlation.py --sweeps quickstart sr pct3x3 bypass pareto compress downsample depth \\
        --reuse bench/proxy_correlation_runs.csv             # all, scoring only runs not scored before
"""

from __future__ import annotations

import argparse
import hashlib
import math
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

COMMITTED = ["quickstart", "sr", "pct3x3", "bypass", "pareto", "compress"]
SCORES = ["synflow", "naswot", "params", "macs"]  # the two proxies, then the trivial baselines
BASELINES = ["params", "macs"]
RESAMPLES = 2000
CONFIDENCE = 0.95
POOLED = "pooled"
SAME_PROTOCOL = "pooled, full-data sweeps"  # every sweep but the quickstart (3 epochs on 6,000 images)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweeps", nargs="+", default=COMMITTED, help="sweep names under --results-root")
    parser.add_argument("--results-root", default="results")
    parser.add_argument("--output", default="bench/proxy_correlation.md", help="the markdown table; the per-run "
                        "scores go beside it as <stem>_runs.csv")
    parser.add_argument("--reuse", type=Path, help="a <stem>_runs.csv of an earlier run: runs scored there are not scored again")
    parser.add_argument("--seed", type=int, default=0, help="the bootstrap's seed")
    return parser.parse_args()


# --------------------------------------------------------------------------- scoring trials


def completed_trials(name: str, results_root: str) -> pd.DataFrame:
    import dse.results as dr

    try:
        trials = dr.load(name, results_root=results_root).trials
    except dr.ResultsError as err:
        exported = Path(results_root) / name / "trials.parquet"
        if not exported.is_file():
            raise
        print(f"{name}: {err}; reading the exported {exported}", file=sys.stderr)
        trials = pd.read_parquet(exported)
    return trials[trials["state"] == "COMPLETE"]


def _plain(value):
    """A table cell as the config schema takes it: JSON text parsed, numpy scalars as Python, NA as None."""
    from dse.contract import loaded_param

    if isinstance(value, np.generic):
        value = value.item()
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return None
    return loaded_param(value)


def trial_config(row: pd.Series, sweep):
    """The trial's training config: its data from the sweep, its network as the worker recorded it
    (``config.*``, input shape and classes resolved), its seed."""
    from dse.arch import ArchConfig

    values = {key: _plain(row[key]) for key in sweep.space if key in row}
    recorded = {key.removeprefix("config."): _plain(value) for key, value in row.items() if key.startswith("config.")}
    model = ArchConfig.model_validate({k: v for k, v in recorded.items() if v is not None})
    cfg = sweep.train_config(values)
    return cfg.model_copy(update={"model": model, "seed": int(row["seed"])})


def run_identity(cfg) -> str:
    """What makes two trials the same trained network: everything but compression and reporting (hashed)."""
    trained = cfg.model_copy(update={"compress": None, "measure_latency": False}).model_dump_json(
        exclude={"eval_batch_size", "compilation_cache_dir", "checkpoint"})
    return hashlib.sha256(trained.encode()).hexdigest()[:16]


def score_sweeps(names: list[str], results_root: str, reused: pd.DataFrame | None) -> pd.DataFrame:
    """One row per distinct trained run: sweep, trial numbers, val top-1, both proxies, params, MACs."""
    import dse.train.compile_cache as compile_cache
    from dse.contract import SweepLayout
    from dse.data import load_splits
    from dse.errors import DseError
    from dse.sweep.config import load_sweep
    from dse.sweep.proxies import proxy_images, proxy_scores
    from dse.train.config import DEFAULT_CACHE_DIR

    compile_cache.enable(DEFAULT_CACHE_DIR)  # the trainer's init programs, and a rerun's, come from disk
    known = {} if reused is None else {r.run: r for r in reused.itertuples()}
    splits, scored, rows = {}, {}, []
    for name in names:
        try:
            sweep = load_sweep(SweepLayout(Path(results_root) / name).sweep_file)
            trials = completed_trials(name, results_root)
        except DseError as err:  # a sweep not run (or not finished) yet: say so, score the others
            print(f"{name}: skipped: {err}", file=sys.stderr)
            continue
        runs: dict[str, dict] = {}
        for _, trial in trials.iterrows():
            cfg = trial_config(trial, sweep)
            run = run_identity(cfg)
            if run in runs:
                runs[run]["trials"] += f",{trial['number']}"
                continue
            row = {"sweep": name, "trials": str(trial["number"]), "seed": cfg.seed, "val_top1": trial["val_top1"],
                   "params": trial["params"], "macs": trial["macs"], "run": run}
            if run in known:
                row.update(synflow=known[run].synflow, naswot=known[run].naswot, proxy_s=known[run].proxy_s)
            elif run in scored:  # another sweep trained this network alike
                row.update({key: scored[run][key] for key in ("synflow", "naswot", "proxy_s")})
            else:
                data_key = cfg.data.model_dump_json()
                if data_key not in splits:
                    splits[data_key] = load_splits(cfg.data)
                started = time.perf_counter()
                row.update(proxy_scores(cfg.model, cfg.seed, proxy_images(splits[data_key], cfg.seed)))
                row["proxy_s"] = time.perf_counter() - started
                print(f"{name} trial {trial['number']}: synflow {row['synflow']:.3f}, naswot {row['naswot']:.2f}, "
                      f"val top-1 {row['val_top1']:.4f} ({row['proxy_s']:.1f} s)", file=sys.stderr)
            runs[run] = scored[run] = row
        rows += runs.values()
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- rank statistics


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    from scipy.stats import spearmanr

    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan  # no ranking to speak of
    return float(spearmanr(x, y).statistic)


def correlations(runs: pd.DataFrame, seed: int) -> dict[str, dict[str, float]]:
    """Per score: Spearman rho with val top-1, its bootstrap interval, and the paired interval of
    rho minus each baseline's rho (the same resamples for every score)."""
    y = runs["val_top1"].to_numpy(float)
    x = {s: runs[s].to_numpy(float) for s in SCORES}
    rng = np.random.default_rng(seed)
    resamples = [rng.integers(0, len(y), len(y)) for _ in range(RESAMPLES)]
    boot = {s: np.array([spearman(x[s][i], y[i]) for i in resamples]) for s in SCORES}
    tail = 100 * (1 - CONFIDENCE) / 2
    out = {}
    for s in SCORES:
        stats = {"n": len(y), "rho": spearman(x[s], y), **_interval(boot[s], tail, "")}
        for b in BASELINES:
            if b != s:
                stats |= _interval(boot[s] - boot[b], tail, f"minus_{b}_")
        out[s] = stats
    return out


def _interval(values: np.ndarray, tail: float, prefix: str) -> dict[str, float]:
    values = values[~np.isnan(values)]
    if len(values) < RESAMPLES / 2:  # most resamples had no ranking (n tiny or ties)
        return {f"{prefix}low": math.nan, f"{prefix}high": math.nan}
    low, high = np.percentile(values, [tail, 100 - tail])
    return {f"{prefix}low": float(low), f"{prefix}high": float(high)}


def groups(runs: pd.DataFrame, names: list[str]) -> list[tuple[str, pd.DataFrame]]:
    out = [(name, runs[runs["sweep"] == name]) for name in names]
    distinct = runs.drop_duplicates("run")  # a network two sweeps trained alike counts once in a pool
    if len(names) > 1:
        out.append((POOLED, distinct))
    if "quickstart" in names and len(names) > 2:
        out.append((SAME_PROTOCOL, distinct[distinct["sweep"] != "quickstart"]))
    return out


# --------------------------------------------------------------------------- report


def _fmt(value: float, digits: int = 2) -> str:
    return "n/a" if math.isnan(value) else f"{value:+.{digits}f}"


def _cell(stats: dict[str, float], prefix: str = "") -> str:
    rho = "" if prefix else f"{_fmt(stats['rho'])} "
    low, high = stats[f"{prefix}low"], stats[f"{prefix}high"]
    return f"{rho}[{_fmt(low)}, {_fmt(high)}]" if not math.isnan(low) else f"{rho}[n/a]".strip()


def beats_baselines(stats: dict[str, dict[str, float]], proxy: str) -> bool:
    """The bar for offering screening: the paired interval of rho(proxy) - rho(baseline) above 0 for both baselines."""
    return all(stats[proxy][f"minus_{b}_low"] > 0 for b in BASELINES)


def verdicts(table: list[tuple[str, dict]]) -> list[str]:
    """One line per proxy: does it clear the bar in the widest pool of one training protocol?"""
    rows = dict(table)
    name = SAME_PROTOCOL if SAME_PROTOCOL in rows else POOLED
    if name not in rows:
        return []
    lines = []
    for proxy in ("synflow", "naswot"):
        answer = "beats" if beats_baselines(rows[name], proxy) else "does not beat"
        gaps = ", ".join(f"- {b} {_cell(rows[name][proxy], f'minus_{b}_')}" for b in BASELINES)
        lines.append(f"- {proxy} {answer} counting in the {name!r} row: rho({proxy}) {gaps}")
    return [*lines, "  (screening is offered only for a proxy whose paired intervals are above 0 for both baselines)"]


def markdown(table: list[tuple[str, dict]], runs: pd.DataFrame, command: str) -> str:
    lines = [
        "# Zero-cost proxies against trained val top-1",
        "",
        f"Made by `{command}` ({time.strftime('%Y-%m-%d')}); per-run scores in the `_runs.csv` beside this file.",
        "",
        "Spearman rank correlation of each score with the trial's trained val top-1, with its 95% bootstrap",
        f"interval over runs ({RESAMPLES:,} resamples, percentile); n = distinct trained runs (trials that trained",
        "the same network count once, in a sweep and in a pool). synflow: log of the sum of |theta * dR/dtheta|",
        "with positive weights and an input of ones (float64); naswot: log |det K| of the ReLU codes of 64",
        "training images (`dse/sweep/proxies.py`). The columns `A - params` and `A - macs` are the paired",
        "bootstrap interval of rho(A) - rho(baseline): above 0, the proxy ranks better than counting.",
        "",
        "| sweep | n | synflow | naswot | params | macs | synflow - params | naswot - params | synflow - macs | naswot - macs |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, stats in table:
        lines.append(
            f"| {name} | {stats['synflow']['n']} | {_cell(stats['synflow'])} | {_cell(stats['naswot'])} | "
            f"{_cell(stats['params'])} | {_cell(stats['macs'])} | {_cell(stats['synflow'], 'minus_params_')} | "
            f"{_cell(stats['naswot'], 'minus_params_')} | {_cell(stats['synflow'], 'minus_macs_')} | "
            f"{_cell(stats['naswot'], 'minus_macs_')} |")
    cost = runs.drop_duplicates("run")["proxy_s"]
    lines += ["", *verdicts(table), "",
              f"Scoring cost: {cost.median():.1f} s median per run ({cost.sum():.0f} s in all, compilation included, "
              "as first measured: a run reused with --reuse keeps its time), on a 2-core CPU shared with a training job."]
    return "\n".join(lines) + "\n"


def main() -> None:
    args = parse_args()
    reused = pd.read_csv(args.reuse) if args.reuse else None
    runs = score_sweeps(args.sweeps, args.results_root, reused)
    if runs.empty:
        sys.exit("no completed trials in " + ", ".join(args.sweeps))
    names = [n for n in args.sweeps if n in set(runs["sweep"])]
    table = [(name, correlations(group, args.seed)) for name, group in groups(runs, names)]
    command = "python " + " ".join(sys.argv)
    report = markdown(table, runs, command)
    output = Path(args.output)
    output.write_text(report)
    runs.to_csv(output.with_name(f"{output.stem}_runs.csv"), index=False)
    print(report)


if __name__ == "__main__":
    main()

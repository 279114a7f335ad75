"""SqueezeNet against the other families: size, accuracy, latency and estimated energy, one table.

Reads a finished run of ``sweeps/baselines.yaml`` (every network trained with one protocol
and seed by ``dse sweep run``), then times each trained network again, one after another
in this process while nothing else runs: ONNX Runtime on one intra-op thread at batch 1
and 64, and jitted JAX at batch 1 (:func:`dse.deploy.latency.measure_path_latency`, the
rules in the README's Deployment section). The sweep's own latencies were taken while
the other worker trained; these are the quiet ones, so the table compares like with
like. Params, float32 size, MACs and the energy estimate come from the spec; test top-1
from the trial.

Writes a markdown table and an accuracy-vs-latency plot (SqueezeNet front, the other
families as labelled markers) beside this file.

    python bench/family_latency.py                       # results/baselines, about 3 minutes
    python bench/family_latency.py --results results/baselines --repeats 100
    python bench/family_latency.py --table bench/family_latency.csv     # redraw from a measured table
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

import dse.results as dr
from dse.contract import SweepLayout
from dse.deploy.latency import ONNXRUNTIME, measure_path_latency
from dse.results.plots import pareto

REPO = Path(__file__).resolve().parent.parent
SQUEEZENET_PARAMS = ("base_e", "incr_e", "freq", "sr", "pct3x3", "bypass")
PLOT_LABEL_PARAMS = ("base_e", "sr", "bypass")  # enough to tell the four SqueezeNets apart on the plot


def network_label(row: pd.Series) -> str:
    """``MobileNet v2 0.35x``; a SqueezeNet with the metaparameters that differ from the defaults' names."""
    label = dr.family_label(row)
    if label != "SqueezeNet":
        return label
    values = {p: row.get(f"config.{p}") for p in SQUEEZENET_PARAMS}
    return f"SqueezeNet base {values['base_e']}, incr {values['incr_e']}, freq {values['freq']}, SR {values['sr']:g}, " \
           f"3x3 {values['pct3x3']:g}, {'vanilla' if values['bypass'] == 'none' else values['bypass'] + ' bypass'}"


def measure(results: dr.SweepResults, repeats: int) -> pd.DataFrame:
    """One row per completed network, with its latencies measured again here."""
    layout = SweepLayout(results.directory)
    rows = []
    for _, trial in results.trials[results.trials["state"] == "COMPLETE"].iterrows():
        report = measure_path_latency(layout.run(trial["run"]).root, threads=1, repeats=repeats)
        onnx, label = report.timings[ONNXRUNTIME], network_label(trial)
        rows.append({
            "network": label, "squeezenet": label.startswith("SqueezeNet"),
            "params": int(trial["params"]), "model_size_mb": trial["model_size_mb"], "macs": int(trial["macs"]),
            "test_top1": trial["test_top1"], "latency_ms": onnx[1].median_ms, "latency_p90_ms": onnx[1].p90_ms,
            "latency_b64_ms": onnx[64].median_ms, "latency_jax_ms": report.metrics()["latency_jax_ms"],
            "energy_uj": trial["energy_uj"], "seed": trial["seed"], "epochs": trial["epochs_completed"],
            "label": label, **{p: trial.get(f"config.{p}") for p in SQUEEZENET_PARAMS},
        })
        print(rows[-1], flush=True)
    return pd.DataFrame(rows).sort_values("latency_ms").reset_index(drop=True)


def markdown(table: pd.DataFrame) -> str:
    lines = ["| network | params | float32 MB | MMACs | test top-1 | ORT b1 ms (p90) | ORT b64 ms | JAX b1 ms "
             "| energy µJ (est.) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r.network} | {r.params:,} | {r.model_size_mb:.3f} | {r.macs / 1e6:.1f} | {100 * r.test_top1:.1f}% | "
              f"{r.latency_ms:.2f} ({r.latency_p90_ms:.2f}) | {r.latency_b64_ms:.1f} | {r.latency_jax_ms:.2f} | "
              f"{r.energy_uj:.1f} |" for r in table.itertuples()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=REPO / "results" / "baselines", help="a finished baselines sweep")
    parser.add_argument("--repeats", type=int, default=50, help="timed calls per measurement (after 5 untimed)")
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "family_latency.md")
    parser.add_argument("--table", type=Path, default=None, help="a CSV this bench wrote: redraw it, measure nothing")
    args = parser.parse_args(argv)

    results = dr.load(args.results)
    if args.table is not None:
        table = pd.read_csv(args.table)
    else:
        table = measure(results, args.repeats)
        table.to_csv(args.output.with_suffix(".csv"), index=False)
    squeezenets = table[table["squeezenet"]]
    squeezenets = squeezenets.assign(state="COMPLETE", status="completed", number=squeezenets.index)
    figure = pareto(squeezenets, "latency_ms", "test_top1", label_params=PLOT_LABEL_PARAMS,
                    references=table[~table["squeezenet"]],
                    caption=f"{results.trials.attrs.get('caption', '')}\nlatency measured again by bench/family_latency.py")
    figure.savefig(args.output.with_suffix(".png"), dpi=150)
    command = "python bench/family_latency.py " + " ".join(argv if argv is not None else sys.argv[1:])
    seeds = sorted(set(table["seed"]))
    text = (f"# SqueezeNet and the other families on Fashion-MNIST\n\n`{command.strip()}` on `{args.results.name}` "
            f"(`dse sweep run sweeps/{results.sweep.get('name', args.results.name)}.yaml --workers 2`): every network "
            f"trained {int(table['epochs'].max())} epochs with one protocol, seed {', '.join(map(str, seeds))}. "
            f"Latency: median (p90) of {args.repeats} calls "
            f"after 5 untimed, ONNX Runtime on 1 intra-op thread, measured one network after another with nothing "
            f"else running. Energy: the estimate of dse.arch.energy (45 nm table), not a measurement.\n\n"
            + markdown(table) + f"\n\n![accuracy vs latency]({args.output.with_suffix('.png').name})\n")
    args.output.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

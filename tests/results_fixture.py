"""A realistic sweep results folder without training anything.

:func:`build_sweep` writes ``<root>/<name>/sweep.yaml`` and ``study.journal``: a real
Optuna JournalStorage study laid out as ``dse sweep`` workers leave it (study user attr
``sweep``; per trial: params by dotted name with ``seed`` (the repeat index of a grid
sweep), objective values, the pruner's intermediate values, and user attrs status /
reason / seed (the seed trained with) / config / metrics / history).
Metrics come from a smooth made-up function of the metaparameters, so plots and
aggregates have something to show and tests can predict them.
"""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import optuna
import yaml

SPACE = {"model.sr": [0.125, 0.25, 0.5, 1.0], "model.bypass": ["none", "simple"]}
OBJECTIVES = [{"metric": "val_top1", "goal": "maximize"}, {"metric": "model_size_mb", "goal": "minimize"}]
BASE_MODEL = {
    "base_e": 16, "incr_e": 16, "freq": 2, "pct3x3": 0.5, "sr": 0.125, "stem": "small", "stem_filters": None,
    "pool_after": None, "bypass": "none", "batch_norm": True, "dropout": 0.5, "init": "caffe", "num_classes": 10,
    "input_shape": [28, 28, 1],
}
BYPASS_GAIN = {"none": 0.0, "simple": 0.01, "complex": 0.005}
START = datetime(2026, 1, 5, 9, 0, 0)
SEED = 42  # the base config's seed; repeat r trains with SEED + r


def model_size_mb(config: dict[str, Any]) -> float:
    return 0.5 + 4.0 * config["sr"] + 2.0 * config["pct3x3"] + (1.5 if config["bypass"] == "complex" else 0.0)


def final_accuracy(config: dict[str, Any], seed: int) -> float:
    """Rises with SR and pct3x3 and plateaus (as in the paper's Figure 3); bypass helps a little."""
    return (0.85 + 0.06 * min(config["sr"], 0.5) + 0.02 * min(config["pct3x3"], 0.5)
            + BYPASS_GAIN[config["bypass"]] + 0.002 * (seed % 3 - 1))


def static_metrics(config: dict[str, Any]) -> dict[str, float]:
    size = model_size_mb(config)
    return {"params": int(size * 2**20 / 4), "model_size_mb": size, "macs": int(2e7 + 1.2e8 * config["sr"])}


def history(config: dict[str, Any], seed: int, epochs: int) -> list[dict[str, float]]:
    final = final_accuracy(config, seed)
    rows = []
    for epoch in range(1, epochs + 1):
        val_top1 = final - 0.12 * (epochs - epoch) / epochs
        rows.append({
            "epoch": epoch, "train_loss": 1.2 - 0.8 * val_top1 + 0.05 * (epochs - epoch), "train_top1": val_top1 - 0.01,
            "learning_rate": 0.04 * (1 - (epoch - 1) / epochs), "val_loss": 1.3 - 0.9 * val_top1, "val_top1": val_top1,
            "val_top5": min(1.0, val_top1 + 0.12), "epoch_train_s": 20.0 + 10 * config["sr"], "images": 54_000,
        })
    return rows


def build_sweep(
    root: Path,
    name: str = "sr_bypass",
    space: dict[str, list] | None = None,
    repeats: int = 2,
    epochs: int = 4,
    max_size_mb: float | None = 4.0,
    pruned: int = 1,
    running: bool = False,
) -> Path:
    """Write a grid sweep over ``space`` x ``repeats`` and return its results folder.

    Points larger than ``max_size_mb`` fail as infeasible before training; the last
    ``pruned`` feasible points are pruned halfway; ``running`` adds a trial in progress.
    """
    space = SPACE if space is None else space
    directory = Path(root) / name
    directory.mkdir(parents=True, exist_ok=True)
    sweep = {
        "name": name,
        "description": f"test sweep over {', '.join(space)}",
        "objectives": OBJECTIVES,
        "base": {"epochs": epochs, "data": {"dataset": "fashion_mnist"}, "model": {"preset": "squeezenet_small"}},
        "space": {param: {"values": values} for param, values in space.items()},
        "repeats": repeats,
        "constraints": [{"metric": "model_size_mb", "max": max_size_mb}] if max_size_mb is not None else [],
        "sampler": {"name": "grid", "seed": 0},
        "pruner": {"name": "median", "warmup_epochs": 1},
    }
    (directory / "sweep.yaml").write_text(yaml.safe_dump(sweep, sort_keys=False))
    (directory / "study.journal").unlink(missing_ok=True)  # a fresh study each time
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(directory / "study.journal")))
    study = optuna.create_study(study_name=name, storage=storage, directions=[o["goal"] for o in OBJECTIVES])
    study.set_user_attr("sweep", sweep)

    distributions = {p: optuna.distributions.CategoricalDistribution(v) for p, v in space.items()}
    distributions["seed"] = optuna.distributions.CategoricalDistribution(list(range(repeats)))
    axes = [*space.values(), range(repeats)]
    points = [dict(zip([*space, "seed"], values, strict=True)) for values in itertools.product(*axes)]
    feasible = [p for p in points if max_size_mb is None or model_size_mb(_config(p)) <= max_size_mb]
    to_prune = {id(p) for p in feasible[len(feasible) - pruned:]} if pruned else set()
    for number, params in enumerate(points):
        kind = "infeasible" if params not in feasible else "pruned" if id(params) in to_prune else "completed"
        study.add_trial(_trial(number, params, distributions, kind, epochs, max_size_mb))
    if running:
        study.ask()
    return directory


def _config(params: dict[str, Any]) -> dict[str, Any]:
    return {**BASE_MODEL, **{p.removeprefix("model."): v for p, v in params.items() if p.startswith("model.")}}


def _trial(number: int, params: dict, distributions: dict, kind: str, epochs: int, max_size_mb: float | None):
    config, seed = _config(params), params["seed"]
    start = START + timedelta(minutes=5 * number)
    attrs = {"status": kind, "reason": "", "seed": SEED + seed, "config": config, **static_metrics(config),
             "dse_version": "0.1.0", "worker": "host-a:1234"}
    state, values, intermediate = optuna.trial.TrialState.COMPLETE, None, {}
    if kind == "infeasible":
        state, attrs["reason"] = optuna.trial.TrialState.FAIL, f"model_size_mb {attrs['model_size_mb']:.2f} > max {max_size_mb}"
        end = start + timedelta(seconds=1)
    else:
        curve = history(config, seed, epochs)[: epochs if kind == "completed" else max(1, epochs // 2)]
        last = curve[-1]
        attrs.update(history=curve, epochs_completed=len(curve), val_top1=last["val_top1"], val_top5=last["val_top5"],
                     val_loss=last["val_loss"], compile_s=12.0, train_s=sum(r["epoch_train_s"] for r in curve))
        intermediate = {r["epoch"]: r["val_top1"] for r in curve}
        end = start + timedelta(seconds=12.0 + attrs["train_s"])
        if kind == "pruned":
            state, attrs["reason"] = optuna.trial.TrialState.PRUNED, f"median pruner at epoch {len(curve)}"
        else:
            attrs.update(test_top1=last["val_top1"] - 0.005, test_top5=last["val_top5"], test_loss=last["val_loss"] + 0.01,
                         eval_s=2.0, total_s=14.0 + attrs["train_s"], images_per_s=54_000 * epochs / attrs["train_s"],
                         latency_ms=1.5 + config["sr"])
            values = [attrs["val_top1"], attrs["model_size_mb"]]
    return optuna.trial.FrozenTrial(
        number=number, state=state, value=None, values=values, datetime_start=start, datetime_complete=end,
        params=params, distributions={p: distributions[p] for p in params}, user_attrs=attrs, system_attrs={},
        intermediate_values=intermediate, trial_id=number,
    )

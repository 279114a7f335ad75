"""A realistic sweep results folder, made by the real sweep worker with a stubbed trainer.

:func:`build_sweep` writes ``<root>/<name>/sweep.yaml`` and runs the real
:class:`dse.sweep.worker.Worker` on a real journal study, so every trial attribute
(status, reason, seed, config, static metrics, run metrics, history) is written by the
code that writes it in a real sweep. Only ``train_and_evaluate`` (and the data loading
before it) is replaced: the stub returns the run result of a smooth made-up function of
the metaparameters, so tests can predict every number, and it stops chosen candidates
halfway exactly as the worker's pruner hook does (by raising ``optuna.TrialPruned``).
"""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from unittest import mock

import numpy as np
import yaml

from dse.contract import RunLayout, RunResult
from dse.sweep import worker as worker_module
from dse.sweep.config import load_sweep
from dse.sweep.space import grid_points
from dse.sweep.study import open_study

SPACE = {"model.sr": [0.125, 0.25, 0.5, 1.0], "model.bypass": ["none", "simple"]}
OBJECTIVES = [{"metric": "val_top1", "goal": "maximize"}, {"metric": "model_size_mb", "goal": "minimize"}]
BASE = {"epochs": 4, "data": {"dataset": "fashion_mnist"},
        "model": {"preset": "squeezenet_small", "base_e": 16, "incr_e": 16, "batch_norm": True}}
BYPASS_GAIN = {"none": 0.0, "simple": 0.01, "complex": 0.005}
DEFAULTS = {"sr": 0.5, "pct3x3": 0.5, "bypass": "none"}
SEED = 42  # the base config's seed; repeat r trains with SEED + r
# SR 1.0 at these widths is 0.356 MB (0.381 with complex bypass), SR 0.5 0.182 MB: a
# 0.3 MB budget makes SR 1.0 infeasible.
MAX_SIZE_MB = 0.3


def final_accuracy(config: dict[str, Any], repeat: int) -> float:
    """Rises with SR and pct3x3 and plateaus (as in the paper's Figure 3); bypass helps a little."""
    config = {**DEFAULTS, **config}  # other families than SqueezeNet have none of these: they score as the defaults
    return (0.85 + 0.06 * min(config["sr"], 0.5) + 0.02 * min(config["pct3x3"], 0.5)
            + BYPASS_GAIN[config["bypass"]] + 0.002 * (repeat % 3 - 1))


def history(config: dict[str, Any], repeat: int, epochs: int) -> list[dict[str, float]]:
    final = final_accuracy(config, repeat)
    rows = []
    for epoch in range(1, epochs + 1):
        val_top1 = final - 0.12 * (epochs - epoch) / epochs
        rows.append({
            "epoch": epoch, "train_loss": 1.2 - 0.8 * val_top1 + 0.05 * (epochs - epoch), "train_top1": val_top1 - 0.01,
            "learning_rate": 0.04 * (1 - (epoch - 1) / epochs), "val_loss": 1.3 - 0.9 * val_top1, "val_top1": val_top1,
            "val_top5": min(1.0, val_top1 + 0.12), "epoch_train_s": 20.0 + 10 * config.get("sr", 0.5), "images": 54_000,
        })
    return rows


class StubTrainer:
    """Stands in for ``train_and_evaluate``: reports each epoch through the hooks, as the real
    trainer does, and returns a :class:`~dse.contract.RunResult`."""

    def __init__(self, prune: set[tuple]):
        self.prune = prune  # (sr, bypass, repeat) candidates stopped after half their epochs

    def __call__(self, cfg, workdir, *, hooks=None, splits=None) -> RunResult:
        config, repeat = cfg.model.model_dump(), cfg.seed - SEED
        curve = history(config, repeat, cfg.epochs)
        stop = (config.get("sr"), config.get("bypass"), repeat) in self.prune
        if hooks and hooks.on_start:
            hooks.on_start({"epochs": cfg.epochs, "steps_per_epoch": 1, "start_epoch": 0, "history": []})
        for record in curve[: max(1, cfg.epochs // 2)] if stop else curve:
            if hooks and hooks.on_epoch:
                hooks.on_epoch(dict(record))
        if stop:
            raise worker_module.optuna.TrialPruned()
        time.sleep(0.002)  # trials have a measurable duration
        last = curve[-1]
        train_s = sum(r["epoch_train_s"] for r in curve)
        RunLayout(Path(workdir)).root.mkdir(parents=True, exist_ok=True)
        return {**self._compressed(cfg, last), **{
            "status": "completed", "epochs_completed": len(curve), "resumed_from_epoch": 0,
            "val_top1": last["val_top1"], "val_top5": last["val_top5"], "val_loss": last["val_loss"],
            "test_top1": last["val_top1"] - 0.005, "test_top5": last["val_top5"], "test_loss": last["val_loss"] + 0.01,
            "latency_ms": 1.5 + config.get("sr", 0.5), "compile_s": 12.0, "train_s": train_s, "eval_s": 2.0,
            "total_s": 14.0 + train_s, "images_per_s": 54_000 * len(curve) / train_s, "history": curve,
        }}

    @staticmethod
    def _compressed(cfg, last: dict) -> dict:
        """What compression adds when the config asks for it: fewer bits and more sparsity, smaller
        files and a little accuracy lost."""
        if cfg.compress is None:
            return {}
        from dse.arch import expand, summarize

        float32_bytes = summarize(expand(cfg.model)).size_bytes(32)
        kept_bits = cfg.compress.bits * (1 - cfg.compress.sparsity) + 1.0  # + about a bit of position per weight
        lost = 0.002 * (8 - cfg.compress.bits) + 0.01 * cfg.compress.sparsity
        return {"compressed_bytes": int(float32_bytes * kept_bits / 32), "compression_ratio": 32 / kept_bits,
                "val_top1_compressed": last["val_top1"] - lost, "val_top5_compressed": last["val_top5"],
                "test_top1_compressed": last["val_top1"] - 0.005 - lost, "test_top5_compressed": last["val_top5"]}


def _fake_splits(data_config) -> SimpleNamespace:
    """What the worker reads of the data before training: the input shape and class count."""
    train = SimpleNamespace(images=np.zeros((1, 28, 28, 1), np.uint8), num_classes=10)
    return SimpleNamespace(train=train)


def build_sweep(
    root: Path,
    name: str = "sr_bypass",
    space: dict[str, list] | None = None,
    repeats: int = 2,
    epochs: int = 4,
    max_size_mb: float | None = MAX_SIZE_MB,
    pruned: int = 1,
    running: bool = False,
    objectives: list[dict] | None = None,
    base: dict | None = None,
) -> Path:
    """Run a grid sweep over ``space`` x ``repeats`` and return its results folder.

    Points larger than ``max_size_mb`` fail as infeasible before training; the last
    ``pruned`` points are stopped halfway; ``running`` adds a trial in progress.
    """
    space = SPACE if space is None else space
    directory = Path(root) / name
    directory.mkdir(parents=True, exist_ok=True)
    sweep_yaml = {
        "name": name,
        "description": f"test sweep over {', '.join(space)}",
        "objectives": objectives or OBJECTIVES,
        "base": {**BASE, "epochs": epochs, **(base or {})},
        "space": {param: {"values": values} for param, values in space.items()},
        "repeats": repeats,
        "constraints": [{"metric": "model_size_mb", "max": max_size_mb}] if max_size_mb is not None else [],
        "sampler": {"name": "grid", "seed": 0},
    }
    path = directory / "sweep.yaml"
    path.write_text(yaml.safe_dump(sweep_yaml, sort_keys=False))
    (directory / "study.journal").unlink(missing_ok=True)  # a fresh study each time
    sweep = load_sweep(path)
    study = open_study(sweep, directory, None)
    feasible = [params for params in grid_points(sweep) if not _too_large(sweep, params, max_size_mb)]
    prune = {_candidate(sweep, params) for params in feasible[len(feasible) - pruned:]} if pruned else set()
    with mock.patch.object(worker_module, "train_and_evaluate", StubTrainer(prune)), \
            mock.patch.object(worker_module, "load_splits", _fake_splits):
        worker_module.Worker(study, sweep, directory).run()
    if running:
        study.ask()
    return directory


def _candidate(sweep, params: dict) -> tuple:
    model = sweep.train_config({k: v for k, v in params.items() if k != "seed"}).model
    return model.sr, model.bypass, params["seed"]


def _too_large(sweep, params: dict, max_size_mb: float | None) -> bool:
    from dse.arch import expand, summarize

    if max_size_mb is None:
        return False
    model = sweep.train_config({k: v for k, v in params.items() if k != "seed"}).model
    return summarize(expand(model)).size_mb(32) > max_size_mb

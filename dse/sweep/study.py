"""Creating, resuming and describing the Optuna study behind a sweep."""

from __future__ import annotations

from pathlib import Path

import optuna

from dse.errors import StorageError
from dse.sweep.config import SweepConfig
from dse.sweep.space import grid_points, make_pruner, make_sampler
from dse.sweep.storage import mask, open_storage

optuna.logging.set_verbosity(optuna.logging.WARNING)


def storage_url(sweep: SweepConfig, override: str | None) -> str | None:
    return override if override is not None else sweep.storage


def open_study(sweep: SweepConfig, results_dir: Path, url: str | None, worker_index: int = 0) -> optuna.Study:
    """Create the study (enqueueing every grid point x seed once) or load the existing one.

    Enqueued trials are handed out by the storage one per ``ask``, so several workers
    never train the same grid point twice.
    """
    storage = open_storage(url, results_dir)
    directions = [o.goal for o in sweep.objectives]
    common = {"study_name": sweep.name, "storage": storage, "sampler": make_sampler(sweep, worker_index),
              "pruner": make_pruner(sweep)}
    try:
        study = optuna.create_study(directions=directions, **common)
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(**common)
        if [d.name.lower() for d in study.directions] != directions:
            raise StorageError(f"storage {mask(url)}: study {sweep.name!r} exists with other objectives "
                               f"({[d.name.lower() for d in study.directions]}); rename the sweep") from None
        _check_same_grid(study, sweep, url)
        return study
    study.set_user_attr("sweep", sweep.model_dump(mode="json"))
    # ``base`` with every default filled in, so results read the dataset and epochs
    # without importing the trainer (and stay right if a default changes later)
    study.set_user_attr("base_resolved", sweep.train_config({}).model_dump(mode="json"))
    if sweep.sampler.name == "grid":
        for params in grid_points(sweep):
            study.enqueue_trial(params, skip_if_exists=False)
    return study


def _check_same_grid(study: optuna.Study, sweep: SweepConfig, url: str | None) -> None:
    """A grid is enqueued once, when the study is created: resuming it from a file whose
    grid or repeats changed would silently train the old grid, so say so instead."""
    stored = study.user_attrs.get("sweep") or {}
    if sweep.sampler.name != "grid" or not stored:
        return
    current = sweep.model_dump(mode="json")
    for key in ("space", "repeats"):
        if stored.get(key) != current.get(key):
            raise StorageError(f"storage {mask(url)}: study {sweep.name!r} was created with another {key} "
                               f"({stored.get(key)}); rename the sweep, or remove its results to start over")

"""Creating, resuming and describing the Optuna study behind a sweep."""

from __future__ import annotations

import time
from pathlib import Path

import optuna

from dse.config_io import changed_keys
from dse.contract import StudyAttr
from dse.errors import StorageError
from dse.sweep.config import SweepConfig
from dse.sweep.space import grid_points, make_pruner, make_sampler
from dse.sweep.storage import mask, open_storage

optuna.logging.set_verbosity(optuna.logging.WARNING)

CREATED_AT = "created_at"  # study user attr: time.time() at creation, where the wall-clock budget starts
# What a resumed study must share with the file it is resumed from. A grid is enqueued once,
# at creation, so its space and repeats are fixed then; every trial trains on ``base``.
FIXED_AT_CREATION = {"grid": ("base", "space", "repeats")}
FIXED_ALWAYS = ("base",)


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
        _check_same_sweep(study, sweep, url)
        return study
    study.set_user_attr(CREATED_AT, time.time())
    study.set_user_attr(StudyAttr.SWEEP, sweep.model_dump(mode="json"))
    # ``base`` with every default filled in, so results read the dataset and epochs
    # without importing the trainer (and stay right if a default changes later)
    study.set_user_attr(StudyAttr.BASE_RESOLVED, sweep.train_config({}).model_dump(mode="json"))
    if sweep.sampler.name == "grid":
        for params in grid_points(sweep):
            study.enqueue_trial(params, skip_if_exists=False)
    return study


def _check_same_sweep(study: optuna.Study, sweep: SweepConfig, url: str | None) -> None:
    """Resuming a study from a file whose ``base`` (or, for a grid, space or repeats) changed
    would silently mix trials of two sweeps, or train the old grid: say so instead."""
    stored = study.user_attrs.get(StudyAttr.SWEEP) or {}
    if not stored:
        return
    current = sweep.model_dump(mode="json")
    for key in FIXED_AT_CREATION.get(sweep.sampler.name, FIXED_ALWAYS):
        changed = changed_keys({key: stored.get(key)}, {key: current.get(key)})
        if changed:
            raise StorageError(f"storage {mask(url)}: study {sweep.name!r} was created with another {key} "
                               f"(changed: {'; '.join(changed)}); rename the sweep, or remove its results to start over")

"""Sweep results as DataFrames: load a study, group seeds, find the Pareto front, export.

A sweep named NAME keeps its results in ``results/NAME/``: ``sweep.yaml`` and, unless
the sweep stored it in a database, the Optuna study ``study.journal`` (study name NAME).
:func:`load` turns the study into two tables:

- ``trials``: one row per trial: ``number, state, status, reason, seed``, each swept
  parameter under its dotted name (``model.sr``), each resolved metaparameter as
  ``config.<name>``, every metric of :data:`~dse.results.metrics.METRICS`, the trial's
  start and end times and ``duration_s``;
- ``curves``: one row per (trial, epoch) from the trial's ``history``, with its
  parameters, so learning curves can be split by any of them.

:func:`export` writes both (Parquet and CSV) and the seed aggregate as ``summary.csv``.

Both frames carry ``attrs``: ``sweep`` (name), ``params`` (swept parameters),
``objectives`` and ``caption`` (dataset and epochs), which the plots use for labels.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd

from dse.config_io import read_yaml
from dse.contract import HISTORY, METRICS, StudyAttr, SweepLayout, TrialAttr, TrialStatus
from dse.errors import DseError
from dse.results.analysis import ResultsError, aggregate
from dse.sweep.asha import promoted_trials
from dse.sweep.storage import GRPC_SCHEME, mask, open_storage, url_scheme

# User attrs that become their own columns (or rows of ``curves``), not generic extras.
_STRUCTURED_ATTRS = {"status", "reason", "seed", "config", "history"}


@dataclass(repr=False)
class SweepResults:
    """One sweep's study as tables; ``params`` are its swept parameters (seed included)."""

    name: str
    sweep: dict[str, Any]
    trials: pd.DataFrame
    curves: pd.DataFrame
    objectives: list[dict[str, str]]
    directory: Path
    params: list[str] = field(default_factory=list)

    def __repr__(self) -> str:
        counts = self.trials["status"].value_counts()
        states = ", ".join(f"{n} {status}" for status, n in counts.items()) or "no trials yet"
        goals = ", ".join(f"{o['goal']} {o['metric']}" for o in self.objectives)
        return f"sweep {self.name!r} ({self.directory}): {len(self.trials)} trials ({states}); objectives: {goals}"


# --------------------------------------------------------------------------- loading


def load(name_or_dir: str | Path, *, results_root: str | Path = "results", storage: Any = None) -> SweepResults:
    """Load a sweep's study as :class:`SweepResults`.

    Args:
      name_or_dir: a sweep name (looked up under ``results_root``) or a results folder.
      results_root: where sweep folders live.
      storage: an Optuna storage object or URL to read the study from instead of the
        folder's ``study.journal`` (a path ending in ``.journal`` opens that journal).

    Raises:
      ResultsError: the folder, its journal or the study does not exist.
    """
    directory = _results_dir(name_or_dir, results_root)
    if storage is None and not directory.is_dir():
        raise ResultsError(f"{directory}: no such results folder (run the sweep first, or check results_root)")
    layout = SweepLayout(directory)
    sweep_file = read_yaml(layout.sweep_file) if layout.sweep_file.is_file() else {}
    name = sweep_file.get("name") or directory.name
    study = _load_study(name, directory, storage)
    sweep = study.user_attrs.get(StudyAttr.SWEEP) or sweep_file
    trials, curves, params = frames_from_study(study, sweep)
    return SweepResults(
        name=name, sweep=sweep, trials=trials, curves=curves, objectives=_objectives(sweep, study),
        directory=directory, params=params,
    )


def load_many(names: Iterable[str], *, results_root: str | Path = "results") -> tuple[dict[str, SweepResults], dict[str, str]]:
    """Load the sweeps that exist: ``(results by name, why each other one could not be loaded)``.

    For notebooks and reports that cover several sweeps and should show what is there.
    """
    found, missing = {}, {}
    for name in names:
        try:
            found[name] = load(name, results_root=results_root)
        except DseError as err:
            missing[name] = str(err)
    return found, missing


def frames_from_study(
    study: optuna.Study, sweep: Mapping[str, Any] | None = None
) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """``(trials, curves, swept parameters)`` of a study, as :func:`load` builds them."""
    sweep = sweep if sweep is not None else study.user_attrs.get(StudyAttr.SWEEP, {})
    frozen = study.get_trials(deepcopy=False)
    objectives = _objectives(sweep, study)
    params = _swept_params(frozen, sweep)
    trials = _trials_frame(frozen, objectives, params)
    curves = _curves_frame(frozen, objectives, params)
    caption = describe(sweep, study.user_attrs.get(StudyAttr.BASE_RESOLVED))
    attrs = {"sweep": sweep.get("name", study.study_name), "params": params, "objectives": objectives, "caption": caption}
    trials.attrs.update(attrs)
    curves.attrs.update(attrs)
    return trials, curves, params


def list_sweeps(results_root: str | Path = "results") -> pd.DataFrame:
    """The sweep folders under ``results_root``: name, description, trials and completed trials."""
    rows = []
    for directory in sorted(Path(results_root).glob("*/")):
        layout = SweepLayout(directory)
        if not layout.sweep_file.is_file() and not layout.journal.is_file():
            continue
        try:
            results = load(directory)
            trials, complete = len(results.trials), int((results.trials["state"] == "COMPLETE").sum())
            description = results.sweep.get("description", "")
        except DseError:  # e.g. a sweep whose study lives in a database
            trials = complete = None
            description = read_yaml(layout.sweep_file).get("description", "") if layout.sweep_file.is_file() else ""
        rows.append({"name": directory.name, "description": description, "trials": trials, "complete": complete,
                     "directory": str(directory)})
    return pd.DataFrame(rows, columns=["name", "description", "trials", "complete", "directory"])


def describe(sweep: Mapping[str, Any], base_resolved: Mapping[str, Any] | None = None) -> str:
    """The caption line of every figure: sweep, dataset and training budget.

    ``base_resolved`` is the base config with defaults filled in, as the study stores it;
    without it, what the sweep file leaves out is "not recorded".

    >>> describe({"name": "sr", "base": {"epochs": 10, "data": {"dataset": "fashion_mnist"}}, "repeats": 2})
    'sweep sr: fashion_mnist, 10 epochs per trial, 2 seeds per configuration'
    >>> describe({"name": "q", "base": {"data": {"train_subset": 6000}}}, {"epochs": 3, "data": {"dataset": "fashion_mnist"}})
    'sweep q: fashion_mnist (6,000 train images), 3 epochs per trial'
    >>> describe({"name": "d", "base": {"epochs": 2, "max_steps_per_epoch": 200, "data": {"dataset": "fashion_mnist"}}})
    'sweep d: fashion_mnist, 2 epochs of 200 steps per trial'
    """
    resolved = base_resolved or {}
    base = {**resolved, **(sweep.get("base") or {})}
    data = {**(resolved.get("data") or {}), **(base.get("data") or {})}
    dataset = data.get("dataset") or "dataset not recorded"
    if data.get("train_subset"):
        dataset += f" ({data['train_subset']:,} train images)"
    if "epochs" in (sweep.get("space") or {}):
        epochs = "epochs swept"
    else:
        epochs = f"{base['epochs']} epochs per trial" if base.get("epochs") else "epochs not recorded"
        if base.get("max_steps_per_epoch"):
            epochs = epochs.replace(" per trial", f" of {base['max_steps_per_epoch']} steps per trial")
    seeds = f", {sweep['repeats']} seeds per configuration" if (sweep.get("repeats") or 1) > 1 else ""
    return f"sweep {sweep.get('name', '?')}: {dataset}, {epochs}{seeds}"


def _results_dir(name_or_dir: str | Path, results_root: str | Path) -> Path:
    path = Path(name_or_dir)
    if path.is_dir() or len(path.parts) > 1:
        return path
    return Path(results_root) / path


def _load_study(name: str, directory: Path, storage: Any) -> optuna.Study:
    journal = SweepLayout(directory).journal
    if storage is None:
        where = str(journal)
    else:
        where = mask(str(storage)) if isinstance(storage, str | Path) else type(storage).__name__
    if storage is None:
        storage = journal
        if not storage.is_file():
            raise ResultsError(
                f"{directory}: no {journal.name} (the sweep has not started, or it stores its study in a database: pass storage=)"
            )
    if isinstance(storage, Path) or (isinstance(storage, str) and storage.endswith(".journal")):
        if not Path(storage).is_file():
            raise ResultsError(f"{storage}: no such journal file")
        storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(storage)))
    elif isinstance(storage, str) and url_scheme(storage) == GRPC_SCHEME:
        storage = open_storage(storage, directory)  # the proxy is no SQLAlchemy URL: open it as the workers do
    try:
        names = optuna.get_all_study_names(storage)
    except Exception as err:  # any driver or URL error: one line for the user
        problem = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ResultsError(f"{where}: cannot read the study storage: {problem}") from None
    if name not in names:
        found = ", ".join(sorted(names)) or "none"
        raise ResultsError(f"{where}: no study named {name!r} (studies found: {found})")
    return optuna.load_study(study_name=name, storage=storage)



def _objectives(sweep: Mapping[str, Any], study: optuna.Study) -> list[dict[str, str]]:
    if sweep.get("objectives"):
        return [{"metric": o["metric"], "goal": o["goal"]} for o in sweep["objectives"]]
    return [{"metric": f"value_{i}", "goal": d.name.lower()} for i, d in enumerate(study.directions)]


def _swept_params(frozen: Sequence[optuna.trial.FrozenTrial], sweep: Mapping[str, Any]) -> list[str]:
    """The sweep's space keys in file order, then any other parameter a trial has."""
    params = dict.fromkeys(sweep.get("space") or {})
    for trial in frozen:
        params.update(dict.fromkeys(trial.params))
    return list(params)


def _trials_frame(frozen: Sequence[optuna.trial.FrozenTrial], objectives: list[dict], params: list[str]) -> pd.DataFrame:
    promoted = promoted_trials(frozen)
    rows = [_trial_row(trial, objectives, params, promoted) for trial in frozen]
    leading = ["number", "state", "status", "reason", "seed", *(p for p in params if p != "seed")]
    config = _union(key for row in rows for key in row if key.startswith("config."))
    timing = ["datetime_start", "datetime_complete", "duration_s"]
    extras = _union(key for row in rows for key in row if key not in {*leading, *config, *METRICS, *timing})
    frame = pd.DataFrame(rows, columns=[*leading, *config, *METRICS, *extras, *timing])
    return _typed(frame, rows)


def _trial_row(trial: optuna.trial.FrozenTrial, objectives: list[dict], params: list[str], promoted: set[int]) -> dict[str, Any]:
    attrs = trial.user_attrs
    row: dict[str, Any] = {
        "number": trial.number,
        "state": trial.state.name,
        "status": _status(trial, promoted),
        "reason": attrs.get(TrialAttr.REASON, ""),
        "seed": _seed(trial),
    }
    row.update({p: trial.params.get(p) for p in params if p != "seed"})
    row.update({f"config.{key}": _cell(value) for key, value in (attrs.get(TrialAttr.CONFIG) or {}).items()})
    row.update({name: attrs.get(name) for name in METRICS})
    row.update({key: _cell(value) for key, value in attrs.items() if key not in _STRUCTURED_ATTRS and key not in row})
    for objective, value in zip(objectives, trial.values or (), strict=False):
        if row.get(objective["metric"]) is None:
            row[objective["metric"]] = value
    row["datetime_start"] = trial.datetime_start
    row["datetime_complete"] = trial.datetime_complete
    row["duration_s"] = trial.duration.total_seconds() if trial.duration else None
    return row


def _curves_frame(frozen: Sequence[optuna.trial.FrozenTrial], objectives: list[dict], params: list[str]) -> pd.DataFrame:
    promoted = promoted_trials(frozen)
    rows = [row for trial in frozen for row in _curve_rows(trial, objectives, params, promoted)]
    fields = _union(["epoch", *HISTORY, *(key for row in rows for key in row)])
    leading = ["number", "state", "status", "seed", *(p for p in params if p != "seed")]
    frame = pd.DataFrame(rows, columns=[*leading, *(f for f in fields if f not in leading)])
    return _typed(frame, rows)


def _curve_rows(trial: optuna.trial.FrozenTrial, objectives: list[dict], params: list[str],
                promoted: set[int]) -> Iterator[dict[str, Any]]:
    history = trial.user_attrs.get(TrialAttr.HISTORY)
    if not history and trial.intermediate_values and objectives:
        # No history written (an older worker): the pruner's reports are the first objective per epoch.
        history = [{"epoch": epoch, objectives[0]["metric"]: value} for epoch, value in sorted(trial.intermediate_values.items())]
    keys = {
        "number": trial.number,
        "state": trial.state.name,
        "status": _status(trial, promoted),
        "seed": _seed(trial),
        **{p: trial.params.get(p) for p in params if p != "seed"},
    }
    for entry in history or ():
        yield {**keys, **entry}


def _status(trial: optuna.trial.FrozenTrial, promoted: set[int]) -> str:
    """The worker's status, or one derived from the state for a trial that ended before it wrote one;
    ``promoted`` for a paused trial that a later trial continues (``promoted`` holds their numbers)."""
    if trial.number in promoted:
        return str(TrialStatus.PROMOTED)
    status = trial.user_attrs.get(TrialAttr.STATUS)
    return str(TrialStatus(status) if status else TrialStatus.of_state(trial.state.name))


def _seed(trial: optuna.trial.FrozenTrial) -> int | None:
    """The seed the trial trained with; a grid sweep's ``seed`` param is only the repeat index."""
    return trial.user_attrs.get(TrialAttr.SEED, trial.params.get("seed"))


def _typed(frame: pd.DataFrame, rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Column types from the stored values: integers stay integers and flags stay flags when a
    trial lacks them (nullable ``Int64`` / ``boolean``); other numbers are floats."""
    for column in frame.columns:
        values = [row[column] for row in rows if row.get(column) is not None]
        if values and all(isinstance(v, bool | np.bool_) for v in values):
            frame[column] = frame[column].astype("boolean")
        elif values and all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in values):
            frame[column] = frame[column].astype("Int64")
        elif column in METRICS or column in HISTORY or column == "duration_s":
            frame[column] = frame[column].astype(float)
    return frame.infer_objects()


def _cell(value: Any) -> Any:
    """A value a Parquet column can hold: lists and mappings become JSON text."""
    return json.dumps(value) if isinstance(value, list | tuple | dict) else value


def _union(keys: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(keys))


# --------------------------------------------------------------------------- export


def export(results: SweepResults, directory: str | Path | None = None) -> list[Path]:
    """Write ``trials``, ``curves`` (Parquet and CSV) and ``summary.csv`` (the aggregate).

    Files go to the sweep's results folder unless ``directory`` is given.
    """
    layout = SweepLayout(Path(directory) if directory is not None else results.directory)
    layout.root.mkdir(parents=True, exist_ok=True)
    summary = aggregate(results.trials, by=[p for p in results.params if p != "seed"])
    written = []
    for name, frame in (("trials", results.trials), ("curves", results.curves)):
        written += [layout.table(name, "parquet"), layout.table(name, "csv")]
        frame.to_parquet(written[-2], index=False)
        frame.to_csv(written[-1], index=False)
    written.append(layout.summary)
    summary.to_csv(written[-1], index=False)
    return written


# --------------------------------------------------------------------------- baselines beside a sweep

FAMILY_NAMES = {"mobilenet_v1": "MobileNet v1", "mobilenet_v2": "MobileNet v2", "shufflenet_v2": "ShuffleNet v2",
                "resnet": "ResNet", "alexnet": "AlexNet", "squeezenet": "SqueezeNet"}


def family_label(row: Mapping[str, Any]) -> str:
    """A baseline's name as papers write it, from its trial row's config columns.

    >>> family_label({"config.family": "resnet", "config.depth": 20})
    'ResNet-20'
    >>> family_label({"config.family": "mobilenet_v2", "config.width_multiplier": 0.35})
    'MobileNet v2 0.35x'
    >>> family_label({"config.family": float("nan"), "config.width_multiplier": float("nan")})
    'SqueezeNet'
    """
    family = row.get("config.family")
    family = "squeezenet" if family is None or pd.isna(family) else family  # NaN: a SqueezeNet row beside others
    name = FAMILY_NAMES.get(family, family)
    if family == "resnet":
        return f"{name}-{int(row['config.depth'])}"
    width = row.get("config.width_multiplier")
    return name if width is None or pd.isna(width) else f"{name} {width:g}x"


def baseline_points(trials: pd.DataFrame) -> pd.DataFrame:
    """The completed trials of other families than SqueezeNet, each with its ``label``."""
    if "config.family" not in trials:
        return trials.iloc[0:0].assign(label=pd.Series(dtype=str))
    done = trials[(trials["state"] == "COMPLETE") & trials["config.family"].notna()
                  & (trials["config.family"] != "squeezenet")]
    return done.assign(label=[family_label(row) for _, row in done.iterrows()])


def reference_points(results: SweepResults) -> pd.DataFrame:
    """Baselines trained by the other sweeps in the same results folder on the same dataset (for
    example ``sweeps/baselines.yaml``): the reference markers of this sweep's Pareto plots.

    Only sweeps whose file mentions ``family`` are loaded, so plotting stays fast beside many sweeps."""
    dataset = (results.sweep.get("base", {}).get("data") or {}).get("dataset")
    found = []
    for sweep_file in sorted(results.directory.parent.glob(f"*/{SweepLayout(results.directory).sweep_file.name}")):
        directory = sweep_file.parent
        if directory.resolve() == results.directory.resolve() or "family" not in sweep_file.read_text(errors="replace"):
            continue
        other = read_yaml(sweep_file) or {}
        if (other.get("base", {}).get("data") or {}).get("dataset") != dataset:
            continue
        try:
            found.append(baseline_points(load(directory).trials))
        except (DseError, ResultsError):
            continue  # an unreadable neighbour does not stop this sweep's plots
    return pd.concat(found, ignore_index=True) if found else pd.DataFrame(columns=["label"])

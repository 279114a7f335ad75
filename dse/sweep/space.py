"""The one place where a sweep's ``space`` becomes Optuna suggestions, samplers and pruners."""

from __future__ import annotations

import copy
import itertools
from typing import Any

import optuna
from optuna.distributions import BaseDistribution

from dse.contract import TrialAttr, loaded_param, stored_param
from dse.errors import ConfigError
from dse.sweep.config import SweepConfig

SEED_PARAM = "seed"  # grid sweeps make repeats a grid axis, so each point x seed is one trial


def suggest(trial: optuna.Trial, sweep: SweepConfig) -> dict[str, Any]:
    """The swept values of ``trial`` by dotted key (plus ``seed`` in grid sweeps)."""
    values: dict[str, Any] = {}
    for key, spec in sweep.space.items():
        if spec.values is not None:
            values[key] = loaded_param(trial.suggest_categorical(key, [stored_param(v) for v in spec.values]))
        elif spec.is_int:
            values[key] = trial.suggest_int(key, int(spec.low), int(spec.high), step=int(spec.step))
        else:
            values[key] = trial.suggest_float(key, spec.low, spec.high, step=spec.step, log=spec.log)
    if sweep.sampler.name == "grid":
        values[SEED_PARAM] = trial.suggest_categorical(SEED_PARAM, list(range(sweep.repeats)))
    return values


def grid_points(sweep: SweepConfig) -> list[dict[str, Any]]:
    """Every grid point x seed, as Optuna params (encoded), in a stable order."""
    axes = grid_points_axes(sweep)
    return [dict(zip(axes, combo, strict=True)) for combo in itertools.product(*axes.values())]


def make_sampler(sweep: SweepConfig, worker_index: int = 0) -> optuna.samplers.BaseSampler:
    """The sampler by name. Each worker gets seed + index, so parallel workers do not
    propose identical candidates (a known Optuna pitfall with one shared seed). Samplers
    that take constraints (TPE, NSGA-II, GP) read what the worker sets with
    ``trial.set_constraint`` when a trial ends."""
    seed = sweep.sampler.seed + worker_index
    name = sweep.sampler.name
    if name == "grid":
        # Every point x seed is enqueued at creation (``grid_points``) and handed out by the
        # storage, so nothing is sampled; Optuna's GridSampler would also assume each trial
        # has its own grid id, which enqueued trials (and their retries) lack.
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True)
    if name == "nsga2":
        population = sweep.sampler.population_size or 50
        sampler = NSGAIIOverRungs if sweep.pruner.name == "asha" else optuna.samplers.NSGAIISampler
        return sampler(seed=seed, population_size=population)
    try:
        import scipy  # noqa: F401
        import torch  # noqa: F401
    except ImportError:
        raise ConfigError("sampler gp: Optuna's GPSampler needs PyTorch and SciPy: pip install -e '.[gp]'") from None
    return optuna.samplers.GPSampler(seed=seed)


def grid_points_axes(sweep: SweepConfig) -> dict[str, list[Any]]:
    axes = {key: [stored_param(v) for v in values] for key, values in sweep.grid().items()}
    axes[SEED_PARAM] = list(range(sweep.repeats))
    return axes


def make_pruner(sweep: SweepConfig) -> optuna.pruners.BasePruner:
    """Optuna's pruner by name; ``asha`` (and ``none``) get none: dse's ASHA decides in the
    worker (:mod:`dse.sweep.asha`), since Optuna's pruners take one objective."""
    if sweep.pruner.name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=sweep.pruner.warmup_epochs)
    if sweep.pruner.name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=sweep.max_epochs())
    return optuna.pruners.NopPruner()


class _RungView:
    """The study as NSGA-II sees it under asha: a paused candidate is a completed trial with the
    values its run last reached (its rung's, or its promotion's final ones).

    Optuna's GA samplers count a generation as ``population_size`` COMPLETE trials and choose
    parents among them; a paused candidate ends PRUNED, so without this view an asha sweep
    never leaves the random first generation (every candidate of the 2026-12-02 bench runs
    had generation 0). A candidate paused early shows less accuracy than it would reach, so
    elite selection leans to candidates known at higher fidelity: parents come from what is
    known. Everything else reads the study itself.
    """

    def __init__(self, study: optuna.Study) -> None:
        self._study = study

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)

    def _get_trials(self, deepcopy: bool = True, states: Any = None, use_cache: bool = False) -> list:
        from dse.sweep.asha import PROMOTED_FROM, latest_values

        trials = self._study._get_trials(deepcopy=False, states=None, use_cache=use_cache)
        known = latest_values(trials)
        shown = []
        for trial in trials:
            values = known.get(trial.user_attrs.get(TrialAttr.RUN))
            if trial.state == optuna.trial.TrialState.PRUNED and values is not None and PROMOTED_FROM not in trial.user_attrs:
                trial = copy.copy(trial)
                trial.state, trial.values = optuna.trial.TrialState.COMPLETE, values
            shown.append(trial)
        return shown if states is None else [t for t in shown if t.state in states]

    def get_trials(self, deepcopy: bool = True, states: Any = None) -> list:
        return self._get_trials(deepcopy=deepcopy, states=states)


class NSGAIIOverRungs(optuna.samplers.NSGAIISampler):
    """NSGA-II for asha sweeps: generations and parents counted over every candidate that reached
    a rung (:class:`_RungView`), not only over those trained to the end."""

    def infer_relative_search_space(self, study: optuna.Study,
                                    trial: optuna.trial.FrozenTrial) -> dict[str, BaseDistribution]:
        return super().infer_relative_search_space(_RungView(study), trial)

    def sample_relative(self, study: optuna.Study, trial: optuna.trial.FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        return super().sample_relative(_RungView(study), trial, search_space)


# Optuna names a GA sampler's generation attrs after its class: keep NSGA-II's, so a study
# resumed under either class (and anything reading `NSGAIISampler:generation`) sees one count.
NSGAIIOverRungs._GENERATION_KEY = optuna.samplers.NSGAIISampler._GENERATION_KEY
NSGAIIOverRungs._PARENT_CACHE_KEY_PREFIX = optuna.samplers.NSGAIISampler._PARENT_CACHE_KEY_PREFIX

"""Schema of a sweep file: one YAML per sweep under ``sweeps/``.

A sweep is a ``base`` training config (any field of ``dse train``'s config) plus a
``space`` of dotted keys into it, each with explicit ``values`` (categorical / grid)
or a ``low``/``high`` range (ints with ``step``, floats with ``log``).

    name: quickstart
    base: {model: {base_e: 32, incr_e: 32}, epochs: 3}
    space:
      model.sr: {values: [0.125, 0.25, 0.5]}
      optim.learning_rate: {low: 0.01, high: 0.1, log: true}
    objectives: [{metric: val_top1, goal: maximize}, {metric: model_size_mb, goal: minimize}]
    constraints: [{metric: model_size_mb, max: 0.5}]
    sampler: {name: tpe, seed: 0}
"""

from __future__ import annotations

import itertools
import math
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from dse import config_io
from dse.contract import METRICS, STAND_INS, UPPER_BOUNDS, Source, names
from dse.errors import ConfigError, SpecError
from dse.sweep.asha import TieBreak
from dse.train.config import TrainConfig

# Known before training (from the spec): usable in constraints.
STATIC_METRICS = names(Source.STATIC)
# Known before training from the spec and the compression settings (a sweep that compresses).
BOUND_METRICS = names(Source.BOUND)
# Reported per epoch: usable by pruners (by Optuna's as the first objective).
EPOCH_METRICS = names(Source.EPOCH)
OPTUNA_PRUNERS = ("median", "hyperband")  # single-objective; dse's asha takes several objectives
Strict = ConfigDict(extra="forbid", frozen=True)


class ParamSpec(BaseModel):
    """One swept field: ``values: [...]``, or ``low``/``high`` (+ ``step`` for ints, ``log``)."""

    model_config = Strict

    values: list[Any] | None = Field(None, description="the choices (a mapping merges into base)")
    low: float | None = Field(None, description="a range's lower end")
    high: float | None = Field(None, description="a range's upper end")
    step: float | None = Field(None, description="a range's grid spacing (whole numbers: an int range)")
    log: bool = Field(False, description="sample the range on a log scale")

    @model_validator(mode="after")
    def _one_kind(self) -> ParamSpec:
        if self.values is not None:
            if self.low is not None or self.high is not None or self.step is not None or self.log:
                raise ValueError("give either values or low/high, not both")
            if not self.values:
                raise ValueError("values is empty")
            return self
        if self.low is None or self.high is None:
            raise ValueError("needs values, or both low and high")
        if self.low > self.high:
            raise ValueError(f"empty range: low {self.low} > high {self.high}")
        if self.log and self.low <= 0:
            raise ValueError("a log range needs low > 0")
        if self.step is not None and (self.step <= 0 or self.log):
            raise ValueError("step must be > 0 and cannot be combined with log")
        return self

    @property
    def is_int(self) -> bool:
        """Integer range: ``low``, ``high`` and ``step`` (if any) are all whole numbers as written."""
        ints = [v for v in (self.low, self.high, self.step) if v is not None]
        return self.values is None and all(float(v).is_integer() for v in ints) and self.step is not None

    def extremes(self) -> list[Any]:
        """What must be valid for every sampled value to be: each listed value, or both ends of a range
        (the schema's bounds are intervals, so a range inside them at both ends is inside them)."""
        if self.values is not None:
            return list(self.values)
        ends = [self.low, self.high]
        return [int(v) for v in ends] if self.is_int else ends

    def grid_values(self) -> list[Any]:
        """The points a grid visits: the values, or an int/float range stepped by ``step``."""
        if self.values is not None:
            return list(self.values)
        if self.step is None:
            raise ValueError("a grid needs values, or a range with step")
        count = math.floor((self.high - self.low) / self.step + 1e-9) + 1
        points = [self.low + i * self.step for i in range(count)]
        return [int(p) for p in points] if self.is_int else [round(p, 12) for p in points]


class Objective(BaseModel):
    """One metric to optimise; a study's objectives are Optuna's, in this order."""

    model_config = Strict
    metric: str = Field(description="a metric name (table below)")
    goal: Literal["maximize", "minimize"]

    @field_validator("metric")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in METRICS:
            raise ValueError(f"unknown metric {value!r}; choose from {', '.join(METRICS)}")
        return value


class Constraint(BaseModel):
    """A bound on one metric. On a metric known before training (params, size, MACs) it is
    checked first and a candidate outside it is never trained; on any other metric (say the
    compressed file's bytes) it is checked when the trial ends: the trial completes, is
    marked infeasible, and the samplers that take constraints (TPE, NSGA-II, GP) steer away."""

    model_config = Strict
    metric: str = Field(description="a metric name (table below)")
    max: float | None = Field(None, description="the largest value allowed")
    min: float | None = Field(None, description="the smallest value allowed")
    # Huffman coding shortens a file below its fixed-width bound by what the trained weights
    # allow (the flagship: 2.08x); a candidate whose bound is more than this many times the
    # max would need more than that, and is not trained.
    bound_margin: float = Field(2.5, ge=1.0, description="compressed_bytes max: skip, before training, a candidate "
                                "whose upper bound (compressed_bytes_bound) exceeds max x bound_margin")

    @model_validator(mode="after")
    def _known_with_bound(self) -> Constraint:
        if self.metric not in METRICS:
            raise ValueError(f"unknown metric {self.metric!r}; choose from {', '.join(METRICS)}")
        if self.max is None and self.min is None:
            raise ValueError("needs max and/or min")
        return self

    @property
    def name(self) -> str:
        """``"compressed_bytes <= 500000"``: the constraint's key in Optuna."""
        bounds = [f">= {self.min:g}"] if self.min is not None else []
        bounds += [f"<= {self.max:g}"] if self.max is not None else []
        return f"{self.metric} {' and '.join(bounds)}"

    @property
    def before_training(self) -> bool:
        return self.metric in (*STATIC_METRICS, *BOUND_METRICS)

    def bound_violation(self, known: dict[str, float]) -> str | None:
        """Before training: why a candidate cannot meet ``max`` by any margin coding may save, or None
        (no bound known for this metric, or the bound within ``max x bound_margin``)."""
        bound = known.get(UPPER_BOUNDS.get(self.metric, ""))
        if self.max is None or bound is None or bound <= self.max * self.bound_margin:
            return None
        return (f"{UPPER_BOUNDS[self.metric]}={bound:,.0f} > {self.bound_margin:g} x max {self.max:,.0f} "
                f"(the file would have to code {bound / self.max:.2f}x below its bound)")

    def excess(self, metrics: dict[str, float]) -> float:
        """How far outside the bound the value is (<= 0 inside): Optuna's constraint convention."""
        value = metrics[self.metric]
        return max(value - self.max if self.max is not None else -math.inf,
                   self.min - value if self.min is not None else -math.inf)

    def violation(self, metrics: dict[str, float]) -> str | None:
        value = metrics[self.metric]
        if self.max is not None and value > self.max:
            return f"{self.metric}={value:.4g} > max {self.max}"
        if self.min is not None and value < self.min:
            return f"{self.metric}={value:.4g} < min {self.min}"
        return None


class SamplerConfig(BaseModel):
    model_config = Strict
    name: Literal["grid", "random", "tpe", "nsga2", "gp"] = Field("tpe", description="Optuna's sampler of that name")
    seed: int = Field(0, description="the sampler's seed (worker k of a parallel sweep adds k)")
    # NSGA-II breeds a generation from the previous one; Optuna's default of 50 would make a
    # CPU-sized budget of a few dozen trials one random generation.
    population_size: int | None = Field(None, ge=2, description="nsga2 only: trials per generation (default 50)")

    @model_validator(mode="after")
    def _population_for_nsga2(self) -> SamplerConfig:
        if self.population_size is not None and self.name != "nsga2":
            raise ValueError(f"population_size applies to nsga2, not {self.name}")
        return self


class PrunerConfig(BaseModel):
    """``median`` and ``hyperband`` are Optuna's (one objective); ``asha`` is dse's own
    (:mod:`dse.sweep.asha`), for one objective or several."""

    model_config = Strict
    name: Literal["none", "median", "hyperband", "asha"] = "none"
    warmup_epochs: int = Field(1, ge=0, description="median: epochs before a trial may be pruned")
    min_epochs: int = Field(1, ge=1, description="asha: the epoch of the first rung")
    reduction_factor: int = Field(3, ge=2, description="asha: 1 in this many trials goes on at a rung")
    tie_break: TieBreak = Field(
        "hypervolume", description="asha: orders the vectors of one Pareto front at a rung (dse.sweep.asha)")

    @model_validator(mode="after")
    def _asha_settings_only_for_asha(self) -> PrunerConfig:
        given = [key for key in ("min_epochs", "reduction_factor", "tie_break") if key in self.model_fields_set]
        if given and self.name != "asha":
            raise ValueError(f"{given[0]} applies to asha, not {self.name}")
        return self


class BudgetConfig(BaseModel):
    model_config = Strict
    trials: int | None = Field(None, ge=1, description="trials for the whole study (grid: default all points x repeats)")
    wall_clock_minutes: float | None = Field(None, gt=0, description="no new trial starts after this")
    max_retries: int = Field(2, ge=0, description="retries of a trial whose worker died")


class WorkerResources(BaseModel):
    """What each worker of a launched sweep holds: ``dse sweep run --launcher ray`` asks Ray for
    it per worker and pins the worker to that many cores; ``--cpus-per-worker`` and
    ``--gpus-per-worker`` override it."""

    model_config = Strict
    cpus_per_worker: float | None = Field(
        None, gt=0, description="cores per worker (default: a local run splits the machine's cores, a cluster gives 1)")
    gpus_per_worker: float = Field(
        0, ge=0, description="GPUs per worker; a fraction shares one GPU (0.5: two workers on each)")

    @field_validator("gpus_per_worker")
    @classmethod
    def _whole_past_one(cls, value: float) -> float:
        # Ray's own rule: a task holds part of one GPU or whole GPUs, never 1.5.
        if value > 1 and value != int(value):
            raise ValueError(f"{value}: a fraction of one GPU (up to 1) or a whole number of GPUs")
        return value


class SweepConfig(BaseModel):
    model_config = Strict

    name: str = Field(description="the study's name, and its folder under the results root")
    description: str = Field("", description="free text, kept with the results")
    base: dict[str, Any] = Field(default_factory=dict, description="the fixed training config (dse train's schema)")
    space: dict[str, ParamSpec] = Field(default_factory=dict, description="dotted key into base -> its values or range")
    repeats: int = Field(1, ge=1, description="seeds per configuration")
    objectives: list[Objective] = Field(default_factory=lambda: [Objective(metric="val_top1", goal="maximize")], min_length=1)
    constraints: list[Constraint] = Field(default_factory=list, description="bounds a candidate must meet")
    sampler: SamplerConfig = SamplerConfig()
    pruner: PrunerConfig = PrunerConfig()
    budget: BudgetConfig = BudgetConfig()
    storage: str | None = Field(None, description="postgresql:// URL, or grpc://host:port of `dse sweep proxy`; "
                                "default: an embedded journal file in the results folder")
    resources: WorkerResources = WorkerResources()

    @field_validator("name")
    @classmethod
    def _folder_name(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", value):
            raise ValueError("must be a folder name: letters, digits, '_', '-', '.'")
        return value

    @model_validator(mode="after")
    def _coherent(self) -> SweepConfig:
        if "seed" in self.space:
            raise ValueError("space.seed: use repeats for seeds")
        if self.sampler.name != "grid" and self.budget.trials is None and self.budget.wall_clock_minutes is None:
            raise ValueError(f"budget: sampler {self.sampler.name} needs budget.trials or budget.wall_clock_minutes")
        if self.sampler.name == "grid":
            if not self.space:
                raise ValueError("a grid sweep needs a space")
            for key, spec in self.space.items():
                if spec.values is None and spec.step is None:
                    raise ValueError(f"space.{key}: a grid cannot sweep a continuous range; give values or a step")
        if self.pruner.name in OPTUNA_PRUNERS and len(self.objectives) > 1:
            raise ValueError("pruner: Optuna prunes single-objective studies only; "
                             "use pruner asha or none with several objectives")
        if self.pruner.name in OPTUNA_PRUNERS and self.objectives[0].metric not in EPOCH_METRICS:
            raise ValueError(f"pruner: the first objective must be reported per epoch ({', '.join(EPOCH_METRICS)})")
        if self.pruner.name == "asha":
            self._check_asha_objectives()
        if self.sampler.name == "nsga2" and len(self.objectives) < 2:
            raise ValueError("sampler nsga2 is for several objectives; add one or use tpe")
        compressed = {o.metric for o in self.objectives} | {c.metric for c in self.constraints}
        compressed &= set(names(Source.COMPRESS, Source.BOUND))
        if compressed and "compress" not in self.base and not any(k.startswith("compress.") for k in self.space):
            raise ValueError(f"{sorted(compressed)[0]} needs compression: add base.compress (e.g. "
                             "{sparsity: 0.33, bits: 6}) or compress.* keys to the space")
        return self

    def _check_asha_objectives(self) -> None:
        """ASHA compares trials at each rung, so it needs every objective's value there."""
        early = (*EPOCH_METRICS, *STATIC_METRICS, *BOUND_METRICS)
        late = [o.metric for o in self.objectives if o.metric not in early and STAND_INS.get(o.metric) not in early]
        if late:
            raise ValueError(f"pruner: asha compares trials at each rung, so every objective must be reported per "
                             f"epoch ({', '.join(EPOCH_METRICS)}) or known before training ({', '.join(STATIC_METRICS)}), "
                             f"or stand for one that is ({', '.join(STAND_INS)}); {late[0]} is known only at the end "
                             "of a run")
        if not any(o.metric in EPOCH_METRICS or STAND_INS.get(o.metric) in EPOCH_METRICS for o in self.objectives):
            raise ValueError(f"pruner: asha needs an objective reported per epoch ({', '.join(EPOCH_METRICS)}); "
                             "the others are known before training")

    def max_epochs(self) -> int:
        """The longest run any trial can train: the largest swept ``epochs``, else the base's."""
        if "epochs" in self.space:
            return int(max(self.space["epochs"].extremes()))
        return self.train_config({}).epochs

    def grid(self) -> dict[str, list[Any]]:
        return {key: spec.grid_values() for key, spec in self.space.items()}

    def design_space_size(self) -> int | None:
        """Grid points x repeats, or None where the space has a continuous range."""
        if any(spec.values is None and spec.step is None for spec in self.space.values()):
            return None
        return math.prod(len(spec.grid_values()) for spec in self.space.values()) * self.repeats

    def train_config(self, values: dict[str, Any], source: str = "sweep") -> TrainConfig:
        """The training config of one candidate: ``base`` with the swept ``values`` written in."""
        return config_io.parse(TrainConfig, config_io.set_dotted(self.base, values), source)


def load_sweep(path: str | Path) -> SweepConfig:
    """Read and validate a sweep file; every problem is one line naming the key path."""
    sweep = config_io.parse(SweepConfig, config_io.read_yaml(path), str(path))
    _check_base_and_space(sweep, str(path))
    _check_rungs(sweep, str(path))
    if sweep.sampler.name == "grid":
        _check_grid_architectures(sweep, str(path))
    return sweep


# Checking every grid point's widths is pure Python (about a millisecond each); past
# this many points the check would cost more than it saves.
MAX_GRID_POINTS_CHECKED = 20_000


def _check_grid_architectures(sweep: SweepConfig, source: str) -> None:
    """Fail at load on a grid point whose widths are impossible (e.g. a pct3x3 that rounds
    a branch to zero filters at these widths), before any trial is trained."""
    from dse.arch.spec import expand  # pure: no JAX

    grid = sweep.grid()
    if math.prod(len(v) for v in grid.values()) > MAX_GRID_POINTS_CHECKED:
        return
    for point in itertools.product(*grid.values()):
        values = dict(zip(grid, point, strict=True))
        try:
            expand(sweep.train_config(values, source).model)
        except SpecError as err:
            where = ", ".join(f"{key}={value}" for key, value in values.items())
            raise ConfigError(f"{source}: space: grid point {where}: {err}") from None


def _check_rungs(sweep: SweepConfig, source: str) -> None:
    """ASHA's first rung must come before the longest run ends, or it would never stop a trial."""
    if sweep.pruner.name == "asha" and sweep.pruner.min_epochs >= sweep.max_epochs():
        raise ConfigError(f"{source}: pruner.min_epochs: {sweep.pruner.min_epochs} leaves no rung before the last "
                          f"epoch ({sweep.max_epochs()}); lower it or use pruner none")


def _check_base_and_space(sweep: SweepConfig, source: str) -> None:
    """Fail at load on a bad base config or a swept key that is not a config field."""
    try:
        sweep.train_config({}, source)
    except ConfigError as err:
        raise ConfigError(str(err).replace(f"{source}: ", f"{source}: base.", 1)) from None
    for key, spec in sweep.space.items():
        for value in spec.extremes():
            try:
                sweep.train_config({key: value}, source)
            except ConfigError as err:
                problem = str(err).split(": ", 2)[-1]
                what = "value" if spec.values is not None else ("low" if value == spec.low else "high")
                raise ConfigError(f"{source}: space.{key}: not a valid training config field or value "
                                  f"({what} {value!r}: {problem})") from None

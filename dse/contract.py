"""The one contract from trainer to DataFrame: metric names, trial statuses, run records, folders.

Every module that writes or reads a metric, a status or a results path takes it from
here, so each fact has one spelling. Plain Python: importing it costs no JAX, Optuna
or pandas.

>>> METRICS["val_top1"].axis_label, METRICS["val_top1"].goal, str(METRICS["val_top1"].source)
('val top-1 (%)', 'maximize', 'epoch')
>>> names(Source.STATIC)
('params', 'model_size_mb', 'macs', 'energy_uj')
>>> TrialStatus("worker_died") is TrialStatus.WORKER_DIED
True
>>> SweepLayout(Path("results/sr")).journal.as_posix()
'results/sr/study.journal'
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal, TypedDict

Goal = Literal["maximize", "minimize"]


class Source(StrEnum):
    """When a metric becomes known, which decides what a sweep may do with it."""

    STATIC = "static"  # from the architecture spec, before training: usable in constraints
    EPOCH = "epoch"  # after every epoch (and at the end): usable by pruners
    RUN = "run"  # once, at the end of a completed run
    COMPRESS = "compress"  # at the end of a completed run whose config asks for compression
    BOUND = "bound"  # before training, from the spec and the compression settings: usable in constraints
    EPOCH_ONLY = "epoch_only"  # a field of the per-epoch history, not a trial metric


@dataclass(frozen=True)
class Metric:
    """One number dse reports: display label, unit and scale, which way is better, and when it is known.

    Stored values are fractions (accuracies), MiB (sizes, the paper's "MB") and counts;
    ``scale`` turns a stored value into its display ``unit``.
    """

    name: str
    label: str
    source: Source
    unit: str = ""
    scale: float = 1.0
    goal: Goal = "minimize"

    @property
    def axis_label(self) -> str:
        return f"{self.label} ({self.unit})" if self.unit else self.label


def _accuracy(name: str, label: str, source: Source) -> Metric:
    return Metric(name, label, source, "%", 100.0, "maximize")


_REGISTRY = (
    # Known from the spec before training.
    Metric("params", "parameters", Source.STATIC, "M", 1e-6),
    Metric("model_size_mb", "model size", Source.STATIC, "MB"),  # MiB of float32 weights
    Metric("macs", "MACs", Source.STATIC, "MMACs", 1e-6),
    # Per inference, 45 nm table, float32 weights (dse.arch.energy): an estimate, so labelled one.
    Metric("energy_uj", "estimated energy", Source.STATIC, "µJ"),
    # Reported every epoch (the last epoch's value is the trial's).
    _accuracy("val_top1", "val top-1", Source.EPOCH),
    _accuracy("val_top5", "val top-5", Source.EPOCH),
    Metric("val_loss", "val loss", Source.EPOCH),
    # Known at the end of a completed run.
    _accuracy("test_top1", "test top-1", Source.RUN),
    _accuracy("test_top5", "test top-5", Source.RUN),
    Metric("test_loss", "test loss", Source.RUN),
    # With ``measure_latency``: medians on the CPU, one ONNX Runtime thread (dse.deploy.latency).
    Metric("latency_ms", "latency (ONNX Runtime, batch 1)", Source.RUN, "ms"),
    Metric("latency_jax_ms", "latency (JAX, batch 1)", Source.RUN, "ms"),
    Metric("latency_b64_ms", "latency (ONNX Runtime, batch 64)", Source.RUN, "ms"),
    Metric("compile_s", "compile time", Source.RUN, "s"),
    Metric("train_s", "train time", Source.RUN, "s"),
    Metric("eval_s", "eval time", Source.RUN, "s"),
    Metric("total_s", "total time", Source.RUN, "s"),
    Metric("images_per_s", "throughput", Source.RUN, "images/s", goal="maximize"),
    Metric("epochs_completed", "epochs completed", Source.RUN, goal="maximize"),
    # Known after ``compress`` (Deep Compression) at the end of a run: sizes are the file's bytes.
    Metric("compressed_bytes", "compressed size", Source.COMPRESS, "kB", 1e-3),
    Metric("compression_ratio", "compression ratio (float32 / file)", Source.COMPRESS, "x", goal="maximize"),
    _accuracy("val_top1_compressed", "val top-1, compressed", Source.COMPRESS),
    _accuracy("val_top5_compressed", "val top-5, compressed", Source.COMPRESS),
    _accuracy("test_top1_compressed", "test top-1, compressed", Source.COMPRESS),
    _accuracy("test_top5_compressed", "test top-5, compressed", Source.COMPRESS),
    Metric("energy_compressed_uj", "estimated energy, compressed", Source.COMPRESS, "µJ"),
    # Before training, with ``compress``: the most bytes its file can take (dse.compress.bound).
    Metric("compressed_bytes_bound", "compressed size bound", Source.BOUND, "kB", 1e-3),
)
# Trial metrics, in table order: what a worker stores per trial and results tables show.
METRICS: dict[str, Metric] = {m.name: m for m in _REGISTRY}

# Fields of one per-epoch record (``metrics.jsonl`` and a trial's ``history``).
HISTORY: dict[str, Metric] = {
    "train_loss": Metric("train_loss", "train loss", Source.EPOCH_ONLY),
    "train_top1": _accuracy("train_top1", "train top-1", Source.EPOCH_ONLY),
    "learning_rate": Metric("learning_rate", "learning rate", Source.EPOCH_ONLY),
    **{name: m for name, m in METRICS.items() if m.source is Source.EPOCH},
    "epoch_train_s": Metric("epoch_train_s", "epoch train time", Source.EPOCH_ONLY, "s"),
    "images": Metric("images", "images seen", Source.EPOCH_ONLY, goal="maximize"),
}

# A metric known only after compression and the one known earlier that stands for it: ASHA's
# rungs rank on the stand-in, and a constraint on a metric with an upper bound is checked on
# the bound before training (dse.sweep.config.Constraint.bound_margin).
UPPER_BOUNDS = {"compressed_bytes": "compressed_bytes_bound"}
STAND_INS = {"val_top1_compressed": "val_top1", "val_top5_compressed": "val_top5", **UPPER_BOUNDS}

ACCURACIES = tuple(name for name, m in METRICS.items() if m.unit == "%")
# What ``measure_latency`` adds to a run; a sweep that optimises or constrains one turns it on.
LATENCIES = ("latency_ms", "latency_jax_ms", "latency_b64_ms")
VAL_ACCURACIES = ("val_top1", "val_top5")
# What a reader scans first in a trials table, after the swept values and objectives.
OVERVIEW_METRICS = ("val_top1", "model_size_mb", "macs", "epochs_completed")


def names(*sources: Source) -> tuple[str, ...]:
    """Trial metric names known at ``sources``, in table order."""
    return tuple(name for name, m in METRICS.items() if m.source in sources)


def metric(name: str) -> Metric:
    """The description of ``name``; an unknown name gets itself as label (a swept parameter, say)."""
    return METRICS.get(name) or HISTORY.get(name) or Metric(name, name, Source.RUN)


class TrialStatus(StrEnum):
    """Why a trial ended as it did; stored as the trial's ``status`` user attr."""

    COMPLETED = "completed"
    PRUNED = "pruned"  # stopped early by the pruner
    PROMOTED = "promoted"  # paused by ASHA at a rung, then continued by a later trial (its promoted_from)
    DUPLICATE = "duplicate"  # a second promotion of one paused trial (two workers at once): never trained
    DIVERGED = "diverged"  # NaN/inf loss
    INFEASIBLE = "infeasible"  # outside a constraint, never trained
    INVALID = "invalid"  # a config the trainer rejected (a DseError)
    CRASHED = "crashed"  # an unexpected exception; its traceback is in the sweep's logs
    WORKER_DIED = "worker_died"  # its process was killed or lost its heartbeat
    RUNNING = "running"
    WAITING = "waiting"

    @classmethod
    def of_state(cls, state_name: str) -> TrialStatus:
        """The status of a trial that ended before its worker wrote one, from Optuna's state name."""
        return _STATUS_OF_STATE[state_name]


_STATUS_OF_STATE = {
    "COMPLETE": TrialStatus.COMPLETED, "PRUNED": TrialStatus.PRUNED, "FAIL": TrialStatus.CRASHED,
    "RUNNING": TrialStatus.RUNNING, "WAITING": TrialStatus.WAITING,
}
RUN_STATUSES = (TrialStatus.COMPLETED, TrialStatus.DIVERGED)  # what train_and_evaluate can return


class TrialAttr(StrEnum):
    """The user attrs dse's workers write on a trial (ASHA's own are in :mod:`dse.sweep.asha`)."""

    STATUS = "status"  # a TrialStatus
    REASON = "reason"  # one line: why it pruned, failed or was skipped
    HISTORY = "history"  # the run's per-epoch EpochRecords
    SEED = "seed"
    CONFIG = "config"  # the resolved model config (results columns config.*)
    RUN = "run"  # its run folder's key under runs/
    FEASIBLE = "feasible"  # where a constraint is checked after training (compressed bytes, say)
    WORKER = "worker"  # host:pid of the worker that trained it
    HEARTBEAT = "heartbeat"  # time.time() of the worker's last sign of life
    RETRIES = "retries"  # how often a dead worker's trial was put back
    RETRY_OF = "retry_of"  # on the copy put back: the trial it retries
    WILL_RETRY = "will_retry"  # failed, and a copy of it was put back: not counted against the budget
    DSE_VERSION = "dse_version"


class StudyAttr(StrEnum):
    """The user attrs on the study itself."""

    SWEEP = "sweep"  # the sweep file, validated
    BASE_RESOLVED = "base_resolved"  # the base training config with every default filled in


class EpochRecord(TypedDict, total=False):
    """One line of ``metrics.jsonl``: the fields of :data:`HISTORY` plus ``epoch``."""

    epoch: int
    train_loss: float
    train_top1: float
    learning_rate: float
    images: int
    epoch_train_s: float
    val_loss: float
    val_top1: float
    val_top5: float


class RunResult(TypedDict, total=False):
    """``results.json`` of one run, as :func:`dse.train.train_and_evaluate` returns it."""

    status: str  # a RUN_STATUSES value
    diverged_epoch: int | None
    epochs_completed: int
    resumed_from_epoch: int
    val_loss: float
    val_top1: float
    val_top5: float
    test_loss: float
    test_top1: float
    test_top5: float
    latency_ms: float
    latency_jax_ms: float
    latency_b64_ms: float
    params: int
    model_size_mb: float
    model_size_bytes: int
    macs: int
    energy_uj: float
    compile_s: float
    train_s: float
    eval_s: float
    train_s_all_sessions: float
    total_s: float
    images_per_s: float | None
    cache_hits: int
    cache_misses: int
    devices: int
    platform: str
    dse_version: str
    config_digest: str
    compressed_bytes: int
    compression_ratio: float
    val_top1_compressed: float
    val_top5_compressed: float
    test_top1_compressed: float
    test_top5_compressed: float
    energy_compressed_uj: float
    history: list[EpochRecord]


def run_metrics(result: dict[str, Any]) -> dict[str, Any]:
    """The trial metrics a run's result carries (every source but the spec's)."""
    return {k: result[k] for k in names(Source.EPOCH, Source.RUN, Source.COMPRESS) if result.get(k) is not None}


def stored_param(value: Any) -> Any:
    """A swept value as the study stores it: Optuna's categorical choices are scalars, so
    lists (pool positions) and mappings (settings swept together) travel as JSON text."""
    return json.dumps(value) if isinstance(value, list | tuple | dict) else value


def loaded_param(value: Any) -> Any:
    """The inverse of :func:`stored_param`."""
    return json.loads(value) if isinstance(value, str) and value[:1] in "[{" else value


@dataclass(frozen=True)
class RunLayout:
    """The files of one training run (``dse train --workdir``, or one trial's seed)."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.json"  # the resolved TrainConfig

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"  # one EpochRecord per line

    @property
    def results(self) -> Path:
        return self.root / "results.json"  # the RunResult

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def checkpoint_config(self) -> Path:
        return self.checkpoints / "config.json"  # the training config the checkpoints were made with

    @property
    def crash_log(self) -> Path:
        return self.root / "crash.log"

    @property
    def compressed(self) -> CompressedLayout:
        return CompressedLayout(self.root / "compressed")  # ``dse compress``'s default output


@dataclass(frozen=True)
class CompressedLayout:
    """The output folder of one compression."""

    root: Path

    @property
    def model(self) -> Path:
        return self.root / "model.dsez"  # the compressed model file

    @property
    def report(self) -> Path:
        return self.root / "compress.json"  # the step table and compressed metrics


@dataclass(frozen=True)
class SweepLayout:
    """The folder of one sweep, ``results/<name>/``."""

    root: Path

    @property
    def sweep_file(self) -> Path:
        return self.root / "sweep.yaml"

    @property
    def journal(self) -> Path:
        return self.root / "study.journal"  # the embedded default storage

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def plots(self) -> Path:
        return self.root / "plots"

    @property
    def summary(self) -> Path:
        return self.root / "summary.csv"

    @property
    def crash_log(self) -> Path:
        return self.logs / "crash.log"

    def table(self, name: Literal["trials", "curves"], suffix: Literal["parquet", "csv"]) -> Path:
        return self.root / f"{name}.{suffix}"

    def run(self, key: str) -> RunLayout:
        return RunLayout(self.runs / key)

    def trial_log(self, number: int) -> Path:
        return self.logs / f"trial-{number}.log"

    def worker_log(self, index: int) -> Path:
        return self.logs / f"worker-{index}.log"

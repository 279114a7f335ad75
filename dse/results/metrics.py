"""What each stored number is: its label, display unit, scale and which way is better.

Trials store accuracies as fractions, sizes in MiB ("MB", as the paper writes it) and
MACs as a count; tables and plots show percent, MB and millions of MACs. The scale
turns a stored value into its display unit.

>>> metric("val_top1").axis_label
'val top-1 (%)'
>>> metric("macs").scale * 819_000_000
819.0
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Goal = Literal["maximize", "minimize"]


@dataclass(frozen=True)
class Metric:
    label: str
    unit: str = ""
    scale: float = 1.0
    goal: Goal = "minimize"

    @property
    def axis_label(self) -> str:
        return f"{self.label} ({self.unit})" if self.unit else self.label


def _accuracy(label: str) -> Metric:
    return Metric(label, "%", 100.0, "maximize")


# Per-trial metrics a worker writes to the trial's user attrs, in table order.
METRICS: dict[str, Metric] = {
    "val_top1": _accuracy("val top-1"),
    "val_top5": _accuracy("val top-5"),
    "val_loss": Metric("val loss"),
    "test_top1": _accuracy("test top-1"),
    "test_top5": _accuracy("test top-5"),
    "test_loss": Metric("test loss"),
    "params": Metric("parameters", "M", 1e-6),
    "model_size_mb": Metric("model size", "MB"),  # MiB of float32 weights, the paper's "MB"
    "macs": Metric("MACs", "MMACs", 1e-6),
    "latency_ms": Metric("latency", "ms"),
    "compile_s": Metric("compile time", "s"),
    "train_s": Metric("train time", "s"),
    "eval_s": Metric("eval time", "s"),
    "total_s": Metric("total time", "s"),
    "images_per_s": Metric("throughput", "images/s", goal="maximize"),
    "epochs_completed": Metric("epochs completed", goal="maximize"),
}

# Fields of one entry of a trial's per-epoch ``history``.
HISTORY: dict[str, Metric] = {
    "train_loss": Metric("train loss"),
    "train_top1": _accuracy("train top-1"),
    "learning_rate": Metric("learning rate"),
    "val_loss": METRICS["val_loss"],
    "val_top1": METRICS["val_top1"],
    "val_top5": METRICS["val_top5"],
    "epoch_train_s": Metric("epoch train time", "s"),
    "images": Metric("images seen", goal="maximize"),
}

ACCURACIES = ("val_top1", "val_top5", "test_top1", "test_top5")

# Axis labels of the metaparameters, keyed by the last part of the dotted name.
PARAM_LABELS: dict[str, str] = {
    "sr": "squeeze ratio SR",
    "pct3x3": "pct3x3 (share of 3x3 expand filters)",
    "base_e": "base_e (expand filters of fire2)",
    "incr_e": "incr_e (expand filters added per step)",
    "freq": "freq (fire modules per step)",
    "bypass": "bypass",
    "stem": "stem",
    "batch_norm": "BatchNorm",
    "learning_rate": "learning rate",
}

# Short names for point labels such as "sr=0.25 pct=0.5 simple".
SHORT_NAMES = {"pct3x3": "pct", "base_e": "base", "incr_e": "incr", "learning_rate": "lr", "batch_norm": "bn"}


def metric(name: str) -> Metric:
    """The description of ``name``; an unknown metric gets its own name as label."""
    return METRICS.get(name) or HISTORY.get(name) or Metric(name)


def param_label(param: str) -> str:
    key = param.rsplit(".", 1)[-1]
    return PARAM_LABELS.get(key, param)

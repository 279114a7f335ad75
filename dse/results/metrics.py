"""What each stored number is (label, display unit, scale, goal), and the swept parameters' names.

Trials store accuracies as fractions, sizes in MiB ("MB", as the paper writes it) and
MACs as a count; tables and plots show percent, MB and millions of MACs. The scale
turns a stored value into its display unit.

>>> metric("val_top1").axis_label
'val top-1 (%)'
>>> metric("macs").scale * 819_000_000
819.0
"""

from __future__ import annotations

# The registry itself lives in the contract module; the results layer adds display names
# for the swept parameters.
from dse.contract import ACCURACIES, HISTORY, METRICS, Metric, metric

__all__ = ["ACCURACIES", "HISTORY", "METRICS", "Metric", "PARAM_LABELS", "SHORT_NAMES", "metric", "param_label"]

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
    "num_fires": "num_fires (Fire modules)",
    "downsample_at": "downsample_at (max-pool positions, fractions of depth)",
    "model": "model (settings swept together)",
}

# Short names for point labels such as "sr=0.25 pct=0.5 simple".
SHORT_NAMES = {"pct3x3": "pct", "base_e": "base", "incr_e": "incr", "learning_rate": "lr", "batch_norm": "bn",
               "num_fires": "fires", "downsample_at": "pools"}


def param_label(param: str) -> str:
    key = param.rsplit(".", 1)[-1]
    return PARAM_LABELS.get(key, param)

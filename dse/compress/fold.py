"""Fold BatchNorm into the preceding convs, for inference and compression.

At evaluation a dse ``ConvBlock`` with BatchNorm computes
``(conv(x, W) - mean) * scale / sqrt(var + eps) + beta``, which is the plain conv
``conv(x, W * f) + (beta - mean * f)`` with ``f = scale / sqrt(var + eps)`` per output
channel. Folding removes the BN parameters and running statistics from what must be
stored, and gives exactly the parameter tree of the same network built with
``batch_norm=False`` (each ``conv`` gains a ``bias``), so that network's Flax module
evaluates it. Zero (pruned) weights stay zero, since ``0 * f == 0``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dse.compress.prune import SEP, flat, nested

# flax.linen.BatchNorm's default epsilon; dse.arch.model.ConvBlock does not change it.
BN_EPSILON = 1e-5
_SCALE = f"{SEP}bn{SEP}scale"


def fold_batch_norm(params: Any, batch_stats: Any, epsilon: float = BN_EPSILON) -> dict:
    """The params of the no-BatchNorm network that computes what ``params`` does in eval mode.

    Args:
        params: the ``params`` collection of a model built with ``batch_norm=True``
            (``<block>/conv/kernel`` and ``<block>/bn/{scale,bias}``). A tree without
            BatchNorm is returned unchanged (as numpy).
        batch_stats: the ``batch_stats`` collection (``<block>/bn/{mean,var}``).
        epsilon: BatchNorm's epsilon.

    Returns:
        A nested dict of float32 numpy arrays with the structure of the ``batch_norm=False``
        model's params: ``<block>/conv/{kernel,bias}``; other leaves (``conv10``) copied.
    """
    leaves = {path: np.asarray(leaf) for path, leaf in flat(params).items()}
    stats = {path: np.asarray(leaf) for path, leaf in flat(batch_stats).items()} if batch_stats else {}
    out = {}
    for path, leaf in leaves.items():
        if f"{SEP}bn{SEP}" in f"{SEP}{path}":
            continue  # consumed by the fold below
        out[path] = leaf.astype(np.float32)
    for scale_path in (p for p in leaves if p.endswith(_SCALE)):
        block = scale_path[: -len(_SCALE)]
        # float64 for the fold itself, so the only rounding is the final cast to float32.
        scale = leaves[scale_path].astype(np.float64)
        beta = leaves[f"{block}{SEP}bn{SEP}bias"].astype(np.float64)
        mean = stats[f"{block}{SEP}bn{SEP}mean"].astype(np.float64)
        var = stats[f"{block}{SEP}bn{SEP}var"].astype(np.float64)
        factor = scale / np.sqrt(var + epsilon)  # per output channel: the kernel's last axis
        kernel_path = f"{block}{SEP}conv{SEP}kernel"
        out[kernel_path] = (leaves[kernel_path].astype(np.float64) * factor).astype(np.float32)
        out[f"{block}{SEP}conv{SEP}bias"] = (beta - mean * factor).astype(np.float32)
    return nested(out)


def folded_model_config(model_cfg: Any) -> Any:
    """The ``ArchConfig`` of the network a folded tree belongs to: the same one without BatchNorm."""
    return model_cfg.model_copy(update={"batch_norm": False})

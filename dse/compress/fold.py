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
from flax import traverse_util

# flax.linen.BatchNorm's default epsilon; dse.arch.model.ConvBlock does not change it.
BN_EPSILON = 1e-5


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
    # Tuple keys: a block is whatever precedes "bn", even the empty path of a lone ConvBlock.
    leaves = {path: np.asarray(leaf) for path, leaf in traverse_util.flatten_dict(params).items()}
    stats = {path: np.asarray(leaf) for path, leaf in traverse_util.flatten_dict(batch_stats).items()} if batch_stats else {}
    out = {path: leaf.astype(np.float32) for path, leaf in leaves.items() if "bn" not in path[:-1]}
    for block in (path[:-2] for path in leaves if path[-2:] == ("bn", "scale")):
        # float64 for the fold itself, so the only rounding is the final cast to float32.
        scale = leaves[(*block, "bn", "scale")].astype(np.float64)
        beta = leaves[(*block, "bn", "bias")].astype(np.float64)
        mean = stats[(*block, "bn", "mean")].astype(np.float64)
        var = stats[(*block, "bn", "var")].astype(np.float64)
        factor = scale / np.sqrt(var + epsilon)  # per output channel: the kernel's last axis
        kernel = leaves[(*block, "conv", "kernel")].astype(np.float64)
        out[(*block, "conv", "kernel")] = (kernel * factor).astype(np.float32)
        out[(*block, "conv", "bias")] = (beta - mean * factor).astype(np.float32)
    return traverse_util.unflatten_dict(out)


def folded_model_config(model_cfg: Any) -> Any:
    """The ``ArchConfig`` of the network a folded tree belongs to: the same one without BatchNorm."""
    return model_cfg.model_copy(update={"batch_norm": False})

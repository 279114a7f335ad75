"""Magnitude pruning of a Flax params tree (Deep Compression, step 1).

Only conv kernels (every leaf named ``kernel``) are pruned; biases and BatchNorm
scale/offset are a tiny share of the bytes and carry per-channel offsets the
network cannot lose. The weights with the smallest magnitudes go first, and the
number pruned is ``round(sparsity * size)`` exactly (ties broken by position), so a
requested sparsity is met to within one weight, not approximately by a threshold.

>>> import numpy as np
>>> params = {"conv": {"kernel": np.arange(1.0, 11.0).reshape(2, 5), "bias": np.ones(5)}}
>>> masks = magnitude_masks(params, 0.3)
>>> masks["conv"]["kernel"].sum(), masks["conv"]["bias"].all()
(np.int64(7), np.True_)
>>> kernel_sparsity(apply_masks(params, masks))
0.3
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from flax import traverse_util

from dse.compress.config import Scope

KERNEL = "kernel"  # the Flax leaf name of every conv weight (nn.Conv)
SEP = "/"  # path separator of flattened trees: "fire2/squeeze/conv/kernel"


def flat(tree: Any) -> dict[str, Any]:
    """``{"a/b/kernel": leaf}`` from a nested dict tree."""
    return traverse_util.flatten_dict(tree, sep=SEP)


def nested(flat_tree: dict[str, Any]) -> dict:
    """The inverse of :func:`flat`."""
    return traverse_util.unflatten_dict(flat_tree, sep=SEP)


def is_kernel(path: str) -> bool:
    return path.rsplit(SEP, 1)[-1] == KERNEL


def _prune_count(sparsity: float, size: int) -> int:
    # Halves up, like the rest of dse's rounding (dse.arch.spec.round_width).
    return min(size, math.floor(sparsity * size + 0.5))


def _keep_mask(magnitudes: np.ndarray, n_prune: int) -> np.ndarray:
    """True except at the ``n_prune`` smallest magnitudes (stable: earlier positions go first)."""
    keep = np.ones(magnitudes.size, bool)
    keep[np.argsort(magnitudes, kind="stable")[:n_prune]] = False
    return keep


def magnitude_masks(params: Any, sparsity: float, scope: Scope = "per_layer") -> dict:
    """Keep-masks that prune the smallest-magnitude conv weights.

    Args:
        params: a nested dict of arrays (a Flax ``params`` collection).
        sparsity: fraction of kernel weights to prune, in [0, 1).
        scope: ``per_layer`` prunes each kernel to ``sparsity``; ``global`` ranks all
            kernels' weights together under one threshold, so layers with small weights
            lose more (the total is still exact).

    Returns:
        A tree of the same structure as ``params``: bool numpy arrays, True where a
        weight is kept; all True for non-kernel leaves.
    """
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity={sparsity}: must be in [0, 1)")
    leaves = {path: np.asarray(leaf) for path, leaf in flat(params).items()}
    masks = {path: np.ones(leaf.shape, bool) for path, leaf in leaves.items()}
    kernels = [path for path in leaves if is_kernel(path)]
    if scope == "per_layer":
        for path in kernels:
            w = leaves[path]
            masks[path] = _keep_mask(np.abs(w).ravel(), _prune_count(sparsity, w.size)).reshape(w.shape)
    elif scope == "global":
        magnitudes = np.concatenate([np.abs(leaves[p]).ravel() for p in kernels]) if kernels else np.zeros(0)
        keep = _keep_mask(magnitudes, _prune_count(sparsity, magnitudes.size))
        start = 0
        for path in kernels:
            size = leaves[path].size
            masks[path] = keep[start:start + size].reshape(leaves[path].shape)
            start += size
    else:
        raise ValueError(f"scope={scope!r}: choose per_layer or global")
    return nested(masks)


def apply_masks(params: Any, masks: Any) -> Any:
    """``params * masks`` leaf by leaf; works on numpy and JAX arrays (and inside ``jit``).

    Args:
        params: a params tree.
        masks: a tree of the same structure, bool or float (1 = keep).

    Returns:
        The params tree with pruned weights set to exactly zero, in the params' dtypes.
    """
    import jax  # here, so the pure-numpy parts of dse.compress stay importable without JAX's startup cost

    return jax.tree.map(lambda p, m: p * m.astype(p.dtype), params, masks)


def kernel_sparsity(params: Any) -> float:
    """Fraction of conv-kernel weights that are exactly zero (0.0 for a tree without kernels)."""
    kernels = [np.asarray(leaf) for path, leaf in flat(params).items() if is_kernel(path)]
    total = sum(k.size for k in kernels)
    return sum(int(np.count_nonzero(k == 0)) for k in kernels) / total if total else 0.0

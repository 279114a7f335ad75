"""Trained quantization by weight sharing (Deep Compression, step 2).

Each conv kernel's kept (unpruned) weights are clustered by 1-D k-means into
``2**bits`` shared values; the layer is then stored as a float32 codebook plus one
small integer per kept weight. Following Han et al. (2016), centroids start linearly
spaced between the layer's min and max weight: unlike density-based starts, this keeps
centroids at the rare large weights, which matter most. Pruned weights take no part
and stay exactly zero.

A quantized model is a :class:`QuantizedParams`; :func:`dequantize` turns it back into
a params tree with ``codebook[indices]`` gathers, which JAX differentiates into
per-cluster gradient sums, so centroid fine-tuning is ``jax.grad`` w.r.t. the codebooks.

>>> import numpy as np
>>> codebook, labels = kmeans_1d(np.array([0.0, 0.1, 0.9, 1.0]), k=2, iterations=10)
>>> codebook.tolist(), labels.tolist()
([0.05000000074505806, 0.949999988079071], [0, 0, 1, 1])
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from dse.compress.config import MAX_BITS, MIN_BITS
from dse.compress.prune import SEP, flat, is_kernel, nested

# The classifier's layer name in dse.arch.model.SqueezeNet; its bits may differ from the convs'
# (Deep Compression gives fully connected layers fewer bits than convs).
CLASSIFIER_LAYER = "conv10"


class QuantizedParams(NamedTuple):
    """A weight-shared model; every field maps a flattened path (``"fire2/squeeze/conv/kernel"``) to an array.

    Attributes:
        codebooks: per kernel, float32[2**bits] shared values.
        indices: per kernel, uint8 of the kernel's shape; 0 where pruned.
        masks: per kernel, bool of the kernel's shape; False where pruned.
        floats: every other leaf (biases), kept as float32.
    """

    codebooks: dict[str, Any]
    indices: dict[str, Any]
    masks: dict[str, Any]
    floats: dict[str, Any]


def layer_bits(path: str, bits_conv: int, bits_classifier: int | None = None) -> int:
    """Bits for the kernel at ``path``: ``bits_classifier`` for conv10 when given, else ``bits_conv``."""
    is_classifier = path.split(SEP, 1)[0] == CLASSIFIER_LAYER
    return bits_classifier if is_classifier and bits_classifier is not None else bits_conv


def _segment_means(sorted_values: np.ndarray, cumsum: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest-centroid segments of sorted values and their means (empty segments keep their centroid).

    In 1-D each cluster is a contiguous run of the sorted values, cut at the midpoints
    between neighbouring centroids, so one iteration costs O(k log n), not O(n k).
    """
    mids = (centroids[1:] + centroids[:-1]) / 2
    edges = np.concatenate([[0], np.searchsorted(sorted_values, mids, side="right"), [sorted_values.size]])
    counts = np.diff(edges)
    sums = cumsum[edges[1:]] - cumsum[edges[:-1]]
    return np.where(counts > 0, sums / np.maximum(counts, 1), centroids), edges


def kmeans_1d(values: np.ndarray, k: int, iterations: int) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd's k-means on scalars with linear initialisation.

    Args:
        values: 1-D array of the weights to cluster (may be empty).
        k: number of centroids.
        iterations: maximum Lloyd iterations (0 keeps the linear start); stops early once
            the assignment no longer changes.

    Returns:
        (codebook float32[k] in increasing order, labels int64 per value: its nearest centroid).
    """
    values = np.asarray(values, np.float64).ravel()
    if values.size == 0:
        return np.zeros(k, np.float32), np.zeros(0, np.int64)
    sorted_values = np.sort(values)
    cumsum = np.concatenate([[0.0], np.cumsum(sorted_values)])
    centroids = np.linspace(sorted_values[0], sorted_values[-1], k)
    edges = None
    for _ in range(iterations):
        # Each centroid stays between its neighbours' midpoints, so the order never changes.
        centroids, new_edges = _segment_means(sorted_values, cumsum, centroids)
        if edges is not None and np.array_equal(edges, new_edges):
            break
        edges = new_edges
    codebook = centroids.astype(np.float32)
    # Labels against the float32 codebook actually stored; a value on a midpoint goes to the lower centroid.
    mids = (codebook[1:].astype(np.float64) + codebook[:-1]) / 2
    return codebook, np.searchsorted(mids, values, side="left")


def quantize_kernel(kernel: np.ndarray, mask: np.ndarray, bits: int, iterations: int) -> tuple[np.ndarray, np.ndarray]:
    """Weight-share one kernel's kept weights.

    Args:
        kernel: float weights.
        mask: bool, True where kept; pruned weights are not clustered.
        bits: log2 of the codebook size, 2..8.
        iterations: Lloyd iterations.

    Returns:
        (codebook float32[2**bits], indices uint8 of the kernel's shape, 0 where pruned).
    """
    if not MIN_BITS <= bits <= MAX_BITS:
        raise ValueError(f"bits={bits}: must be in {MIN_BITS}..{MAX_BITS}")
    kernel = np.asarray(kernel)
    mask = np.asarray(mask, bool)
    codebook, labels = kmeans_1d(kernel[mask], 2**bits, iterations)
    indices = np.zeros(kernel.shape, np.uint8)
    indices[mask] = labels
    return codebook, indices


def quantize_params(params: Any, masks: Any = None, *, bits_conv: int = 8, bits_classifier: int | None = None,
                    iterations: int = 30) -> QuantizedParams:
    """Weight-share every conv kernel of a params tree.

    Args:
        params: nested dict of arrays (e.g. the folded no-BN params).
        masks: keep-masks looked up by kernel path (a tree from
            :func:`~dse.compress.prune.magnitude_masks`, possibly of the BN model: only
            kernel paths are read); None keeps every non-zero weight.
        bits_conv: bits per kept weight for conv kernels.
        bits_classifier: bits for the classifier (conv10); None uses ``bits_conv``.
        iterations: Lloyd iterations per layer.

    Returns:
        The :class:`QuantizedParams`.
    """
    mask_of = {path: np.asarray(m, bool) for path, m in flat(masks).items()} if masks is not None else {}
    codebooks, indices, kept, floats = {}, {}, {}, {}
    for path, leaf in flat(params).items():
        leaf = np.asarray(leaf, np.float32)
        if not is_kernel(path):
            floats[path] = leaf
            continue
        mask = mask_of.get(path, leaf != 0)
        codebooks[path], indices[path] = quantize_kernel(leaf, mask, layer_bits(path, bits_conv, bits_classifier), iterations)
        kept[path] = mask
    return QuantizedParams(codebooks, indices, kept, floats)


def dequantize_kernel(codebook: Any, indices: Any, mask: Any) -> Any:
    """``codebook[indices]`` where kept, exactly 0 where pruned; numpy in, numpy out; JAX in, JAX out."""
    values = codebook[indices.astype(np.int32)]
    if isinstance(values, np.ndarray):
        return np.where(mask, values, np.float32(0))
    import jax.numpy as jnp  # only reached with JAX arrays

    return jnp.where(mask, values, 0.0)


def dequantize(q: QuantizedParams) -> dict:
    """The params tree a quantized model stands for (nested dict, float32), usable inside ``jax.grad``."""
    leaves = dict(q.floats)
    for path in q.codebooks:
        leaves[path] = dequantize_kernel(q.codebooks[path], q.indices[path], q.masks[path])
    return nested(leaves)


def split_trainable(q: QuantizedParams) -> tuple[dict, dict]:
    """(trainable, fixed): codebooks and biases are fine-tuned, indices and masks are not."""
    return {"codebooks": q.codebooks, "floats": q.floats}, {"indices": q.indices, "masks": q.masks}


def join_trainable(trainable: dict, fixed: dict) -> QuantizedParams:
    """The inverse of :func:`split_trainable`."""
    return QuantizedParams(trainable["codebooks"], fixed["indices"], fixed["masks"], trainable["floats"])


def distinct_kept_values(q: QuantizedParams) -> dict[str, int]:
    """Per kernel, how many distinct values its kept weights take (at most ``2**bits``)."""
    counts = {}
    for path, codebook in q.codebooks.items():
        kept_indices = np.asarray(q.indices[path])[np.asarray(q.masks[path], bool)]
        counts[path] = int(np.unique(np.asarray(codebook)[kept_indices]).size)
    return counts

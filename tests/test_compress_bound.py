"""The pre-training bound on a ``.dsez`` file's bytes: never below a real file, and tight where
Huffman coding cannot help (indices and gaps drawn uniformly)."""

import json

import numpy as np
import pytest

from dse.compress import container
from dse.compress.bound import compressed_bytes_bound, upper_bound_bytes
from dse.compress.config import CompressConfig
from dse.compress.prune import _prune_count
from dse.compress.quantize import QuantizedParams
from dse.train import TrainConfig

SHAPES = {"conv1/kernel": (3, 3, 1, 24), "fire2/squeeze/kernel": (1, 1, 24, 8), "fire2/expand3x3/kernel": (3, 3, 8, 32),
          "conv10/kernel": (1, 1, 64, 10), "conv1/bias": (24,), "conv10/bias": (10,)}


def _file(shapes, *, sparsity, bits, classifier_bits, indices, masks) -> tuple[bytes, int]:
    """A real file of these shapes with the given index and mask makers; and its header's non-tensor bytes."""
    rng = np.random.default_rng(0)
    q = QuantizedParams({}, {}, {}, {})
    for path, shape in shapes.items():
        if not path.endswith("kernel"):
            q.floats[path] = rng.normal(size=shape).astype(np.float32)
            continue
        b = classifier_bits if path.startswith("conv10") else bits
        size = int(np.prod(shape))
        mask = masks(rng, size, size - _prune_count(sparsity, size)).reshape(shape)
        q.masks[path], q.codebooks[path] = mask, np.linspace(-1, 1, 2**b).astype(np.float32)
        q.indices[path] = np.where(mask, indices(rng, size, b).reshape(shape), 0).astype(np.uint8)
    config, metadata = {"model": {"base_e": 16}}, {"mean": [0.25]}
    header = json.dumps({"config": config, "metadata": metadata, "tensors": []}, sort_keys=True, separators=(",", ":"))
    return container.encode(q, config=config, metadata=metadata), len(header)


def uniform_indices(rng, size, bits):
    return rng.integers(0, 2**bits, size)


def skewed_indices(rng, size, bits):  # Fibonacci-like frequencies: the deepest Huffman codes
    weights = np.array([1.618 ** -i for i in range(2**bits)])
    return rng.choice(2**bits, size, p=weights / weights.sum())


def random_mask(rng, size, kept):
    mask = np.zeros(size, bool)
    mask[rng.choice(size, kept, replace=False)] = True
    return mask


def tail_mask(rng, size, kept):  # every pruned weight in one run at the front: the most fillers
    return np.arange(size) >= size - kept


@pytest.mark.parametrize("indices", [uniform_indices, skewed_indices])
@pytest.mark.parametrize("masks", [random_mask, tail_mask])
@pytest.mark.parametrize(("sparsity", "bits", "classifier_bits"), [(0.0, 8, 8), (0.33, 6, 6), (0.5, 4, 2), (0.9, 2, 5)])
def test_no_file_is_larger_than_its_bound(indices, masks, sparsity, bits, classifier_bits):
    data, header = _file(SHAPES, sparsity=sparsity, bits=bits, classifier_bits=classifier_bits, indices=indices,
                         masks=masks)
    bound = upper_bound_bytes(SHAPES, sparsity=sparsity, conv_bits=bits, classifier_bits=classifier_bits,
                              header_bytes=header)
    assert len(data) <= bound
    if indices is uniform_indices and sparsity == 0:
        assert bound < 1.1 * len(data)  # no positions, uniform indices: coding gains nothing, the bound is the file


def test_a_global_scope_bounds_the_kept_weights_in_the_costliest_layers():
    # One threshold for all layers: the 8-bit classifier may keep all its weights, the 2-bit convs fewer.
    per_layer = upper_bound_bytes(SHAPES, sparsity=0.5, conv_bits=2, classifier_bits=8, header_bytes=0)
    global_ = upper_bound_bytes(SHAPES, sparsity=0.5, conv_bits=2, classifier_bits=8, header_bytes=0, scope="global")
    assert global_ > per_layer
    rng = np.random.default_rng(1)
    for _ in range(20):  # any split of the kept weights fits the global bound
        q = QuantizedParams({}, {}, {}, {})
        sizes = {p: int(np.prod(s)) for p, s in SHAPES.items() if p.endswith("kernel")}
        total = sum(sizes.values())
        keep = np.zeros(total, bool)
        keep[rng.choice(total, total - _prune_count(0.5, total), replace=False)] = True
        start = 0
        for path, shape in SHAPES.items():
            if path not in sizes:
                q.floats[path] = np.zeros(shape, np.float32)
                continue
            mask = keep[start:start + sizes[path]].reshape(shape)
            start += sizes[path]
            b = 8 if path.startswith("conv10") else 2
            q.masks[path], q.codebooks[path] = mask, np.linspace(-1, 1, 2**b).astype(np.float32)
            q.indices[path] = np.where(mask, rng.integers(0, 2**b, shape), 0).astype(np.uint8)
        header = len(json.dumps({"config": {}, "metadata": {}, "tensors": []}, separators=(",", ":")))
        assert len(container.encode(q, config={})) <= global_ + header  # global_ was taken without a header


def test_more_sparsity_and_fewer_bits_lower_a_networks_bound():
    cfg = TrainConfig.model_validate({"model": {"base_e": 32, "incr_e": 32, "batch_norm": True}})
    bounds = [compressed_bytes_bound(cfg, CompressConfig(sparsity=s, bits=b)) for s, b in [(0.33, 8), (0.33, 6), (0.7, 6),
                                                                                          (0.7, 4)]]
    assert bounds == sorted(bounds, reverse=True) and len(set(bounds)) == 4

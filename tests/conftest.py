"""Shared fixtures: tiny configs on the real Fashion-MNIST files."""

from pathlib import Path

import pytest

FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")
requires_fashion_mnist = pytest.mark.skipif(
    not FASHION_MNIST.exists(), reason="Fashion-MNIST not installed: apt-get install dataset-fashion-mnist"
)


def tiny_train_dict(**overrides) -> dict:
    """A SqueezeNet small enough to train a few steps in seconds, on a few hundred real images."""
    base = {
        "model": {"base_e": 16, "incr_e": 16, "batch_norm": True},
        "data": {"train_subset": 512, "val_subset": 256, "test_subset": 256},
        "optim": {"learning_rate": 0.05},
        "epochs": 2,
        "batch_size": 64,
        "eval_batch_size": 128,
        "compilation_cache_dir": None,
    }
    for key, value in overrides.items():
        if isinstance(value, dict):
            base[key] = {**base.get(key, {}), **value}
        else:
            base[key] = value
    return base

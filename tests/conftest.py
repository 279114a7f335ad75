"""Shared fixtures: tiny configs on the real Fashion-MNIST files, random trained-looking weights."""

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")
requires_fashion_mnist = pytest.mark.skipif(
    not FASHION_MNIST.exists(), reason="Fashion-MNIST not installed: apt-get install dataset-fashion-mnist"
)


def run_python(*args, env: dict | None = None, timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
    """``python ARGS`` in a new process, output captured; ``env`` adds to this process's environment."""
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, **kwargs)


def run_dse(*args, **kwargs) -> subprocess.CompletedProcess:
    """``python -m dse ARGS`` as a user runs it (``run_python``'s options)."""
    return run_python("-m", "dse", *args, **kwargs)


@pytest.fixture
def postgres():
    """A throwaway PostgreSQL server on loopback for one test; yields its URL."""
    from dse.sweep.storage import local_postgres, postgres_binaries

    if postgres_binaries() is None:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql); .ci/install installs it")
    with local_postgres(Path(f"/tmp/dse-pg-{os.getpid()}"), port=55432 + os.getpid() % 1000) as url:
        yield url


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


def random_variables(cfg, seed: int = 1) -> dict:
    """Flax variables of the network ``cfg`` (an ArchConfig): random weights, and with BatchNorm
    parameters and statistics far from the identity. JAX is imported here, not by every test module."""
    import jax
    import jax.numpy as jnp

    from dse.arch import build_model, expand

    model = build_model(expand(cfg))
    # Shapes by tracing only: a real (jitted) init would cost a compile for values we replace anyway.
    shapes = jax.eval_shape(lambda: model.init({"params": jax.random.key(0)}, jnp.zeros((1, *cfg.input_shape)), train=False))
    rng = np.random.default_rng(seed)

    def fill(path, leaf):
        # Signed scales test the fold for real; the rest is mild enough that ReLUs stay alive and
        # gradients reach conv1. conv10 is wider than its N(0, 0.01) init so the logits are not flat.
        name, shape = path[-1].key, leaf.shape
        if name == "kernel":
            std = 0.3 if path[1].key == "conv10" else math.sqrt(2 / math.prod(shape[:-1]))
            return rng.normal(0, std, shape).astype(np.float32)
        if name == "var":
            return rng.uniform(0.5, 2.0, shape).astype(np.float32)
        if name == "scale":
            return (rng.uniform(0.5, 2.0, shape) * rng.choice([-1, 1], shape, p=[0.2, 0.8])).astype(np.float32)
        return rng.normal(0, 0.1, shape).astype(np.float32)  # BN mean and bias, conv10 bias

    return jax.tree_util.tree_map_with_path(fill, shapes)

"""Training-free ("zero-cost") proxies of a candidate at initialisation: synflow and NASWOT.

Both score the network the trainer would start from: the spec's Flax model with the
variables ``train_and_evaluate`` initialises (``init_variables(model, jax.random.key(seed))``,
the same initialisers and key), one jitted pass each.

**synflow** (Tanaka et al. 2020; as a NAS proxy, Abdelfattah et al. 2021): every parameter
replaced by its absolute value; BatchNorm in inference mode with its initial statistics
(mean 0, variance 1, scale 1, offset 0), which is ``x / sqrt(1 + 1e-5)``, so the network is
the linearised one of the zero-cost literature, which drops BatchNorm; dropout off; one
input of ones of the spec's input shape; ``R`` = the sum of the logits;
``score = sum over every parameter theta of |theta * dR/dtheta|``. :func:`synflow` returns
``log(score)`` (natural log; a rank is the same either way). The pass runs in float64:
with positive weights every layer multiplies the signal, so ``R`` and the products grow
geometrically with depth and width (``R`` is about e^30 for the quarter-width 8-module
network already), and float32 stops at 3.4e38 (e^88) where float64 goes to e^709. Logs
all the way through would need a log-domain twin of the network (its concatenations and
bypass sums are sums of exponentials); float64 is the same network, evaluated once.

**NASWOT** (Mellor et al. 2021): a minibatch of real training images (:func:`proxy_images`:
the first training batch of the seed's epoch-0 order, without augmentation, normalised by
the trainer's own input pipeline) through the network in training mode, as the paper's
code does: BatchNorm normalises with the batch's statistics, as in the first training
step. The binary code of an image is ``pre-activation > 0`` for every ReLU unit: conv1's
and every squeeze and expand conv's (the complex-bypass conv has no ReLU; the optional
head ReLU after conv10 is not read). With codes ``c`` (images x units),
``K = c c^T + (1 - c)(1 - c)^T`` (units minus the Hamming distance between two images'
codes, summed exactly in integers) and the score is ``log |det K|`` (``slogdet`` in
float64). Images whose codes coincide make ``K`` singular: ``-inf``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from dse.arch import build_model, expand, init_variables
from dse.arch.model import ConvBlock, SqueezeNet
from dse.arch.spec import ArchConfig
from dse.data import Splits, batches
from dse.data.config import AugmentConfig

PROXIES = ("synflow", "naswot")
IMAGES = 64  # NASWOT's minibatch

ApplyFn = Callable[..., jax.Array]


# --------------------------------------------------------------------------- synflow


@functools.partial(jax.jit, static_argnums=(0, 2))
def _log_synflow(apply_fn: ApplyFn, variables: dict, input_shape: tuple[int, ...]) -> jax.Array:
    variables = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), variables)
    params = jax.tree.map(jnp.abs, variables["params"])
    others = {key: value for key, value in variables.items() if key != "params"}
    ones = jnp.ones((1, *input_shape), jnp.float64)
    grads = jax.grad(lambda p: jnp.sum(apply_fn({"params": p, **others}, ones)))(params)
    # params are >= 0 now, so |theta * dR/dtheta| = theta * |dR/dtheta|
    per_leaf = jax.tree.map(lambda p, g: jnp.sum(p * jnp.abs(g)), params, grads)
    return jnp.log(sum(jax.tree.leaves(per_leaf)))


def synflow(apply_fn: ApplyFn, variables: dict, input_shape: Sequence[int]) -> float:
    """``log(sum |theta * dR/dtheta|)`` with every parameter made positive and an input of ones.

    Args:
        apply_fn: ``apply_fn(variables, x)`` -> outputs in inference mode (a Flax ``apply``).
        variables: the network's variables; ``params`` are made positive, the rest (BatchNorm
            statistics) are used as they are.
        input_shape: one input's shape, without the batch axis.

    Returns:
        The natural log of the synflow score, computed in float64.
    """
    with jax.enable_x64(True):
        return float(_log_synflow(apply_fn, variables, tuple(input_shape)))


# --------------------------------------------------------------------------- NASWOT


def activation_kernel(codes: Sequence[jax.Array]) -> jax.Array:
    """``K = sum over layers of c c^T + (1 - c)(1 - c)^T`` for binary codes, as int32.

    Args:
        codes: one boolean array per layer, images on axis 0.

    Each layer's products are counts below 2^24, exact in a float32 matmul.

    >>> activation_kernel([np.array([[1, 1], [1, 0]], bool)]).tolist()
    [[2, 1], [1, 2]]
    """
    kernel = 0
    for layer in codes:
        c = jnp.reshape(layer, (layer.shape[0], -1)).astype(jnp.float32)
        both_on = c @ c.T
        on = jnp.diagonal(both_on)
        # (1 - c)(1 - c)^T = units - on_i - on_j + both_on: one matmul per layer, not two
        kernel += (2 * both_on - on[:, None] - on[None, :] + c.shape[1]).astype(jnp.int32)
    return kernel


def log_abs_det(kernel: jax.Array | np.ndarray) -> float:
    """``log |det K|`` in float64; ``-inf`` for a singular ``K``."""
    return float(np.linalg.slogdet(np.asarray(kernel, np.float64))[1])


def _relu_units(module, method_name: str) -> bool:
    """The modules whose outputs are ReLU outputs: the positive ones are the units that are on."""
    return isinstance(module, ConvBlock) and module.relu and method_name == "__call__"


@functools.partial(jax.jit, static_argnums=0)
def _naswot_kernel(apply_fn: ApplyFn, variables: dict, images: jax.Array, rng: jax.Array) -> jax.Array:
    mutable = [key for key in variables if key != "params"]  # BatchNorm updates its statistics in training mode
    _, state = apply_fn(variables, images, train=True, rngs={"dropout": rng}, mutable=mutable,
                        capture_intermediates=_relu_units)
    return activation_kernel([out > 0 for out in jax.tree.leaves(state["intermediates"])])


def naswot(apply_fn: ApplyFn, variables: dict, images: np.ndarray, rng: jax.Array) -> float:
    """``log |det K|`` of the ReLU codes of ``images`` through a :class:`SqueezeNet` in training mode.

    Args:
        apply_fn: the SqueezeNet's ``apply``.
        variables: its variables.
        images: a normalised batch, (images, H, W, C) float32.
        rng: dropout's key (dropout sits after the last ReLU read, so it changes nothing).
    """
    return log_abs_det(_naswot_kernel(apply_fn, variables, images, rng))


def proxy_images(splits: Splits, seed: int, count: int = IMAGES) -> np.ndarray:
    """The first ``count`` training images of the seed's epoch-0 order, normalised as the trainer
    normalises them (its own pipeline), without augmentation."""
    first = batches(splits.train, batch_size=count, mean=splits.mean, std=splits.std, train=True, seed=seed,
                    epoch=0, augment=AugmentConfig(), prefetch=0)
    try:
        return next(first)["image"]
    finally:
        first.close()


# --------------------------------------------------------------------------- a candidate


@functools.lru_cache(maxsize=8)
def _model(cfg: ArchConfig) -> SqueezeNet:
    """One module per architecture, so the jitted proxies are compiled once for all its seeds."""
    return build_model(expand(cfg))


def proxy_scores(cfg: ArchConfig, seed: int, images: np.ndarray) -> dict[str, float]:
    """Both proxies of the candidate ``cfg`` (input shape and classes resolved from the data) at
    the initialisation its training run with ``seed`` starts from.

    Returns:
        ``{"synflow": log synflow, "naswot": log |det K|}``, keyed by :data:`PROXIES`.
    """
    model = _model(cfg)
    key = jax.random.key(seed)
    variables = init_variables(model, key)  # what train_and_evaluate starts from
    return {"synflow": synflow(model.apply, variables, cfg.input_shape),
            "naswot": naswot(model.apply, variables, images, key)}

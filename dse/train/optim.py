"""Optimizers and learning-rate schedules from names, over Optax.

Every number that may differ between two trials of one architecture (learning rate,
momentum, weight decay, warm-up and run length) is an array in the optimizer state,
not a constant in the compiled step, so those trials share one compilation (and one
persistent-cache entry). Only the *kind* of optimizer and schedule is static.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax.numpy as jnp
import optax

from dse.train.config import OptimConfig


def _sgd(learning_rate, momentum, weight_decay):
    # Caffe applies weight decay to the gradient (L2), before momentum.
    return optax.chain(optax.add_decayed_weights(weight_decay), optax.sgd(learning_rate, momentum=momentum))


def _adam(learning_rate, momentum, weight_decay):
    return optax.chain(optax.add_decayed_weights(weight_decay), optax.adam(learning_rate, b1=momentum))


def _adamw(learning_rate, momentum, weight_decay):
    return optax.adamw(learning_rate, b1=momentum, weight_decay=weight_decay)


OPTIMIZERS: dict[str, Callable[..., optax.GradientTransformation]] = {"sgd": _sgd, "adam": _adam, "adamw": _adamw}

# Each maps progress in [0, 1] after warm-up to a multiplier of the peak learning rate.
SCHEDULES: dict[str, Callable[[jnp.ndarray], jnp.ndarray]] = {
    "linear": lambda progress: 1.0 - progress,  # Caffe "poly" with power 1
    "cosine": lambda progress: 0.5 * (1.0 + jnp.cos(math.pi * progress)),
    "constant": lambda progress: jnp.ones_like(progress),
}


def make_optimizer(cfg: OptimConfig) -> optax.GradientTransformation:
    """The optimizer with its hyperparameters injected as state (``opt_state.hyperparams``)."""
    return optax.inject_hyperparams(OPTIMIZERS[cfg.name])(
        learning_rate=cfg.learning_rate, momentum=cfg.momentum, weight_decay=cfg.weight_decay
    )


def schedule_arrays(cfg: OptimConfig, steps_per_epoch: int, epochs: int) -> dict[str, jnp.ndarray]:
    """The schedule's numbers, as data for the compiled step."""
    return {
        "peak_lr": jnp.asarray(cfg.learning_rate, jnp.float32),
        "warmup_steps": jnp.asarray(round(cfg.warmup_epochs * steps_per_epoch), jnp.float32),
        "total_steps": jnp.asarray(steps_per_epoch * epochs, jnp.float32),
    }


def learning_rate_at(step: jnp.ndarray, schedule: dict[str, jnp.ndarray], kind: str) -> jnp.ndarray:
    """Linear warm-up from 0 to the peak, then ``SCHEDULES[kind]`` down over the remaining steps."""
    step = step.astype(jnp.float32)
    warmup = schedule["warmup_steps"]
    warm = jnp.where(warmup > 0, jnp.minimum(1.0, (step + 1.0) / jnp.maximum(warmup, 1.0)), 1.0)
    progress = jnp.clip((step - warmup) / jnp.maximum(schedule["total_steps"] - warmup, 1.0), 0.0, 1.0)
    return schedule["peak_lr"] * jnp.where(step < warmup, warm, SCHEDULES[kind](progress))

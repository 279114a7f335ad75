"""The pure train and eval steps: ``(state, batch, rng) -> (state, metrics)``.

Nothing here is jitted; the trainer jits these where it calls them (donating the
state) so the same functions serve one device or a data-parallel mesh.
"""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax

from dse.train.optim import learning_rate_at


class TrainState(flax.struct.PyTreeNode):
    step: jax.Array
    params: Any
    batch_stats: Any  # BatchNorm running statistics; an empty dict without BatchNorm
    opt_state: optax.OptState
    schedule: dict[str, jax.Array]  # peak_lr, warmup_steps, total_steps: data, not constants
    apply_fn: Any = flax.struct.field(pytree_node=False)
    tx: optax.GradientTransformation = flax.struct.field(pytree_node=False)


def create_state(apply_fn, variables: dict, tx: optax.GradientTransformation, schedule: dict) -> TrainState:
    params = variables["params"]
    return TrainState(
        step=jnp.zeros((), jnp.int32), params=params, batch_stats=variables.get("batch_stats", {}),
        opt_state=tx.init(params), schedule=schedule, apply_fn=apply_fn, tx=tx,
    )


def _variables(state: TrainState, params) -> dict:
    return {"params": params, "batch_stats": state.batch_stats} if state.batch_stats else {"params": params}


def cross_entropy(logits: jax.Array, labels: jax.Array, num_classes: int, smoothing: jax.Array | float) -> jax.Array:
    targets = optax.smooth_labels(jax.nn.one_hot(labels, num_classes), smoothing)
    return optax.softmax_cross_entropy(logits, targets)


def train_step(state: TrainState, batch: dict, rng: jax.Array, *, schedule_kind: str,
               label_smoothing: float = 0.0) -> tuple[TrainState, dict]:
    """One SGD step on ``batch`` (``image``, ``label``); dropout noise from ``rng`` folded with the step."""
    dropout_rng = jax.random.fold_in(rng, state.step)
    has_bn = bool(state.batch_stats)

    def loss_fn(params):
        out = state.apply_fn(
            _variables(state, params), batch["image"], train=True, rngs={"dropout": dropout_rng},
            mutable=["batch_stats"] if has_bn else False,
        )
        logits, updates = out if has_bn else (out, {})
        loss = cross_entropy(logits, batch["label"], logits.shape[-1], label_smoothing).mean()
        return loss, (logits, updates)

    (loss, (logits, updates)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    lr = learning_rate_at(state.step, state.schedule, schedule_kind)
    opt_state = state.opt_state._replace(hyperparams={**state.opt_state.hyperparams, "learning_rate": lr})
    param_updates, opt_state = state.tx.update(grads, opt_state, state.params)
    state = state.replace(
        step=state.step + 1, params=optax.apply_updates(state.params, param_updates), opt_state=opt_state,
        batch_stats=updates.get("batch_stats", state.batch_stats),
    )
    accuracy = jnp.mean(jnp.argmax(logits, -1) == batch["label"])
    return state, {"loss": loss, "accuracy": accuracy, "learning_rate": lr}


def eval_step(state: TrainState, batch: dict) -> dict:
    """Sums over the real (``mask`` = 1) examples of a padded batch: loss, top-1, top-5 hits, count."""
    logits = state.apply_fn(_variables(state, state.params), batch["image"], train=False)
    mask = batch["mask"]
    labels = batch["label"]
    loss = cross_entropy(logits, labels, logits.shape[-1], 0.0)
    k = min(5, logits.shape[-1])
    topk = jax.lax.top_k(logits, k)[1]
    return {
        "loss": jnp.sum(loss * mask),
        "top1": jnp.sum((topk[:, 0] == labels) * mask),
        "top5": jnp.sum(jnp.any(topk == labels[:, None], axis=-1) * mask),
        "count": jnp.sum(mask),
    }

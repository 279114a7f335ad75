"""The JAX side of compression: masked retraining, centroid fine-tuning, evaluation.

The steps are pure functions, jitted where the loops below call them; masks, indices
and codebooks enter as data, so one compiled program serves a whole fine-tuning run.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from dse.compress.prune import apply_masks
from dse.compress.quantize import QuantizedParams, dequantize, join_trainable, split_trainable
from dse.data import batches, steps_per_epoch
from dse.data.config import AugmentConfig
from dse.train.step import TrainState, create_state, cross_entropy, eval_step, train_step


def masked_train_step(state: TrainState, batch: dict, rng: jax.Array, masks: Any, *, schedule_kind: str,
                      label_smoothing: float = 0.0) -> tuple[TrainState, dict]:
    """:func:`dse.train.step.train_step`, then the pruned weights reset to exactly zero.

    Every step starts from weights that are zero where pruned, so the forward pass and
    the gradients of the kept weights are those of the pruned network. dse's optimizers
    (SGD, Adam, AdamW) act elementwise, so what the optimizer state accumulates for a
    pruned weight never reaches a kept one: re-applying the mask after the update keeps
    the same kept weights as masking the gradients would, without changing ``train_step``.

    Args:
        state: the train state, its params already masked.
        batch: ``image`` and ``label``.
        rng: dropout key (folded with the step inside ``train_step``).
        masks: keep-masks, same tree as ``state.params`` (float or bool), as data.
        schedule_kind, label_smoothing: as for ``train_step``.

    Returns:
        (state with masked params, the step's metrics).
    """
    state, metrics = train_step(state, batch, rng, schedule_kind=schedule_kind, label_smoothing=label_smoothing)
    return state.replace(params=apply_masks(state.params, masks)), metrics


def make_centroid_optimizer(learning_rate: float) -> optax.GradientTransformation:
    """Adam for codebooks and biases: a codebook entry's gradient sums over its whole cluster,
    so its scale varies with cluster size by orders of magnitude; Adam's per-entry
    normalisation makes one learning rate fit every entry."""
    return optax.adam(learning_rate)


def centroid_step(trainable: dict, opt_state: optax.OptState, fixed: dict, batch: dict, rng: jax.Array, *,
                  apply_fn: Callable, tx: optax.GradientTransformation,
                  label_smoothing: float = 0.0) -> tuple[dict, optax.OptState, dict]:
    """One fine-tuning step of the shared weights (Deep Compression's centroid update).

    Args:
        trainable: ``{"codebooks", "floats"}`` from :func:`~dse.compress.quantize.split_trainable`.
        opt_state: ``tx``'s state for ``trainable``.
        fixed: ``{"indices", "masks"}``: which weight uses which centroid, and which are pruned.
        batch: ``image`` and ``label``.
        rng: dropout key for this step.
        apply_fn: the no-BatchNorm model's ``apply``.
        tx: the optimizer (:func:`make_centroid_optimizer`).
        label_smoothing: as in training.

    Returns:
        (new trainable, new opt_state, ``{"loss", "accuracy"}``). Indices and masks are
        untouched, so each layer keeps at most ``2**bits`` distinct values and its zeros.
    """

    def loss_fn(trainable):
        params = dequantize(join_trainable(trainable, fixed))
        logits = apply_fn({"params": params}, batch["image"], train=True, rngs={"dropout": rng})
        loss = cross_entropy(logits, batch["label"], logits.shape[-1], label_smoothing).mean()
        return loss, logits

    (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(trainable)
    updates, opt_state = tx.update(grads, opt_state, trainable)
    accuracy = jnp.mean(jnp.argmax(logits, -1) == batch["label"])
    return optax.apply_updates(trainable, updates), opt_state, {"loss": loss, "accuracy": accuracy}


def _train_batches(split, *, batch_size: int, mean, std, seed: int, epoch: int, augment: AugmentConfig,
                   max_steps: int | None) -> Iterator[dict]:
    steps = steps_per_epoch(len(split.labels), batch_size)
    steps = min(steps, max_steps or steps)
    stream = batches(split, batch_size=batch_size, mean=mean, std=std, train=True, seed=seed, epoch=epoch,
                     augment=augment, prefetch=2)
    for i, batch in enumerate(stream, start=1):
        yield {"image": batch["image"], "label": batch["label"]}
        if i >= steps:
            break


def finetune_pruned(state: TrainState, masks: Any, split, *, epochs: int, batch_size: int, mean, std, seed: int,
                    augment: AugmentConfig, schedule_kind: str, label_smoothing: float = 0.0,
                    max_steps: int | None = None) -> TrainState:
    """Retrain a pruned network with its masks held (``epochs`` passes over ``split``).

    Args:
        state: a fresh train state (optimizer and schedule for the fine-tuning run).
        masks: keep-masks of ``state.params``.
        split: the training :class:`~dse.data.arrays.ArrayDataset`.
        epochs, batch_size, seed, augment: the fine-tuning data stream.
        mean, std: normalisation of the run being compressed.
        schedule_kind, label_smoothing: as in :func:`masked_train_step`.
        max_steps: cap on steps per epoch (smoke tests).

    Returns:
        The state after fine-tuning; its pruned weights are exactly zero.
    """
    masks = jax.tree.map(lambda p, m: np.asarray(m, p.dtype), state.params, masks)
    state = state.replace(params=jax.jit(apply_masks)(state.params, masks))
    step = jax.jit(functools.partial(masked_train_step, schedule_kind=schedule_kind, label_smoothing=label_smoothing),
                   donate_argnums=0)
    rng = jax.random.key(seed)
    for epoch in range(1, epochs + 1):
        for batch in _train_batches(split, batch_size=batch_size, mean=mean, std=std, seed=seed, epoch=epoch,
                                    augment=augment, max_steps=max_steps):
            state, _ = step(state, batch, rng, masks)
    return state


def finetune_centroids(q: QuantizedParams, apply_fn: Callable, split, *, epochs: int, learning_rate: float,
                       batch_size: int, mean, std, seed: int, augment: AugmentConfig, label_smoothing: float = 0.0,
                       max_steps: int | None = None) -> QuantizedParams:
    """Fine-tune the codebooks and biases of a quantized no-BatchNorm network.

    Args:
        q: the quantized model.
        apply_fn: the no-BatchNorm model's ``apply``.
        split: the training split.
        epochs, learning_rate: the fine-tuning run (Adam).
        batch_size, mean, std, seed, augment, label_smoothing, max_steps: as for :func:`finetune_pruned`.

    Returns:
        ``q`` with new codebooks and biases (numpy float32); indices and masks unchanged.
    """
    tx = make_centroid_optimizer(learning_rate)
    trainable, fixed = split_trainable(q)
    # device_put, not jnp.asarray, which compiles a copy program per array shape.
    trainable, fixed = jax.device_put(trainable), jax.device_put(fixed)
    opt_state = jax.jit(tx.init)(trainable)  # one program, not one small compile per codebook shape
    step = jax.jit(functools.partial(centroid_step, apply_fn=apply_fn, tx=tx, label_smoothing=label_smoothing))
    rng = jax.random.key(seed)
    n = 0
    for epoch in range(1, epochs + 1):
        for batch in _train_batches(split, batch_size=batch_size, mean=mean, std=std, seed=seed, epoch=epoch,
                                    augment=augment, max_steps=max_steps):
            trainable, opt_state, _ = step(trainable, opt_state, fixed, batch, jax.random.fold_in(rng, n))
            n += 1
    trainable = jax.tree.map(lambda x: np.asarray(x, np.float32), trainable)
    return q._replace(codebooks=trainable["codebooks"], floats=trainable["floats"])


# One transformation object for every evaluation state: the state's tree structure includes
# its tx, so a fresh optax.identity() per call would make every evaluation compile anew.
_NO_OPTIMIZER = optax.identity()


@functools.cache
def _jitted_eval_step():
    # One jitted function for every evaluation, so models of one structure compile once.
    return jax.jit(eval_step)


def evaluate(apply_fn: Callable, variables: dict, split, *, mean, std, batch_size: int) -> dict[str, float]:
    """Loss, top-1 and top-5 of a model over a whole split (eval mode, no augmentation).

    Args:
        apply_fn: the model's ``apply``.
        variables: ``{"params": ...}`` plus ``batch_stats`` for a BatchNorm model.
        split: an :class:`~dse.data.arrays.ArrayDataset`.
        mean, std: the normalisation the model was trained with.
        batch_size: evaluation batch size (the last batch is padded and masked).

    Returns:
        ``{"loss", "top1", "top5"}`` as fractions of the split's examples.
    """
    state = create_state(apply_fn, variables, _NO_OPTIMIZER, {})
    fn = _jitted_eval_step()
    totals = None
    for batch in batches(split, batch_size=batch_size, mean=mean, std=std, train=False, seed=0, epoch=0,
                         augment=AugmentConfig(), prefetch=2):
        sums = fn(state, batch)
        totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
    totals = jax.device_get(totals)
    count = float(totals["count"])
    return {"loss": float(totals["loss"]) / count, "top1": float(totals["top1"]) / count, "top5": float(totals["top5"]) / count}

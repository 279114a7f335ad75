"""``compress_run``: Deep Compression of one trained dse run, step by step (Table 2 style).

float32 -> prune (+ masked retraining) -> fold BatchNorm -> weight sharing (+ centroid
fine-tuning) -> Huffman coding into a ``.dsez`` file, which is read back and evaluated,
so the reported accuracy is that of the file, not of the in-memory model.

Output folder (default ``<run_dir>/compressed``): ``model.dsez`` and ``compress.json``
(the returned record). Both are replaced only when every step has succeeded.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pydantic

from dse.compress.config import CompressConfig, family_problem
from dse.compress.prune import flat, is_kernel
from dse.compress.quantize import QuantizedParams
from dse.config_io import read_text
from dse.contract import CompressedLayout, RunLayout
from dse.errors import DataError, SpecError, config_error


class Step(StrEnum):
    """The rows of the step table, in pipeline order."""

    FLOAT32 = "float32"  # the trained model, dense float32
    PRUNED = "pruning + retraining"  # sparse float32 (kept weights + 8-bit relative positions)
    FOLDED = "BatchNorm folded"  # sparse float32
    QUANTIZED = "weight sharing + tuning"  # fixed-width cluster indices
    HUFFMAN = "Huffman-coded file"  # the .dsez file, decoded and evaluated


def _validated_settings(settings: CompressConfig | Mapping[str, Any] | None) -> CompressConfig:
    if isinstance(settings, CompressConfig):
        return settings
    try:
        return CompressConfig.model_validate(dict(settings or {}))
    except pydantic.ValidationError as err:
        raise config_error(err, "compress settings") from None


def load_run(run_dir: Path):
    """(resolved TrainConfig, RunLayout) of a trained run with a checkpoint; one-line DataError/ConfigError otherwise."""
    from dse.train.config import TrainConfig

    layout = RunLayout(run_dir)
    if not layout.config.is_file():
        raise DataError(f"{run_dir}: no config.json; not a dse run directory")
    try:
        cfg = TrainConfig.model_validate_json(read_text(layout.config, DataError))
    except pydantic.ValidationError as err:
        raise config_error(err, str(layout.config)) from None
    from dse.train.checkpoint import saved_epochs

    if not saved_epochs(layout.checkpoints):
        raise DataError(f"{run_dir}: no checkpoint under {layout.checkpoints.name}/ (was it trained with checkpoint: false?)")
    return cfg, layout


def restore_last_state(cfg, layout: RunLayout, model):
    """The run's last checkpointed TrainState, restored into the trainer's state structure."""
    import jax
    import jax.numpy as jnp

    from dse.train.checkpoint import EpochCheckpoints
    from dse.train.optim import make_optimizer, schedule_arrays
    from dse.train.step import create_state

    def template():
        dummy = jnp.zeros((1, *cfg.model.input_shape), jnp.float32)
        variables = model.init({"params": jax.random.key(cfg.seed)}, dummy, train=False)
        return create_state(model.apply, variables, make_optimizer(cfg.optim), schedule_arrays(cfg.optim, 1, cfg.epochs))

    # Shapes only: orbax needs no values to restore into, and initialising for real costs a compile.
    abstract = jax.eval_shape(template)
    checkpoints = EpochCheckpoints(layout.checkpoints)
    try:
        epoch = checkpoints.latest_epoch()
        state = checkpoints.restore(epoch, abstract)
    finally:
        checkpoints.close()
    if not all(np.isfinite(np.asarray(leaf)).all() for leaf in jax.tree.leaves(state.params)):
        raise DataError(f"{layout.root}: checkpoint of epoch {epoch} has non-finite weights (a diverged run?)")
    return state, epoch


def _gap_bytes(mask: np.ndarray) -> int:
    # Paper's fixed-width relative index: one byte per kept weight plus a filler per 255 zeros.
    from dse.compress.coding import gap_symbols

    return 0 if mask.all() else int(gap_symbols(mask).size)


def sparse_float32_bytes(params: Any) -> int:
    """Size of a pruned model stored as float32 kept weights + 8-bit relative positions (+ dense float32 rest)."""
    total = 0
    for path, leaf in flat(params).items():
        leaf = np.asarray(leaf)
        total += 4 * int(np.count_nonzero(leaf)) + _gap_bytes(leaf != 0) if is_kernel(path) else 4 * leaf.size
    return total


def fixed_width_bytes(q: QuantizedParams) -> int:
    """Size of a weight-shared model before Huffman coding: ``bits`` per kept weight, 8-bit positions, float32 codebooks."""
    total = sum(4 * np.size(leaf) for leaf in q.floats.values())
    for path, codebook in q.codebooks.items():
        mask = np.asarray(q.masks[path], bool)
        bits = int(math.log2(len(codebook)))
        total += 4 * len(codebook) + math.ceil(int(mask.sum()) * bits / 8) + _gap_bytes(mask)
    return total


def masked_fraction(q: QuantizedParams) -> float:
    """Fraction of conv-kernel weights pruned (by mask, so a kept weight on a 0.0 centroid still counts as kept)."""
    total = sum(np.size(m) for m in q.masks.values())
    return 1.0 - sum(int(np.sum(m)) for m in q.masks.values()) / total if total else 0.0


def _record(step: Step, size: int, float32_size: int, val: dict, test: dict) -> dict:
    return {"step": str(step), "size_bytes": size, "ratio": float32_size / size,
            "val_top1": val["top1"], "val_top5": val["top5"], "test_top1": test["top1"], "test_top5": test["top5"]}


def _retrain_pruned(cfg, settings: CompressConfig, model, variables: dict, masks: Any, train_split, data: dict):
    """(params, batch_stats) after masked retraining with the run's optimizer at the fine-tuning LR."""
    import jax

    from dse.compress.finetune import finetune_pruned
    from dse.data import steps_per_epoch
    from dse.train.optim import make_optimizer, schedule_arrays
    from dse.train.step import create_state

    # Han et al. retrain pruned networks at a tenth of the original rate or less.
    learning_rate = settings.finetune_learning_rate or cfg.optim.learning_rate / 10
    optim = cfg.optim.model_copy(update={"learning_rate": learning_rate, "warmup_epochs": 0.0})
    per_epoch = steps_per_epoch(len(train_split.labels), data["batch_size"])
    per_epoch = min(per_epoch, settings.max_steps_per_epoch or per_epoch)
    tx = make_optimizer(optim)
    # Jitted: the optimizer's init is one program, not one small compile per parameter shape.
    state = jax.jit(lambda v, schedule: create_state(model.apply, v, tx, schedule))(
        variables, schedule_arrays(optim, per_epoch, settings.prune_finetune_epochs))
    state = finetune_pruned(state, masks, train_split, epochs=settings.prune_finetune_epochs, schedule_kind=optim.schedule,
                            label_smoothing=optim.label_smoothing, **data)
    return state.params, state.batch_stats


def compress_run(run_dir: str | Path, settings: CompressConfig | Mapping[str, Any] | None = None,
                 out_dir: str | Path | None = None, *, splits=None) -> dict:
    """Compress the trained run in ``run_dir`` and evaluate every step.

    Args:
        run_dir: a ``dse train`` run directory (``config.json`` + ``checkpoints/``); its last
            checkpointed epoch is compressed.
        settings: a :class:`CompressConfig` or a mapping of its fields (validated; a bad
            value raises a one-line ConfigError).
        out_dir: where ``model.dsez`` and ``compress.json`` go; default ``<run_dir>/compressed``.
        splits: the run's data, already loaded (the trainer passes its own).

    Returns:
        ``steps`` (one record per :class:`Step`: ``size_bytes``, ``ratio`` = float32 size /
        size, val/test top-1 and top-5), ``compressed_bytes`` (the file's size),
        ``float32_bytes``, ``compression_ratio``, ``val_top1_compressed``,
        ``val_top5_compressed``, ``test_top1_compressed``, ``test_top5_compressed``,
        ``energy_compressed_uj`` (estimated, :mod:`dse.arch.energy`, weights as the file's bytes),
        ``sparsity`` (achieved, over conv kernels), ``bits_conv``, ``bits_classifier``, ``file``,
        ``epoch``, ``run_dir``, ``settings``.

    Raises:
        DataError: not a run directory, no checkpoint, or a diverged checkpoint.
        ConfigError: invalid settings or run config.
    """
    import jax

    from dse.arch import build_model, count_params, expand, summarize
    from dse.arch.energy import estimate_energy
    from dse.compress import container
    from dse.compress.finetune import evaluate, finetune_centroids
    from dse.compress.fold import fold_batch_norm, folded_model_config
    from dse.compress.prune import apply_masks, magnitude_masks
    from dse.compress.quantize import dequantize, quantize_params
    from dse.data import load_splits
    from dse.train import compile_cache

    settings = _validated_settings(settings)
    run_dir = Path(run_dir)
    cfg, layout = load_run(run_dir)
    problem = family_problem(cfg.model.family)
    if problem:
        raise SpecError(f"{run_dir}: {problem}")
    compile_cache.enable(cfg.compilation_cache_dir)  # the trainer's: a second compression of one architecture compiles nothing
    out = CompressedLayout(Path(out_dir)) if out_dir is not None else layout.compressed
    out_dir = out.root
    splits = splits or load_splits(cfg.data)
    model = build_model(expand(cfg.model))
    state, epoch = restore_last_state(cfg, layout, model)
    # Host copies: every later step works on numpy trees, so each evaluation of one model compiles once.
    trained, trained_stats = jax.device_get(state.params), jax.device_get(state.batch_stats)
    batch_size = settings.batch_size or cfg.batch_size
    eval_batch = settings.eval_batch_size or cfg.eval_batch_size
    norm = {"mean": splits.mean, "std": splits.std}
    data = {"batch_size": batch_size, "seed": settings.seed, "augment": cfg.data.augment,
            "max_steps": settings.max_steps_per_epoch, **norm}

    def val_test(apply_fn, variables) -> tuple[dict, dict]:
        return tuple(evaluate(apply_fn, variables, split, batch_size=eval_batch, **norm) for split in (splits.val, splits.test))

    def bn_variables(params) -> dict:
        return {"params": params, **({"batch_stats": trained_stats} if trained_stats else {})}

    float32_bytes = 4 * count_params(trained)
    steps = [_record(Step.FLOAT32, float32_bytes, float32_bytes, *val_test(model.apply, bn_variables(trained)))]

    # Prune, then retrain with the masks held (BatchNorm statistics keep adapting).
    # On the host: masking leaf by leaf in JAX would compile one tiny program per kernel shape.
    masks = magnitude_masks(trained, settings.sparsity, settings.scope)
    params, batch_stats = apply_masks(trained, masks), trained_stats
    if settings.prune_finetune_epochs:
        params, batch_stats = _retrain_pruned(cfg, settings, model, bn_variables(params), masks, splits.train, data)
    params, batch_stats = jax.device_get(params), jax.device_get(batch_stats)
    pruned_variables = {"params": params, **({"batch_stats": batch_stats} if batch_stats else {})}
    steps.append(_record(Step.PRUNED, sparse_float32_bytes(params), float32_bytes, *val_test(model.apply, pruned_variables)))

    # Fold BatchNorm: from here on the network is the same one built without it.
    folded_cfg = folded_model_config(cfg.model)
    folded_model = build_model(expand(folded_cfg))
    folded = fold_batch_norm(params, batch_stats)
    steps.append(_record(Step.FOLDED, sparse_float32_bytes(folded), float32_bytes,
                         *val_test(folded_model.apply, {"params": folded})))

    # Weight sharing, then centroid fine-tuning.
    q = quantize_params(folded, masks, bits_conv=settings.conv_bits, bits_classifier=settings.classifier_bits,
                        iterations=settings.kmeans_iterations)
    if settings.quant_finetune_epochs:
        q = finetune_centroids(q, folded_model.apply, splits.train, epochs=settings.quant_finetune_epochs,
                               learning_rate=settings.centroid_learning_rate, label_smoothing=cfg.optim.label_smoothing, **data)
    quantized = dequantize(q)
    steps.append(_record(Step.QUANTIZED, fixed_width_bytes(q), float32_bytes,
                         *val_test(folded_model.apply, {"params": quantized})))

    # Huffman-code into the file, read it back, and evaluate what was read.
    out_dir.mkdir(parents=True, exist_ok=True)
    final = out.model
    staging = out_dir / f".{final.name}.partial"
    header_config = {"model": folded_cfg.model_dump(mode="json"), "data": cfg.data.model_dump(mode="json")}
    metadata = {"mean": splits.mean.tolist(), "std": splits.std.tolist(), "source_run": str(run_dir), "epoch": epoch,
                "compress": settings.model_dump(mode="json")}
    try:
        size = container.write(staging, q, config=header_config, metadata=metadata)
        decoded, _ = container.read(staging)
        if any(not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(decoded), jax.tree.leaves(quantized), strict=True)):
            raise RuntimeError(f"{staging}: decoded weights differ from the encoded ones (a dse.compress bug)")
        val, test = val_test(folded_model.apply, {"params": decoded})
        steps.append(_record(Step.HUFFMAN, size, float32_bytes, val, test))
        result = {
            "steps": steps, "compressed_bytes": size, "float32_bytes": float32_bytes, "compression_ratio": float32_bytes / size,
            "val_top1_compressed": val["top1"], "val_top5_compressed": val["top5"],
            "test_top1_compressed": test["top1"], "test_top5_compressed": test["top5"],
            "energy_compressed_uj": estimate_energy(summarize(expand(folded_cfg)), weight_bytes=size).total_uj,
            "sparsity": masked_fraction(q), "bits_conv": settings.conv_bits, "bits_classifier": settings.classifier_bits,
            "file": str(final), "epoch": epoch, "run_dir": str(run_dir), "settings": settings.model_dump(mode="json"),
        }
        os.replace(staging, final)
    finally:
        staging.unlink(missing_ok=True)
    container.write_atomic(out.report, json.dumps(result, indent=2).encode())
    return result


class DecodedModel(NamedTuple):
    """A ``.dsez`` file read back: the (BatchNorm-free) network, its weights and the data it expects."""

    model_config: Any  # ArchConfig
    params: dict  # nested float32 numpy arrays, ready for ``model.apply``
    mean: np.ndarray  # per-channel normalisation the weights were trained with, [0, 1] pixel units
    std: np.ndarray
    header: dict  # the file's whole header (``config``, ``metadata``, ``tensors``)


def read_model_file(path: str | Path) -> DecodedModel:
    """Decode a ``.dsez`` file written by :func:`compress_run` into a network and its normalisation.

    Raises:
        DataError: a malformed file, or a header without the model config or normalisation.
        ConfigError: a model config this dse does not accept.
    """
    from dse.arch.spec import ArchConfig
    from dse.compress import container

    path = Path(path)
    params, header = container.read(path)
    try:
        model_cfg = ArchConfig.model_validate(header["config"]["model"])
        mean, std = np.asarray(header["metadata"]["mean"], np.float32), np.asarray(header["metadata"]["std"], np.float32)
    except (KeyError, TypeError) as err:
        raise DataError(f"{path}: header lacks {err} (written by another tool?)") from None
    except pydantic.ValidationError as err:
        raise config_error(err, f"{path}: header") from None
    return DecodedModel(model_cfg, params, mean, std, header)


def evaluate_file(path: str | Path, data_config_override: Any = None, batch_size: int = 500) -> dict:
    """Decode a ``.dsez`` file and evaluate it on the test split of the data it was trained on.

    Args:
        path: the file.
        data_config_override: a ``DataConfig`` (or mapping) to evaluate on instead of the
            stored one (e.g. a moved dataset path); the stored normalisation is kept, since
            the weights were trained with it.
        batch_size: evaluation batch size.

    Returns:
        ``test_top1``, ``test_top5``, ``test_loss`` and ``size_bytes`` of the file.

    Raises:
        DataError: a malformed file, a header without the model/data config, or data
            whose image shape or class count does not match the model.
    """
    from dse.arch import build_model, expand
    from dse.compress.finetune import evaluate
    from dse.data import load_splits
    from dse.data.config import DataConfig

    path = Path(path)
    decoded = read_model_file(path)
    model_cfg = decoded.model_config
    try:
        data = data_config_override if data_config_override is not None else decoded.header["config"]["data"]
        data_cfg = data if isinstance(data, DataConfig) else DataConfig.model_validate(data)
    except (KeyError, TypeError) as err:
        raise DataError(f"{path}: header lacks {err} (written by another tool?)") from None
    except pydantic.ValidationError as err:
        raise config_error(err, f"{path}: header") from None
    splits = load_splits(data_cfg)
    if tuple(splits.test.images.shape[1:]) != tuple(model_cfg.input_shape) or splits.test.num_classes > model_cfg.num_classes:
        raise DataError(f"{path}: model takes {tuple(model_cfg.input_shape)} images in {model_cfg.num_classes} classes; "
                        f"the data has {tuple(splits.test.images.shape[1:])} images in {splits.test.num_classes}")
    test = evaluate(build_model(expand(model_cfg)).apply, {"params": decoded.params}, splits.test, mean=decoded.mean,
                    std=decoded.std, batch_size=batch_size)
    return {"test_top1": test["top1"], "test_top5": test["top5"], "test_loss": test["loss"], "size_bytes": path.stat().st_size}

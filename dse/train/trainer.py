"""``train_and_evaluate``: one training run, the same for ``dse train`` and every sweep trial.

A run directory holds ``config.json`` (the resolved config), ``metrics.jsonl`` (one
line per epoch), ``results.json`` (final metrics, sizes, wall-time split) and
``checkpoints/`` (orbax, every epoch). Starting a run again in the same directory
continues from its last checkpoint and ends where an uninterrupted run would.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from functools import partial
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding

import dse
from dse.arch import build_model, expand, init_variables, summarize
from dse.config_io import changed_keys, flatten, read_text
from dse.contract import EpochRecord, RunLayout, RunResult, Source, TrialStatus, names
from dse.data import Splits, batches, load_splits, steps_per_epoch
from dse.errors import ConfigError
from dse.train import compile_cache
from dse.train.checkpoint import EpochCheckpoints, saved_epochs
from dse.train.config import OptimConfig, TrainConfig
from dse.train.devices import data_parallel_count, data_parallel_shardings
from dse.train.hooks import Hooks
from dse.train.optim import make_optimizer, schedule_arrays
from dse.train.step import TrainState, create_state, eval_step, train_step

# Fields that change how a run is evaluated, reported or cached, never what it learns:
# a resumed run may change these. Any other difference from the checkpoints' config is refused.
NOT_TRAINING_FIELDS = frozenset({"eval_batch_size", "measure_latency", "checkpoint", "compilation_cache_dir", "data.prefetch",
                                 "compress"})


def training_fields(cfg: TrainConfig) -> dict[str, Any]:
    """The resolved config's fields that decide what a run learns, by dotted key."""
    flat = flatten(cfg.model_dump(mode="json"))
    return {key: value for key, value in flat.items() if key.split(".", 1)[0] not in NOT_TRAINING_FIELDS
            and key not in NOT_TRAINING_FIELDS}


def config_digest(cfg: TrainConfig) -> str:
    """A short fingerprint of :func:`training_fields`: equal digests, equal training."""
    return hashlib.sha256(json.dumps(training_fields(cfg), sort_keys=True).encode()).hexdigest()[:16]


def check_resumable(cfg: TrainConfig, layout: RunLayout) -> None:
    """Refuse to resume checkpoints made with another training config, naming the changed keys.

    The checkpoints hold the optimizer state and the schedule of the config they were made
    with, so resuming them under another config would train one and report another.
    """
    if not saved_epochs(layout.checkpoints):
        return
    # Runs from before the checkpoints kept their own config: their config.json is the best record.
    stored_file = layout.checkpoint_config if layout.checkpoint_config.exists() else layout.config
    if not stored_file.exists():
        return
    try:
        stored = training_fields(TrainConfig.model_validate_json(read_text(stored_file)))
    except ValueError as err:
        problem = str(err).splitlines()[0]
        raise ConfigError(f"{stored_file}: not the config the checkpoints were made with ({problem})") from None
    changed = changed_keys(stored, training_fields(cfg))
    if changed:
        raise ConfigError(f"{layout.root}: its checkpoints were trained with another config (changed: {'; '.join(changed)}); "
                          f"resume with the same config, use another --workdir, or delete {layout.checkpoints} to start over")


class _Timer:
    def __init__(self) -> None:
        self.totals: dict[str, float] = {"compile_s": 0.0, "train_s": 0.0, "eval_s": 0.0}

    def add(self, key: str, since: float) -> None:
        self.totals[key] += time.perf_counter() - since


def resolve_config(cfg: TrainConfig, splits: Splits) -> TrainConfig:
    """The config with the model's input shape and class count taken from the data."""
    return config_for_data(cfg, splits.train.images.shape[1:], splits.train.num_classes)


def config_for_data(cfg: TrainConfig, input_shape: tuple[int, ...], num_classes: int) -> TrainConfig:
    """The config with this input shape and class count, the model validated again for them."""
    model = cfg.model.model_copy(update={"input_shape": input_shape, "num_classes": num_classes})
    return cfg.model_copy(update={"model": type(cfg.model).model_validate(model.model_dump())})


def _mesh_shardings(cfg: TrainConfig) -> tuple[NamedSharding, NamedSharding]:
    """Data-parallel over the local devices that split both batch sizes evenly (one per core on
    a CPU, see :mod:`dse.train.devices`): batches split on axis 0, state replicated."""
    devices = jax.local_devices()
    return data_parallel_shardings(devices[:data_parallel_count(len(devices), cfg.batch_size, cfg.eval_batch_size)])


def compile_train_step(optim: OptimConfig, state: TrainState, batch, rng: jax.Array):
    """:func:`~dse.train.step.train_step` jitted for ``optim`` and compiled for these shapes and
    shardings (``batch`` may be shapes only), the state donated: what every training loop runs."""
    step = partial(train_step, schedule_kind=optim.schedule, label_smoothing=optim.label_smoothing)
    return jax.jit(step, donate_argnums=0).lower(state, batch, rng).compile()


def _batch_spec(splits: Splits, batch_size: int, sharding: NamedSharding) -> dict[str, jax.ShapeDtypeStruct]:
    shape = (batch_size, *splits.train.images.shape[1:])
    return {
        "image": jax.ShapeDtypeStruct(shape, jnp.float32, sharding=sharding),
        "label": jax.ShapeDtypeStruct((batch_size,), jnp.int32, sharding=sharding),
        "mask": jax.ShapeDtypeStruct((batch_size,), jnp.float32, sharding=sharding),
    }


def _evaluate(eval_fn, state: TrainState, split, cfg: TrainConfig, splits: Splits, data_sharding) -> dict[str, float]:
    totals = None
    for batch in batches(split, batch_size=cfg.eval_batch_size, mean=splits.mean, std=splits.std, train=False,
                         seed=cfg.seed, epoch=0, augment=cfg.data.augment, prefetch=cfg.data.prefetch):
        sums = eval_fn(state, jax.device_put(batch, data_sharding))
        totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
    totals = jax.device_get(totals)
    count = float(totals["count"])
    return {"loss": float(totals["loss"]) / count, "top1": float(totals["top1"]) / count, "top5": float(totals["top5"]) / count}


def _read_history(path: Path, upto_epoch: int) -> list[dict]:
    """Epoch records already written, cut back to the checkpoint we resume from."""
    if not path.exists():
        return []
    records = []
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except ValueError:
            raise ConfigError(f"{path}: line {number} is not JSON; the run's per-epoch log is damaged") from None
    return [r for r in records if r["epoch"] <= upto_epoch]


def _write_history(path: Path, records: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def train_and_evaluate(cfg: TrainConfig, workdir: str | Path, *, hooks: Hooks | None = None,
                       splits: Splits | None = None) -> RunResult:
    """Train ``cfg`` in ``workdir`` and return its results (also written to ``results.json``).

    Args:
        cfg: the run's config; the model's input shape and class count come from the data.
        workdir: run directory (:class:`~dse.contract.RunLayout`); an existing checkpoint there is
            resumed, and refused with a one-line ConfigError if it was made with another training config.
        hooks: progress observers; an exception from ``on_epoch`` stops the run and propagates.
        splits: pre-loaded data (sweep workers load a dataset once for many trials).

    Returns:
        ``status`` ("completed" or "diverged"), final val/test top-1, top-5 and loss,
        params / size / MACs, wall-time split, images per second, cache hits, history.
    """
    hooks = hooks or Hooks()
    layout = RunLayout(Path(workdir))
    layout.root.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    compile_cache.enable(cfg.compilation_cache_dir)
    cache_before = compile_cache.counts()
    splits = splits or load_splits(cfg.data)
    cfg = resolve_config(cfg, splits)
    check_resumable(cfg, layout)
    layout.config.write_text(cfg.model_dump_json(indent=2))
    spec = expand(cfg.model)
    summary = summarize(spec)
    data_sharding, replicated = _mesh_shardings(cfg)

    model = build_model(spec)
    steps = steps_per_epoch(len(splits.train.labels), cfg.batch_size)
    steps = min(steps, cfg.max_steps_per_epoch or steps)
    if steps < 1:
        raise ConfigError(f"batch_size={cfg.batch_size}: larger than the {len(splits.train.labels)} training images")
    rng = jax.random.key(cfg.seed)
    tx = make_optimizer(cfg.optim)
    state = create_state(model.apply, init_variables(model, rng), tx, schedule_arrays(cfg.optim, steps, cfg.epochs))
    state = jax.device_put(state, replicated)

    timer = _Timer()
    t0 = time.perf_counter()
    train_fn = compile_train_step(cfg.optim, state, _batch_spec(splits, cfg.batch_size, data_sharding), rng)
    eval_fn = jax.jit(eval_step).lower(state, _batch_spec(splits, cfg.eval_batch_size, data_sharding)).compile()
    timer.add("compile_s", t0)

    checkpoints = EpochCheckpoints(layout.checkpoints) if cfg.checkpoint else None
    if checkpoints:
        layout.checkpoint_config.write_text(cfg.model_dump_json(indent=2))
    start_epoch = (checkpoints.latest_epoch() or 0) if checkpoints else 0
    if start_epoch:
        state = checkpoints.restore(start_epoch, state)
    history = _read_history(layout.metrics, start_epoch)
    if hooks.on_start:
        hooks.on_start({"epochs": cfg.epochs, "steps_per_epoch": steps, "start_epoch": start_epoch,
                        "history": [dict(r) for r in history]})

    status, diverged_epoch = TrialStatus.COMPLETED, None
    try:
        for epoch in range(start_epoch + 1, cfg.epochs + 1):
            state, record = _train_epoch(cfg, epoch, state, train_fn, rng, splits, steps, data_sharding, timer, hooks)
            if not math.isfinite(record["train_loss"]):
                status, diverged_epoch = TrialStatus.DIVERGED, epoch
                history.append(record)
                _write_history(layout.metrics, history)
                break
            t0 = time.perf_counter()
            val = _evaluate(eval_fn, state, splits.val, cfg, splits, data_sharding)
            timer.add("eval_s", t0)
            record.update({f"val_{k}": v for k, v in val.items()})
            history.append(record)
            _write_history(layout.metrics, history)
            if checkpoints:
                checkpoints.save(epoch, state)
            if hooks.on_epoch:
                hooks.on_epoch(record)
    finally:
        if checkpoints:
            checkpoints.close()

    test = {}
    if status is TrialStatus.COMPLETED:
        t0 = time.perf_counter()
        test = _evaluate(eval_fn, state, splits.test, cfg, splits, data_sharding)
        timer.add("eval_s", t0)
    latency = measure_run_latency(cfg, state, splits) if cfg.measure_latency and status is TrialStatus.COMPLETED else {}
    compressed = {}
    if cfg.compress is not None and status is TrialStatus.COMPLETED:
        from dse.compress.pipeline import compress_run

        report = compress_run(layout.root, cfg.compress, splits=splits)
        compressed = {k: report[k] for k in names(Source.COMPRESS)}
    cache_after = compile_cache.counts()
    images = sum(r["images"] for r in history if r["epoch"] > start_epoch)
    results: RunResult = {
        "status": str(status),
        "diverged_epoch": diverged_epoch,
        "epochs_completed": len([r for r in history if math.isfinite(r["train_loss"])]),
        "resumed_from_epoch": start_epoch,
        **({k: v for k, v in history[-1].items() if k.startswith("val_")} if history else {}),
        **{f"test_{k}": v for k, v in test.items()},
        **latency,
        **summary.static_metrics(),
        "model_size_bytes": summary.size_bytes(32),
        **timer.totals,  # this invocation; a resumed run's earlier epochs are in the next line
        "train_s_all_sessions": sum(r.get("epoch_train_s", 0.0) for r in history),
        "total_s": time.perf_counter() - started,
        "images_per_s": images / timer.totals["train_s"] if timer.totals["train_s"] else None,
        "cache_hits": cache_after["hits"] - cache_before["hits"],
        "cache_misses": cache_after["misses"] - cache_before["misses"],
        "devices": data_sharding.mesh.size,
        "platform": jax.default_backend(),
        "dse_version": dse.__version__,
        "config_digest": config_digest(cfg),
        **compressed,
        "history": history,
    }
    layout.results.write_text(json.dumps(results, indent=2))
    return results


def measure_run_latency(cfg: TrainConfig, state: TrainState, splits: Splits) -> dict[str, float]:
    """The latency metrics of a trained state (``measure_latency``): its BatchNorm-folded network in
    ONNX Runtime (batch 1 and 64, one thread) and jitted JAX (batch 1); see :mod:`dse.deploy.latency`."""
    from dse.deploy.inference_model import from_variables
    from dse.deploy.latency import run_latency_metrics

    model = from_variables(cfg.model, jax.device_get(state.params), jax.device_get(state.batch_stats), splits.mean, splits.std)
    return run_latency_metrics(model)


def _train_epoch(cfg: TrainConfig, epoch: int, state: TrainState, train_fn, rng, splits: Splits, steps: int,
                 data_sharding, timer: _Timer, hooks: Hooks) -> tuple[TrainState, EpochRecord]:
    """One pass over the training split; metrics stay on the device until the epoch ends."""
    t0 = time.perf_counter()
    sums, seen = None, 0
    stream = batches(splits.train, batch_size=cfg.batch_size, mean=splits.mean, std=splits.std, train=True,
                     seed=cfg.seed, epoch=epoch, augment=cfg.data.augment, prefetch=cfg.data.prefetch)
    for i, batch in enumerate(stream, start=1):
        state, metrics = train_fn(state, jax.device_put(batch, data_sharding), rng)
        sums = metrics if sums is None else jax.tree.map(jnp.add, sums, metrics)
        seen += cfg.batch_size
        if hooks.on_step and (i % hooks.log_every == 0 or i == steps):
            loss = float(metrics["loss"])  # a host sync, only every log_every steps
            hooks.on_step({"epoch": epoch, "step": i, "loss": loss, "images_per_s": seen / (time.perf_counter() - t0)})
        if i >= steps:
            break
    sums = jax.device_get(sums)
    timer.add("train_s", t0)
    return state, {
        "epoch": epoch,
        "train_loss": float(sums["loss"]) / steps,
        "train_top1": float(sums["accuracy"]) / steps,
        "learning_rate": float(sums["learning_rate"]) / steps,
        "images": seen,
        "epoch_train_s": time.perf_counter() - t0,
    }

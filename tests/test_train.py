"""The trainer on real Fashion-MNIST images, kept to a few seconds per test."""

import json
import os
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import requires_fashion_mnist, run_dse, run_python, tiny_train_dict

from dse.arch import build_model, expand, init_variables
from dse.errors import ConfigError
from dse.train import Hooks, OptimConfig, TrainConfig, train_and_evaluate
from dse.train.devices import data_parallel_count
from dse.train.optim import OPTIMIZERS, SCHEDULES, learning_rate_at, make_optimizer, schedule_arrays
from dse.train.step import create_state, train_step

pytestmark = requires_fashion_mnist


@pytest.mark.slow  # 20 s, most of it compiling; the fast tier trains end to end in test_cli's compress test
def test_loss_falls_on_real_images(tmp_path):
    cfg = TrainConfig.model_validate(tiny_train_dict(
        epochs=3, batch_size=32, model={"base_e": 32, "incr_e": 32}, optim={"name": "adam", "learning_rate": 3e-3}))
    results = train_and_evaluate(cfg, tmp_path)
    losses = [r["train_loss"] for r in results["history"]]
    assert results["status"] == "completed" and results["epochs_completed"] == 3
    assert all(b < a for a, b in zip(losses, losses[1:], strict=False)) and losses[-1] < losses[0] - 0.2, losses
    assert results["test_top1"] > 0.3  # 10 classes: chance is 0.1
    written = json.loads((tmp_path / "results.json").read_text())
    assert written["params"] == results["params"] > 0 and written["macs"] > 0
    assert {"compile_s", "train_s", "eval_s", "images_per_s"} <= written.keys()
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 3
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model"]["input_shape"] == [28, 28, 1] and config["model"]["num_classes"] == 10


class _Interrupt(Exception):
    pass


def _stop_after(epoch):
    def on_epoch(record):
        if record["epoch"] == epoch:
            raise _Interrupt

    return Hooks(on_epoch=on_epoch)


@pytest.mark.slow
def test_interrupted_run_resumes_to_the_uninterrupted_result(tmp_path):
    augment = {"horizontal_flip": True, "random_crop_padding": 2}
    cfg = TrainConfig.model_validate(tiny_train_dict(epochs=3, model={"dropout": 0.5}, data={"augment": augment}))
    straight = train_and_evaluate(cfg, tmp_path / "straight")
    with pytest.raises(_Interrupt):
        train_and_evaluate(cfg, tmp_path / "resumed", hooks=_stop_after(2))
    # The checkpoints hold the old schedule and optimizer: resuming them under another
    # training config is refused, naming the keys, and the run's files stay as they were.
    written = (tmp_path / "resumed" / "config.json").read_text()
    changed = cfg.model_copy(update={"epochs": 4, "optim": cfg.optim.model_copy(update={"learning_rate": 0.1})})
    with pytest.raises(ConfigError) as err:
        train_and_evaluate(changed, tmp_path / "resumed")
    assert "changed: epochs 3 -> 4; optim.learning_rate 0.05 -> 0.1" in str(err.value) and "\n" not in str(err.value)
    assert (tmp_path / "resumed" / "config.json").read_text() == written
    # What only changes the report (here: a latency measurement) may change on a resume.
    resumed = train_and_evaluate(cfg.model_copy(update={"measure_latency": True}), tmp_path / "resumed")
    assert resumed["latency_ms"] > 0 and resumed["config_digest"] == straight["config_digest"]
    assert resumed["resumed_from_epoch"] == 2
    assert resumed["train_s_all_sessions"] > resumed["train_s"]  # the epochs before the stop count too
    assert [r["train_loss"] for r in resumed["history"]] == [r["train_loss"] for r in straight["history"]]
    for key in ("test_top1", "test_top5", "test_loss", "val_top1"):
        assert resumed[key] == straight[key], key


@pytest.mark.slow
def test_divergence_stops_with_status_and_epoch(tmp_path):
    # Adam at LR 1e6 overflows float32 in the first epoch (SGD would only kill the ReLUs).
    cfg = TrainConfig.model_validate(tiny_train_dict(optim={"name": "adam", "learning_rate": 1e6}))
    results = train_and_evaluate(cfg, tmp_path)
    assert results["status"] == "diverged" and results["diverged_epoch"] == 1
    assert "test_top1" not in results


def _lowered_step_text(optim: OptimConfig, epochs: int) -> str:
    spec = expand(TrainConfig.model_validate(tiny_train_dict()).model.model_copy(update={"input_shape": (28, 28, 1)}))
    model = build_model(spec)
    tx = make_optimizer(optim)
    state = create_state(model.apply, init_variables(model, jax.random.key(0)), tx, schedule_arrays(optim, 10, epochs))
    batch = {"image": jnp.zeros((8, 28, 28, 1)), "label": jnp.zeros((8,), jnp.int32)}
    step = partial(train_step, schedule_kind=optim.schedule)
    return jax.jit(step).lower(state, batch, jax.random.key(0)).as_text()


@pytest.mark.slow
def test_trial_hyperparameters_are_data_so_the_compiled_step_is_shared():
    a = _lowered_step_text(OptimConfig(learning_rate=0.04, weight_decay=2e-4, momentum=0.9), epochs=3)
    b = _lowered_step_text(OptimConfig(learning_rate=0.3, weight_decay=1e-3, momentum=0.8, warmup_epochs=1), epochs=7)
    assert a == b
    c = _lowered_step_text(OptimConfig(schedule="cosine"), epochs=3)
    assert a != c  # the schedule's kind is the one static choice


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("schedule", sorted(SCHEDULES))
def test_every_optimizer_and_schedule(name, schedule):
    cfg = OptimConfig(name=name, schedule=schedule, learning_rate=0.1, warmup_epochs=1)
    arrays = schedule_arrays(cfg, steps_per_epoch=10, epochs=5)
    lrs = np.array([float(learning_rate_at(jnp.asarray(s), arrays, schedule)) for s in range(50)])
    assert lrs[0] == pytest.approx(0.01) and lrs[9] == pytest.approx(0.1)  # linear warm-up over epoch 1
    assert lrs[10] == pytest.approx(0.1)
    if schedule != "constant":
        assert lrs[-1] < 0.01 and np.all(np.diff(lrs[10:]) <= 1e-9)
    params = {"w": jnp.ones((3,))}
    tx = make_optimizer(cfg)
    updates, _ = tx.update({"w": jnp.ones((3,))}, tx.init(params), params)
    assert bool(jnp.all(jnp.isfinite(updates["w"])))


# One step on one device and the same step with the batch split over two CPU devices (the
# trainer's default on a 2-core machine): BatchNorm must still normalise over the whole batch,
# so parameters, statistics and metrics agree to float32 rounding, not merely roughly.
SPLIT_STEP_SCRIPT = """
import json, sys
from functools import partial
import jax, jax.numpy as jnp, numpy as np
# float64 throughout: in float32 this tiny network's BatchNorm gradients amplify the rounding of
# summing in another order to 2e-5..3e-3 depending on the CPU, which no fixed bound separates
# from a real error; in float64 the split must agree to rounding (~1e-14)
jax.config.update("jax_enable_x64", True)
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from dse.arch import ArchConfig, build_model, expand, init_variables
from dse.train.optim import make_optimizer, schedule_arrays
from dse.train import OptimConfig
from dse.train.step import create_state, train_step
spec = expand(ArchConfig.preset("squeezenet_small", input_shape=(16, 16, 1), base_e=16, incr_e=16, batch_norm=True,
                                   dropout=0.0))  # no dropout: the half-batch step would draw other masks
model, optim = build_model(spec), OptimConfig(learning_rate=0.01)
rng = jax.random.key(3)
images = jax.random.normal(rng, (16, 16, 16, 1), jnp.float64) * 3 + 1
batch = {"image": images, "label": jax.random.randint(rng, (16,), 0, 10)}
start = jax.tree.map(lambda x: np.asarray(x, np.float64), jax.device_get(init_variables(model, jax.random.key(0))))
step = jax.jit(partial(train_step, schedule_kind=optim.schedule))
def run(devices, batch):
    mesh = Mesh(np.array(devices), ("data",))
    state = create_state(model.apply, start, make_optimizer(optim), schedule_arrays(optim, 10, 1))
    state = jax.device_put(state, NamedSharding(mesh, PartitionSpec()))
    state, metrics = step(state, jax.device_put(batch, NamedSharding(mesh, PartitionSpec("data"))), rng)
    return jax.device_get(state.params), jax.device_get(state.batch_stats), float(metrics["loss"])
def flat(tree, minus=None):
    leaves = jax.tree.leaves(tree) if minus is None else jax.tree.leaves(jax.tree.map(np.subtract, tree, minus))
    return np.concatenate([np.ravel(np.asarray(x, np.float64)) for x in leaves])
def rel(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(a))
one, two = run(jax.devices()[:1], batch), run(jax.devices()[:2], batch)
# for scale: the step on the first half (what BatchNorm over each device's half alone would see)
half = run(jax.devices()[:1], jax.tree.map(lambda x: x[:8], batch))
runs = {"two": two, "half": half}
report = {"devices": jax.device_count(), "loss": [one[2], two[2]]}
for name, r in runs.items():
    report[f"update_{name}"] = rel(flat(one[0], start["params"]), flat(r[0], start["params"]))
    report[f"stats_{name}"] = rel(flat(one[1]), flat(r[1]))
print(json.dumps(report))
"""


@pytest.mark.slow  # 50 s: a subprocess, since the device count is fixed when JAX starts
def test_a_step_split_over_two_cpu_devices_computes_the_single_device_step():
    out = run_python("-c", SPLIT_STEP_SCRIPT, env={"JAX_NUM_CPU_DEVICES": "2"})
    assert out.returncode == 0, out.stderr[-2000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["devices"] == 2 and abs(report["loss"][0] - report["loss"][1]) < 1e-10, report
    # in float64 the split is the single-device step up to rounding (measured 3e-14), while
    # BatchNorm over half the batch moves the update by ~1.5x and the running stats by ~1e-2
    assert report["stats_two"] < 1e-10 and report["update_two"] < 1e-10, report
    assert report["stats_half"] > 1e-3 and report["update_half"] > 0.1, report


DEVICES_SCRIPT = """
import jax
from dse.train.devices import one_cpu_device_per_core
one_cpu_device_per_core()  # what every dse command that trains calls before JAX starts
print(jax.device_count())
"""


def _device_count_in_a_process(cores: set[int] | None = None, env: dict | None = None) -> int:
    pin = partial(os.sched_setaffinity, 0, cores) if cores else None
    out = run_python("-c", DEVICES_SCRIPT, env=env, timeout=120, preexec_fn=pin)
    assert out.returncode == 0, out.stderr[-2000:]
    return int(out.stdout.split()[-1])


@pytest.mark.slow  # a CLI training and an export, 40 s
def test_dse_train_splits_each_batch_over_one_cpu_device_per_core(tmp_path):
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        pytest.skip("one core: nothing to split")
    config = tmp_path / "run.yaml"
    config.write_text(json.dumps(tiny_train_dict(epochs=1, max_steps_per_epoch=2)))
    out = run_dse("train", config, "--workdir", tmp_path / "all")
    assert out.returncode == 0, out.stderr[-2000:]
    trained = json.loads((tmp_path / "all" / "results.json").read_text())
    assert trained["devices"] == data_parallel_count(len(cores), 64, 128)  # tiny_train_dict's batches
    # its checkpoint, saved from two devices, restores in a process with one (export, compress)
    exported = run_dse("export", tmp_path / "all", "--format", "onnx", "--output", tmp_path / "all.onnx",
                       env={"JAX_NUM_CPU_DEVICES": "1"})
    assert exported.returncode == 0 and (tmp_path / "all.onnx").stat().st_size > 0, exported.stderr[-2000:]
    # the count itself, without training again: a sweep worker pinned to one core gets one
    # device, and a count the user chose wins
    assert _device_count_in_a_process() == len(cores)
    assert _device_count_in_a_process({cores[0]}) == 1
    assert _device_count_in_a_process(env={"JAX_NUM_CPU_DEVICES": "1"}) == 1


def test_dse_train_rejects_unknown_keys_in_one_line(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("model:\n  sr: 0.25\noptim:\n  lr: 0.1\n")
    out = run_dse("train", config, timeout=120)
    assert out.returncode == 2
    assert out.stderr.strip() == f"dse: error: {config}: optim.lr: unknown key"


@pytest.mark.slow
def test_a_run_with_compress_reports_its_file_and_may_recompress_without_retraining(tmp_path):
    compress = {"sparsity": 0.5, "bits": 4, "prune_finetune_epochs": 1, "quant_finetune_epochs": 1, "max_steps_per_epoch": 2}
    cfg = TrainConfig.model_validate(tiny_train_dict(epochs=1, compress=compress))
    first = train_and_evaluate(cfg, tmp_path)
    file = tmp_path / "compressed" / "model.dsez"
    # A 13k-parameter net: the header and codebooks weigh, so the ratio is modest.
    assert first["compressed_bytes"] == file.stat().st_size and first["compression_ratio"] > 3
    assert 0.0 < first["test_top1_compressed"] <= 1.0
    assert json.loads((tmp_path / "results.json").read_text())["compressed_bytes"] == first["compressed_bytes"]
    # Compression settings are not training: the same run compresses again at 8 bits, training
    # nothing (and fine-tuning nothing, which the first compression covered)
    eight_bits = cfg.compress.model_copy(update={"bits": 8, "prune_finetune_epochs": 0, "quant_finetune_epochs": 0})
    again = train_and_evaluate(cfg.model_copy(update={"compress": eight_bits}), tmp_path)
    assert again["resumed_from_epoch"] == 1 and again["train_s"] == 0.0
    assert again["compressed_bytes"] > first["compressed_bytes"]


def test_a_finished_run_keeps_only_its_last_checkpoint(tmp_path):
    from dse.sweep.worker import keep_final_checkpoint
    from dse.train.checkpoint import EpochCheckpoints

    checkpoints = EpochCheckpoints(tmp_path / "checkpoints")
    for epoch in (1, 2, 3):
        checkpoints.save(epoch, {"w": jnp.full((3,), float(epoch))})
    checkpoints.close()
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit()) == ["2", "3"]  # orbax keeps two
    keep_final_checkpoint(tmp_path / "checkpoints")
    keep_final_checkpoint(tmp_path / "absent")  # a run that never checkpointed: nothing to do
    again = EpochCheckpoints(tmp_path / "checkpoints")
    assert again.latest_epoch() == 3 and float(again.restore(3, {"w": jnp.zeros((3,))})["w"][0]) == 3.0
    again.close()
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit()) == ["3"]

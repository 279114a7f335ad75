"""Deep Compression: exact properties of each step, the .dsez file, and one tiny real run."""

import json
import math
import os
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import FASHION_MNIST, random_variables, requires_fashion_mnist, tiny_train_dict

from dse.arch import ArchConfig, build_model, expand, init_variables
from dse.arch.model import ConvBlock
from dse.compress import container
from dse.compress.coding import (
    FILLER,
    gap_symbols,
    huffman_decode,
    huffman_encode,
    mask_from_gaps,
    table_from_bytes,
    table_to_bytes,
)
from dse.compress.config import CompressConfig
from dse.compress.finetune import centroid_step, make_centroid_optimizer, masked_train_step
from dse.compress.fold import fold_batch_norm, folded_model_config
from dse.compress.pipeline import Step, compress_run, evaluate_file
from dse.compress.prune import apply_masks, flat, is_kernel, magnitude_masks
from dse.compress.quantize import (
    dequantize,
    distinct_kept_values,
    join_trainable,
    kmeans_1d,
    quantize_params,
    split_trainable,
)
from dse.contract import CompressedLayout
from dse.data.formats import load_idx
from dse.errors import ConfigError, DataError
from dse.train import TrainConfig, train_and_evaluate
from dse.train.optim import make_optimizer, schedule_arrays
from dse.train.step import create_state

REPORT_FILE = CompressedLayout(Path(".")).report.name
TINY = {"base_e": 16, "incr_e": 16, "input_shape": (28, 28, 1), "num_classes": 10}


def _random_params(seed=0) -> dict:
    """A params tree shaped like a small no-BN network, layers at different weight scales."""
    rng = np.random.default_rng(seed)
    return {
        "conv1": {"conv": {"kernel": rng.normal(0, 1.0, (3, 3, 1, 8)).astype(np.float32), "bias": np.ones(8, np.float32)}},
        "fire2": {"squeeze": {"conv": {"kernel": rng.normal(0, 0.1, (1, 1, 8, 300)).astype(np.float32),
                                       "bias": np.zeros(300, np.float32)}}},
        "conv10": {"kernel": rng.normal(0, 0.01, (1, 1, 300, 10)).astype(np.float32), "bias": np.zeros(10, np.float32)},
    }


def _kernels(tree) -> dict:
    return {path: np.asarray(leaf) for path, leaf in flat(tree).items() if is_kernel(path)}


@pytest.fixture(scope="module")
def images():
    """32 real Fashion-MNIST test images, normalised, and their labels."""
    if not FASHION_MNIST.exists():
        pytest.skip("Fashion-MNIST not installed")
    ds = load_idx(FASHION_MNIST.parent / "t10k-images-idx3-ubyte.gz", FASHION_MNIST.parent / "t10k-labels-idx1-ubyte.gz")
    x = (ds.images[:32].astype(np.float32) / 255.0 - 0.286) / 0.353
    return jnp.asarray(x), jnp.asarray(ds.labels[:32].astype(np.int32))


@pytest.fixture(scope="module")
def bn_model():
    """A tiny BatchNorm SqueezeNet with random weights, BN parameters and statistics far from the identity."""
    cfg = ArchConfig.preset("squeezenet_small", **TINY, batch_norm=True)
    return build_model(expand(cfg)), random_variables(cfg, seed=1)


# --- pruning -------------------------------------------------------------------------------


@pytest.mark.parametrize("sparsity", [0.0, 0.33, 0.5, 0.9])
def test_per_layer_pruning_is_exact_and_keeps_the_largest(sparsity):
    params = _random_params()
    pruned = apply_masks(params, magnitude_masks(params, sparsity, "per_layer"))
    for path, w in _kernels(pruned).items():
        original = np.abs(_kernels(params)[path])
        assert np.count_nonzero(w == 0) == math.floor(sparsity * w.size + 0.5), path
        if sparsity:
            assert original[w == 0].max() <= original[w != 0].min(), path
    assert np.array_equal(pruned["fire2"]["squeeze"]["conv"]["bias"], params["fire2"]["squeeze"]["conv"]["bias"])
    assert np.array_equal(pruned["conv1"]["conv"]["bias"], np.ones(8))  # biases are never pruned


def test_global_pruning_uses_one_threshold_across_layers():
    params = _random_params()
    masks = magnitude_masks(params, 0.5, "global")
    kernels, kept = _kernels(params), _kernels(masks)
    total = sum(k.size for k in kernels.values())
    assert sum(np.count_nonzero(~m) for m in kept.values()) == math.floor(0.5 * total + 0.5)
    largest_pruned = max(np.abs(kernels[p])[~kept[p]].max(initial=0) for p in kernels)
    smallest_kept = min(np.abs(kernels[p])[kept[p]].min(initial=np.inf) for p in kernels)
    assert largest_pruned <= smallest_kept
    # The layers differ 100x in scale: globally, conv10 (std 0.01) loses most weights, conv1 (std 1) none.
    assert kept["conv10/kernel"].mean() < 0.3 and kept["fire2/squeeze/conv/kernel"].mean() > 0.8
    assert kept["conv1/conv/kernel"].mean() > 0.95
    per_layer = _kernels(magnitude_masks(params, 0.5, "per_layer"))
    assert all(abs(m.mean() - 0.5) <= 0.5 / m.size + 1e-12 for m in per_layer.values())


@pytest.mark.parametrize("bad", [-0.1, 1.0])
def test_pruning_rejects_sparsity_out_of_range(bad):
    with pytest.raises(ValueError, match="sparsity"):
        magnitude_masks(_random_params(), bad)


# --- weight sharing ------------------------------------------------------------------------


def test_kmeans_1d_starts_linear_and_converges_to_cluster_means():
    values = np.array([-1.0, -0.9, -1.1, 0.0, 0.1, 2.0, 2.2])
    codebook, labels = kmeans_1d(values, k=3, iterations=0)
    assert codebook.tolist() == pytest.approx([-1.1, 0.55, 2.2])  # linear between min and max
    codebook, labels = kmeans_1d(values, k=3, iterations=20)
    assert codebook.tolist() == pytest.approx([-1.0, 0.05, 2.1])
    assert labels.tolist() == [0, 0, 0, 1, 1, 2, 2]
    assert kmeans_1d(np.zeros(0), k=4, iterations=5)[1].size == 0  # a fully pruned layer


@pytest.mark.parametrize("bits", range(2, 9))
def test_quantized_layers_have_at_most_2_to_the_bits_values_and_keep_zeros(bits):
    params = _random_params()
    masks = magnitude_masks(params, 0.33)
    q = quantize_params(apply_masks(params, masks), masks, bits_conv=bits, bits_classifier=2, iterations=10)
    shared = dequantize(q)
    for path, w in _kernels(shared).items():
        mask = _kernels(masks)[path]
        layer_bits = 2 if path.startswith("conv10") else bits
        assert q.codebooks[path].shape == (2**layer_bits,)
        assert np.all(w[~mask] == 0) and np.all(q.indices[path][~mask] == 0)
        assert distinct_kept_values(q)[path] <= 2**layer_bits
        # Every kept weight sits on its nearest centroid.
        original = _kernels(params)[path][mask]
        nearest = np.abs(original[:, None] - q.codebooks[path][None, :]).min(axis=1)
        assert np.allclose(np.abs(original - w[mask]), nearest, atol=1e-7)
    assert np.array_equal(shared["fire2"]["squeeze"]["conv"]["bias"], params["fire2"]["squeeze"]["conv"]["bias"])


def test_dequantize_gradient_sums_over_each_cluster():
    q = quantize_params({"k": {"kernel": np.array([1.0, 1.1, 5.0, 0.0], np.float32)}}, bits_conv=2, iterations=5)
    trainable, fixed = split_trainable(q)
    grad = jax.grad(lambda t: jnp.sum(dequantize(join_trainable(t, fixed))["k"]["kernel"] * jnp.arange(1.0, 5.0)))(trainable)
    labels = q.indices["k/kernel"][:3]
    expected = np.zeros(4)
    np.add.at(expected, labels, [1.0, 2.0, 3.0])  # the pruned 4th weight contributes nothing
    assert np.allclose(grad["codebooks"]["k/kernel"], expected)


# --- Huffman coding ------------------------------------------------------------------------

_RNG = np.random.default_rng(0)
STREAMS = {
    "empty": np.zeros(0, np.uint8),
    "one symbol once": np.array([7], np.uint8),
    "one symbol many": np.full(1000, 3, np.uint8),
    "two symbols": np.array([0, 255, 255, 0, 255], np.uint8),
    "skewed, all 256": np.minimum(_RNG.geometric(0.05, 20000) - 1, 255).astype(np.uint8),
}


@pytest.mark.parametrize("name", STREAMS)
def test_huffman_round_trips_exactly(name):
    symbols = STREAMS[name]
    stream = huffman_encode(symbols)
    assert np.array_equal(huffman_decode(stream), symbols)
    table_bytes = table_to_bytes(stream.table)
    table, end = table_from_bytes(table_bytes + b"\x99", 0)
    assert table == stream.table and end == len(table_bytes)
    assert len(stream.data) == math.ceil(stream.n_bits / 8)
    if name == "skewed, all 256":  # far below 8 bits per symbol for a skewed source
        assert stream.n_bits < 6 * symbols.size and len(table_bytes) < 1 + 2 * 32 + 256


MASKS = {
    "all pruned": np.zeros(50, bool),
    "none pruned": np.ones(50, bool),
    "empty kernel": np.zeros(0, bool),
    "run of exactly 255": np.r_[np.zeros(255, bool), True],
    "runs needing fillers": np.r_[True, np.zeros(600, bool), True, np.zeros(254, bool), True, np.zeros(10, bool)],
    "random": _RNG.random(5000) < 0.3,
}


@pytest.mark.parametrize("name", MASKS)
def test_gap_coding_round_trips_exactly(name):
    mask = MASKS[name]
    symbols = gap_symbols(mask)
    assert np.count_nonzero(symbols != FILLER) == mask.sum()
    assert np.array_equal(mask_from_gaps(symbols, mask.size), mask)
    assert np.array_equal(mask_from_gaps(huffman_decode(huffman_encode(symbols)), mask.size), mask)


def test_long_zero_runs_use_fillers():
    assert gap_symbols(np.r_[np.zeros(600, bool), True]).tolist() == [FILLER, FILLER, 90]  # 600 = 255 + 255 + 90


# --- the .dsez file ------------------------------------------------------------------------


def _quantized(seed=0, sparsity=0.5):
    params = _random_params(seed)
    masks = magnitude_masks(params, sparsity)
    return quantize_params(apply_masks(params, masks), masks, bits_conv=5, bits_classifier=3, iterations=10)


def test_file_round_trips_bit_exactly(tmp_path):
    q = _quantized()
    path = tmp_path / "m.dsez"
    size = container.write(path, q, config={"model": {"base_e": 16}}, metadata={"mean": [0.25]})
    assert size == os.path.getsize(path)
    params, header = container.read(path)
    written = dequantize(q)
    assert jax.tree.structure(params) == jax.tree.structure(written)
    assert all(a.dtype == np.float32 and np.array_equal(a, b) for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(written),
                                                                               strict=True))
    assert header["config"] == {"model": {"base_e": 16}} and header["metadata"] == {"mean": [0.25]}
    back, _ = container.read_quantized(path)
    for field in ("codebooks", "indices", "masks", "floats"):
        for key, value in getattr(q, field).items():
            assert np.array_equal(getattr(back, field)[key], value), (field, key)
    assert [t["name"] for t in header["tensors"]] == sorted([*q.codebooks, *q.floats])
    # Far below float32 (50% pruned, 5- and 3-bit indices), even counting the header on a 6k-weight model.
    assert size < 4 * sum(np.size(leaf) for leaf in jax.tree.leaves(written)) / 3


def test_edge_layers_round_trip(tmp_path):
    params = {"dense": {"kernel": np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4)},
              "gone": {"kernel": np.zeros((2, 2), np.float32)},
              "tiny": {"kernel": np.array([[0.5]], np.float32), "bias": np.zeros(0, np.float32)}}
    q = quantize_params(params, bits_conv=2)
    path = tmp_path / "edge.dsez"
    container.write(path, q, config={})
    back, _ = container.read(path)
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(dequantize(q)), strict=True))
    assert np.all(back["gone"]["kernel"] == 0) and back["tiny"]["kernel"][0, 0] == 0.5


def _damage(data: bytes, how: str) -> bytes:
    if how == "truncated":
        return data[:-7]
    if how == "cut inside the preamble":
        return data[:10]
    if how == "corrupted":
        i = len(data) // 2
        return data[:i] + bytes([data[i] ^ 0x40]) + data[i + 1:]
    if how == "bad magic":
        return b"PK\x03\x04" + data[4:]
    if how == "wrong version":
        return data[:4] + (99).to_bytes(2, "little") + data[6:]
    if how == "trailing bytes":
        return data + b"\0"
    raise AssertionError(how)


@pytest.mark.parametrize(("how", "message"), [
    ("truncated", "truncated"), ("cut inside the preamble", "truncated"), ("corrupted", "checksum mismatch"),
    ("bad magic", "not a .dsez file"), ("wrong version", "format version 99"), ("trailing bytes", "unexpected bytes"),
])
def test_damaged_files_are_one_line_data_errors(tmp_path, how, message):
    path = tmp_path / "m.dsez"
    container.write(path, _quantized(), config={})
    path.write_bytes(_damage(path.read_bytes(), how))
    with pytest.raises(DataError, match=message) as err:
        container.read(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_missing_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="cannot read"):
        container.read(tmp_path / "nothing.dsez")


def test_failed_write_leaves_the_old_file(tmp_path):
    path = tmp_path / "m.dsez"
    container.write(path, _quantized(), config={})
    before = path.read_bytes()
    with pytest.raises(TypeError):
        container.write(path, _quantized(seed=1), config={"not json": object()})
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["m.dsez"]


# --- BatchNorm folding and the JAX steps (real images) --------------------------------------


@requires_fashion_mnist
def test_folding_one_conv_block_is_exact(images):
    rng = np.random.default_rng(2)
    block = ConvBlock(8, 3, padding=1, batch_norm=True)
    variables = {"params": {"conv": {"kernel": rng.normal(0, 0.5, (3, 3, 1, 8)).astype(np.float32)},
                            "bn": {"scale": np.r_[-1.5, rng.uniform(0.5, 2, 7)].astype(np.float32),
                                   "bias": rng.normal(0, 0.5, 8).astype(np.float32)}},
                 "batch_stats": {"bn": {"mean": rng.normal(0, 0.5, 8).astype(np.float32),
                                        "var": rng.uniform(0.1, 3, 8).astype(np.float32)}}}
    folded = fold_batch_norm(variables["params"], variables["batch_stats"])
    assert jax.tree.map(np.shape, folded) == {"conv": {"kernel": (3, 3, 1, 8), "bias": (8,)}}
    expected = jax.jit(lambda v, x: block.apply(v, x, train=False))(variables, images[0])
    got = jax.jit(lambda v, x: ConvBlock(8, 3, padding=1).apply(v, x, train=False))({"params": folded}, images[0])
    assert 0.1 < float(jnp.mean(expected > 0)) < 0.9  # the ReLU cuts at a shifted, rescaled, sign-flipped point
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=1e-5)


@requires_fashion_mnist
@pytest.mark.slow
def test_folding_batch_norm_is_exact(bn_model, images):
    model, variables = bn_model
    folded = fold_batch_norm(variables["params"], variables["batch_stats"])
    plain = build_model(expand(folded_model_config(model.spec.config)))
    assert jax.tree.structure(folded) == jax.tree.structure(init_variables(plain, jax.random.key(0))["params"])
    expected = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, images[0])
    got = jax.jit(lambda v, x: plain.apply(v, x, train=False))({"params": folded}, images[0])
    assert float(jnp.std(expected)) > 0.01  # not all dead
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=1e-4)


@pytest.mark.slow
@requires_fashion_mnist
def test_masked_training_keeps_sparsity_exactly(bn_model, images):
    model, variables = bn_model
    masks = magnitude_masks(variables["params"], 0.6, "global")
    params = apply_masks(variables["params"], masks)
    optim = TrainConfig().optim
    tx = make_optimizer(optim)
    state = jax.jit(lambda v, s: create_state(model.apply, v, tx, s))({**variables, "params": params},
                                                                      schedule_arrays(optim, 10, 1))
    step = jax.jit(partial(masked_train_step, schedule_kind="linear"))
    float_masks = jax.tree.map(lambda m: m.astype(np.float32), masks)
    batch = {"image": images[0], "label": images[1]}
    for _ in range(3):
        state, metrics = step(state, batch, jax.random.key(0), float_masks)
    assert np.isfinite(float(metrics["loss"]))
    trained, kept = _kernels(jax.device_get(state.params)), _kernels(masks)
    for path, w in trained.items():
        assert np.all(w[~kept[path]] == 0), path
    assert sum(np.count_nonzero(w == 0) for w in trained.values()) == sum(np.count_nonzero(~m) for m in kept.values())
    assert not np.array_equal(trained["conv1/conv/kernel"], _kernels(params)["conv1/conv/kernel"])  # it did train


@pytest.mark.slow  # compile-bound (17 s); the fast tier checks the centroid gradient itself
@requires_fashion_mnist
def test_centroid_fine_tuning_moves_only_the_shared_values(bn_model, images):
    model, variables = bn_model
    masks = magnitude_masks(variables["params"], 0.5)
    folded = fold_batch_norm(apply_masks(variables["params"], masks), variables["batch_stats"])
    plain = build_model(expand(folded_model_config(model.spec.config)))
    q = quantize_params(folded, masks, bits_conv=3, bits_classifier=2)
    tx = make_centroid_optimizer(1e-2)
    trainable, fixed = split_trainable(q)
    opt_state = jax.jit(tx.init)(trainable)
    step = jax.jit(partial(centroid_step, apply_fn=plain.apply, tx=tx))
    batch = {"image": images[0], "label": images[1]}
    for i in range(3):
        trainable, opt_state, metrics = step(trainable, opt_state, fixed, batch, jax.random.key(i))
    tuned = join_trainable(jax.device_get(trainable), fixed)
    assert np.isfinite(float(metrics["loss"]))
    assert not np.array_equal(tuned.codebooks["conv1/conv/kernel"], q.codebooks["conv1/conv/kernel"])
    counts = distinct_kept_values(tuned)
    assert counts["conv10/kernel"] <= 4 and all(n <= 8 for n in counts.values())
    for path, w in _kernels(dequantize(tuned)).items():
        assert np.all(w[~np.asarray(q.masks[path])] == 0), path


@requires_fashion_mnist
def test_decoded_file_gives_the_quantized_models_logits(bn_model, images, tmp_path):
    model, variables = bn_model
    masks = magnitude_masks(variables["params"], 0.33)
    folded = fold_batch_norm(apply_masks(variables["params"], masks), variables["batch_stats"])
    plain = build_model(expand(folded_model_config(model.spec.config)))
    q = quantize_params(folded, masks, bits_conv=6, bits_classifier=4)
    container.write(tmp_path / "m.dsez", q, config={})
    decoded, _ = container.read(tmp_path / "m.dsez")
    forward = jax.jit(lambda v, x: plain.apply(v, x, train=False))
    assert np.array_equal(forward({"params": decoded}, images[0]), forward({"params": dequantize(q)}, images[0]))


# --- every step, one table: the pruned zeros survive and each step keeps its contract ----------

def _shared(params, stats, masks):
    return quantize_params(fold_batch_norm(params, stats), masks, bits_conv=4)


def _through_file(params, stats, masks, tmp):
    container.write(tmp / "m.dsez", _shared(params, stats, masks), config={})
    return container.read(tmp / "m.dsez")[0]


STEPS = {
    # name: (pruned BN model's (params, batch_stats, masks, tmp dir) -> params, max distinct kept values per kernel)
    "prune": (lambda params, stats, masks, tmp: params, None),
    "fold": (lambda params, stats, masks, tmp: fold_batch_norm(params, stats), None),
    "quantize": (lambda params, stats, masks, tmp: dequantize(_shared(params, stats, masks)), 2**4),
    "huffman": (_through_file, 2**4),
}


@pytest.mark.parametrize("name", STEPS)
def test_every_step_keeps_the_pruned_zeros_and_its_value_budget(bn_model, tmp_path, name):
    _, variables = bn_model
    masks = magnitude_masks(variables["params"], 0.4)
    transform, max_values = STEPS[name]
    out = _kernels(transform(apply_masks(variables["params"], masks), variables["batch_stats"], masks, tmp_path))
    kept = _kernels(masks)
    assert out.keys() == kept.keys()
    for path, w in out.items():
        assert np.array_equal(w != 0, kept[path]), (name, path)  # zeros exactly where pruned, nowhere else
        assert np.count_nonzero(w == 0) == math.floor(0.4 * w.size + 0.5), (name, path)
        if max_values:
            assert np.unique(w[kept[path]]).size <= max_values, (name, path)


# --- the pipeline ---------------------------------------------------------------------------


@pytest.mark.parametrize(("settings", "message"), [
    ({"sparsity": 1.0}, "sparsity"), ({"sparsity": -0.1}, "sparsity"), ({"bits": 9}, "bits"),
    ({"bits_classifier": 1}, "bits_classifier"), ({"bitz": 4}, "unknown key"),
])
def test_bad_settings_are_one_line_config_errors(tmp_path, settings, message):
    with pytest.raises(ConfigError, match=message) as err:
        compress_run(tmp_path, settings)
    assert "\n" not in str(err.value)


def test_bits_default_to_bits_and_override_per_kind():
    cfg = CompressConfig(bits=6, bits_classifier=4)
    assert (cfg.conv_bits, cfg.classifier_bits) == (6, 4)
    assert (CompressConfig().conv_bits, CompressConfig().classifier_bits, CompressConfig().sparsity) == (8, 8, 0.33)


def test_a_folder_that_is_not_a_run_fails_and_overwrites_nothing(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / REPORT_FILE).write_text("old report")
    with pytest.raises(DataError, match="no config.json"):
        compress_run(tmp_path, {}, out_dir=out)
    (tmp_path / "config.json").write_text(TrainConfig.model_validate(tiny_train_dict()).model_dump_json())
    with pytest.raises(DataError, match="no checkpoint"):
        compress_run(tmp_path, {}, out_dir=out)
    assert (out / REPORT_FILE).read_text() == "old report" and os.listdir(out) == [REPORT_FILE]


def test_evaluating_a_file_without_a_model_config_is_a_data_error(tmp_path):
    container.write(tmp_path / "m.dsez", _quantized(), config={"data": {}})
    with pytest.raises(DataError, match="header lacks 'model'"):
        evaluate_file(tmp_path / "m.dsez")


@pytest.fixture(scope="module")
def compressed_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    data = {"train_subset": 128, "val_subset": 64, "test_subset": 64}
    train_and_evaluate(TrainConfig.model_validate(tiny_train_dict(epochs=1, max_steps_per_epoch=2, data=data)), run)
    settings = {"sparsity": 0.5, "bits": 5, "bits_classifier": 3, "max_steps_per_epoch": 2, "centroid_learning_rate": 1e-3}
    return run, compress_run(run, settings)


@requires_fashion_mnist
@pytest.mark.slow
def test_compress_run_reports_every_step_of_a_real_run(compressed_run):
    run, result = compressed_run
    steps = {r["step"]: r for r in result["steps"]}
    assert list(steps) == [str(s) for s in Step]
    path = run / "compressed" / "model.dsez"
    assert result["file"] == str(path)
    assert result["compressed_bytes"] == os.path.getsize(path) == steps[Step.HUFFMAN]["size_bytes"]
    trained_params = json.loads((run / "results.json").read_text())["params"]
    assert result["float32_bytes"] == steps[Step.FLOAT32]["size_bytes"] == 4 * trained_params
    for record in steps.values():
        assert record["ratio"] == result["float32_bytes"] / record["size_bytes"]
    assert result["compression_ratio"] > 2  # 50% sparsity, 5-bit indices, even with a tiny model's tables
    # The file is the model: its accuracy is the quantized model's, exactly (bit-exact weights).
    for key in ("val_top1", "val_top5", "test_top1", "test_top5"):
        assert steps[Step.HUFFMAN][key] == steps[Step.QUANTIZED][key] == result[f"{key}_compressed"]
    assert result["sparsity"] == pytest.approx(0.5, abs=1e-3) and (result["bits_conv"], result["bits_classifier"]) == (5, 3)
    params, header = container.read(path)
    for name, kernel in _kernels(params).items():
        assert np.count_nonzero(kernel == 0) >= math.floor(0.5 * kernel.size + 0.5), name
        assert np.unique(kernel[kernel != 0]).size <= (8 if name.startswith("conv10") else 32), name
    assert header["config"]["model"]["batch_norm"] is False
    assert json.loads((run / "compressed" / REPORT_FILE).read_text()) == json.loads(json.dumps(result))
    evaluated = evaluate_file(path)
    assert (evaluated["test_top1"], evaluated["test_top5"]) == (result["test_top1_compressed"], result["test_top5_compressed"])

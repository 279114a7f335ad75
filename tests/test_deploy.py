"""Deployment: the ONNX graph computes what the Flax model computes, latency timings, estimated energy, CLI errors."""

import json
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import onnx
import pytest
from conftest import FASHION_MNIST, random_variables, requires_fashion_mnist, run_dse, tiny_train_dict

from dse.arch import ArchConfig, build_model, expand, summarize
from dse.arch.energy import HOROWITZ_45NM, estimate_energy
from dse.compress import container
from dse.compress.prune import apply_masks, magnitude_masks
from dse.compress.quantize import quantize_params
from dse.data.formats import load_idx
from dse.deploy.inference_model import from_variables, load_inference_model
from dse.deploy.latency import measure_latency, onnxruntime_session
from dse.deploy.onnx_export import BATCH_DIM, INPUT_NAME, OUTPUT_NAME, build_onnx, export_model

TINY = {"base_e": 16, "incr_e": 16, "input_shape": (28, 28, 1), "num_classes": 10}
MEAN, STD = np.array([0.286], np.float32), np.array([0.353], np.float32)


def dse(*args: str) -> subprocess.CompletedProcess:
    return run_dse(*args)


def dse_in_process(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    """(exit code, stderr) of ``dse ARGS`` run through the real entry point, without a new interpreter's imports."""
    from dse import cli

    monkeypatch.setattr(cli, "_session", cli._Session())
    monkeypatch.setattr(sys, "argv", ["dse", *args])
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    return exit_.value.code, capsys.readouterr().err


@pytest.fixture(scope="module")
def pixels():
    """64 real Fashion-MNIST test images as the exported model takes them: NHWC float32 in [0, 1]."""
    if not FASHION_MNIST.exists():
        pytest.skip("Fashion-MNIST not installed")
    ds = load_idx(FASHION_MNIST.parent / "t10k-images-idx3-ubyte.gz", FASHION_MNIST.parent / "t10k-labels-idx1-ubyte.gz")
    return ds.images[:64].astype(np.float32) / 255.0


def centred_variables(cfg: ArchConfig, pixels: np.ndarray) -> dict:
    """Random variables whose conv10 bias centres each class's logit over ``pixels``: a random ReLU
    network otherwise gives every image the same class, and a test of equal argmax would test little."""
    variables = random_variables(cfg)
    linear_head = cfg.model_copy(update={"head_relu": False})
    variables["params"]["conv10"]["bias"] = np.zeros_like(variables["params"]["conv10"]["bias"])
    variables["params"]["conv10"]["bias"] = -flax_logits(linear_head, variables, pixels).mean(0)
    return variables


def flax_logits(cfg: ArchConfig, variables: dict, pixels: np.ndarray, mean=MEAN, std=STD) -> np.ndarray:
    """The Flax model in eval mode on normalised images, as the trainer evaluates it."""
    model = build_model(expand(cfg))
    return np.asarray(jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, (pixels - mean) / std))


def onnx_logits(onnx_model, pixels: np.ndarray) -> np.ndarray:
    data = onnx_model if isinstance(onnx_model, Path) else onnx_model.SerializeToString()
    return onnxruntime_session(data).run(None, {INPUT_NAME: pixels})[0]


def assert_same_predictions(got: np.ndarray, expected: np.ndarray) -> float:
    """Same argmax on every image and logits within 1e-4 of the largest; returns the largest difference."""
    assert got.shape == expected.shape and got.dtype == np.float32
    assert np.array_equal(got.argmax(1), expected.argmax(1))
    difference = float(np.abs(got - expected).max())
    assert difference <= 1e-4 * float(np.abs(expected).max()), difference
    return difference


# --- the graph ------------------------------------------------------------------------------


@requires_fashion_mnist
@pytest.mark.parametrize("bypass, batch_norm, head_relu", [  # the fast tier: each bypass once, BatchNorm on and off
    ("none", True, False), pytest.param("none", False, True, marks=pytest.mark.slow), ("simple", False, False),
    pytest.param("simple", True, True, marks=pytest.mark.slow), pytest.param("complex", True, False, marks=pytest.mark.slow),
    ("complex", False, True),
])
def test_onnx_gives_the_flax_models_logits_on_real_images(pixels, bypass, batch_norm, head_relu):
    cfg = ArchConfig.preset("squeezenet_small", **TINY, bypass=bypass, batch_norm=batch_norm, head_relu=head_relu)
    variables = centred_variables(cfg, pixels)
    model = from_variables(cfg, variables["params"], variables.get("batch_stats"), MEAN, STD)
    expected = flax_logits(cfg, variables, pixels)
    assert np.unique(expected.argmax(1)).size >= 3  # the comparison is not of one constant class
    assert_same_predictions(onnx_logits(build_onnx(model), pixels), expected)


@pytest.mark.parametrize("stem, input_shape, downsample_at", [
    ("v1.0", (67, 67, 3), None), ("v1.1", (48, 40, 3), None), ("small", (13, 13, 2), (0.5, 1.0)),
])
def test_other_stems_and_odd_map_sizes_pool_with_ceil_rounding(stem, input_shape, downsample_at):
    """Odd and even maps at every pool: the end padding of ceil rounding must match the Flax model's."""
    cfg = ArchConfig(stem=stem, base_e=16, incr_e=16, num_fires=4, input_shape=input_shape, num_classes=7,
                     downsample_at=downsample_at, bypass="complex")
    variables = random_variables(cfg, seed=3)
    mean, std = np.linspace(0.3, 0.6, input_shape[2], dtype=np.float32), np.linspace(0.2, 0.3, input_shape[2], dtype=np.float32)
    images = np.random.default_rng(0).integers(0, 256, (4, *input_shape)).astype(np.float32) / 255
    onnx_model = build_onnx(from_variables(cfg, variables["params"], None, mean, std))
    assert_same_predictions(onnx_logits(onnx_model, images), flax_logits(cfg, variables, images, mean, std))


def test_the_graph_contract_input_output_and_a_dynamic_batch():
    cfg = ArchConfig.preset("squeezenet_small", **TINY, batch_norm=True)
    variables = random_variables(cfg)
    onnx_model = build_onnx(from_variables(cfg, variables["params"], variables["batch_stats"], MEAN, STD))
    (graph_input,), (graph_output,) = onnx_model.graph.input, onnx_model.graph.output
    assert graph_input.name == INPUT_NAME and graph_output.name == OUTPUT_NAME
    assert graph_input.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    dims = graph_input.type.tensor_type.shape.dim
    assert dims[0].dim_param == BATCH_DIM and [d.dim_value for d in dims[1:]] == [28, 28, 1]
    ops = {node.op_type for node in onnx_model.graph.node}
    assert ops <= {"Transpose", "Sub", "Div", "Conv", "Relu", "MaxPool", "Concat", "Add", "GlobalAveragePool", "Flatten"}
    assert "BatchNormalization" not in ops and "Dropout" not in ops
    session = onnxruntime_session(onnx_model.SerializeToString())
    images = np.random.default_rng(1).random((5, 28, 28, 1), dtype=np.float32)
    one, five = session.run(None, {INPUT_NAME: images[:1]})[0], session.run(None, {INPUT_NAME: images})[0]
    assert one.shape == (1, 10) and five.shape == (5, 10)
    np.testing.assert_allclose(one[0], five[0], rtol=1e-5, atol=1e-6)  # an image's logits do not depend on the batch
    assert json.loads(dict((p.key, p.value) for p in onnx_model.metadata_props)["dse.mean"]) == pytest.approx(MEAN.tolist())


# --- a compressed file ----------------------------------------------------------------------


def write_dsez(path: Path, seed: int = 0) -> tuple[ArchConfig, dict]:
    """A tiny network's random weights, 33% pruned and 5-bit weight-shared, as ``dse compress`` writes them."""
    cfg = ArchConfig.preset("squeezenet_small", **TINY, bypass="complex")
    params = random_variables(cfg, seed)["params"]
    masks = magnitude_masks(params, 0.33)
    q = quantize_params(apply_masks(params, masks), masks, bits_conv=5, iterations=5)
    config = {"model": cfg.model_dump(mode="json"), "data": {"dataset": "fashion_mnist"}}
    container.write(path, q, config=config, metadata={"mean": MEAN.tolist(), "std": STD.tolist()})
    return cfg, container.read(path)[0]


@requires_fashion_mnist
def test_a_compressed_file_exports_and_matches_the_decoded_model(pixels, tmp_path):
    cfg, decoded = write_dsez(tmp_path / "model.dsez")
    result = export_model(tmp_path / "model.dsez", tmp_path / "model.onnx")
    assert result["bytes"] == (tmp_path / "model.onnx").stat().st_size
    assert_same_predictions(onnx_logits(tmp_path / "model.onnx", pixels), flax_logits(cfg, {"params": decoded}, pixels))


# --- a trained run --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """One epoch of two steps on real images, with the latency measurement on."""
    from dse.train import TrainConfig, train_and_evaluate

    run = tmp_path_factory.mktemp("run")
    cfg = TrainConfig.model_validate(tiny_train_dict(epochs=1, max_steps_per_epoch=2, measure_latency=True,
                                                     model={"bypass": "simple"}))
    return run, train_and_evaluate(cfg, run)


@pytest.mark.slow
@requires_fashion_mnist
def test_a_run_folder_exports_its_last_checkpoint(trained_run, pixels, tmp_path):
    from dse.compress.pipeline import load_run, restore_last_state
    from dse.data import load_splits

    run, _ = trained_run
    result = dse("export", str(run), "--format", "onnx", "--output", str(tmp_path / "run.onnx"))
    assert result.returncode == 0, result.stderr
    cfg, layout = load_run(run)
    state, _ = restore_last_state(cfg, layout, build_model(expand(cfg.model)))
    splits = load_splits(cfg.data)
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    expected = flax_logits(cfg.model, variables, pixels, splits.mean, splits.std)
    assert_same_predictions(onnx_logits(tmp_path / "run.onnx", pixels), expected)


@pytest.mark.slow
@requires_fashion_mnist
def test_a_run_with_measure_latency_reports_onnxruntime_and_jax(trained_run):
    _, results = trained_run
    assert results["latency_ms"] > 0 and results["latency_jax_ms"] > 0 and results["latency_b64_ms"] > results["latency_ms"]
    assert results["energy_uj"] == pytest.approx(estimate_energy(summarize(expand(ArchConfig.preset(
        "squeezenet_small", **TINY, batch_norm=True, bypass="simple")))).total_uj)


# --- latency --------------------------------------------------------------------------------


def test_latency_report_has_both_runtimes_at_each_batch_size():
    cfg = ArchConfig.preset("squeezenet_small", **TINY)
    model = from_variables(cfg, random_variables(cfg)["params"], None, MEAN, STD)
    report = measure_latency(model, repeats=5, warmup=1, batch_sizes=(1, 4))
    assert report.threads == 1 and set(report.timings) == {"onnxruntime", "jax"}
    for timings in report.timings.values():
        assert sorted(timings) == [1, 4]
        for timing in timings.values():
            assert 0 < timing.median_ms <= timing.p90_ms and timing.repeats == 5
    assert set(report.metrics()) == {"latency_ms", "latency_jax_ms"}  # no batch 64 asked for
    assert report.metrics()["latency_ms"] == report.timings["onnxruntime"][1].median_ms


# --- estimated energy -----------------------------------------------------------------------

# By hand: small stem (3x3/1, 4 filters) on 6x6x1, maxpool1 -> 3x3, fire2 (s 2, e 4 + 4),
# fire3 (the same, simple bypass), conv10 (3 classes), global average.
ENERGY_SPEC = ArchConfig(stem="small", stem_filters=4, base_e=8, incr_e=0, num_fires=2, sr=0.25, pct3x3=0.5,
                         bypass="simple", downsample_at=(0,), input_shape=(6, 6, 1), num_classes=3)
ENERGY_PARAMS = 40 + (10 + 12 + 76) + (18 + 12 + 76) + 27  # conv1, fire2, fire3, conv10: weights + biases
ENERGY_MACS = 36 * 9 * 4 + (9 * 8 + 9 * 8 + 9 * 72) + (9 * 16 + 9 * 8 + 9 * 72) + 9 * 24
# Words read + written: conv1 36 + 144, pool 144 + 36, fire2 36 + 72 + squeeze 18 x 3,
# fire3 72 + 72 + 54 + bypass 72, conv10 72 + 27, avgpool 27 + 3.
ENERGY_ACTIVATION_WORDS = 180 + 180 + 162 + 270 + 99 + 30


def test_estimated_energy_by_hand_on_and_off_chip():
    summary = summarize(expand(ENERGY_SPEC))
    assert (summary.params, summary.macs) == (ENERGY_PARAMS, ENERGY_MACS) == (271, 3168)
    compute_pj, activations_pj = 3168 * (3.7 + 0.9), 921 * 5.0
    assert ENERGY_ACTIVATION_WORDS == 921
    on_chip = estimate_energy(summary, sram_bytes=271 * 4)  # exactly fits
    assert on_chip.weights_on_chip and on_chip.total_uj == pytest.approx((compute_pj + 271 * 5.0 + activations_pj) / 1e6)
    off_chip = estimate_energy(summary, sram_bytes=271 * 4 - 1)  # one byte short: every weight from DRAM
    assert not off_chip.weights_on_chip
    assert off_chip.total_uj == pytest.approx((compute_pj + 271 * 640.0 + activations_pj) / 1e6)
    assert off_chip.weights_uj / on_chip.weights_uj == pytest.approx(HOROWITZ_45NM.dram_read_pj / HOROWITZ_45NM.sram_read_pj)
    compressed = estimate_energy(summary, weight_bytes=101)  # a compressed file: ceil(101 / 4) = 26 words
    assert compressed.weights_uj == pytest.approx(26 * 5.0 / 1e6) and compressed.compute_uj == on_chip.compute_uj


def test_energy_is_a_static_metric_and_dse_arch_shows_it():
    summary = summarize(expand(ArchConfig.preset("squeezenet_small")))
    assert summary.static_metrics()["energy_uj"] == estimate_energy(summary).total_uj
    result = dse("arch", "--preset", "squeezenet_small", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["estimated_energy"]["total_uj"] == pytest.approx(estimate_energy(summary).total_uj)
    table = dse("arch", "--preset", "squeezenet_small")
    assert "estimated energy" in table.stdout and "in DRAM" in table.stdout


# --- bad input: one line, exit 2, nothing written -------------------------------------------


def test_export_and_latency_bad_input_is_one_line_exit_2(tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text((Path(__file__).parents[1] / "results/fashion_mnist_small/config.json").read_text())
    write_dsez(tmp_path / "good.dsez")
    damaged = bytearray((tmp_path / "good.dsez").read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF
    (tmp_path / "damaged.dsez").write_bytes(bytes(damaged))
    (tmp_path / "garbage.onnx").write_bytes(b"not a model")
    out = tmp_path / "out" / "model.onnx"
    out.parent.mkdir()
    cases = [
        (["export", str(run), "--output", str(out)], "no checkpoint"),
        (["export", str(tmp_path / "nowhere"), "--output", str(out)], "no such file or folder"),
        (["export", str(tmp_path / "good.dsez"), "--format", "tflite", "--output", str(out)], "unknown export format"),
        (["export", str(tmp_path / "good.dsez"), "--output", str(tmp_path / "missing" / "m.onnx")], "does not exist"),
        (["export", str(tmp_path / "good.dsez"), "--output", str(out.parent)], "is a folder"),
        (["export", str(tmp_path / "damaged.dsez"), "--output", str(out)], "checksum mismatch"),
        (["latency", str(tmp_path / "garbage.onnx")], "not a loadable ONNX model"),
        (["latency", str(tmp_path / "good.dsez"), "--threads", "0"], "--threads 0"),
        (["latency", str(run)], "no checkpoint"),
    ]
    for args, fragment in cases:
        code, err = dse_in_process(monkeypatch, capsys, *args)
        assert code == 2 and err.startswith("dse: error: "), (args, err)
        assert fragment in err and len(err.strip().splitlines()) == 1, (args, err)
    process = dse("export", str(tmp_path / "damaged.dsez"), "--output", str(out))  # and once as a user runs it
    assert process.returncode == 2 and "checksum mismatch" in process.stderr and len(process.stderr.splitlines()) == 1
    assert list(out.parent.iterdir()) == [] and sorted(p.name for p in run.iterdir()) == ["config.json"]
    assert not (tmp_path / "missing").exists()


def test_load_inference_model_names_what_it_expected(tmp_path):
    from dse.errors import DataError

    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(DataError, match="expected a run folder"):
        load_inference_model(tmp_path / "weights.bin")

"""Baseline families: published parameter counts, MACs, the Flax model, the ONNX graph, the trainer, bad input."""

import json
import math
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import requires_fashion_mnist, tiny_train_dict
from test_deploy import assert_same_predictions, dse_in_process, onnx_logits

from dse.arch import ArchConfig, build_model, count_params, expand, summarize
from dse.arch.families import GENERATORS, GraphSpec, output_shapes
from dse.config_io import parse
from dse.deploy.inference_model import from_variables
from dse.deploy.onnx_export import build_onnx
from dse.errors import ConfigError, SpecError
from dse.sweep.config import load_sweep
from dse.train import TrainConfig, train_and_evaluate

FAMILIES = sorted(GENERATORS)
SMALL = {"stem": "small", "input_shape": (28, 28, 1), "num_classes": 10}


def flax_param_count(cfg: ArchConfig) -> int:
    """Parameters of the Flax model itself, by shapes only (no compute)."""
    model = build_model(expand(cfg))
    shapes = jax.eval_shape(lambda: model.init({"params": jax.random.key(0)}, jnp.zeros((1, *cfg.input_shape)), train=False))
    return count_params(shapes["params"])


# Published / reference counts at each network's standard setting (224x224x3 and 1000 classes;
# the CIFAR ResNets 32x32x3, 10 classes). BatchNorm's scale and offset count, its running statistics do not.
PUBLISHED_PARAMS = [
    ("mobilenet_v1", {}, 4_231_976),  # Keras applications.MobileNet(alpha=1.0): trainable params
    ("mobilenet_v2", {}, 3_504_872),  # torchvision mobilenet_v2
    ("shufflenet_v2", {}, 2_278_604),  # torchvision shufflenet_v2_x1_0
    ("shufflenet_v2", {"width_multiplier": 0.5}, 1_366_792),  # torchvision shufflenet_v2_x0_5
    ("alexnet", {}, 61_100_840),  # torchvision alexnet
    # Option A (parameter-free shortcuts), as akamaster/pytorch_resnet_cifar10 prints them. With 1x1
    # projection shortcuts (option B) ResNet-20 and -56 would have 2,752 more (272,474 and 855,770).
    ("resnet20", {}, 269_722),
    ("resnet32", {}, 464_154),
    ("resnet56", {}, 853_018),
]


@pytest.mark.parametrize("preset, overrides, published", PUBLISHED_PARAMS, ids=[f"{p}-{o}" for p, o, _ in PUBLISHED_PARAMS])
def test_parameter_counts_are_the_published_ones(preset, overrides, published):
    cfg = ArchConfig.preset(preset, **overrides)
    assert summarize(expand(cfg)).params == published
    assert flax_param_count(cfg) == published


def test_resnet20_macs_by_hand():
    """conv1 on 32x32, 17 convs of 16x16x9 * ... all 2,359,296 MACs but the two stride-2 ones (half), and fc."""
    same_size_conv = 32 * 32 * 9 * 16 * 16  # = 16*16*9*32*32 = 8*8*9*64*64
    expected = 32 * 32 * 27 * 16 + 16 * same_size_conv + 2 * same_size_conv // 2 + 64 * 10
    assert summarize(expand(ArchConfig.preset("resnet20"))).macs == expected == 40_551_040


@pytest.mark.parametrize("preset, published_millions, tolerance", [
    ("mobilenet_v1", 569, 0.01),  # Howard et al. 2017, Table 8: 569 million mult-adds
    ("mobilenet_v2", 300, 0.02),  # Sandler et al. 2018, Table 4: 300M
    ("shufflenet_v2", 146, 0.02),  # Ma et al. 2018, Table 5: 146M FLOPs (mult-adds)
    ("alexnet", 714, 0.01),  # torchvision: 0.71 GFLOPS (mult-adds)
    ("resnet20", 41, 0.02),  # He et al. 2016: about 41M
])
def test_macs_are_the_published_ones(preset, published_millions, tolerance):
    macs = summarize(expand(ArchConfig.preset(preset))).macs
    assert macs == pytest.approx(published_millions * 1e6, rel=tolerance)


def test_the_analytic_count_is_the_flax_count_at_other_widths_and_small_images():
    for family, overrides in [("mobilenet_v1", {"width_multiplier": 0.75}), ("mobilenet_v2", {"width_multiplier": 1.4}),
                              ("shufflenet_v2", {"width_multiplier": 2.0}), ("resnet", {"depth": 44, "width_multiplier": 1.5}),
                              ("alexnet", {"width_multiplier": 0.25, "batch_norm": True})]:
        cfg = ArchConfig(family=family, **SMALL, **overrides)
        assert summarize(expand(cfg)).params == flax_param_count(cfg), family



# The fast tier keeps stride 1, stride 2 on an odd map and an unpadded even one; the rest run in the full suite.
@pytest.mark.parametrize("kernel, stride, padding, size", [
    (3, 1, 1, 9), (3, 2, 1, 9), (3, 2, 0, 10),
    pytest.param(3, 2, 1, 8, marks=pytest.mark.slow), pytest.param(5, 1, 2, 7, marks=pytest.mark.slow)])
def test_depthwise_conv_is_xlas_grouped_conv_in_value_and_gradient(kernel, stride, padding, size):
    """The shifted-product depthwise conv (fast gradients on XLA:CPU) against lax's grouped conv."""
    from dse.arch.model import KERNEL_INITS, DepthwiseConv

    x = jax.random.normal(jax.random.PRNGKey(0), (4, size, size, 6))
    module = DepthwiseConv(kernel, stride, padding, True, KERNEL_INITS["caffe"])
    variables = module.init(jax.random.PRNGKey(1), x)
    variables = {"params": {**variables["params"], "bias": jnp.arange(6.0) / 10}}
    assert variables["params"]["kernel"].shape == (kernel, kernel, 1, 6)  # nn.Conv's, so checkpoints and ONNX match

    def grouped(params, x):
        out = jax.lax.conv_general_dilated(x, params["kernel"], (stride, stride), ((padding, padding),) * 2,
                                           dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=6)
        return out + params["bias"]

    def shifted(params, x):
        return module.apply({"params": params}, x)

    ours, theirs = shifted(variables["params"], x), grouped(variables["params"], x)
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)
    loss = lambda f: lambda params, x: jnp.sum(jnp.sin(f(params, x)))  # noqa: E731
    for a, b in zip(jax.tree.leaves(jax.grad(loss(shifted), argnums=(0, 1))(variables["params"], x)),
                    jax.tree.leaves(jax.grad(loss(grouped), argnums=(0, 1))(variables["params"], x)), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("family", FAMILIES)
def test_small_images_keep_a_map_of_a_few_pixels_and_give_logits(family):
    cfg = ArchConfig(family=family, **SMALL)
    spec = expand(cfg)
    last_map = [shape for name, shape in output_shapes(spec).items() if shape[:2] != (1, 1)][-1]
    assert 2 <= last_map[0] <= 7, last_map  # not shrunk to nothing, and downsampled
    model = build_model(spec)
    variables = jax.eval_shape(lambda: model.init({"params": jax.random.key(0)}, jnp.zeros((1, 28, 28, 1)), train=False))
    images = jnp.zeros((3, 28, 28, 1))
    for train in (False, True):
        def forward(v, x, train=train):
            return model.apply(v, x, train=train, rngs={"dropout": jax.random.key(1)}, mutable=["batch_stats"])[0]

        assert jax.eval_shape(forward, variables, images).shape == (3, 10)


# --- the ONNX graph -----------------------------------------------------------------------------

def realistic_variables(cfg: ArchConfig, forward, images: np.ndarray, seed: int = 0) -> dict:
    """Random weights; BatchNorm scales far from 1 (some negative) and offsets far from 0, and as
    running statistics the batch statistics of ``images`` (so every BatchNorm normalises for real and
    a deep network's logits still depend on the image); a classifier bias that centres each class's
    logit over ``images``, so their predictions differ (equal argmax on one constant class would test little).
    ``images`` are normalised; ``forward(variables, images)`` is the eval-mode model."""
    spec = expand(cfg)
    model = build_model(spec)
    shapes = jax.eval_shape(lambda: model.init({"params": jax.random.key(0)}, jnp.zeros((1, *cfg.input_shape)), train=False))
    rng = np.random.default_rng(seed)

    def fill(path, leaf):
        name, shape = path[-1].key, leaf.shape
        if name == "kernel":
            return rng.normal(0, math.sqrt(1 / math.prod(shape[:-1])), shape).astype(np.float32)
        if name == "var":
            return rng.uniform(0.5, 2.0, shape).astype(np.float32)
        if name == "scale":
            return (rng.uniform(0.5, 1.5, shape) * rng.choice([-1, 1], shape, p=[0.2, 0.8])).astype(np.float32)
        return rng.normal(0, 0.1, shape).astype(np.float32)  # BatchNorm mean and offset, biases

    variables = jax.tree_util.tree_map_with_path(fill, shapes)
    if "batch_stats" in variables:
        # One training-mode pass moves each running statistic 10% (momentum 0.9) towards its batch
        # statistic; solve for the batch statistic. Eval mode with these is that training-mode pass.
        no_dropout = build_model(expand(cfg.model_copy(update={"dropout": 0.0})))
        train_pass = jax.jit(lambda v, x: no_dropout.apply(v, x, train=True, mutable=["batch_stats"])[1])
        moved = train_pass(variables, images)
        variables["batch_stats"] = jax.tree.map(lambda new, old: np.asarray((new - 0.9 * old) / 0.1, np.float32),
                                                moved["batch_stats"], variables["batch_stats"])
    head = variables["params"][spec.output]
    head["bias"] = np.zeros_like(head["bias"])
    head["bias"] = -np.asarray(forward(variables, images)).mean(0)
    return variables


SLOW = pytest.mark.slow  # the fast tier keeps one case per graph feature: odd maps and pads, a padded pool, BatchNorm
ONNX_CASES = [
    pytest.param("mobilenet_v1", {**SMALL, "width_multiplier": 0.5}, marks=SLOW),
    ("mobilenet_v1", {"input_shape": (64, 64, 3), "num_classes": 7, "width_multiplier": 0.25}),  # ImageNet layout: 2x2 at the end
    pytest.param("mobilenet_v2", {**SMALL, "width_multiplier": 0.5}, marks=SLOW),
    pytest.param("shufflenet_v2", {**SMALL, "width_multiplier": 0.5}, marks=SLOW),
    ("shufflenet_v2", {"input_shape": (45, 45, 3), "num_classes": 7, "width_multiplier": 0.5}),  # padded max pool, odd maps
    pytest.param("resnet", {**SMALL, "depth": 8}, marks=SLOW),
    ("resnet", {"input_shape": (13, 13, 2), "num_classes": 5, "depth": 14, "width_multiplier": 0.75}),  # odd maps, odd pads
    pytest.param("alexnet", {**SMALL, "width_multiplier": 0.25}, marks=SLOW),  # no BatchNorm: fc6 reads a 2x2 map
    ("alexnet", {**SMALL, "width_multiplier": 0.25, "batch_norm": True}),
]


def _case_id(case) -> str:
    family, settings = case.values if hasattr(case, "values") else case
    return f"{family}-{settings['input_shape'][0]}px-{'bn' if settings.get('batch_norm') else ''}"


@pytest.mark.parametrize("family, settings", ONNX_CASES, ids=[_case_id(c) for c in ONNX_CASES])
def test_onnx_gives_the_flax_models_logits(family, settings):
    cfg = ArchConfig(family=family, **settings)
    channels = cfg.input_shape[2]
    mean, std = np.linspace(0.3, 0.5, channels, dtype=np.float32), np.linspace(0.2, 0.3, channels, dtype=np.float32)
    images = np.random.default_rng(1).integers(0, 256, (16, *cfg.input_shape)).astype(np.float32) / 255
    model = build_model(expand(cfg))
    forward = jax.jit(lambda v, x: model.apply(v, x, train=False))  # one compilation for both calls
    variables = realistic_variables(cfg, forward, (images - mean) / std)
    expected = np.asarray(forward(variables, (images - mean) / std))
    assert np.unique(expected.argmax(1)).size >= 3
    model = from_variables(cfg, variables["params"], variables.get("batch_stats"), mean, std)  # BatchNorm folded
    assert isinstance(model.spec, GraphSpec) and not model.spec.config.batch_norm
    assert_same_predictions(onnx_logits(build_onnx(model), images), expected)


# --- the schema -----------------------------------------------------------------------------------

def test_a_squeezenet_config_dumps_as_before_families_existed():
    """Run digests and resumed checkpoints compare dumps: a SqueezeNet's must not gain keys."""
    dumped = ArchConfig.preset("squeezenet_small").model_dump()
    assert not {"family", "width_multiplier", "depth"} & dumped.keys() and "base_e" in dumped


def test_a_baseline_config_holds_its_own_fields_and_round_trips():
    cfg = ArchConfig(family="resnet", depth=32)
    dumped = cfg.model_dump(mode="json")
    assert dumped["family"] == "resnet" and dumped["depth"] == 32 and dumped["batch_norm"] is True
    assert not {"base_e", "sr", "head_relu", "bypass"} & dumped.keys()
    assert ArchConfig.model_validate(dumped) == cfg
    assert ArchConfig(family="alexnet").batch_norm is False and ArchConfig(family="alexnet", batch_norm=True).batch_norm


def test_the_training_config_gives_baselines_the_small_image_layout():
    cfg = parse(TrainConfig, {"model": {"family": "mobilenet_v2"}}, "test")
    assert cfg.model.stem == "small" and cfg.model.input_shape == (28, 28, 1)
    with pytest.raises(ConfigError, match="model.sr: sr applies to squeezenet, not family=mobilenet_v2"):
        parse(TrainConfig, {"model": {"family": "mobilenet_v2", "sr": 0.5}}, "test")
    with pytest.raises(ConfigError, match="compression works on SqueezeNet networks only; this model's family is resnet"):
        parse(TrainConfig, {"model": {"family": "resnet"}, "compress": {"sparsity": 0.5}}, "test")


def test_configs_made_without_validation_are_checked_by_the_generator():
    for update, fragment in [({"depth": 21}, "6n + 2"), ({"width_multiplier": 0.0}, "must be > 0"),
                             ({"width_multiplier": 0.01}, "channels (must be >= 1)")]:
        with pytest.raises(SpecError) as error:
            expand(ArchConfig(family="resnet").model_copy(update=update))
        assert fragment in str(error.value)


def test_the_baselines_sweep_loads_and_every_point_is_a_network():
    sweep = load_sweep("sweeps/baselines.yaml")  # every grid point is expanded at load
    families = {sweep.train_config({"model": group}).model.family for group in sweep.grid()["model"]}
    assert families == {"squeezenet", *FAMILIES}
    assert sweep.train_config({}).measure_latency


# --- the CLI and the trainer ------------------------------------------------------------------

@pytest.mark.parametrize("args, fragment", [
    (["--family", "foo"], "family: Input should be 'squeezenet'"),
    (["--family", "resnet", "--depth", "21"], "depth=21: a CIFAR ResNet has 6n + 2 layers"),
    (["--family", "mobilenet_v1", "--width-multiplier", "0"], "width_multiplier=0.0: must be > 0"),
    (["--family", "shufflenet_v2", "--width-multiplier", "0.75"], "published stage widths for 0.5, 1.0, 1.5, 2.0 only"),
    (["--family", "mobilenet_v2", "--sr", "0.5"], "sr applies to squeezenet, not family=mobilenet_v2"),
    (["--family", "alexnet", "--depth", "20"], "depth applies to resnet, not family=alexnet"),
    (["--width-multiplier", "0.5"], "width_multiplier applies to"),
    (["--family", "resnet", "--stem", "v1.1"], "stem=v1.1 is a SqueezeNet stem"),
    (["--family", "alexnet", "--input-shape", "28,28,1"], "too small for alexnet"),
])
def test_dse_arch_bad_input_is_one_line_exit_2(monkeypatch, capsys, args, fragment):
    code, err = dse_in_process(monkeypatch, capsys, "arch", *args)
    assert code == 2 and fragment in err, err
    assert len(err.strip().splitlines()) == 1


def test_dse_arch_prints_a_baselines_exact_table(monkeypatch, capsys):
    from dse import cli

    monkeypatch.setattr("sys.argv", ["dse", "arch", "--preset", "resnet20", "--json"])
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    assert exit_.value.code in (0, None)
    report = json.loads(capsys.readouterr().out)
    assert report["config"]["family"] == "resnet" and report["params"] == 269_722
    assert report["params"] == sum(layer["params"] for layer in report["layers"])
    adds = [layer for layer in report["layers"] if layer["name"].endswith("_add")]
    assert len(adds) == 9 and all(layer["reads"] == 2 * layer["activations"] for layer in adds)


def test_dse_compress_refuses_a_baseline_run_in_one_line(tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    (run / "checkpoints" / "1").mkdir(parents=True)
    cfg = parse(TrainConfig, {"model": {"family": "mobilenet_v1", "width_multiplier": 0.5}}, "test")
    (run / "config.json").write_text(cfg.model_dump_json())
    code, err = dse_in_process(monkeypatch, capsys, "compress", str(run))
    assert code == 2 and "model's family is mobilenet_v1" in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.slow  # 20 s on a loaded 2-core machine, most of it loading data and compiling
@requires_fashion_mnist
def test_a_baseline_trains_measures_latency_exports_and_refuses_compression(tmp_path, monkeypatch, capsys):
    started = time.perf_counter()
    settings = tiny_train_dict(epochs=1, max_steps_per_epoch=2, batch_size=32, measure_latency=True)
    settings["model"] = {"family": "resnet", "depth": 8, "width_multiplier": 0.5}  # not the tiny SqueezeNet's widths
    cfg = TrainConfig.model_validate(settings)
    results = train_and_evaluate(cfg, tmp_path / "run")
    assert results["status"] == "completed" and math.isfinite(results["history"][-1]["train_loss"])
    assert results["params"] == summarize(expand(cfg.model.model_copy(update={"num_classes": 10}))).params
    assert results["latency_ms"] > 0 and results["latency_b64_ms"] > 0 and results["energy_uj"] > 0
    assert json.loads((tmp_path / "run" / "config.json").read_text())["model"]["family"] == "resnet"
    code, err = dse_in_process(monkeypatch, capsys, "export", str(tmp_path / "run"), "--output", str(tmp_path / "r.onnx"))
    assert code in (0, None) and (tmp_path / "r.onnx").stat().st_size > 0, err
    code, err = dse_in_process(monkeypatch, capsys, "compress", str(tmp_path / "run"))
    assert code == 2 and "model's family is resnet" in err and len(err.strip().splitlines()) == 1, err
    print(f"train + latency + export + compress refusal: {time.perf_counter() - started:.1f} s")

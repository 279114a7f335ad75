"""The generator against Table 1 of the paper, by hand-computed numbers."""

import random

import jax
import jax.numpy as jnp
import pydantic
import pytest

from dse.arch import ArchConfig, build_model, count_params, expand, init_variables, summarize
from dse.errors import SpecError

# Table 1: (layer, output shape, s1x1, e1x1, e3x3, params), SqueezeNet v1.0, 227x227x3.
TABLE1 = [
    ("conv1", (111, 111, 96), None, None, None, 14_208),
    ("maxpool1", (55, 55, 96), None, None, None, 0),
    ("fire2", (55, 55, 128), 16, 64, 64, 11_920),
    ("fire3", (55, 55, 128), 16, 64, 64, 12_432),
    ("fire4", (55, 55, 256), 32, 128, 128, 45_344),
    ("maxpool4", (27, 27, 256), None, None, None, 0),
    ("fire5", (27, 27, 256), 32, 128, 128, 49_440),
    ("fire6", (27, 27, 384), 48, 192, 192, 104_880),
    ("fire7", (27, 27, 384), 48, 192, 192, 111_024),
    ("fire8", (27, 27, 512), 64, 256, 256, 188_992),
    ("maxpool8", (13, 13, 512), None, None, None, 0),
    ("fire9", (13, 13, 512), 64, 256, 256, 197_184),
    ("conv10", (13, 13, 1000), None, None, None, 513_000),
    ("avgpool10", (1, 1, 1000), None, None, None, 0),
]


def test_squeezenet1_0_matches_table1_row_by_row():
    summary = summarize(expand(ArchConfig.preset("squeezenet1_0", num_classes=1000)))
    rows = [(la.name, la.output_shape, la.squeeze, la.expand1x1, la.expand3x3, la.params) for la in summary.layers]
    assert rows == TABLE1
    assert summary.params == 1_248_424
    assert round(summary.size_mb(32), 1) == 4.8  # the paper's "4.8 MB"


def test_squeezenet1_1_total_and_compute():
    cfg = ArchConfig.preset("squeezenet1_1")
    assert summarize(expand(cfg)).params == 1_235_496
    # torchvision's reported 0.82 / 0.35 GFLOPS are multiply-accumulates at 224x224.
    macs_10 = summarize(expand(ArchConfig.preset("squeezenet1_0", input_shape=(224, 224, 3)))).macs
    macs_11 = summarize(expand(cfg.model_copy(update={"input_shape": (224, 224, 3)}))).macs
    assert round(macs_10 / 1e9, 2) == 0.82 and round(macs_11 / 1e9, 2) == 0.35


def test_simple_bypass_is_free_and_complex_adds_exactly_its_1x1_convs():
    vanilla = summarize(expand(ArchConfig())).params
    assert summarize(expand(ArchConfig(bypass="simple"))).params == vanilla
    # complex: 1x1 convs (weights + bias) around fire2 (96->128), fire4 (128->256), fire6 (256->384), fire8 (384->512)
    extra = sum(cin * cout + cout for cin, cout in [(96, 128), (128, 256), (256, 384), (384, 512)])
    assert summarize(expand(ArchConfig(bypass="complex"))).params == vanilla + extra == vanilla + 341_248


def test_size_at_lower_bit_widths():
    summary = summarize(expand(ArchConfig()))
    assert summary.size_bytes(8) == 1_248_424
    assert summary.size_bytes(6) == 936_318


def test_rounding_rule_keeps_expand_sum_and_rounds_half_up():
    spec = expand(ArchConfig(base_e=10, incr_e=5, freq=1, pct3x3=0.25, sr=0.25))
    fire2 = spec.fires[0]  # e=10: e3 = round(2.5) = 3, e1 = 7, s = round(2.5) = 3
    assert (fire2.squeeze, fire2.expand1x1, fire2.expand3x3) == (3, 7, 3)
    assert all(f.expand1x1 + f.expand3x3 == 10 + 5 * f.index for f in spec.fires)


def test_pct3x3_extremes_drop_a_branch():
    only1x1 = expand(ArchConfig(pct3x3=0.0))
    assert all(f.expand3x3 == 0 and f.expand1x1 > 0 for f in only1x1.fires)
    assert all(f.expand1x1 == 0 for f in expand(ArchConfig(pct3x3=1.0)).fires)


OUT_OF_BOUNDS = [
    ({"sr": 0.0}, "sr=0.0: squeeze ratio must be in (0, 1]"),
    ({"sr": 1.01}, "sr=1.01"),
    ({"pct3x3": -0.1}, "pct3x3=-0.1: must be in [0, 1]"),
    ({"pct3x3": 1.5}, "pct3x3=1.5"),
    ({"base_e": 0}, "base_e=0: must be a positive integer"),
    ({"freq": 0}, "freq=0: must be a positive integer"),
    ({"incr_e": -1}, "incr_e=-1: must be >= 0"),
    ({"stem_filters": 0}, "stem_filters=0: must be >= 1"),
    ({"num_classes": 0}, "num_classes=0: must be >= 1"),
]


@pytest.mark.parametrize("overrides, fragment", OUT_OF_BOUNDS)
def test_bounds_live_in_the_schema_and_the_generator_checks_them_again(overrides, fragment):
    with pytest.raises(pydantic.ValidationError) as err:
        ArchConfig(**overrides)
    assert fragment in str(err.value)
    # A config copied without validation (model_copy) still cannot reach the model.
    with pytest.raises(SpecError) as err:
        expand(ArchConfig().model_copy(update=overrides))
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_every_bound_is_checked_and_its_edges_are_inside():
    from dse.arch.spec import BOUNDS, bound_violation

    assert set(BOUNDS) == {name for overrides, _ in OUT_OF_BOUNDS for name in overrides}
    assert bound_violation("sr", 1.0) is None and bound_violation("pct3x3", 0.0) is None
    assert bound_violation("pct3x3", 1.0) is None and bound_violation("incr_e", 0) is None


@pytest.mark.parametrize(
    "overrides, fragment",
    [
        ({"base_e": 4, "incr_e": 0, "sr": 0.1}, "rounds to 0"),
        ({"base_e": 16, "pct3x3": 0.01}, "3x3 expand width rounds to 0"),
        ({"freq": 1, "bypass": "simple"}, "bypass=simple: fire3 input width"),
        ({"input_shape": (16, 16, 3)}, "too small for the pooling chain"),
        ({"pool_after": (0, 9)}, "pool_after=[0, 9]"),
    ],
)
def test_invalid_metaparameters_name_the_parameter_and_rule(overrides, fragment):
    with pytest.raises(SpecError) as err:
        expand(ArchConfig(**overrides))
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_spec_and_flax_parameter_counts_agree_over_random_candidates():
    rng = random.Random(0)
    for _ in range(12):
        cfg = ArchConfig(
            base_e=rng.choice([8, 16, 24, 32]), incr_e=rng.choice([0, 8, 16]), freq=rng.choice([1, 2, 4]),
            pct3x3=rng.choice([0.0, 0.25, 0.5, 0.75, 1.0]), sr=rng.choice([0.125, 0.25, 0.5, 1.0]),
            stem=rng.choice(["v1.1", "small"]), bypass=rng.choice(["none", "complex"]),
            batch_norm=rng.random() < 0.5, num_classes=rng.choice([3, 10]), input_shape=(32, 32, rng.choice([1, 3])),
        )
        spec = expand(cfg)
        # eval_shape: the count needs shapes only, so no random numbers are drawn.
        shapes = jax.eval_shape(lambda s=spec: build_model(s).init(jax.random.key(0), jnp.zeros((1, *s.input_shape))))
        assert count_params(shapes["params"]) == summarize(spec).params, cfg


@pytest.mark.parametrize(
    "cfg",
    [
        ArchConfig.preset("squeezenet1_0", num_classes=10, input_shape=(64, 64, 3)),
        ArchConfig.preset("squeezenet1_1", num_classes=10, input_shape=(64, 64, 3), bypass="simple"),
        ArchConfig.preset("squeezenet_small", bypass="complex", batch_norm=True),
    ],
    ids=["v1.0", "v1.1-simple", "small-complex-bn"],
)
def test_jitted_forward_of_each_variant(cfg):
    spec = expand(cfg)
    model = build_model(spec)
    variables = init_variables(model, jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (3, *spec.input_shape))
    logits = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, x)
    assert logits.shape == (3, cfg.num_classes)
    assert bool(jnp.all(jnp.isfinite(logits)))


def test_preset_fields_can_be_overridden_and_unknown_keys_fail():
    assert ArchConfig.preset("squeezenet1_1", sr=0.25).stem == "v1.1"
    with pytest.raises(ValueError, match="extra"):
        ArchConfig(sqeeze_ratio=0.5)

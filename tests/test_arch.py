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
    ({"num_fires": 1}, "num_fires=1: must be an integer in 2..16"),
    ({"num_fires": 17}, "num_fires=17"),
    ({"incr_e": -1}, "incr_e=-1: must be >= 0"),
    ({"stem_filters": 0}, "stem_filters=0: must be >= 1"),
    ({"num_classes": 0}, "num_classes=0: must be >= 1"),
]


def assert_rejected_by_schema_and_generator(overrides: dict, fragment: str) -> None:
    with pytest.raises(pydantic.ValidationError) as err:
        ArchConfig(**overrides)
    assert fragment in str(err.value)
    # A config copied without validation (model_copy) still cannot reach the model.
    with pytest.raises(SpecError) as err:
        expand(ArchConfig().model_copy(update=overrides))
    assert fragment in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("overrides, fragment", OUT_OF_BOUNDS)
def test_bounds_live_in_the_schema_and_the_generator_checks_them_again(overrides, fragment):
    assert_rejected_by_schema_and_generator(overrides, fragment)


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
        ({"input_shape": (16, 16, 3)}, "too small for the pooling chain (maxpool4 gets 2x2, needs 3x3)"),
        ({"preset": "squeezenet_small", "num_fires": 12, "downsample_at": (0, 0.25, 0.5, 0.75, 1)},
         "downsample_at=[0.0, 0.25, 0.5, 0.75, 1.0]: too small for the pooling chain (maxpool13 gets 1x1"),
        ({"stem": "v1.1", "input_shape": (2, 2, 1)}, "too small for the pooling chain (conv1 gets 2x2, needs 3x3)"),
    ],
)
def test_invalid_metaparameters_name_the_parameter_and_rule(overrides, fragment):
    with pytest.raises(SpecError) as err:
        expand(ArchConfig(**overrides))
    assert fragment in str(err.value) and "\n" not in str(err.value)


def random_placement(rng: random.Random, num_fires: int, most: int) -> list[float] | None:
    """None (the stem's layout) or 0..most distinct positions as fractions of depth."""
    if rng.random() < 0.25:
        return None
    positions = rng.sample(range(num_fires + 1), rng.randint(0, min(most, num_fires + 1)))
    return [k / num_fires for k in positions]


def test_spec_and_flax_parameter_counts_agree_over_random_candidates():
    rng = random.Random(0)
    for _ in range(16):
        stem, num_fires = rng.choice(["v1.1", "small"]), rng.randint(2, 16)
        cfg = ArchConfig(
            base_e=rng.choice([8, 16, 24, 32]), incr_e=rng.choice([0, 8, 16]), freq=rng.choice([1, 2, 4]),
            pct3x3=rng.choice([0.0, 0.25, 0.5, 0.75, 1.0]), sr=rng.choice([0.125, 0.25, 0.5, 1.0]),
            stem=stem, bypass=rng.choice(["none", "complex"]), num_fires=num_fires,
            # 32x32 leaves room for 3 pools after v1.1's stride-2 conv1, 4 after the small stem
            downsample_at=random_placement(rng, num_fires, 3 if stem == "v1.1" else 4),
            batch_norm=rng.random() < 0.5, num_classes=rng.choice([3, 10]), input_shape=(32, 32, rng.choice([1, 3])),
        )
        spec = expand(cfg)
        # eval_shape: the count needs shapes only, so no random numbers are drawn.
        shapes = jax.eval_shape(lambda s=spec: build_model(s).init(jax.random.key(0), jnp.zeros((1, *s.input_shape))))
        assert count_params(shapes["params"]) == summarize(spec).params, cfg


@pytest.mark.parametrize(
    "cfg",
    [
        # the small stem in the fast tier (the sweeps' network), the ImageNet stems in the slow one
        pytest.param(ArchConfig.preset("squeezenet1_0", num_classes=10, input_shape=(64, 64, 3)), marks=pytest.mark.slow),
        pytest.param(ArchConfig.preset("squeezenet1_1", num_classes=10, input_shape=(64, 64, 3), bypass="simple"),
                     marks=pytest.mark.slow),
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


@pytest.mark.slow  # it compiles the optimised init, the slow program (15 s) init_variables avoids
def test_unoptimised_init_draws_the_optimised_programs_weights():
    # init_variables compiles its one-shot program without LLVM's optimisations (21 s -> 3 s for a
    # fresh architecture): the weights must be those of the optimised program, to float rounding.
    # A small network: the optimised compile this compares against is the slow one.
    model = build_model(expand(ArchConfig.preset("squeezenet_small", num_fires=2, base_e=16, incr_e=0, batch_norm=True)))
    dummy = jnp.zeros((1, *model.spec.input_shape), jnp.float32)
    optimised = jax.jit(model.init, static_argnames="train")({"params": jax.random.key(3)}, dummy, train=False)
    fast = init_variables(model, jax.random.key(3))
    assert jax.tree.structure(fast) == jax.tree.structure(optimised)
    for a, b in zip(jax.tree.leaves(fast), jax.tree.leaves(optimised), strict=True):
        assert jnp.allclose(a, b, rtol=1e-6, atol=1e-8)
    other_seed = init_variables(model, jax.random.key(4))
    assert not all(jnp.array_equal(a, b) for a, b in zip(jax.tree.leaves(fast), jax.tree.leaves(other_seed), strict=True))


def test_preset_fields_can_be_overridden_and_unknown_keys_fail():
    assert ArchConfig.preset("squeezenet1_1", sr=0.25).stem == "v1.1"
    with pytest.raises(ValueError, match="extra"):
        ArchConfig(sqeeze_ratio=0.5)


# ---- depth (num_fires) and downsampling placement (downsample_at) ----


def paper_params(num_fires: int, stem_filters: int = 96, stem_kernel: int = 7, classes: int = 1000) -> int:
    """An independent count from the paper's formula at SqueezeNet's metaparameters
    (base_e = incr_e = 128, freq = 2, pct3x3 = 0.5, SR = 0.125: every width is an integer)."""
    total = stem_kernel * stem_kernel * 3 * stem_filters + stem_filters
    cin = stem_filters
    for i in range(num_fires):
        e = 128 + 128 * (i // 2)
        s = e // 8
        total += cin * s + s + s * (e // 2) + e // 2 + 9 * s * (e // 2) + e // 2
        cin = e
    return total + cin * classes + classes


def test_paper_formula_count_reproduces_table1_total():
    assert paper_params(8) == 1_248_424 and paper_params(8, 64, 3) == 1_235_496


@pytest.mark.parametrize("num_fires", [2, 3, 5, 8, 11, 16])
@pytest.mark.parametrize("stem", ["v1.0", "v1.1"])
def test_parameter_counts_at_other_depths_follow_the_formula(num_fires, stem):
    spec = expand(ArchConfig(num_fires=num_fires, stem=stem))
    kernel = 7 if stem == "v1.0" else 3
    assert summarize(spec).params == paper_params(num_fires, spec.conv1.filters, kernel)
    assert [f.name for f in spec.fires] == [f"fire{i + 2}" for i in range(num_fires)] and spec.conv10.name == "conv10"


def test_hand_counted_depths():
    # depth 2: conv1 14,208 + fire2 11,920 + fire3 12,432 + conv10 128*1000+1000
    assert summarize(expand(ArchConfig(num_fires=2))).params == 14_208 + 11_920 + 12_432 + 129_000
    # depth 10 adds fire10 (512 -> s 80, e 320+320) and fire11 (640 -> same), conv10 reads 640 channels
    fire10 = 512 * 80 + 80 + 80 * 320 + 320 + 9 * 80 * 320 + 320
    fire11 = fire10 + 128 * 80
    assert summarize(expand(ArchConfig(num_fires=10))).params == 1_248_424 - 513_000 + fire10 + fire11 + 641_000


def test_explicit_defaults_reproduce_table1_and_each_stems_positions():
    table1 = summarize(expand(ArchConfig()))
    assert summarize(expand(ArchConfig(num_fires=8, downsample_at=(0, 3 / 8, 7 / 8)))) == table1
    v11 = ArchConfig.preset("squeezenet1_1")
    assert summarize(expand(v11)) == summarize(expand(v11.model_copy(update={"downsample_at": (0.0, 0.25, 0.5)})))
    assert expand(v11).pool_positions == expand(ArchConfig.preset("squeezenet_small")).pool_positions == (0, 2, 4)


@pytest.mark.parametrize(
    "stem, num_fires, layers_before_pools",
    [
        ("v1.0", 8, ["conv1", "fire4", "fire8"]),
        ("v1.0", 4, ["conv1", "fire3", "fire5"]),  # 4 * 3/8 = 1.5 and 4 * 7/8 = 3.5 round up
        ("v1.0", 16, ["conv1", "fire7", "fire15"]),
        ("v1.1", 8, ["conv1", "fire3", "fire5"]),
        ("v1.1", 12, ["conv1", "fire4", "fire7"]),
        ("v1.1", 2, ["conv1", "fire2"]),  # 0.5 and 1.0 both round to 1: one pool there
    ],
)
def test_default_placement_scales_with_depth(stem, num_fires, layers_before_pools):
    layers = [la.name for la in summarize(expand(ArchConfig(stem=stem, num_fires=num_fires))).layers]
    assert [layers[i - 1] for i, name in enumerate(layers) if name.startswith("maxpool")] == layers_before_pools


def test_placement_edges_and_no_downsampling():
    names = [la.name for la in summarize(expand(ArchConfig(downsample_at=(1.0, 0.0)))).layers]
    assert names[:3] == ["conv1", "maxpool1", "fire2"] and names[-4:] == ["fire9", "maxpool9", "conv10", "avgpool10"]
    flat = summarize(expand(ArchConfig(downsample_at=())))
    assert not any(la.name.startswith("maxpool") for la in flat.layers)
    assert {la.output_shape[:2] for la in flat.layers[:-1]} == {(111, 111)}


def test_downsampling_late_costs_macs_and_activation_memory_not_parameters():
    costs = []
    for late in (2 / 8, 4 / 8, 6 / 8, 1.0):
        summary = summarize(expand(ArchConfig.preset("squeezenet1_1", downsample_at=(0, late / 2, late))))
        costs.append((summary.params, summary.macs, summary.activations, summary.peak_activation))
    assert len({params for params, *_ in costs}) == 1
    for earlier, later in zip(costs, costs[1:], strict=False):
        assert later[1] > earlier[1] and later[2] > earlier[2] and later[3] >= earlier[3]


def test_activation_sizes_per_layer_and_totals():
    summary = summarize(expand(ArchConfig()))
    by_name = {la.name: la.activations for la in summary.layers}
    assert by_name["conv1"] == 111 * 111 * 96 == summary.peak_activation and by_name["fire9"] == 13 * 13 * 512
    assert summary.activations == sum(h * w * c for h, w, c in (la.output_shape for la in summary.layers))
    report = summary.to_dict()
    assert report["activation_bytes"] == 4 * summary.activations and report["peak_activation_bytes"] == 4 * 1_182_816
    assert report["layers"][0]["activations"] == 1_182_816


@pytest.mark.parametrize(
    "overrides, fragment",
    [
        ({"downsample_at": (0.0, 1.5)}, "downsample_at=[0.0, 1.5]: 1.5 is outside [0, 1]"),
        ({"downsample_at": (-0.1,)}, "downsample_at=[-0.1]: -0.1 is outside [0, 1]"),
        ({"num_fires": 4, "downsample_at": (0.5, 0.6)},
         "downsample_at=[0.5, 0.6]: 0.5 and 0.6 both put a pool after fire3 (round(f * num_fires=4) = 2)"),
        ({"downsample_at": (0.0, 0.05)}, "0.0 and 0.05 both put a pool after conv1"),
        ({"pool_after": (2, 6)}, "pool_after was replaced by downsample_at (fractions of depth, 0 = after the stem): "
                                 "pool_after=[2, 6] is downsample_at=[0, 0.375, 0.875]"),
    ],
)
def test_bad_placements_fail_in_the_schema_and_in_the_generator(overrides, fragment):
    assert_rejected_by_schema_and_generator(overrides, fragment)


def test_configs_saved_before_downsample_at_still_load():
    old = ArchConfig.model_validate({"stem": "v1.1", "pool_after": None})
    assert "pool_after" not in old.model_dump() and expand(old).pool_positions == (0, 2, 4)


def test_simple_bypass_wraps_every_second_module_at_any_depth():
    for num_fires in (2, 5, 12):
        spec = expand(ArchConfig(num_fires=num_fires, bypass="simple"))
        assert [f.bypass for f in spec.fires] == ["identity" if i % 2 else "none" for i in range(num_fires)]
        # complex: identity where widths match (the same modules), a 1x1 conv elsewhere
        kinds = [f.bypass for f in expand(ArchConfig(num_fires=num_fires, bypass="complex")).fires]
        assert kinds == ["identity" if i % 2 else "conv" for i in range(num_fires)]
    with pytest.raises(SpecError, match="bypass=simple: fire5 input width"):
        expand(ArchConfig(num_fires=12, freq=3, bypass="simple"))


@pytest.mark.parametrize("num_fires, downsample_at", [(2, (0, 1)), (8, None), (13, (0.5, 1, 0.25)), (5, ())])
def test_flax_names_and_map_sizes_at_each_depth(num_fires, downsample_at):
    spec = expand(ArchConfig.preset("squeezenet_small", num_fires=num_fires, downsample_at=downsample_at))
    model = build_model(spec)

    def init_and_apply(x):
        variables = model.init(jax.random.key(0), x)
        return variables, model.apply(variables, x, capture_intermediates=True, mutable="intermediates")[1]

    variables, captured = jax.eval_shape(init_and_apply, jnp.zeros((1, *spec.input_shape)))
    expected = ["conv1", *[f"fire{i + 2}" for i in range(num_fires)], "conv10"]
    assert sorted(variables["params"]) == sorted(expected)
    assert count_params(variables["params"]) == summarize(spec).params
    # each Fire module's output map in Flax is the size the analytics report
    flax_maps = {name: out["__call__"][0].shape[1:] for name, out in captured["intermediates"].items() if name.startswith("fire")}
    assert flax_maps == {la.name: la.output_shape for la in summarize(spec).layers if la.name.startswith("fire")}


def test_both_axes_are_dotted_keys_of_a_grid_sweep(tmp_path):
    from dse.errors import ConfigError
    from dse.sweep.config import load_sweep

    text = """name: depth
base: {{model: {{preset: squeezenet_small}}}}
space:
  model.num_fires: {{values: [4, 8, 12]}}
  model.downsample_at: {{values: [[], [0, 0.5], {bad}]}}
objectives: [{{metric: val_top1, goal: maximize}}]
sampler: {{name: grid, seed: 0}}
"""
    path = tmp_path / "depth.yaml"
    path.write_text(text.format(bad="[0, 0.25, 0.5]"))
    sweep = load_sweep(path)
    cfg = sweep.train_config({"model.num_fires": 12, "model.downsample_at": [0, 0.5]}, "test").model
    assert (cfg.num_fires, expand(cfg).pool_positions) == (12, (0, 6))
    path.write_text(text.format(bad="[0, 0.1, 0.2]"))  # 4 * 0.1 rounds to 0 like the first pool
    with pytest.raises(ConfigError, match=r"model.downsample_at: downsample_at=\[0.0, 0.1, 0.2\]: 0.0 and 0.1 both put a pool "
                       r"after conv1 \(round\(f \* num_fires=4\) = 0\)") as err:
        load_sweep(path)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("shape, padding", [
    pytest.param((2, 13, 13, 3), ((0, 0), (0, 0)), marks=pytest.mark.slow),
    ((2, 14, 14, 3), ((0, 1), (0, 1))),  # SqueezeNet's ceil rounding: the fast tier's case
    pytest.param((2, 8, 8, 3), ((1, 1), (1, 1)), marks=pytest.mark.slow),  # ShuffleNet's padded pool
])
def test_max_pool_gradient_equals_select_and_scatter_ties_included(shape, padding):
    """dse's pool backward (a sum of strided pads, fast on XLA:CPU) gives what reduce_window's own
    gradient gives, including ReLU's ties at zero (the first maximum of a window takes it all)."""
    import flax.linen as nn

    from dse.arch.pooling import max_pool

    x = jax.nn.relu(jax.random.normal(jax.random.key(0), shape))  # about half the cells tie at 0
    weights = jax.random.normal(jax.random.key(1), (shape[-1],))

    def loss(pool):
        return lambda v: jnp.sum(jnp.sin(pool(v)) * weights)

    reference = loss(lambda v: nn.max_pool(v, (3, 3), strides=(2, 2), padding=padding))
    ours = loss(lambda v: max_pool(v, 3, 2, padding))
    assert jnp.allclose(reference(x), ours(x))
    assert jnp.array_equal(jax.grad(reference)(x), jax.grad(ours)(x))

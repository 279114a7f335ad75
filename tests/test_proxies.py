"""Zero-cost proxies: both scores against hand computations, and on the real network seeded,
finite, and different for another architecture."""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import requires_fashion_mnist

from dse.arch import ArchConfig, build_model, expand, init_variables
from dse.sweep import proxies

# conv1 8 filters at 28x28, a pool to 14x14, fire2 (squeeze 1, expand 4 + 4) at 14x14, a pool
# to 7x7, fire3 (the same widths) at 7x7: cheap to compile.
TINY = ArchConfig.preset("squeezenet_small", stem_filters=8, base_e=8, incr_e=8, num_fires=2, batch_norm=True,
                         head_relu=False)
TINY_RELU_UNITS = 28 * 28 * 8 + (1 + 4 + 4) * 14 * 14 + (1 + 4 + 4) * 7 * 7  # 8,477


class TwoLinear(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(1, name="out")(nn.Dense(2, name="hidden")(x))


class OnesChain(nn.Module):
    depth: int
    width: int

    @nn.compact
    def __call__(self, x):
        for _ in range(self.depth):
            x = nn.Dense(self.width, use_bias=False, kernel_init=nn.initializers.ones)(x)
        return x


def test_synflow_matches_a_hand_computation_on_two_linear_layers():
    params = {"hidden": {"kernel": np.array([[0.5, -1.0], [2.0, 0.25], [-0.5, 1.5]]), "bias": np.array([-0.1, 0.2])},
              "out": {"kernel": np.array([[1.0], [-3.0]]), "bias": np.array([0.7])}}
    # Absolute values, input ones: h = 1 |W1| + |b1| = [3.0 + 0.1, 2.75 + 0.2] = [3.1, 2.95].
    # dR/d|W1|_ij = dR/d|b1|_j = |W2|_j = [1, 3]; dR/d|W2|_j = h_j; dR/d|b2| = 1.
    # score = (3.0*1 + 2.75*3) + (0.1*1 + 0.2*3) + (3.1*1 + 2.95*3) + 0.7 = 11.25 + 0.7 + 11.95 + 0.7
    score = proxies.synflow(TwoLinear().apply, {"params": params}, (3,))
    assert score == pytest.approx(math.log(24.6), rel=1e-12)


def test_synflow_runs_past_float32_range():
    # 30 layers of ones, 64 wide: R = 64^31 (e^129, beyond float32's e^88), and R is of degree one
    # in each layer's weights, so the score is 30 R (Euler).
    chain = OnesChain(depth=30, width=64)
    variables = chain.init(jax.random.key(0), jnp.ones((1, 64)))
    assert proxies.synflow(chain.apply, variables, (64,)) == pytest.approx(math.log(30) + 31 * math.log(64), rel=1e-12)


def test_activation_kernel_counts_agreements_by_hand():
    # Codes (1, 0) and (0, 1) agree on no unit: K = 2 I.
    assert proxies.activation_kernel([np.array([[1, 0], [0, 1]], bool)]).tolist() == [[2, 0], [0, 2]]
    # Layers add: (1, 1 | 1) vs (1, 0 | 0) give [[2, 1], [1, 2]] + [[1, 0], [0, 1]], det 3*3 - 1 = 8.
    kernel = proxies.activation_kernel([np.array([[1, 1], [1, 0]], bool), np.array([[1], [0]], bool)])
    assert kernel.tolist() == [[3, 1], [1, 3]]
    assert proxies.log_abs_det(kernel) == pytest.approx(math.log(8))


def test_identical_codes_make_the_all_agree_kernel_whose_log_det_is_minus_infinity():
    codes = np.tile(np.array([[1, 0, 1, 1, 0]], bool), (4, 1))
    kernel = proxies.activation_kernel([codes])
    assert np.all(np.asarray(kernel) == 5)  # 5 J: rank one
    assert proxies.log_abs_det(kernel) == -math.inf


def test_the_network_on_one_image_repeated_gives_units_times_all_ones():
    model = build_model(expand(TINY))
    variables = init_variables(model, jax.random.key(0))
    image = np.random.default_rng(0).normal(size=(1, 28, 28, 1)).astype(np.float32)
    kernel = proxies._naswot_kernel(model.apply, variables, np.repeat(image, 8, axis=0), jax.random.key(0))
    assert np.all(np.asarray(kernel) == TINY_RELU_UNITS)
    assert proxies.naswot(model.apply, variables, np.repeat(image, 8, axis=0), jax.random.key(0)) == -math.inf


@requires_fashion_mnist
def test_proxy_images_are_the_first_training_batch_normalised_without_augmentation():
    from dse.data import load_splits
    from dse.data.config import DataConfig
    from dse.data.pipeline import epoch_order

    splits = load_splits(DataConfig(train_subset=512, augment={"random_crop_padding": 2, "horizontal_flip": True}))
    images = proxies.proxy_images(splits, seed=3, count=16)
    first = splits.train.images[epoch_order(512, seed=3, epoch=0)[:16]]
    np.testing.assert_allclose(images, (first / 255.0 - splits.mean) / splits.std, atol=1e-5)


@pytest.mark.slow  # about 30 s: three initialisations and two architectures compiled
@requires_fashion_mnist
def test_proxies_are_seeded_finite_and_depend_on_the_architecture():
    from dse.data import load_splits
    from dse.data.config import DataConfig

    splits = load_splits(DataConfig(train_subset=512))
    images = proxies.proxy_images(splits, seed=42, count=32)
    first = proxies.proxy_scores(TINY, 42, images)
    assert set(first) == set(proxies.PROXIES)
    assert all(math.isfinite(v) for v in first.values())
    assert proxies.proxy_scores(TINY, 42, images) == first
    assert all(a != b for a, b in zip(first.values(), proxies.proxy_scores(TINY, 43, images).values(), strict=True))
    wider = proxies.proxy_scores(TINY.model_copy(update={"sr": 1.0}), 42, images)
    assert all(a != b for a, b in zip(first.values(), wider.values(), strict=True))

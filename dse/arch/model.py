"""Flax (Linen) SqueezeNet built from a :class:`~dse.arch.spec.NetSpec`, and the baseline
families' interpreter :class:`GraphNet` for a :class:`~dse.arch.families.GraphSpec`.

Modules take every width from the spec; nothing here decides an architecture.
Inputs are NHWC. No ``jit`` here: the trainer jits the step that calls the model.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from dse.arch import families
from dse.arch.pooling import max_pool
from dse.arch.spec import ConvSpec, FireSpec, NetSpec

# Caffe's XavierFiller (the official release) draws U(-a, a) with a = sqrt(3 / fan_in);
# torchvision uses Kaiming-uniform, a = sqrt(6 / fan_in). Both put conv10 at N(0, 0.01).
KERNEL_INITS = {
    "caffe": nn.initializers.variance_scaling(1.0, "fan_in", "uniform"),
    "torchvision": nn.initializers.variance_scaling(2.0, "fan_in", "uniform"),
}
CLASSIFIER_INIT = nn.initializers.normal(stddev=0.01)


def max_pool_ceil(x: jax.Array) -> jax.Array:
    """3x3/2 max pool with Caffe's ceil rounding: pad the high side with -inf as needed."""
    pads = []
    for size in x.shape[1:3]:
        out = -(-(size - 3) // 2) + 1
        pads.append((0, (out - 1) * 2 + 3 - size))
    return max_pool(x, 3, 2, tuple(pads))


class DepthwiseConv(nn.Module):
    """A depthwise conv (one k x k filter per channel) with ``nn.Conv``'s parameters (``kernel``
    (k, k, 1, C), ``bias``) computed as a sum of k*k shifted, strided products.

    Why: XLA:CPU's grouped convolution with ``feature_group_count == C`` has a slow
    gradient; on 128 images of MobileNet's shapes a train step's depthwise layer took
    2.4-22x longer than this form (bench/depthwise_conv.py), which is all elementwise
    work XLA fuses. The sums agree with ``lax.conv_general_dilated`` to float32 rounding
    (tests/test_families.py).
    """

    kernel: int
    stride: int
    padding: int
    use_bias: bool
    kernel_init: nn.initializers.Initializer

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        channels, k, s = x.shape[-1], self.kernel, self.stride
        weights = self.param("kernel", self.kernel_init, (k, k, 1, channels), jnp.float32)
        p = self.padding
        x = jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0))) if p else x
        n, height, width, _ = x.shape
        out_h, out_w = (height - k) // s + 1, (width - k) // s + 1
        out = None
        for dy in range(k):
            for dx in range(k):
                window = jax.lax.slice(x, (0, dy, dx, 0), (n, dy + (out_h - 1) * s + 1, dx + (out_w - 1) * s + 1, channels),
                                       (1, s, s, 1))
                term = window * weights[dy, dx, 0]
                out = term if out is None else out + term
        if self.use_bias:
            out = out + self.param("bias", nn.initializers.zeros_init(), (channels,), jnp.float32)
        return out


class ConvBlock(nn.Module):
    """Conv (+ BatchNorm) (+ ReLU): the only conv the networks use (grouped and ReLU6 for the baselines)."""

    filters: int
    kernel: int
    stride: int = 1
    padding: int = 0
    batch_norm: bool = False
    relu: bool = True
    kernel_init: nn.initializers.Initializer = KERNEL_INITS["caffe"]
    groups: int = 1  # == input channels: depthwise
    relu6: bool = False  # with relu: ReLU6, min(max(x, 0), 6) (MobileNets)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        if self.groups > 1 and self.groups == x.shape[-1] == self.filters:  # depthwise, one filter per channel
            x = DepthwiseConv(self.kernel, self.stride, self.padding, not self.batch_norm, self.kernel_init, name="conv")(x)
        else:
            x = nn.Conv(
                self.filters, (self.kernel, self.kernel), strides=self.stride, padding=self.padding,
                feature_group_count=self.groups, use_bias=not self.batch_norm, kernel_init=self.kernel_init, name="conv",
            )(x)
        if self.batch_norm:
            x = nn.BatchNorm(use_running_average=not train, momentum=0.9, name="bn")(x)
        if not self.relu:
            return x
        return nn.relu6(x) if self.relu6 else nn.relu(x)


class Fire(nn.Module):
    """Squeeze 1x1 -> [expand 1x1 | expand 3x3] concatenated, with an optional bypass."""

    spec: FireSpec
    batch_norm: bool
    kernel_init: nn.initializers.Initializer

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        conv = functools.partial(ConvBlock, batch_norm=self.batch_norm, kernel_init=self.kernel_init)
        squeezed = conv(self.spec.squeeze, 1, name="squeeze")(x, train)
        branches = []
        if self.spec.expand1x1:
            branches.append(conv(self.spec.expand1x1, 1, name="expand1x1")(squeezed, train))
        if self.spec.expand3x3:
            branches.append(conv(self.spec.expand3x3, 3, padding=1, name="expand3x3")(squeezed, train))
        y = jnp.concatenate(branches, axis=-1)
        if self.spec.bypass == "identity":
            y = y + x
        elif self.spec.bypass == "conv":
            y = y + conv(self.spec.out_channels, 1, relu=False, name="bypass")(x, train)
        return y


class SqueezeNet(nn.Module):
    """conv1 -> fire2..fire{num_fires+1} (3x3/2 max pools where the spec puts them, maxpool1
    after conv1 by default) -> dropout -> conv10 -> ReLU -> global avg.

    The ReLU after conv10 is the paper's (``head_relu``, on by default)."""

    spec: NetSpec

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        cfg = self.spec.config
        kernel_init = KERNEL_INITS[cfg.init]
        c1: ConvSpec = self.spec.conv1
        conv1 = ConvBlock(c1.filters, c1.kernel, c1.stride, c1.padding, cfg.batch_norm, kernel_init=kernel_init, name="conv1")
        x = conv1(x, train)
        if self.spec.stem_pool:
            x = max_pool_ceil(x)
        for fire in self.spec.fires:
            x = Fire(fire, cfg.batch_norm, kernel_init, name=fire.name)(x, train)
            if fire.pool_after:
                x = max_pool_ceil(x)
        x = nn.Dropout(cfg.dropout, deterministic=not train)(x)
        x = nn.Conv(self.spec.conv10.filters, (1, 1), kernel_init=CLASSIFIER_INIT, name="conv10")(x)
        return jnp.mean(nn.relu(x) if cfg.head_relu else x, axis=(1, 2))


ACTIVATIONS = {None: lambda x: x, "relu": nn.relu, "relu6": nn.relu6}


class GraphNet(nn.Module):
    """A baseline family's network: walks the spec's nodes in order, each reading the outputs it names.

    Every conv is a :class:`ConvBlock` named after its node (so BatchNorm folds as in a SqueezeNet);
    the last node, the classifier, starts at N(0, 0.01) like SqueezeNet's conv10."""

    spec: families.GraphSpec

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        values = {"input": x}
        for node in self.spec.nodes:
            values[node.name] = self._node(node, [values[name] for name in node.inputs], train)
        return values[self.spec.output]

    def _node(self, node: families.Node, inputs: list[jax.Array], train: bool) -> jax.Array:
        x = inputs[0]
        match node:
            case families.Conv():
                return ConvBlock(node.filters, node.kernel, node.stride, node.padding, node.batch_norm,
                                 relu=node.activation is not None, kernel_init=KERNEL_INITS[self.spec.config.init],
                                 groups=node.groups, relu6=node.activation == "relu6", name=node.name)(x, train)
            case families.Dense():
                x = nn.Dropout(node.dropout, deterministic=not train)(x) if node.dropout else x
                init = CLASSIFIER_INIT if node.name == self.spec.output else KERNEL_INITS[self.spec.config.init]
                x = nn.Dense(node.features, kernel_init=init, name=node.name)(x.reshape(x.shape[0], -1))
                return ACTIVATIONS[node.activation](x)  # (N, features): the logits when it is the last node
            case families.MaxPool():
                return max_pool(x, node.kernel, node.stride, ((node.padding, node.padding),) * 2)
            case families.GlobalAvgPool():
                return jnp.mean(x, axis=(1, 2), keepdims=True)
            case families.Add():
                return ACTIVATIONS[node.activation](inputs[0] + inputs[1])
            case families.Concat():
                return jnp.concatenate(inputs, axis=-1)
            case families.ChannelSlice():
                return x[..., node.start:node.stop]
            case families.ChannelShuffle():
                *batch_hw, channels = x.shape
                x = x.reshape(*batch_hw, node.groups, channels // node.groups)
                return jnp.swapaxes(x, -1, -2).reshape(*batch_hw, channels)
            case families.ZeroPadShortcut():
                x = x[:, ::node.stride, ::node.stride, :]
                return jnp.pad(x, ((0, 0), (0, 0), (0, 0), (node.pad_before, node.pad_after)))
        raise TypeError(f"no Flax rule for node {node!r}")


def build_model(spec: NetSpec | families.GraphSpec) -> SqueezeNet | GraphNet:
    return GraphNet(spec) if isinstance(spec, families.GraphSpec) else SqueezeNet(spec)


INIT_COMPILER_OPTIONS = {"xla_backend_optimization_level": 0}


def init_variables(model: SqueezeNet | GraphNet, rng: jax.Array, batch_size: int = 1) -> dict:
    """Initialise ``params`` (and ``batch_stats`` with BatchNorm) for the spec's input shape."""
    dummy = jnp.zeros((batch_size, *model.spec.input_shape), jnp.float32)
    # Jitted: op-by-op init of a SqueezeNet compiles dozens of small programs. The one program runs
    # once, so it is compiled without LLVM's optimisations: XLA:CPU took 21 s for a fresh
    # architecture's init (its threefry draws), longer than 100 training steps, and takes 3 s so.
    # The draws are integer arithmetic and come out equal; a float rounding may differ (1e-9).
    init = jax.jit(model.init, static_argnames="train").lower({"params": rng}, dummy, train=False)
    return init.compile(compiler_options=INIT_COMPILER_OPTIONS)({"params": rng}, dummy)


def count_params(params) -> int:
    return sum(leaf.size for leaf in jax.tree_util.tree_leaves(params))

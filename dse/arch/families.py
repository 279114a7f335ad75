"""Baseline families as layer graphs: metaparameters -> :class:`GraphSpec`, pure, no JAX.

One small graph language serves every baseline: a :class:`GraphSpec` is a tuple of
nodes in execution order, each naming the nodes it reads (``"input"`` is the image).
One interpreter each turns it into a Flax module (:class:`dse.arch.model.GraphNet`), a
layer table (:func:`dse.arch.analytics.summarize`) and an ONNX graph
(:func:`dse.deploy.onnx_export.build_onnx`). A :class:`Conv` node is conv -> BatchNorm ->
activation as in :class:`dse.arch.model.ConvBlock`: with ``batch_norm`` the conv has no
bias (BatchNorm's offset replaces it), without it the conv has one, which is also the
network BatchNorm folds into for deployment.

The families, as in the reference code their parameter counts are checked against
(``tests/test_families.py``), at ``width_multiplier`` 1:

* ``mobilenet_v1`` (Howard et al. 2017; Keras ``MobileNet``): 3x3/2 conv of 32, then 13
  depthwise 3x3 + pointwise 1x1 pairs (ReLU6 after each, as Keras), global average pool,
  dropout, classifier. Widths are ``int(c * width_multiplier)`` (Keras' rule).
* ``mobilenet_v2`` (Sandler et al. 2018; torchvision): 3x3/2 conv of 32, 17 inverted
  residual blocks (1x1 expand, ReLU6, depthwise 3x3, ReLU6, linear 1x1 project; an
  ``Add`` where stride is 1 and widths match), 1x1 conv to 1280, pool, dropout 0.2,
  classifier. Widths rounded to multiples of 8 (torchvision's ``_make_divisible``); the
  last conv never narrower than 1280.
* ``shufflenet_v2`` (Ma et al. 2018; torchvision): 3x3/2 conv of 24, 3x3/2 max pool,
  stages of 4, 8, 4 units (a downsampling unit with two branches, then units that split
  the channels in halves and transform one), a channel shuffle of 2 groups after each,
  1x1 conv, pool, classifier. Stage widths from the paper's table for 0.5x, 1x, 1.5x, 2x.
* ``resnet`` (He et al. 2016, section 4.2; as akamaster/pytorch_resnet_cifar10): the
  CIFAR ResNet at every input size: 3x3 conv of 16, three stages of n basic blocks
  (3x3 conv, ReLU, 3x3 conv, add, ReLU) of 16, 32, 64 channels, ``depth = 6n + 2``; a
  stage's first block halves the map with stride 2 and its shortcut is option A: the
  input subsampled by 2 and zero channels added half before, half after (no parameters).
  Widths ``round(c * width_multiplier)``, halves up.
* ``alexnet`` (Krizhevsky et al. 2012; torchvision's single-tower layout): convs of 64
  (11x11/4), 192 (5x5), 384, 256, 256 (3x3), 3x3/2 max pools after conv1, conv2 and
  conv5, then fc6 and fc7 of 4096 with dropout before each, and the classifier fc8. The
  last map is flattened as it is (6x6x256 at 224 or 227 px, where torchvision's adaptive
  6x6 pool is the identity). Widths ``round(c * width_multiplier)``, the classifier aside.
  Without BatchNorm by default, as published.

Small images (``stem: small``, the setting of every ``dse train`` run by default, for
28-32 px inputs such as Fashion-MNIST and CIFAR), the usual CIFAR adaptations
(kuangliu/pytorch-cifar for the MobileNets and ShuffleNet v2):

* ``mobilenet_v1``: conv1 stride 1 instead of 2 (downsampling 16x: 28 px -> 2x2 at the end);
* ``mobilenet_v2``: conv1 stride 1, and the first 24-channel block stride 1 instead of 2 (8x: 28 -> 4x4);
* ``shufflenet_v2``: conv1 stride 1 and no max pool (8x: 28 -> 4x4);
* ``alexnet``: conv1 3x3/1 (padding 1) instead of 11x11/4, so the three max pools take
  28 px to 2x2 (32 px to 3x3), and fc6 reads 2x2x256 (3x3x256) instead of 6x6x256;
* ``resnet``: unchanged (it is the small-image network already).

Any other stem (``v1.0``, the default) is the ImageNet layout; ``v1.1`` is refused.
Every conv pads symmetrically with ``kernel // 2`` (AlexNet's conv1: 2), as the PyTorch
references do; Keras pads stride-2 convs at the end only, which gives the same map sizes
for even inputs and so the same counts at 224 px.

>>> spec = expand_family(ArchConfig(family="resnet", depth=20, input_shape=(32, 32, 3), num_classes=10))
>>> len([n for n in spec.nodes if isinstance(n, Conv)]), spec.nodes[-1].name
(19, 'fc')
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from dse.arch.spec import SHUFFLENET_V2_WIDTHS, ArchConfig, conv_out, depth_problem, round_width, width_problem
from dse.errors import SpecError

INPUT = "input"  # the name every graph reads its image by
Activation = Literal["relu", "relu6"] | None


@dataclass(frozen=True)
class Conv:
    """Conv (+ BatchNorm) (+ activation); ``groups == in channels`` is a depthwise conv."""

    name: str
    inputs: tuple[str]
    filters: int
    kernel: int
    stride: int = 1
    padding: int = 0
    groups: int = 1
    batch_norm: bool = False
    activation: Activation = "relu"


@dataclass(frozen=True)
class MaxPool:
    name: str
    inputs: tuple[str]
    kernel: int
    stride: int
    padding: int = 0  # symmetric, never part of a window's max (floor rounding)


@dataclass(frozen=True)
class GlobalAvgPool:
    name: str
    inputs: tuple[str]


@dataclass(frozen=True)
class Dense:
    """Fully connected on the flattened (H, W, C) map; dropout on its input while training."""

    name: str
    inputs: tuple[str]
    features: int
    activation: Activation = None
    dropout: float = 0.0


@dataclass(frozen=True)
class Add:
    name: str
    inputs: tuple[str, str]
    activation: Activation = None


@dataclass(frozen=True)
class Concat:
    """Channels of the inputs, in order."""

    name: str
    inputs: tuple[str, ...]


@dataclass(frozen=True)
class ChannelSlice:
    """Channels ``start:stop`` of the input (ShuffleNet v2's channel split)."""

    name: str
    inputs: tuple[str]
    start: int
    stop: int


@dataclass(frozen=True)
class ChannelShuffle:
    """Channel ``g * (C / groups) + j`` moves to ``j * groups + g`` (ShuffleNet's shuffle)."""

    name: str
    inputs: tuple[str]
    groups: int


@dataclass(frozen=True)
class ZeroPadShortcut:
    """ResNet's option-A shortcut: every ``stride``-th pixel, zero channels added before and after."""

    name: str
    inputs: tuple[str]
    stride: int
    pad_before: int
    pad_after: int


Node = Conv | MaxPool | GlobalAvgPool | Dense | Add | Concat | ChannelSlice | ChannelShuffle | ZeroPadShortcut


@dataclass(frozen=True)
class GraphSpec:
    """A baseline network: its config and its nodes in execution order; the last one gives the logits."""

    config: ArchConfig
    nodes: tuple[Node, ...]

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self.config.input_shape

    @property
    def output(self) -> str:
        return self.nodes[-1].name


def output_shapes(spec: GraphSpec) -> dict[str, tuple[int, int, int]]:
    """(H, W, C) of every node's output (and of ``"input"``); a pooled or dense output is 1x1xC.

    Raises:
        SpecError: a map shrinks below 1x1 (an input too small for the layout).
    """
    shapes = {INPUT: tuple(spec.input_shape)}
    for node in spec.nodes:
        h, w, c = shapes[node.inputs[0]]
        match node:
            case Conv() | MaxPool():
                width = node.filters if isinstance(node, Conv) else c
                shape = (conv_out(h, node.kernel, node.stride, node.padding), conv_out(w, node.kernel, node.stride, node.padding),
                         width)
            case GlobalAvgPool():
                shape = (1, 1, c)
            case Dense():
                shape = (1, 1, node.features)
            case Concat():
                shape = (h, w, sum(shapes[name][2] for name in node.inputs))
            case ChannelSlice():
                shape = (h, w, node.stop - node.start)
            case ZeroPadShortcut():
                shape = (-(-h // node.stride), -(-w // node.stride), c + node.pad_before + node.pad_after)
            case _:  # Add, ChannelShuffle
                shape = (h, w, c)
        if min(shape[:2]) < 1:
            cfg = spec.config
            hint = "" if cfg.stem == "small" else "; use stem: small for 28-32 px inputs"
            raise SpecError(f"input_shape={list(cfg.input_shape)}: too small for {cfg.family} (its map is {h}x{w} before "
                            f"{node.name}, which leaves nothing){hint}")
        shapes[node.name] = shape
    return shapes


class _Builder:
    """The nodes written so far and each one's channels: a generator's working state."""

    def __init__(self, cfg: ArchConfig) -> None:
        self.cfg = cfg
        self.nodes: list[Node] = []
        self.channels = {INPUT: cfg.input_shape[2]}

    def add(self, node: Node, channels: int) -> str:
        if channels < 1:
            raise SpecError(f"width_multiplier={self.cfg.width_multiplier}: {node.name} of {self.cfg.family} gets "
                            f"{channels} channels (must be >= 1)")
        self.nodes.append(node)
        self.channels[node.name] = channels
        return node.name

    def conv(self, name: str, x: str, filters: int, kernel: int, stride: int = 1, *, padding: int | None = None,
             groups: int = 1, activation: Activation = "relu") -> str:
        padding = kernel // 2 if padding is None else padding
        return self.add(Conv(name, (x,), filters, kernel, stride, padding, groups, self.cfg.batch_norm, activation), filters)

    def depthwise(self, name: str, x: str, stride: int = 1, activation: Activation = "relu") -> str:
        channels = self.channels[x]
        return self.conv(name, x, channels, 3, stride, groups=channels, activation=activation)

    def max_pool(self, name: str, x: str, kernel: int = 3, stride: int = 2, padding: int = 0) -> str:
        return self.add(MaxPool(name, (x,), kernel, stride, padding), self.channels[x])

    def dense(self, name: str, x: str, features: int, activation: Activation = None, dropout: float = 0.0) -> str:
        return self.add(Dense(name, (x,), features, activation, dropout), features)

    def classifier(self, x: str) -> GraphSpec:
        """Global average pool, dropout (the config's) and the final ``fc``: the head of every family but AlexNet."""
        x = self.add(GlobalAvgPool("pool", (x,)), self.channels[x])
        self.dense("fc", x, self.cfg.num_classes, dropout=self.cfg.dropout)
        return self.spec()

    def spec(self) -> GraphSpec:
        spec = GraphSpec(self.cfg, tuple(self.nodes))
        output_shapes(spec)  # a layout that does not fit the input fails here, naming the layer
        return spec


# --------------------------------------------------------------------------- MobileNet v1

# Pointwise widths and strides of the 13 depthwise-separable blocks (Howard et al. 2017, Table 1).
MOBILENET_V1_BLOCKS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), *((512, 1),) * 5, (1024, 2), (1024, 1))


def mobilenet_v1(cfg: ArchConfig) -> GraphSpec:
    def width(c: int) -> int:
        return int(c * cfg.width_multiplier)  # Keras' rounding: truncation

    net = _Builder(cfg)
    x = net.conv("conv1", INPUT, width(32), 3, 1 if cfg.stem == "small" else 2, activation="relu6")
    for i, (filters, stride) in enumerate(MOBILENET_V1_BLOCKS, start=1):
        x = net.depthwise(f"block{i}_dw", x, stride, activation="relu6")
        x = net.conv(f"block{i}_pw", x, width(filters), 1, activation="relu6")
    return net.classifier(x)


# --------------------------------------------------------------------------- MobileNet v2

# (expansion t, width c, blocks n, first stride s) per stage (Sandler et al. 2018, Table 2).
MOBILENET_V2_STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
MOBILENET_V2_SMALL_STRIDE1_STAGE = 1  # the 24-channel stage keeps the map on small images (kuangliu/pytorch-cifar)


def make_divisible(value: float, divisor: int = 8) -> int:
    """torchvision's ``_make_divisible``: the nearest multiple of ``divisor``, never 10% below ``value``.

    >>> make_divisible(32 * 0.35), make_divisible(1280 * 1.4)
    (16, 1792)
    """
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def mobilenet_v2(cfg: ArchConfig) -> GraphSpec:
    small = cfg.stem == "small"
    net = _Builder(cfg)
    x = net.conv("conv1", INPUT, make_divisible(32 * cfg.width_multiplier), 3, 1 if small else 2, activation="relu6")
    block = 0
    for stage, (expansion, width, blocks, first_stride) in enumerate(MOBILENET_V2_STAGES):
        out = make_divisible(width * cfg.width_multiplier)
        if small and stage == MOBILENET_V2_SMALL_STRIDE1_STAGE:
            first_stride = 1
        for i in range(blocks):
            block += 1
            stride, cin, name = first_stride if i == 0 else 1, net.channels[x], f"block{block}"
            y = net.conv(f"{name}_expand", x, cin * expansion, 1, activation="relu6") if expansion != 1 else x
            y = net.depthwise(f"{name}_dw", y, stride, activation="relu6")
            y = net.conv(f"{name}_project", y, out, 1, activation=None)  # linear bottleneck
            x = net.add(Add(f"{name}_add", (y, x)), out) if stride == 1 and cin == out else y
    x = net.conv("conv_last", x, make_divisible(1280 * max(1.0, cfg.width_multiplier)), 1, activation="relu6")
    return net.classifier(x)


# --------------------------------------------------------------------------- ShuffleNet v2

# Output widths of conv1, stages 2-4 and conv5 per multiplier (Ma et al. 2018, Table 5; torchvision).
SHUFFLENET_V2_STAGE_WIDTHS = {
    0.5: (24, 48, 96, 192, 1024),
    1.0: (24, 116, 232, 464, 1024),
    1.5: (24, 176, 352, 704, 1024),
    2.0: (24, 244, 488, 976, 2048),
}
SHUFFLENET_V2_REPEATS = (4, 8, 4)
assert tuple(SHUFFLENET_V2_STAGE_WIDTHS) == SHUFFLENET_V2_WIDTHS  # the schema's list is this table's keys


def _shuffle_unit(net: _Builder, name: str, x: str, out: int, stride: int) -> str:
    """One ShuffleNet v2 unit: both branches at stride 2, else split -> one branch -> concat; then shuffle."""
    half = out // 2
    if stride == 1:
        kept = net.add(ChannelSlice(f"{name}_keep", (x,), 0, half), half)
        x = net.add(ChannelSlice(f"{name}_split", (x,), half, net.channels[x]), net.channels[x] - half)
    else:
        kept = net.depthwise(f"{name}_branch1_dw", x, stride, activation=None)
        kept = net.conv(f"{name}_branch1_pw", kept, half, 1)
    y = net.conv(f"{name}_branch2_pw1", x, half, 1)
    y = net.depthwise(f"{name}_branch2_dw", y, stride, activation=None)
    y = net.conv(f"{name}_branch2_pw2", y, half, 1)
    y = net.add(Concat(f"{name}_concat", (kept, y)), net.channels[kept] + half)
    return net.add(ChannelShuffle(f"{name}_shuffle", (y,), 2), net.channels[y])


def shufflenet_v2(cfg: ArchConfig) -> GraphSpec:
    widths = SHUFFLENET_V2_STAGE_WIDTHS[cfg.width_multiplier]
    small = cfg.stem == "small"
    net = _Builder(cfg)
    x = net.conv("conv1", INPUT, widths[0], 3, 1 if small else 2)
    if not small:
        x = net.max_pool("maxpool1", x, 3, 2, padding=1)
    for stage, (repeats, out) in enumerate(zip(SHUFFLENET_V2_REPEATS, widths[1:4], strict=True), start=2):
        for unit in range(1, repeats + 1):
            x = _shuffle_unit(net, f"stage{stage}_unit{unit}", x, out, 2 if unit == 1 else 1)
    x = net.conv("conv5", x, widths[4], 1)
    return net.classifier(x)


# --------------------------------------------------------------------------- CIFAR ResNet

RESNET_STAGE_WIDTHS = (16, 32, 64)


def resnet(cfg: ArchConfig) -> GraphSpec:
    blocks = (cfg.depth - 2) // 6
    widths = [round_width(c * cfg.width_multiplier) for c in RESNET_STAGE_WIDTHS]
    net = _Builder(cfg)
    x = net.conv("conv1", INPUT, widths[0], 3)
    for stage, width in enumerate(widths, start=1):
        for b in range(1, blocks + 1):
            name, cin = f"stage{stage}_block{b}", net.channels[x]
            stride = 2 if stage > 1 and b == 1 else 1
            y = net.conv(f"{name}_conv1", x, width, 3, stride)
            y = net.conv(f"{name}_conv2", y, width, 3, activation=None)
            if stride != 1 or cin != width:  # option A: no parameters
                before = (width - cin) // 2
                x = net.add(ZeroPadShortcut(f"{name}_shortcut", (x,), stride, before, width - cin - before), width)
            x = net.add(Add(f"{name}_add", (y, x), activation="relu"), width)
    return net.classifier(x)


# --------------------------------------------------------------------------- AlexNet

# (name, filters, kernel, stride, padding, max pool after) of the five convs (torchvision).
ALEXNET_CONVS = (("conv1", 64, 11, 4, 2, True), ("conv2", 192, 5, 1, 2, True), ("conv3", 384, 3, 1, 1, False),
                 ("conv4", 256, 3, 1, 1, False), ("conv5", 256, 3, 1, 1, True))
ALEXNET_SMALL_CONV1 = (3, 1, 1)  # kernel, stride, padding on 28-32 px images
ALEXNET_FC_WIDTH = 4096


def alexnet(cfg: ArchConfig) -> GraphSpec:
    def width(c: int) -> int:
        return round_width(c * cfg.width_multiplier)

    net = _Builder(cfg)
    x = INPUT
    for name, filters, kernel, stride, padding, pool in ALEXNET_CONVS:
        if name == "conv1" and cfg.stem == "small":
            kernel, stride, padding = ALEXNET_SMALL_CONV1
        x = net.conv(name, x, width(filters), kernel, stride, padding=padding)
        if pool:
            x = net.max_pool(name.replace("conv", "pool"), x)
    x = net.dense("fc6", x, width(ALEXNET_FC_WIDTH), "relu", cfg.dropout)
    x = net.dense("fc7", x, width(ALEXNET_FC_WIDTH), "relu", cfg.dropout)
    net.dense("fc8", x, cfg.num_classes)
    return net.spec()


GENERATORS = {"mobilenet_v1": mobilenet_v1, "mobilenet_v2": mobilenet_v2, "shufflenet_v2": shufflenet_v2,
              "resnet": resnet, "alexnet": alexnet}


def expand_family(cfg: ArchConfig) -> GraphSpec:
    """The graph of a baseline config; raises :class:`SpecError` on a config no network fits.

    Rules are checked again here: configs made with ``model_copy`` skip the schema's validators.
    """
    problem = width_problem(cfg.family, cfg.width_multiplier) or (cfg.family == "resnet" and depth_problem(cfg.depth))
    if problem:
        raise SpecError(problem)
    if min(cfg.input_shape) < 1 or cfg.num_classes < 1:
        raise SpecError(f"input_shape={list(cfg.input_shape)}, num_classes={cfg.num_classes}: each must be >= 1")
    return GENERATORS[cfg.family](cfg)


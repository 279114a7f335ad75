"""Exact per-layer shapes, parameter counts, MACs and sizes of a spec, before training.

Counts follow Table 1 of the paper: weights plus biases of every conv; a conv's MACs
are ``H_out * W_out * k * k * C_in * C_out`` (pools, ReLUs and additions are not
multiply-accumulates). With ``batch_norm`` a normalised conv has no bias of its own
(BatchNorm's offset replaces it) and adds BatchNorm's scale and offset; running
statistics are state, not parameters.

A baseline family's graph (:mod:`dse.arch.families`) has one row per node, with the same
conventions: a conv's MACs are ``H_out * W_out * k * k * C_in / groups * C_out``, a dense
layer's ``inputs * outputs``; each row also records the elements it reads (``reads``),
as its inputs are not always the previous row.

Activation memory is counted per layer as the elements of its output map (the rows of
Table 1; a Fire module's squeeze and expand maps inside it are not rows), in float32
for inference: ``activation_bytes`` sums every map (all kept, as for a backward pass),
``peak_activation_bytes`` is the largest single map. Both grow when pools move later.

>>> from dse.arch.spec import ArchConfig, expand
>>> summary = summarize(expand(ArchConfig.preset("squeezenet1_0")))
>>> summary.params, round(summary.size_mb(32), 2)
(1248424, 4.76)
>>> summary.peak_activation, summary.layers[0].name   # conv1's 111x111x96 map
(1182816, 'conv1')
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from dse.arch import families
from dse.arch.spec import ConvSpec, FireSpec, NetSpec, conv_out, pool_name, pool_out

MIB = 2**20  # the paper's "MB" (4.8 MB for 1,248,424 float32 parameters) is MiB
ACTIVATION_BYTES = 4  # float32 activations


@dataclass(frozen=True)
class LayerStats:
    """One row of the Table-1-style layer table."""

    name: str
    output_shape: tuple[int, int, int]
    filters: str = ""
    squeeze: int | None = None
    expand1x1: int | None = None
    expand3x3: int | None = None
    bypass: str = ""
    params: int = 0
    macs: int = 0
    reads: int | None = None  # elements of the maps it reads; None: the previous row's map (SqueezeNet's chain)

    @property
    def activations(self) -> int:
        """Elements of this layer's output map."""
        h, w, c = self.output_shape
        return h * w * c


@dataclass(frozen=True)
class Summary:
    layers: tuple[LayerStats, ...]
    params: int
    macs: int
    input_shape: tuple[int, int, int]  # (H, W, C) of the image conv1 reads

    @property
    def activations(self) -> int:
        """Elements of every layer's output map together."""
        return sum(layer.activations for layer in self.layers)

    @property
    def peak_activation(self) -> int:
        """Elements of the largest single output map."""
        return max(layer.activations for layer in self.layers)

    def activation_bytes(self) -> int:
        return self.activations * ACTIVATION_BYTES

    def peak_activation_bytes(self) -> int:
        return self.peak_activation * ACTIVATION_BYTES

    def size_bytes(self, bits: int = 32) -> int:
        """Model size when every parameter is stored with ``bits`` bits (dense, no coding)."""
        return (self.params * bits + 7) // 8

    def size_mb(self, bits: int = 32) -> float:
        return self.size_bytes(bits) / MIB

    def static_metrics(self) -> dict[str, float]:
        """The metrics known before training, by their names in :data:`dse.contract.METRICS`."""
        from dse.arch.energy import estimate_energy  # builds on this module's Summary

        return {"params": self.params, "model_size_mb": self.size_mb(32), "macs": self.macs,
                "energy_uj": estimate_energy(self).total_uj}

    def to_dict(self, bits: int = 32) -> dict:
        return {
            "layers": [{**asdict(layer), "activations": layer.activations} for layer in self.layers],
            "params": self.params,
            "macs": self.macs,
            "activations": self.activations,
            "activation_bytes": self.activation_bytes(),
            "peak_activation": self.peak_activation,
            "peak_activation_bytes": self.peak_activation_bytes(),
            "size_bytes": self.size_bytes(bits),
            "size_mb": self.size_mb(bits),
            "bits": bits,
        }


def conv_params(conv_in: int, conv_out_: int, kernel: int, batch_norm: bool) -> int:
    """Weights + bias of one conv; with BatchNorm, its scale and offset replace the bias."""
    return kernel * kernel * conv_in * conv_out_ + (2 if batch_norm else 1) * conv_out_


def _fire_stats(fire: FireSpec, hw: tuple[int, int], batch_norm: bool) -> LayerStats:
    pixels = hw[0] * hw[1]
    convs = [(fire.in_channels, fire.squeeze, 1)]
    convs += [(fire.squeeze, width, k) for width, k in ((fire.expand1x1, 1), (fire.expand3x3, 3)) if width]
    if fire.bypass == "conv":
        convs.append((fire.in_channels, fire.out_channels, 1))
    params = sum(conv_params(cin, cout, k, batch_norm) for cin, cout, k in convs)
    macs = sum(pixels * k * k * cin * cout for cin, cout, k in convs)
    return LayerStats(
        fire.name, (hw[0], hw[1], fire.out_channels), "", fire.squeeze, fire.expand1x1, fire.expand3x3,
        "" if fire.bypass == "none" else fire.bypass, params, macs,
    )


def _conv_stats(conv: ConvSpec, hw: tuple[int, int], batch_norm: bool) -> tuple[LayerStats, tuple[int, int]]:
    out = (conv_out(hw[0], conv.kernel, conv.stride, conv.padding), conv_out(hw[1], conv.kernel, conv.stride, conv.padding))
    params = conv_params(conv.in_channels, conv.filters, conv.kernel, batch_norm)
    macs = out[0] * out[1] * conv.kernel**2 * conv.in_channels * conv.filters
    filters = f"{conv.kernel}x{conv.kernel}/{conv.stride}, {conv.filters}"
    return LayerStats(conv.name, (out[0], out[1], conv.filters), filters, params=params, macs=macs), out


def _pool_stats(name: str, hw: tuple[int, int], channels: int) -> tuple[LayerStats, tuple[int, int]]:
    out = (pool_out(hw[0]), pool_out(hw[1]))
    return LayerStats(name, (out[0], out[1], channels), "3x3/2"), out


def summarize(spec: NetSpec | families.GraphSpec) -> Summary:
    """Layer table and totals of ``spec`` for its input shape."""
    if isinstance(spec, families.GraphSpec):
        return summarize_graph(spec)
    bn = spec.config.batch_norm
    hw = spec.input_shape[:2]
    conv1, hw = _conv_stats(spec.conv1, hw, bn)
    layers = [conv1]
    if spec.stem_pool:
        pool1, hw = _pool_stats(pool_name(0), hw, spec.conv1.filters)
        layers.append(pool1)
    for fire in spec.fires:
        layers.append(_fire_stats(fire, hw, bn))
        if fire.pool_after:
            pool, hw = _pool_stats(pool_name(fire.index + 1), hw, fire.out_channels)
            layers.append(pool)
    conv10, hw = _conv_stats(spec.conv10, hw, batch_norm=False)
    layers += [conv10, LayerStats("avgpool10", (1, 1, spec.conv10.filters), "global")]
    return Summary(tuple(layers), sum(la.params for la in layers), sum(la.macs for la in layers), tuple(spec.input_shape))


def _node_row(node: families.Node, inputs: list[tuple[int, int, int]], out: tuple[int, int, int]) -> LayerStats:
    """The layer-table row of one graph node: its filters column, parameters and MACs."""
    cin = inputs[0][2]
    params = macs = 0
    bypass = ""
    match node:
        case families.Conv():
            depthwise = " dw" if node.groups == cin > 1 else f" g{node.groups}" if node.groups > 1 else ""
            filters = f"{node.kernel}x{node.kernel}/{node.stride}{depthwise}, {node.filters}"
            params = conv_params(cin // node.groups, node.filters, node.kernel, node.batch_norm)
            macs = out[0] * out[1] * node.kernel**2 * cin // node.groups * node.filters
        case families.Dense():
            filters = f"fc, {node.features}"
            params, macs = (math.prod(inputs[0]) + 1) * node.features, math.prod(inputs[0]) * node.features
        case families.MaxPool():
            filters = f"max {node.kernel}x{node.kernel}/{node.stride}"
        case families.GlobalAvgPool():
            filters = "global avg"
        case families.Add():
            filters, bypass = "add", node.inputs[1]  # the shortcut's source
        case families.Concat():
            filters = "concat"
        case families.ChannelSlice():
            filters = f"channels {node.start}:{node.stop}"
        case families.ChannelShuffle():
            filters = f"shuffle, {node.groups} groups"
        case families.ZeroPadShortcut():
            filters = f"subsample /{node.stride}, +{node.pad_before + node.pad_after} zero channels"
    return LayerStats(node.name, out, filters, bypass=bypass, params=params, macs=macs,
                      reads=sum(math.prod(shape) for shape in inputs))


def summarize_graph(spec: families.GraphSpec) -> Summary:
    """Layer table and totals of a baseline family's graph: one row per node."""
    shapes = families.output_shapes(spec)
    layers = tuple(_node_row(node, [shapes[name] for name in node.inputs], shapes[node.name]) for node in spec.nodes)
    return Summary(layers, sum(la.params for la in layers), sum(la.macs for la in layers), tuple(spec.input_shape))

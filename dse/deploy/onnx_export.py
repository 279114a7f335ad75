"""ONNX export of a dse network, written node by node from its spec with ``onnx.helper``.

The graph computes what ``dse.arch.model.SqueezeNet`` computes in eval mode:

* input ``images``: float32 (N, H, W, C), NHWC as the Flax model takes it, batch ``N``
  dynamic, pixels in [0, 1] (8-bit value / 255);
* Transpose to NCHW, then ``Sub`` mean and ``Div`` std per channel (the run's train-split
  statistics), so a caller feeds plain pixels;
* every conv with its bias (BatchNorm already folded in, ``dse.compress.fold``) and the
  Flax model's symmetric zero padding; ReLU after each conv but the complex-bypass conv
  (and conv10 when ``head_relu`` is off);
* each 3x3/2 max pool with Caffe's ceil rounding written as explicit end padding, which
  ONNX MaxPool ignores in the max, as the Flax model pads with -inf (no ``ceil_mode``,
  which some runtimes implement differently);
* Fire modules as squeeze -> [expand 1x1 | expand 3x3] -> Concat, a simple bypass as
  ``Add``, a complex one as ``Add`` of a 1x1 conv of the module's input;
* dropout is the identity at inference and is left out; conv10 -> GlobalAveragePool ->
  Flatten gives output ``logits`` (N, classes).

A baseline family's graph (:mod:`dse.arch.families`) is written node for node in the same
way (its convs with ``group`` for depthwise ones, ReLU6 as ``Clip(0, 6)``, ShuffleNet's
channel split as ``Slice`` and its shuffle as Reshape -> Transpose -> Reshape, ResNet's
option-A shortcut as a strided ``Slice`` and a channel ``Pad``); a dense layer on a map
first transposes it back to NHWC, so its weights are the Flax model's as they are.

jax2onnx is not used: its output was found inexact for this network family.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from dse.arch import families
from dse.arch.spec import FireSpec, NetSpec, conv_out, pool_name, pool_out
from dse.deploy.inference_model import InferenceModel
from dse.errors import DseError

INPUT_NAME = "images"
OUTPUT_NAME = "logits"
BATCH_DIM = "N"
# Opset 17 has every op used here in its current form and runs on ONNX Runtime >= 1.13,
# TensorRT 8.6 and onnx2tf: as old as possible, so more runtimes load the file.
OPSET = 17
FORMATS = ("onnx",)


class _Graph:
    """Nodes and initializers under construction; every method returns its output's name."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []

    def constant(self, name: str, value: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(value, np.float32), name))
        return name

    def node(self, op: str, inputs: list[str], name: str, **attributes) -> str:
        self.nodes.append(helper.make_node(op, inputs, [name], name=name, **attributes))
        return name

    def ints(self, name: str, values: list[int]) -> str:
        """An int64 constant: a shape, slice bounds or pads."""
        self.initializers.append(numpy_helper.from_array(np.asarray(values, np.int64), name))
        return name

    def conv(self, x: str, name: str, weights: dict, stride: int = 1, padding: int = 0, relu: bool = True,
             groups: int = 1, relu6: bool = False) -> str:
        """A Flax conv (kernel HWIO, bias) as ONNX Conv (OIHW), optionally followed by ReLU (or ReLU6)."""
        kernel = np.asarray(weights["kernel"]).transpose(3, 2, 0, 1)
        inputs = [x, self.constant(f"{name}/kernel", kernel), self.constant(f"{name}/bias", weights["bias"])]
        grouped = {"group": groups} if groups > 1 else {}
        y = self.node("Conv", inputs, name, kernel_shape=list(kernel.shape[2:]), strides=[stride, stride],
                      pads=[padding] * 4, **grouped)
        if not relu:
            return y
        return self.activation(y, name, "relu6" if relu6 else "relu")

    def activation(self, x: str, name: str, kind: str | None, output: str | None = None) -> str:
        """ReLU, or ReLU6 as Clip(0, 6), or nothing (``kind`` None) after the op ``name``."""
        if kind is None:
            return x
        if kind == "relu":
            return self.node("Relu", [x], output or f"{name}/relu")
        bounds = [self.constant(f"{name}/relu6_min", np.float32(0)), self.constant(f"{name}/relu6_max", np.float32(6))]
        return self.node("Clip", [x, *bounds], output or f"{name}/relu6")

    def max_pool(self, x: str, name: str, height: int, width: int) -> tuple[str, int, int]:
        """3x3/2 max pool with ceil rounding: the end of each axis padded so the last window fits."""
        out_h, out_w = pool_out(height), pool_out(width)
        pads = [0, 0, (out_h - 1) * 2 + 3 - height, (out_w - 1) * 2 + 3 - width]  # begin h, w, end h, w
        return self.node("MaxPool", [x], name, kernel_shape=[3, 3], strides=[2, 2], pads=pads), out_h, out_w

    def fire(self, x: str, fire: FireSpec, weights: dict) -> str:
        squeezed = self.conv(x, f"{fire.name}/squeeze", weights["squeeze"]["conv"])
        branches = [self.conv(squeezed, f"{fire.name}/{branch}", weights[branch]["conv"], padding=pad)
                    for branch, width, pad in (("expand1x1", fire.expand1x1, 0), ("expand3x3", fire.expand3x3, 1)) if width]
        y = branches[0] if len(branches) == 1 else self.node("Concat", branches, f"{fire.name}/concat", axis=1)
        if fire.bypass == "identity":
            y = self.node("Add", [y, x], f"{fire.name}/bypass_add")
        elif fire.bypass == "conv":
            shortcut = self.conv(x, f"{fire.name}/bypass", weights["bypass"]["conv"], relu=False)
            y = self.node("Add", [y, shortcut], f"{fire.name}/bypass_add")
        return y


def _graph_layer(g: _Graph, node: families.Node, inputs: list[str], shape: tuple[int, int, int], weights: dict | None,
                 output: str) -> str:
    """One node of a baseline family's graph; ``shape`` is its first input's (H, W, C), ``output`` its name."""
    x, (height, width, channels) = inputs[0], shape
    match node:
        case families.Conv():
            return g.conv(x, output, weights["conv"], node.stride, node.padding, node.activation is not None, node.groups,
                          node.activation == "relu6")
        case families.Dense():
            if (height, width) != (1, 1):  # Flax flattens (H, W, C)
                x = g.node("Transpose", [x], f"{node.name}/to_nhwc", perm=[0, 2, 3, 1])
            x = g.node("Flatten", [x], f"{node.name}/flatten", axis=1)
            gemm = [x, g.constant(f"{node.name}/kernel", weights["kernel"]), g.constant(f"{node.name}/bias", weights["bias"])]
            if node.activation is None:
                return g.node("Gemm", gemm, output)
            return g.activation(g.node("Gemm", gemm, f"{node.name}/gemm"), node.name, node.activation, output)
        case families.MaxPool():
            return g.node("MaxPool", [x], output, kernel_shape=[node.kernel] * 2, strides=[node.stride] * 2,
                          pads=[node.padding] * 4)
        case families.GlobalAvgPool():
            return g.node("GlobalAveragePool", [x], output)
        case families.Add():
            if node.activation is None:
                return g.node("Add", inputs, output)
            return g.activation(g.node("Add", inputs, f"{node.name}/add"), node.name, node.activation, output)
        case families.Concat():
            return g.node("Concat", inputs, output, axis=1)
        case families.ChannelSlice():
            bounds = [g.ints(f"{node.name}/starts", [node.start]), g.ints(f"{node.name}/ends", [node.stop]),
                      g.ints(f"{node.name}/axes", [1])]
            return g.node("Slice", [x, *bounds], output)
        case families.ChannelShuffle():
            groups = node.groups
            x = g.node("Reshape", [x, g.ints(f"{node.name}/grouped_shape", [0, groups, channels // groups, height, width])],
                       f"{node.name}/grouped")
            x = g.node("Transpose", [x], f"{node.name}/transpose", perm=[0, 2, 1, 3, 4])
            return g.node("Reshape", [x, g.ints(f"{node.name}/flat_shape", [0, channels, height, width])], output)
        case families.ZeroPadShortcut():
            every = [g.ints(f"{node.name}/starts", [0, 0]), g.ints(f"{node.name}/ends", [height, width]),
                     g.ints(f"{node.name}/axes", [2, 3]), g.ints(f"{node.name}/steps", [node.stride] * 2)]
            x = g.node("Slice", [x, *every], f"{node.name}/subsample")
            pads = g.ints(f"{node.name}/pads", [0, node.pad_before, 0, 0, 0, node.pad_after, 0, 0])
            return g.node("Pad", [x, pads], output)
    raise TypeError(f"no ONNX rule for node {node!r}")


def _graph_body(g: _Graph, x: str, spec: families.GraphSpec, params: dict) -> None:
    """A baseline family's nodes, in order; the last one writes ``logits``."""
    shapes = families.output_shapes(spec)
    names = {families.INPUT: x}
    for node in spec.nodes:
        output = OUTPUT_NAME if node.name == spec.output else node.name
        names[node.name] = _graph_layer(g, node, [names[name] for name in node.inputs], shapes[node.inputs[0]],
                                        params.get(node.name), output)


def _squeezenet_body(g: _Graph, x: str, spec: NetSpec, params: dict) -> None:
    """conv1, the Fire modules and their pools, conv10 and the global average: ``logits``."""
    height, width, _ = spec.input_shape
    c1 = spec.conv1
    x = g.conv(x, "conv1", params["conv1"]["conv"], c1.stride, c1.padding)
    height, width = conv_out(height, c1.kernel, c1.stride, c1.padding), conv_out(width, c1.kernel, c1.stride, c1.padding)
    if spec.stem_pool:
        x, height, width = g.max_pool(x, pool_name(0), height, width)
    for fire in spec.fires:
        x = g.fire(x, fire, params[fire.name])
        if fire.pool_after:
            x, height, width = g.max_pool(x, pool_name(fire.index + 1), height, width)
    x = g.conv(x, "conv10", params["conv10"], relu=spec.config.head_relu)
    x = g.node("GlobalAveragePool", [x], "avgpool10")
    g.node("Flatten", [x], OUTPUT_NAME, axis=1)


def build_onnx(model: InferenceModel) -> onnx.ModelProto:
    """The ONNX model of ``model`` (see the module docstring for its contract)."""
    spec, params = model.spec, model.params
    if spec.config.batch_norm:
        raise ValueError("build_onnx takes a BatchNorm-free network; fold it first (dse.deploy.inference_model)")
    channels = spec.input_shape[2]
    g = _Graph()
    x = g.node("Transpose", [INPUT_NAME], "to_nchw", perm=[0, 3, 1, 2])
    x = g.node("Sub", [x, g.constant("mean", model.mean.reshape(1, channels, 1, 1))], "subtract_mean")
    x = g.node("Div", [x, g.constant("std", model.std.reshape(1, channels, 1, 1))], "divide_std")
    if isinstance(spec, families.GraphSpec):
        _graph_body(g, x, spec, params)
        name, title = spec.config.family, spec.config.family
    else:
        _squeezenet_body(g, x, spec, params)
        name, title = "squeezenet", "SqueezeNet"

    graph = helper.make_graph(
        g.nodes, name,
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [BATCH_DIM, *spec.input_shape])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, [BATCH_DIM, spec.config.num_classes])],
        g.initializers,
    )
    onnx_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="dse",
                                   doc_string=f"dse {title}: images (N, H, W, C) float32 pixels in [0, 1] -> logits")
    helper.set_model_props(onnx_model, {
        "dse.model": json.dumps(spec.config.model_dump(mode="json"), sort_keys=True),
        "dse.mean": json.dumps(model.mean.tolist()), "dse.std": json.dumps(model.std.tolist()),
        "dse.source": str(model.source or ""),
    })
    onnx.checker.check_model(onnx_model, full_check=True)
    return onnx_model


def check_output_path(output: Path) -> None:
    """Refuse, before any work, an output that cannot be written (one line)."""
    if output.is_dir():
        raise DseError(f"{output}: is a folder; give a file name for the exported model")
    folder = output.parent
    if not folder.is_dir():
        raise DseError(f"{output}: cannot write: folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK) or (output.exists() and not os.access(output, os.W_OK)):
        raise DseError(f"{output}: cannot write: permission denied")


def export_model(source: str | Path, output: str | Path, fmt: str = "onnx") -> dict:
    """Export a run folder's last checkpoint or a ``.dsez`` file as an ONNX file.

    Args:
        source: a ``dse train`` run folder or a ``.dsez`` file (``dse compress``).
        output: the file to write; replaced only by a complete new file.
        fmt: the export format; only ``"onnx"``.

    Returns:
        ``file``, ``bytes``, ``format``, ``opset``, ``input`` and ``output`` (name and shape).

    Raises:
        DseError: an unknown format or an unwritable output (checked before anything is loaded);
            DataError: a source that is not a run with a checkpoint or a readable ``.dsez`` file.
    """
    from dse.compress.container import write_atomic
    from dse.deploy.inference_model import load_inference_model

    output = Path(output)
    if fmt not in FORMATS:
        raise DseError(f"--format {fmt}: unknown export format; choose from {', '.join(FORMATS)}")
    check_output_path(output)
    model = load_inference_model(source)
    data = build_onnx(model).SerializeToString()
    try:
        write_atomic(output, data)
    except OSError as err:
        raise DseError(f"{output}: cannot write: {err.strerror or err}") from None
    return {"file": str(output), "bytes": len(data), "format": fmt, "opset": OPSET,
            "input": f"{INPUT_NAME} float32 ({', '.join(map(str, [BATCH_DIM, *model.input_shape]))})",
            "output": f"{OUTPUT_NAME} float32 ({BATCH_DIM}, {model.spec.config.num_classes})"}

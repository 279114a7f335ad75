"""ONNX export of a dse SqueezeNet, written node by node from its spec with ``onnx.helper``.

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

jax2onnx is not used: its output was found inexact for this network family.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from dse.arch.spec import FireSpec, conv_out, pool_name, pool_out
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

    def conv(self, x: str, name: str, weights: dict, stride: int = 1, padding: int = 0, relu: bool = True) -> str:
        """A Flax conv (kernel HWIO, bias) as ONNX Conv (OIHW), optionally followed by ReLU."""
        kernel = np.asarray(weights["kernel"]).transpose(3, 2, 0, 1)
        inputs = [x, self.constant(f"{name}/kernel", kernel), self.constant(f"{name}/bias", weights["bias"])]
        y = self.node("Conv", inputs, name, kernel_shape=list(kernel.shape[2:]), strides=[stride, stride],
                      pads=[padding] * 4)
        return self.node("Relu", [y], f"{name}/relu") if relu else y

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


def build_onnx(model: InferenceModel) -> onnx.ModelProto:
    """The ONNX model of ``model`` (see the module docstring for its contract)."""
    spec, params = model.spec, model.params
    if spec.config.batch_norm:
        raise ValueError("build_onnx takes a BatchNorm-free network; fold it first (dse.deploy.inference_model)")
    height, width, channels = spec.input_shape
    g = _Graph()
    x = g.node("Transpose", [INPUT_NAME], "to_nchw", perm=[0, 3, 1, 2])
    x = g.node("Sub", [x, g.constant("mean", model.mean.reshape(1, channels, 1, 1))], "subtract_mean")
    x = g.node("Div", [x, g.constant("std", model.std.reshape(1, channels, 1, 1))], "divide_std")

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

    graph = helper.make_graph(
        g.nodes, "squeezenet",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [BATCH_DIM, *spec.input_shape])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, [BATCH_DIM, spec.conv10.filters])],
        g.initializers,
    )
    onnx_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="dse",
                                   doc_string="dse SqueezeNet: images (N, H, W, C) float32 pixels in [0, 1] -> logits")
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
            "output": f"{OUTPUT_NAME} float32 ({BATCH_DIM}, {model.spec.conv10.filters})"}

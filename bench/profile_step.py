"""Where does one training step go? dse's jitted step op by op, beside PyTorch eager's.

Profiles the trainer's own step (``dse.train.step.train_step``, jitted as the trainer
jits it) with ``jax.profiler`` and reads the trace's per-instruction events; each compiled
HLO instruction is put in a category from the compiled program's text: its source
location in the model (``jvp(SqueezeNet)`` forward, ``transpose(jvp(SqueezeNet))``
backward), the op it computes, and for a backward convolution whether its output has a
kernel's shape (filter gradient) or an activation's (input gradient). The same network
(``bench/trainer_throughput.py``'s PyTorch twin, identical parameter count) is profiled
with ``torch.profiler`` and its operators' self times put in the same categories
(PyTorch computes a conv's input and filter gradients in one operator, so they are one
row there).

By default the process is pinned to one core with one thread per framework: a sweep on
this 2-core machine runs 2 single-threaded workers, so that is the configuration whose
speed matters. Also printed: the step's wall time per framework, and the host-to-device
copy of one batch (dse copies each batch from numpy).

    pip install -e '.[bench]'
    python bench/profile_step.py                        # squeezenet_small, 28x28x1, batch 128, 1 core
    python bench/profile_step.py --input 32,32,3        # CIFAR-sized input
    python bench/profile_step.py --markdown bench/profile_step.md   # also write the table
"""

from __future__ import annotations

import argparse
import collections
import math
import os
import re
import sys
import tempfile
import time
from pathlib import Path


def parse_args() -> argparse.Namespace:
    from trainer_throughput import add_network_args

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_network_args(parser)
    parser.add_argument("--steps", type=int, default=20, help="profiled steps per framework")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--cores", type=int, default=1, help="cores the process may use (one thread per core)")
    parser.add_argument("--set", dest="overrides", action="append", default=["batch_norm=true", "head_relu=false"],
                        help="arch field=value (default: the sweeps' batch_norm=true, head_relu=false)")
    parser.add_argument("--markdown", type=Path, help="write the table here too")
    return parser.parse_args()


def limit_cores(cores: int) -> None:
    """Pin to ``cores`` cores and size both frameworks' thread pools to match; before JAX loads."""
    os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[:cores]))
    if cores == 1:
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                                   " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1").strip()


# ---- JAX: the compiled program's instructions, each with a category ----
OP_NAME = re.compile(r'op_name="([^"]*)"')
CALLS = re.compile(r"calls=%([\w.\-]+)")
SHAPE_DIMS = re.compile(r"\[([\d,]*)\]")
SKIPPED = ("parameter", "constant", "get-tuple-element", "tuple", "bitcast")


def kernel_shapes(params) -> set[tuple[int, ...]]:
    """Every conv kernel's dims without the 1s, sorted: a filter gradient's output has one of these
    (in whatever layout XLA chose)."""
    import jax

    shapes = set()
    for path, leaf in jax.tree_util.tree_leaves_with_path(params):
        if "kernel" in jax.tree_util.keystr(path):
            shapes.add(tuple(sorted(d for d in leaf.shape if d != 1)))
    return shapes


def parse_instruction(line: str) -> tuple[str, str, str] | None:
    """(name, shape, opcode) of one HLO instruction line; tuple shapes hold spaces, so not a regex."""
    line = line.strip().removeprefix("ROOT ")
    if not line.startswith("%") or " = " not in line:
        return None
    name, rest = line[1:].split(" = ", 1)
    if rest.startswith("("):
        depth, end = 0, 0
        while True:
            depth += {"(": 1, ")": -1}.get(rest[end], 0)
            if depth == 0:
                break
            end += 1
        shape, rest = rest[: end + 1], rest[end + 2:]
    else:
        shape, _, rest = rest.partition(" ")
    return name, shape, rest.split("(", 1)[0]


def computations(hlo_text: str) -> dict[str, str]:
    """Computation name -> its body, for looking inside fusions."""
    bodies, name, lines = {}, None, []
    for line in hlo_text.splitlines():
        if line.startswith("%") and line.rstrip().endswith("{"):
            name, lines = line[1:].split(" ", 1)[0], []
        elif line.startswith("}") and name:
            bodies[name] = "\n".join(lines)
            name = None
        elif name:
            lines.append(line)
    return bodies


def conv_gradient(shape: str, kernels: set[tuple[int, ...]]) -> str:
    dims = SHAPE_DIMS.search(shape)
    out = tuple(sorted(int(d) for d in dims.group(1).split(",") if d and int(d) != 1)) if dims else ()
    return "conv filter gradient" if out in kernels else "conv input gradient"


def categorize_jax(line: str, shape: str, opcode: str, bodies: dict[str, str], kernels: set[tuple[int, ...]]) -> str:
    op_name = (OP_NAME.search(line) or [None, ""])[1]
    called = CALLS.search(line)
    body = bodies.get(called.group(1), "") if called else ""
    computes = body if opcode == "fusion" else f" {opcode}("
    is_conv = " convolution(" in computes or " dot(" in computes
    backward = "transpose(jvp(" in op_name
    if " scatter(" in computes or " iota(" in computes or (" reduce-window(" in computes and shape.startswith("(")):
        return "max pool backward"  # XLA:CPU's select-and-scatter: argmax indices by iota, then a scatter
    if is_conv:
        return conv_gradient(shape, kernels) if backward or not op_name else "conv forward"
    if not op_name:
        dims = SHAPE_DIMS.search(shape)
        elements = math.prod(int(d) for d in dims.group(1).split(",") if d) if dims else 0
        if elements > max(math.prod(k) for k in kernels):
            return "activation transposes and copies (inserted by XLA)"
        return "parameter and scalar copies (inserted by XLA)"
    in_model = "SqueezeNet" in op_name
    if in_model and ("reduce_window" in op_name or "select_and_scatter" in op_name or "max_pool" in op_name):
        return "max pool backward" if backward else "max pool forward"
    if in_model and "/bn/" in op_name:
        return "BatchNorm backward" if backward else "BatchNorm forward"
    if "Dropout" in op_name or "threefry" in op_name or "random" in op_name:
        return "dropout (random bits, mask)"
    if in_model:
        return "ReLU, concat, bias, mean (backward)" if backward else "ReLU, concat, bias, mean (forward)"
    if any(k in op_name for k in ("softmax", "log_softmax", "one_hot", "logsumexp", "cross_entropy", "argmax")):
        return "loss and accuracy"
    return "optimizer and step bookkeeping"


def instruction_categories(hlo_text: str, kernels: set[tuple[int, ...]]) -> dict[str, str]:
    """Instruction name -> category, for the instructions of the entry computation (the thunks that run)."""
    bodies = computations(hlo_text)
    categories = {}
    for line in hlo_text[hlo_text.index("\nENTRY"):].splitlines()[1:]:
        parsed = parse_instruction(line)
        if parsed and parsed[2] not in SKIPPED:
            name, shape, opcode = parsed
            categories[name] = categorize_jax(line, shape, opcode, bodies, kernels)
    return categories


def profile_jax(spec, args) -> tuple[dict[str, float], float, float]:
    """(ms per step by category, wall ms per step, ms to copy one batch from numpy)."""

    import jax
    import numpy as np
    from jax.profiler import ProfileData

    from dse.arch import build_model, init_variables
    from dse.train import OptimConfig
    from dse.train.optim import make_optimizer, schedule_arrays
    from dse.train.step import create_state
    from dse.train.trainer import compile_train_step

    model = build_model(spec)
    optim = OptimConfig()
    state = create_state(model.apply, init_variables(model, jax.random.key(0)), make_optimizer(optim),
                         schedule_arrays(optim, 1000, 1))
    kernels = kernel_shapes(state.params)
    rng = jax.random.key(1)
    host_images = np.random.default_rng(0).random((args.batch, *spec.input_shape), np.float32)
    batch = {"image": jax.device_put(host_images),
             "label": jax.random.randint(rng, (args.batch,), 0, args.num_classes)}
    compiled = compile_train_step(optim, state, batch, rng)
    categories = instruction_categories(compiled.as_text(), kernels)
    for _ in range(args.warmup):
        state, metrics = compiled(state, batch, rng)
    jax.block_until_ready(metrics)

    t0 = time.perf_counter()
    for _ in range(args.steps):
        state, metrics = compiled(state, batch, rng)
    jax.block_until_ready((state, metrics))
    wall_ms = 1000 * (time.perf_counter() - t0) / args.steps

    t0 = time.perf_counter()
    for _ in range(args.steps):
        jax.block_until_ready(jax.device_put(host_images))
    transfer_ms = 1000 * (time.perf_counter() - t0) / args.steps

    trace_dir = tempfile.mkdtemp(prefix="dse_profile_")
    with jax.profiler.trace(trace_dir):
        for _ in range(args.steps):
            state, metrics = compiled(state, batch, rng)
        jax.block_until_ready((state, metrics))
    trace = next(Path(trace_dir).rglob("*.xplane.pb"))
    totals: dict[str, float] = collections.defaultdict(float)
    for plane in ProfileData.from_file(str(trace)).planes:
        for line in plane.lines:
            for event in line.events:
                if event.name in categories:
                    totals[categories[event.name]] += event.duration_ns / 1e6 / args.steps
    return dict(totals), wall_ms, transfer_ms


# ---- PyTorch: the twin network's operators, in the same categories ----
TORCH_CATEGORIES = (
    ("convolution_backward", "conv input + filter gradient"),
    ("convolution", "conv forward"),
    ("max_pool2d_with_indices_backward", "max pool backward"),
    ("max_pool2d", "max pool forward"),
    ("batch_norm_backward", "BatchNorm backward"),
    ("batch_norm", "BatchNorm forward"),
    ("dropout", "dropout (random bits, mask)"),
    ("bernoulli", "dropout (random bits, mask)"),
    ("softmax", "loss and accuracy"),
    ("nll_loss", "loss and accuracy"),
    ("cross_entropy", "loss and accuracy"),
    ("_foreach", "optimizer and step bookkeeping"),
    ("sgd", "optimizer and step bookkeeping"),
    ("zero_", "optimizer and step bookkeeping"),
)


def categorize_torch(name: str) -> str:
    lowered = name.lower()
    for key, category in TORCH_CATEGORIES:
        if key in lowered:
            return category
    if "backward" in lowered or "grad" in lowered:
        return "ReLU, concat, bias, mean (backward)"
    return "ReLU, concat, bias, mean (forward)"


def profile_torch(spec, args) -> tuple[dict[str, float], float]:
    """(ms per step by category from operators' self CPU time, wall ms per step)."""
    import torch
    from torch.profiler import ProfilerActivity, profile
    from trainer_throughput import torch_squeezenet

    torch.set_num_threads(args.cores)
    torch.manual_seed(0)
    model = torch_squeezenet(spec)
    opt = torch.optim.SGD(model.parameters(), lr=0.04, momentum=0.9, weight_decay=2e-4)
    h, w, c = spec.input_shape
    x, y = torch.randn(args.batch, c, h, w), torch.randint(0, args.num_classes, (args.batch,))
    loss_fn = torch.nn.CrossEntropyLoss()

    def step():
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        opt.step()

    for _ in range(args.warmup):
        step()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    wall_ms = 1000 * (time.perf_counter() - t0) / args.steps
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(args.steps):
            step()
    totals: dict[str, float] = collections.defaultdict(float)
    for event in prof.key_averages():
        if event.key.startswith("aten::") or event.key.startswith("autograd::"):
            totals[categorize_torch(event.key)] += event.self_cpu_time_total / 1000 / args.steps
    return dict(totals), wall_ms


ORDER = ["conv forward", "conv input gradient", "conv filter gradient", "conv input + filter gradient",
         "max pool forward", "max pool backward", "BatchNorm forward", "BatchNorm backward",
         "ReLU, concat, bias, mean (forward)", "ReLU, concat, bias, mean (backward)", "dropout (random bits, mask)",
         "loss and accuracy", "optimizer and step bookkeeping", "activation transposes and copies (inserted by XLA)",
         "parameter and scalar copies (inserted by XLA)"]


def table(jax_ms: dict[str, float], jax_wall: float, transfer: float, torch_ms: dict[str, float], torch_wall: float) -> str:
    rows = ["| category | dse (JAX) ms/step | share | PyTorch eager ms/step | share |", "|---|---|---|---|---|"]
    jax_total, torch_total = sum(jax_ms.values()), sum(torch_ms.values())

    def cell(ms: dict[str, float], key: str, total: float) -> str:
        return f"{ms[key]:.1f} | {100 * ms[key] / total:.0f}%" if key in ms else "- | -"

    for key in ORDER:
        if key in jax_ms or key in torch_ms:
            rows.append(f"| {key} | {cell(jax_ms, key, jax_total)} | {cell(torch_ms, key, torch_total)} |")
    jax_bwd = jax_ms.get("conv input gradient", 0) + jax_ms.get("conv filter gradient", 0)
    rows.append(f"| (conv gradients together) | {jax_bwd:.1f} | | {torch_ms.get('conv input + filter gradient', 0):.1f} | |")
    rows.append(f"| sum of profiled ops | {jax_total:.1f} | | {torch_total:.1f} | |")
    rows.append(f"| step wall time (unprofiled) | {jax_wall:.1f} | | {torch_wall:.1f} | |")
    rows.append(f"| batch host-to-device copy (not in the step) | {transfer:.2f} | | 0 (shares memory) | |")
    return "\n".join(rows)


def main() -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    args = parse_args()
    limit_cores(args.cores)
    from trainer_throughput import build_spec

    from dse.arch import summarize

    spec = build_spec(args)
    shape = spec.input_shape
    summary = summarize(spec)
    jax_ms, jax_wall, transfer = profile_jax(spec, args)
    torch_ms, torch_wall = profile_torch(spec, args)
    head = (f"network: {args.preset} {shape} {' '.join(args.overrides)} params={summary.params:,} MACs={summary.macs:,} "
            f"batch={args.batch} cores={args.cores}; {args.steps} steps each; "
            f"images/s dse {1000 * args.batch / jax_wall:.0f}, PyTorch {1000 * args.batch / torch_wall:.0f}, "
            f"ratio {torch_wall / jax_wall:.2f}")
    text = f"{head}\n\n{table(jax_ms, jax_wall, transfer, torch_ms, torch_wall)}\n"
    print(text)
    if args.markdown:
        command = "python bench/profile_step.py " + " ".join(sys.argv[1:])
        args.markdown.write_text(f"# One training step, op by op\n\n`{command.strip()}`\n\n{text}")


if __name__ == "__main__":
    main()

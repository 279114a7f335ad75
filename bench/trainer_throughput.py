"""Training throughput of the dse trainer vs a PyTorch eager SqueezeNet of identical layout.

Both train the same generated architecture (same spec: stem, fire widths, pools,
dropout, conv10 head) with SGD momentum + weight decay on the same batch size and
input size, with the same number of threads, back to back in one invocation.
Only the timed steps are compared; compilation (JAX) and warm-up (both) are excluded
and reported separately.

    pip install -e '.[bench]'
    python bench/trainer_throughput.py --preset squeezenet_small --input 28,28,1 --batch 128

PyTorch is the optional ``bench`` extra: never a dependency of dse or of its tests.
"""

from __future__ import annotations

import argparse
import os
import time


def add_network_args(parser: argparse.ArgumentParser) -> None:
    """The network and batch options every trainer benchmark takes (``build_spec`` reads them)."""
    parser.add_argument("--preset", default="squeezenet_small")
    parser.add_argument("--input", default="28,28,1", help="H,W,C")
    parser.add_argument("--num-classes", type=int, default=10)
    parser.add_argument("--batch", type=int, default=128)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_network_args(parser)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per framework and round")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=5,
                        help="rounds of (dse split, dse one device, PyTorch), each timed for --steps; ratios per round")
    # XLA:CPU uses every core the process may run on; PyTorch gets the same count.
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="arch field=value, e.g. sr=0.25")
    return parser.parse_args()


def build_spec(args):
    import yaml

    from dse.arch import ArchConfig, expand

    fields = {k: yaml.safe_load(v) for k, v in (o.split("=", 1) for o in args.overrides)}
    shape = tuple(int(v) for v in args.input.split(","))
    return expand(ArchConfig.preset(args.preset, input_shape=shape, num_classes=args.num_classes, **fields))


def bench_dse(spec, args, devices: int = 1) -> tuple[float, float]:
    """(images/s, compile seconds) of dse's jitted train step, the batch split across the first
    ``devices`` JAX devices as the trainer splits it (one CPU device per core, dse.train.devices)."""
    timed, compile_s = dse_stepper(spec, args, devices)
    return timed(args.steps), compile_s


def dse_stepper(spec, args, devices: int = 1):
    """(a function timing ``n`` steps in images/s, compile seconds), warmed up."""

    import jax

    from dse.arch import build_model, init_variables
    from dse.train import OptimConfig
    from dse.train.devices import data_parallel_shardings
    from dse.train.optim import make_optimizer, schedule_arrays
    from dse.train.step import create_state
    from dse.train.trainer import compile_train_step

    model = build_model(spec)
    optim = OptimConfig()
    tx = make_optimizer(optim)
    state = create_state(model.apply, init_variables(model, jax.random.key(0)), tx, schedule_arrays(optim, 1000, 1))
    rng = jax.random.key(1)
    split, replicated = data_parallel_shardings(jax.local_devices()[:devices])
    state = jax.device_put(state, replicated)
    batch = jax.device_put({
        "image": jax.random.normal(rng, (args.batch, *spec.input_shape)),
        "label": jax.random.randint(rng, (args.batch,), 0, args.num_classes),
    }, split)
    t0 = time.perf_counter()
    step = compile_train_step(optim, state, batch, rng)
    compile_s = time.perf_counter() - t0
    carry = [state]

    def timed(steps: int) -> float:
        t0 = time.perf_counter()
        for _ in range(steps):
            carry[0], metrics = step(carry[0], batch, rng)
        jax.block_until_ready((carry[0], metrics))
        return steps * args.batch / (time.perf_counter() - t0)

    timed(args.warmup)
    return timed, compile_s


def torch_squeezenet(spec):
    """The same network in PyTorch eager, layer for layer from the dse spec (BatchNorm and
    the ReLU after conv10 follow the spec's options, as in dse's Flax model)."""
    import torch
    from torch import nn

    batch_norm = spec.config.batch_norm

    def conv(cin, cout, kernel, stride=1, padding=0, relu=True):
        layers = [nn.Conv2d(cin, cout, kernel, stride, padding, bias=not batch_norm)]
        layers += [nn.BatchNorm2d(cout, momentum=0.1)] if batch_norm else []
        layers += [nn.ReLU()] if relu else []
        return nn.Sequential(*layers)

    class Fire(nn.Module):
        def __init__(self, fire):
            super().__init__()
            self.squeeze = conv(fire.in_channels, fire.squeeze, 1)
            self.e1 = conv(fire.squeeze, fire.expand1x1, 1) if fire.expand1x1 else None
            self.e3 = conv(fire.squeeze, fire.expand3x3, 3, padding=1) if fire.expand3x3 else None
            self.bypass = fire.bypass
            self.bypass_conv = conv(fire.in_channels, fire.out_channels, 1, relu=False) if fire.bypass == "conv" else None

        def forward(self, x):
            s = self.squeeze(x)
            y = torch.cat([b(s) for b in (self.e1, self.e3) if b is not None], 1)
            if self.bypass == "identity":
                y = y + x
            elif self.bypass_conv is not None:
                y = y + self.bypass_conv(x)
            return y

    c1 = spec.conv1
    layers = [conv(c1.in_channels, c1.filters, c1.kernel, c1.stride, c1.padding)]
    layers += [nn.MaxPool2d(3, 2, ceil_mode=True)] if spec.stem_pool else []
    for fire in spec.fires:
        layers.append(Fire(fire))
        if fire.pool_after:
            layers.append(nn.MaxPool2d(3, 2, ceil_mode=True))
    # conv10 has a bias and no BatchNorm in dse's model either
    layers += [nn.Dropout(spec.config.dropout), nn.Conv2d(spec.conv10.in_channels, spec.conv10.filters, 1)]
    layers += [nn.ReLU()] if spec.config.head_relu else []
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return nn.Sequential(*layers)


def spec_params(spec) -> int:
    from dse.arch import summarize

    return summarize(spec).params


def torch_stepper(spec, args):
    """A function timing ``n`` PyTorch eager steps in images/s, warmed up."""
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = torch_squeezenet(spec)
    params = sum(p.numel() for p in model.parameters())
    if params != spec_params(spec):  # identical layout, or the ratio means nothing
        raise SystemExit(f"PyTorch twin has {params:,} parameters, the dse spec {spec_params(spec):,}")
    opt = torch.optim.SGD(model.parameters(), lr=0.04, momentum=0.9, weight_decay=2e-4)
    h, w, c = spec.input_shape
    x = torch.randn(args.batch, c, h, w)
    y = torch.randint(0, args.num_classes, (args.batch,))
    loss_fn = torch.nn.CrossEntropyLoss()

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return loss

    def timed(steps: int) -> float:
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        return steps * args.batch / (time.perf_counter() - t0)

    timed(args.warmup)
    return timed


def main() -> None:
    args = parse_args()
    spec = build_spec(args)
    import statistics

    import jax

    from dse.arch import summarize
    from dse.train.devices import data_parallel_count, one_cpu_device_per_core

    one_cpu_device_per_core()  # what `dse train` does: the trainer's default on this machine
    summary = summarize(spec)
    split = data_parallel_count(jax.local_device_count(), args.batch)
    split_name = f"dse, {split} CPU devices (default)"
    steppers = {split_name: dse_stepper(spec, args, devices=split)[0]} if split > 1 else {}
    steppers["dse, 1 CPU device"] = dse_stepper(spec, args, devices=1)[0]
    steppers["PyTorch eager"] = torch_stepper(spec, args)
    # Interleaved rounds: the machine's speed drifts by 10-25% within minutes, so each ratio
    # is taken within one round and the spread over rounds is the uncertainty.
    rounds = [{name: timed(args.steps) for name, timed in steppers.items()} for _ in range(args.rounds)]
    print(f"network: {args.preset} {spec.input_shape} params={summary.params:,} MACs={summary.macs:,} batch={args.batch} "
          f"threads={args.threads}; {args.rounds} rounds of {args.steps} steps each; median [min, max] over rounds")
    for name in steppers:
        speeds = [r[name] for r in rounds]
        ratios = [r[name] / r["PyTorch eager"] for r in rounds]
        ratio = "" if name == "PyTorch eager" else (f"  ratio to PyTorch {statistics.median(ratios):.2f} "
                                                     f"[{min(ratios):.2f}, {max(ratios):.2f}]")
        print(f"{name:32s} {statistics.median(speeds):7.1f} images/s{ratio}")
    if split > 1:
        gains = [r[split_name] / r["dse, 1 CPU device"] for r in rounds]
        print(f"{split} devices / 1 device: {statistics.median(gains):.2f} [{min(gains):.2f}, {max(gains):.2f}]")


if __name__ == "__main__":
    main()

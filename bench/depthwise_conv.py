"""Depthwise conv on XLA:CPU: lax's grouped convolution against dse's shifted-product form.

For the depthwise layers of MobileNet-class networks at small-image shapes (batch 128),
times the jitted gradient of a loss through the layer (what a train step pays: forward,
input gradient and filter gradient) with ``lax.conv_general_dilated(...,
feature_group_count=C)`` and with :class:`dse.arch.model.DepthwiseConv`, alternating in
one process, and prints the ratio and the largest relative difference of the gradients.

    python bench/depthwise_conv.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from dse.arch.model import KERNEL_INITS, DepthwiseConv

# (height = width, channels, stride): MobileNet v1 0.5x / v2 0.35x layers at 28x28 inputs
SHAPES = [(28, 32, 1), (28, 48, 2), (14, 64, 1), (14, 128, 2), (7, 256, 1)]


def grouped(params, x, stride):
    out = jax.lax.conv_general_dilated(x, params["kernel"], (stride, stride), ((1, 1), (1, 1)),
                                       dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=x.shape[-1])
    return out + params["bias"]


def timed(step, repeats: int) -> tuple[float, object]:
    out = jax.block_until_ready(step())  # compile and warm up
    t0 = time.perf_counter()
    for _ in range(repeats):
        jax.block_until_ready(step())
    return (time.perf_counter() - t0) / repeats, out


def layer_gradients(x: jax.Array, stride: int, repeats: int) -> dict[str, tuple[float, object]]:
    """Seconds per jitted gradient call, and the gradients, for both forms of one layer."""
    module = DepthwiseConv(3, stride, 1, True, KERNEL_INITS["caffe"])
    params = module.init(jax.random.PRNGKey(1), x)["params"]
    forward = {"lax": lambda p, x: grouped(p, x, stride), "dse": lambda p, x: module.apply({"params": p}, x)}
    results = {}
    for name, f in forward.items():
        gradient = jax.jit(jax.grad(lambda p, x, f=f: jnp.sum(f(p, x) ** 2), argnums=(0, 1)))
        results[name] = timed(lambda gradient=gradient: gradient(params, x), repeats)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    print("| H=W | C | stride | lax grouped ms | shifted ms | ratio | max rel. gradient difference |")
    print("|---|---|---|---|---|---|---|")
    for size, channels, stride in SHAPES:
        x = jax.random.normal(jax.random.PRNGKey(0), (args.batch, size, size, channels))
        results = layer_gradients(x, stride, args.repeats)
        difference = max(float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b)))
                         for a, b in zip(jax.tree.leaves(results["dse"][1]), jax.tree.leaves(results["lax"][1]), strict=True))
        lax_s, dse_s = results["lax"][0], results["dse"][0]
        print(f"| {size} | {channels} | {stride} | {1e3 * lax_s:.1f} | {1e3 * dse_s:.1f} | {lax_s / dse_s:.1f}x | "
              f"{difference:.1e} |", flush=True)
    print(f"\nbatch {args.batch}, {args.repeats} timed calls each after one untimed; jax {jax.__version__}, "
          f"{np.__name__} {np.__version__}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

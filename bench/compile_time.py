"""What a new architecture costs before its first training step: the compiles, one core.

Every candidate of a sweep is a new program for XLA. With an empty persistent cache (a
user's first sweep, or each arm of ``bench/sweep_efficiency.py``) a worker pays, per
candidate, the compile of its initialisation, its train step and its eval step. This
prints each, for a few candidates of ``sweeps/pareto.yaml``'s space, with the
initialisation compiled as dse does (``dse.arch.model.INIT_COMPILER_OPTIONS``: XLA's
optimisation level 0, the program runs once) and with XLA's default options (what dse
did before), and checks that both give the same weights to float rounding.

    taskset -c 0 python bench/compile_time.py        # one core: what a sweep worker of 2 has

Each candidate runs in this process with the persistent cache off, so every compile is cold.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("JAX_NUM_CPU_DEVICES", "1")  # one device: a sweep worker on one core

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from dse.arch import build_model, count_params, expand, init_variables  # noqa: E402
from dse.arch.model import INIT_COMPILER_OPTIONS  # noqa: E402
from dse.sweep.config import load_sweep  # noqa: E402
from dse.train.optim import make_optimizer, schedule_arrays  # noqa: E402
from dse.train.step import create_state, eval_step  # noqa: E402
from dse.train.trainer import compile_train_step, config_for_data  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
# Small, middle and large feasible candidates of the pareto space, with and without the bypass.
CANDIDATES = [
    {"model.base_e": 16, "model.incr_e": 0, "model.freq": 1, "model.sr": 0.125, "model.pct3x3": 0.5, "model.bypass": "none"},
    {"model.base_e": 32, "model.incr_e": 16, "model.freq": 2, "model.sr": 0.875, "model.pct3x3": 0.25, "model.bypass": "none"},
    {"model.base_e": 16, "model.incr_e": 32, "model.freq": 2, "model.sr": 0.25, "model.pct3x3": 0.125, "model.bypass": "complex"},
    {"model.base_e": 64, "model.incr_e": 32, "model.freq": 4, "model.sr": 0.5, "model.pct3x3": 0.5, "model.bypass": "complex"},
]


def timed(fn):
    t0 = time.perf_counter()
    out = jax.block_until_ready(fn())
    return out, time.perf_counter() - t0


def measure(cfg) -> dict[str, float]:
    model = build_model(expand(cfg.model))
    rng = jax.random.key(cfg.seed)
    input_shape = cfg.model.input_shape
    dummy = jnp.zeros((1, *input_shape), jnp.float32)
    lowered = jax.jit(model.init, static_argnames="train").lower({"params": rng}, dummy, train=False)
    default, init_default_s = timed(lambda: lowered.compile()({"params": rng}, dummy))
    variables, init_dse_s = timed(lambda: init_variables(model, rng))
    worst = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
                for a, b in zip(jax.tree.leaves(variables), jax.tree.leaves(default), strict=True))
    tx = make_optimizer(cfg.optim)
    state = create_state(model.apply, variables, tx, schedule_arrays(cfg.optim, 100, cfg.epochs))

    def batch(size: int) -> dict:
        return {"image": jnp.zeros((size, *input_shape)), "label": jnp.zeros((size,), jnp.int32), "mask": jnp.ones((size,))}

    _, train_s = timed(lambda: compile_train_step(cfg.optim, state, batch(cfg.batch_size), rng))
    _, eval_s = timed(lambda: jax.jit(eval_step).lower(state, batch(cfg.eval_batch_size)).compile())
    return {"params": count_params(variables["params"]),
            "init, XLA default s": init_default_s, "init, level 0 s": init_dse_s, "max weight difference": worst,
            "train step s": train_s, "eval step s": eval_s}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", type=Path, default=REPO / "sweeps" / "pareto.yaml")
    parser.add_argument("--input", default="28,28,1", help="input shape (Fashion-MNIST's by default)")
    args = parser.parse_args()
    jax.config.update("jax_enable_compilation_cache", False)
    sweep = load_sweep(args.sweep)
    shape = tuple(int(x) for x in args.input.split(","))
    rows = []
    for values in CANDIDATES:
        row = measure(config_for_data(sweep.train_config(values, "bench"), shape, 10))
        rows.append(row)
        print({k: (round(v, 2) if isinstance(v, float) and v > 1e-3 else v) for k, v in row.items()}, flush=True)
    print(f"\ncores: {len(os.sched_getaffinity(0))}, jax {jax.__version__}, {jax.default_backend()}; "
          f"dse compiles the init with {INIT_COMPILER_OPTIONS}\n")
    print("| params | init, XLA default s | init, level 0 s | max weight difference | train step s | eval step s | "
          "per new candidate, before s | now s |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        before = r["init, XLA default s"] + r["train step s"] + r["eval step s"]
        now = r["init, level 0 s"] + r["train step s"] + r["eval step s"]
        print(f"| {r['params']:,} | {r['init, XLA default s']:.1f} | {r['init, level 0 s']:.1f} | "
              f"{r['max weight difference']:.1e} | {r['train step s']:.1f} | {r['eval step s']:.1f} | {before:.1f} | {now:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

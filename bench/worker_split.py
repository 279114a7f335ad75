"""How should 2 sweep workers share 2 cores? Images per second of every thread/process split.

Each setting runs its worker processes at the same time, each training dse's jitted step
(``bench/trainer_throughput.py``'s ``bench_dse``) on the same network for the same number
of steps, and reports the summed images per second of the processes:

- ``1 process, XLA threads``: one worker, XLA's own thread pool (all cores), one device;
- ``1 process, a device per core``: one worker, the batch split over one JAX CPU device per
  core (``dse.train.devices``, what ``dse train`` and a lone sweep worker do now);
- ``N processes, XLA threads``: what ``dse sweep run --workers N`` did before it chose a
  split: every worker with a pool as large as the machine;
- ``N processes, 1 thread``: XLA told to use one thread (``--xla_cpu_multi_thread_eigen=false
  intra_op_parallelism_threads=1``), unpinned;
- ``N processes, pinned``: each on its share of the cores (``dse.sweep.runner.core_shares``,
  what ``dse sweep run`` does now); XLA sizes its pool to the share.

    python bench/worker_split.py                       # squeezenet_small, 28x28x1, batch 128
    python bench/worker_split.py --input 32,32,3 --steps 40
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="squeezenet_small")
    parser.add_argument("--input", default="28,28,1")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--set", dest="overrides", action="append", default=["batch_norm=true", "head_relu=false"])
    parser.add_argument("--as-process", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--cores", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--device-per-core", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args()


def one_process(args: argparse.Namespace) -> None:
    """Train and print {"images_per_s": ...} as JSON (runs in a child)."""
    if args.cores is not None:  # before JAX loads: XLA sizes its pool from the affinity
        os.sched_setaffinity(0, {int(c) for c in args.cores.split(",")})
    sys.path.insert(0, str(HERE))
    import trainer_throughput as tt

    tt_args = argparse.Namespace(preset=args.preset, input=args.input, num_classes=10, batch=args.batch, steps=args.steps,
                                 warmup=3, overrides=args.overrides)
    devices = 1
    if args.device_per_core:
        import jax

        from dse.train.devices import data_parallel_count, one_cpu_device_per_core

        one_cpu_device_per_core()  # as trainer_throughput.py: a count the user fixed is kept
        devices = data_parallel_count(jax.local_device_count(), args.batch)
    images_per_s, _ = tt.bench_dse(tt.build_spec(tt_args), tt_args, devices=devices)
    print(json.dumps({"images_per_s": images_per_s}))


SINGLE_THREAD = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


def run_setting(args: argparse.Namespace, processes: int, single_thread: bool, pinned: bool,
                device_per_core: bool = False) -> float:
    from dse.sweep.runner import core_shares

    command = [sys.executable, __file__, "--as-process", "--preset", args.preset, "--input", args.input,
               "--batch", str(args.batch), "--steps", str(args.steps), *[f"--set={o}" for o in args.overrides]]
    command += ["--device-per-core"] if device_per_core else []
    env = {**os.environ, "XLA_FLAGS": SINGLE_THREAD} if single_thread else None
    shares = core_shares(processes) if pinned else None
    children = []
    for i in range(processes):
        cores = ["--cores", ",".join(map(str, sorted(shares[i])))] if shares else []
        children.append(subprocess.Popen(command + cores, env=env, stdout=subprocess.PIPE, text=True))
    outputs = [c.communicate()[0] for c in children]
    if any(c.returncode for c in children):
        raise SystemExit("a process failed")
    return sum(json.loads(out.strip().splitlines()[-1])["images_per_s"] for out in outputs)


def main() -> None:
    args = parse_args()
    if args.as_process:
        one_process(args)
        return
    n = args.workers
    settings = [("1 process, XLA threads", 1, False, False, False), ("1 process, a device per core", 1, False, False, True),
                (f"{n} processes, XLA threads", n, False, False, False), (f"{n} processes, 1 thread", n, True, False, False),
                (f"{n} processes, pinned (dse's split)", n, False, True, False)]
    results = {name: run_setting(args, p, t, pin, split) for name, p, t, pin, split in settings}
    best = max(results.values())
    print(f"{args.preset} {args.input} {' '.join(args.overrides)} batch {args.batch}, {args.steps} steps per process, "
          f"{os.cpu_count()} cores")
    for name, images_per_s in results.items():
        print(f"{name:36s} {images_per_s:8.1f} images/s  {images_per_s / best:.2f} of the best")


if __name__ == "__main__":
    main()

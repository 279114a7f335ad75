"""What does the study storage cost per trial, and how does it grow with the trial count?

Runs the real sweep worker (``dse.sweep.worker.Worker``: recovery of dead trials, the
budget count, every trial attribute, ``tell``) with a zero-cost trainer, so a trial's
wall time is dse's and the storage's overhead alone. For each storage, ``--workers``
processes share one study of ``--workers x --trials-per-worker`` trials on the pareto
sweep's search space with the random sampler (its cost does not grow with the trial
count, so any growth is the storage's):

- ``journal``: the embedded default, one journal file on local disk;
- ``postgresql``: a throwaway local PostgreSQL server on loopback
  (:func:`dse.sweep.storage.local_postgres`), as workers on many machines would share one;
- ``grpc``: Optuna's gRPC storage proxy (``dse sweep proxy``) in front of such a server, as
  a cluster past a few dozen workers would use it: the workers hold no database connection;
- ``memory`` (one process, for reference): Optuna's in-memory storage, i.e. no storage
  at all; its per-trial time is dse's own work (spec, static metrics), which the other
  two add storage time to.

Printed: per storage, the median and p90 of a trial's wall time (from one trial's start to
the next's in the same worker) for each block of 250 trials in study order, and the total
throughput in trials per second. Written to ``bench/storage_scale.md``.

    python bench/storage_scale.py                       # 8 workers x 250 trials per storage, a few minutes
    python bench/storage_scale.py --workers 2 --trials-per-worker 10 --output /tmp/s.md   # a smoke run
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import numpy as np
import yaml

REPO = Path(__file__).resolve().parent.parent
SPACE_FROM = REPO / "sweeps" / "pareto.yaml"
STORAGES = ("memory", "journal", "postgresql", "grpc")
BLOCK = 250


def sweep_file(directory: Path, name: str, total_trials: int) -> Path:
    """The pareto sweep's space and objectives, random sampler, a trial-count budget, no size
    constraint (every candidate goes through the whole trial path) and no pruner (its rung
    decisions are compute, not storage)."""
    sweep = yaml.safe_load(SPACE_FROM.read_text())
    sweep.update(name=name, description="bench/storage_scale.py", sampler={"name": "random", "seed": 0},
                 budget={"trials": total_trials}, constraints=[], pruner={"name": "none"})
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(sweep, sort_keys=False))
    return path


def zero_cost_training(cfg, workdir, *, hooks=None, splits=None) -> dict:
    """A trained run's result without training: the epoch records a real run reports, at once."""
    history = [{"epoch": e, "train_loss": 0.5, "train_top1": 0.8, "learning_rate": 0.04, "val_loss": 0.4,
                "val_top1": 0.85, "val_top5": 0.99, "epoch_train_s": 0.0, "images": 54_000} for e in range(1, cfg.epochs + 1)]
    for record in history:
        if hooks and hooks.on_epoch:
            hooks.on_epoch(dict(record))
    return {"status": "completed", "epochs_completed": cfg.epochs, "resumed_from_epoch": 0, "val_top1": 0.85,
            "val_top5": 0.99, "val_loss": 0.4, "test_top1": 0.84, "test_top5": 0.99, "test_loss": 0.41,
            "compile_s": 0.0, "train_s": 0.0, "eval_s": 0.0, "total_s": 0.0, "history": history}


def fashion_mnist_shape(data_config) -> SimpleNamespace:
    """What the worker reads of the data before training: the input shape and class count."""
    return SimpleNamespace(train=SimpleNamespace(images=np.zeros((1, 28, 28, 1), np.uint8), num_classes=10))


@contextlib.contextmanager
def zero_cost_worker(starts: list[tuple[int, float]]):
    """The real worker with a zero-cost trainer, noting (trial number, time) as each trial starts."""
    from dse.sweep import worker as worker_module

    run_trial = worker_module.Worker.run_trial

    def timed(self, trial):
        starts.append((trial.number, time.perf_counter()))
        run_trial(self, trial)

    with mock.patch.object(worker_module, "train_and_evaluate", zero_cost_training), \
            mock.patch.object(worker_module, "load_splits", fashion_mnist_shape), \
            mock.patch.object(worker_module.Worker, "run_trial", timed):
        yield
    starts.append((-1, time.perf_counter()))  # the end of the last trial (and of the loop after it)


def trial_times(starts: list[tuple[int, float]]) -> list[tuple[int, float, float]]:
    """(trial number, its start, seconds to the next trial's start in the same worker); starts are
    ``time.perf_counter()``, the system's monotonic clock, comparable across processes."""
    return [(number, t0, t1 - t0) for (number, t0), (_, t1) in zip(starts, starts[1:], strict=False)]


def worker_main(sweep: Path, url: str | None, index: int, results_root: Path, log: Path) -> None:
    """One worker process of a shared study."""
    import jax  # noqa: F401  imported by the worker after each trial; load it before the clock starts

    from dse.sweep.runner import run_worker

    starts: list[tuple[int, float]] = []
    with zero_cost_worker(starts):
        run_worker(sweep, url=url, worker_index=index, trials=None, results_root=results_root)
    with log.open("w", newline="") as f:
        csv.writer(f).writerows(trial_times(starts))


def run_memory(directory: Path, trials: int) -> list[tuple[int, float, float]]:
    """The reference: one process, Optuna's in-memory storage, the same worker loop."""
    import jax  # noqa: F401
    import optuna

    from dse.sweep.config import load_sweep
    from dse.sweep.worker import Worker

    sweep = load_sweep(sweep_file(directory, "memory", trials))
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=optuna.samplers.RandomSampler(seed=0))
    starts: list[tuple[int, float]] = []
    with zero_cost_worker(starts):
        Worker(study, sweep, directory / "memory").run()
    return trial_times(starts)


def run_shared(kind: str, directory: Path, url: str | None, workers: int, trials: int) -> list[tuple[int, float, float]]:
    """``workers`` processes on one study; returns their :func:`trial_times` rows."""
    sweep = sweep_file(directory, kind, trials)
    from dse.sweep.config import load_sweep
    from dse.sweep.runner import results_dir_for
    from dse.sweep.study import open_study

    config = load_sweep(sweep)
    open_study(config, results_dir_for(config, directory), url, 0)  # created once, not raced
    logs = [directory / f"{kind}-{i}.csv" for i in range(workers)]
    processes = [subprocess.Popen([sys.executable, __file__, "--as-worker", str(sweep), "--url", url or "",
                                   "--index", str(i), "--results-root", str(directory), "--log", str(log)])
                 for i, log in enumerate(logs)]
    if any(p.wait() for p in processes):
        raise SystemExit(f"{kind}: a worker failed")
    return [(int(n), float(t), float(s)) for log in logs for n, t, s in csv.reader(log.open())]


@contextlib.contextmanager
def grpc_proxy(url: str):
    """``dse sweep proxy`` in front of ``url`` on loopback, for the life of the block; yields its grpc:// URL."""
    from dse.sweep.storage import reachable

    port = 57432 + os.getpid() % 1000
    proxy = subprocess.Popen([sys.executable, "-m", "dse", "sweep", "proxy", "--storage", url, "--port", str(port)],
                             stdout=subprocess.DEVNULL)
    try:
        for _ in range(60):
            try:
                reachable("127.0.0.1", port, "proxy", "")
                break
            except Exception:
                time.sleep(0.5)
        yield f"grpc://127.0.0.1:{port}"
    finally:
        proxy.terminate()
        proxy.wait()


def throughput(rows: list[tuple[int, float, float]]) -> float:
    """Trials per second from the first trial's start to the last one's end (process start-up excluded)."""
    return len(rows) / (max(t + s for _, t, s in rows) - min(t for _, t, _ in rows))


def blocks(rows: list[tuple[int, float, float]]) -> list[tuple[str, float, float]]:
    """(trial range, median ms, p90 ms) per block of BLOCK trials in study order."""
    out = []
    rows = sorted(rows)
    for start in range(0, len(rows), BLOCK):
        ms = [1000 * s for _, _, s in rows[start:start + BLOCK]]
        out.append((f"{start}-{start + len(ms) - 1}", statistics.median(ms), float(np.percentile(ms, 90))))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--trials-per-worker", type=int, default=250)
    parser.add_argument("--storages", nargs="+", choices=STORAGES, default=list(STORAGES))
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "storage_scale.md")
    parser.add_argument("--as-worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--index", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--results-root", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--log", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.as_worker:
        worker_main(args.as_worker, args.url or None, args.index, args.results_root, args.log)
        return 0

    from dse.sweep.storage import local_postgres

    total = args.workers * args.trials_per_worker
    results: dict[str, tuple[list[tuple[int, float, float]], int]] = {}
    with tempfile.TemporaryDirectory(prefix="dse_storage_") as tmp:
        directory = Path(tmp)
        for kind in args.storages:
            if kind == "memory":
                results[kind] = (run_memory(directory, total), 1)
            elif kind == "journal":
                results[kind] = (run_shared(kind, directory, None, args.workers, total), args.workers)
            else:
                with local_postgres(Path(f"/tmp/dse-bench-pg-{os.getpid()}"), port=56432 + os.getpid() % 1000) as url:
                    with grpc_proxy(url) if kind == "grpc" else contextlib.nullcontext(url) as served:
                        results[kind] = (run_shared(kind, directory, served, args.workers, total), args.workers)
            rows, workers = results[kind]
            print(f"{kind}: {len(rows)} trials by {workers} worker(s), {throughput(rows):.1f} trials/s", flush=True)

    longest = max((blocks(rows) for rows, _ in results.values()), key=len)  # workers may overshoot the budget by a few
    lines = ["| storage | workers | trials | trials/s | " + " | ".join(f"{b} median / p90 ms" for b, _, _ in longest) + " |"]
    lines.append("|---" * (4 + len(longest)) + "|")
    for kind, (rows, workers) in results.items():
        cells = " | ".join(f"{m:.0f} / {p:.0f}" for _, m, p in blocks(rows))
        lines.append(f"| {kind} | {workers} | {len(rows)} | {throughput(rows):.1f} | {cells} |")
    command = "python bench/storage_scale.py " + " ".join(argv if argv is not None else sys.argv[1:])
    text = (f"# Study storage at scale: per-trial wall time with a zero-cost trainer\n\n`{command.strip()}` "
            f"on {os.cpu_count()} cores; a trial's wall time in its worker, per block of {BLOCK} trials in study "
            "order (the last block may be short)\n\n" + "\n".join(lines) + "\n")
    args.output.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

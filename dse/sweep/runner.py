"""``dse sweep run``: create or resume a study and drive N local worker processes.

Workers are separate processes (``dse sweep worker``), each with its own JAX, so a
crash or a SIGKILL costs one trial and the others go on. The parent only watches the
storage and reports progress; when the workers are done it exports tables and plots.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.trial import TrialState

from dse.contract import SweepLayout
from dse.sweep.config import SweepConfig, load_sweep
from dse.sweep.study import CREATED_AT, open_study, storage_url
from dse.sweep.worker import Worker, budget_total, counted_trials


@dataclass
class Progress:
    """What the terminal shows while a sweep runs."""

    done: int
    running: int
    pruned: int
    failed: int
    total: int | None
    best: str
    eta_s: float | None


def results_dir_for(sweep: SweepConfig, results_root: Path) -> Path:
    return results_root / sweep.name


def progress_of(study: optuna.Study, sweep: SweepConfig, total: int | None, started: float | None = None,
                done_before: int = 0) -> Progress:
    """Counts and best so far; an ETA only when ``started`` (this run's start time) is given
    and trials remain."""
    trials = study.get_trials(deepcopy=False)
    states = Counter(t.state for t in trials)
    finished = counted_trials(study)
    eta = None
    if started is not None and total is not None and done_before < finished < total:
        per_trial = (time.time() - started) / (finished - done_before)
        eta = per_trial * (total - finished)
    return Progress(finished, states[TrialState.RUNNING], states[TrialState.PRUNED], states[TrialState.FAIL], total,
                    best_summary(study, sweep), eta)


def best_summary(study: optuna.Study, sweep: SweepConfig) -> str:
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        return "-"
    if len(sweep.objectives) == 1:
        best = study.best_trial
        return f"#{best.number} {sweep.objectives[0].metric}={best.value:.4g}"
    return f"{len(study.best_trials)} on the Pareto front"


def worker_command(sweep_file: Path, results_root: Path, url: str | None, index: int, trials: int | None) -> list[str]:
    command = [sys.executable, "-m", "dse", "sweep", "worker", str(sweep_file), "--results-root", str(results_root),
               "--worker-index", str(index)]
    if url is not None:
        command += ["--storage", url]
    if trials is not None:
        command += ["--trials", str(trials)]
    return command


def core_shares(workers: int, cores: list[int] | None = None) -> list[set[int]] | None:
    """One disjoint set of cores per local worker (round-robin single cores when there are more
    workers than cores), or None for a single worker, which keeps every core.

    XLA sizes a process's thread pool from the cores it may run on, so a pinned worker gets
    a pool of its share; unpinned, N workers would each start a pool as large as the machine
    and preempt each other (``bench/worker_split.py`` measures the splits).

    >>> core_shares(2, [0, 1]), core_shares(2, [0, 1, 2, 3]), core_shares(3, [0, 1])
    ([{0}, {1}], [{0, 1}, {2, 3}], [{0}, {1}, {0}])
    """
    cores = sorted(os.sched_getaffinity(0)) if cores is None else cores
    if workers < 2:
        return None
    per = max(1, len(cores) // workers)
    return [set(cores[(i * per) % len(cores):(i * per) % len(cores) + per]) for i in range(workers)]


def run_sweep(sweep_file: Path, *, workers: int = 1, url: str | None = None, trials: int | None = None,
              results_root: Path = Path("results"), on_progress: Callable[[Progress], None] | None = None) -> optuna.Study:
    """Create or resume the sweep's study and run ``workers`` local worker processes to the end."""
    sweep = load_sweep(sweep_file)
    url = storage_url(sweep, url)
    results_dir = results_dir_for(sweep, results_root)
    results_dir.mkdir(parents=True, exist_ok=True)
    layout = SweepLayout(results_dir)
    study = open_study(sweep, results_dir, url)
    shutil.copyfile(sweep_file, layout.sweep_file)
    total = budget_total(sweep, trials)
    started, done_before = time.time(), counted_trials(study)
    layout.logs.mkdir(exist_ok=True)
    processes = []
    shares = core_shares(workers)
    for index in range(workers):
        log = layout.worker_log(index).open("a")
        pin = functools.partial(os.sched_setaffinity, 0, shares[index]) if shares else None
        processes.append(subprocess.Popen(worker_command(sweep_file, results_root, url, index, trials),
                                          stdout=log, stderr=subprocess.STDOUT, preexec_fn=pin))
    try:
        next_report = 0.0
        while any(p.poll() is None for p in processes):
            # Progress reads the study (every 2 s); the exit check is cheap, so a run ends within
            # a tenth of a second of its last worker, not up to a whole reporting interval later.
            if on_progress and time.monotonic() >= next_report:
                on_progress(progress_of(study, sweep, total, started, done_before))
                next_report = time.monotonic() + 2.0
            time.sleep(0.1)
    except KeyboardInterrupt:
        for p in processes:
            p.terminate()
        for p in processes:
            p.wait()
        raise
    if on_progress:
        on_progress(progress_of(study, sweep, total, started, done_before))
    return study


def run_worker(sweep_file: Path, *, url: str | None, worker_index: int, trials: int | None,
               results_root: Path) -> int:
    """One worker in this process: join (or create) the study and train until the budget is spent."""
    sweep = load_sweep(sweep_file)
    url = storage_url(sweep, url)
    results_dir = results_dir_for(sweep, results_root)
    study = open_study(sweep, results_dir, url, worker_index)
    layout = SweepLayout(results_dir)
    if not layout.sweep_file.exists():  # a worker on another machine: status and plots need it
        results_dir.mkdir(parents=True, exist_ok=True)
        partial = results_dir / f".{layout.sweep_file.name}.{os.getpid()}"
        shutil.copyfile(sweep_file, partial)
        os.replace(partial, layout.sweep_file)  # atomic: workers starting together may all copy
    return Worker(study, sweep, results_dir, trials, study_deadline(study, sweep)).run()


def study_deadline(study: optuna.Study, sweep: SweepConfig) -> float | None:
    """When the study's wall-clock budget ends (``time.time()`` units), counted from the study's
    creation, so every rerun and every worker shares one budget."""
    if sweep.budget.wall_clock_minutes is None:
        return None
    created = study.user_attrs.get(CREATED_AT)
    if created is None:  # a study from before dse recorded its creation: its first trial is the closest record
        first = study.trials[0].datetime_start if study.trials else None
        created = first.timestamp() if first else time.time()
    return created + 60 * sweep.budget.wall_clock_minutes

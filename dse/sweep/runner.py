"""``dse sweep run``: create or resume a study and drive N workers to its end.

Workers are separate processes, each with its own JAX, so a crash or a SIGKILL costs one
trial and the others go on: ``dse sweep worker`` processes on this machine (the local
launcher), or Ray actors running the same worker loop on a cluster
(:mod:`dse.sweep.ray_launcher`). The parent only watches the storage and reports
progress; when the workers are done the CLI exports tables and plots.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.trial import TrialState

from dse.contract import SweepLayout, TrialAttr
from dse.pareto import minimised, non_dominated
from dse.sweep.config import SweepConfig, load_sweep
from dse.sweep.ray_launcher import LAUNCHERS, LauncherError, RayCluster, RayWorkers, default_placement, ray_address
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
    # The front the results DataFrame, its plots and `dse sweep status` show: feasible trials only.
    feasible = [t for t in complete if t.values and t.user_attrs.get(TrialAttr.FEASIBLE, True)]
    points = [minimised(t.values, [o.goal for o in sweep.objectives]) for t in feasible]
    return f"{int(non_dominated(points).sum()) if points else 0} on the Pareto front"


POLL_S = 0.1


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


class LocalWorkers:
    """N ``dse sweep worker`` processes on this machine, each pinned to its share of the cores."""

    def __init__(self, sweep_file: Path, results_root: Path, url: str | None, trials: int | None, layout: SweepLayout):
        self.command = functools.partial(worker_command, sweep_file, results_root, url, trials=trials)
        self.layout = layout
        self.processes: list[subprocess.Popen] = []
        self.lost: list[str] = []

    def start(self, count: int) -> None:
        shares = core_shares(count)
        for index in range(count):
            log = self.layout.worker_log(index).open("a")
            pin = functools.partial(os.sched_setaffinity, 0, shares[index]) if shares else None
            self.processes.append(subprocess.Popen(self.command(index=index), stdout=log, stderr=subprocess.STDOUT,
                                                   preexec_fn=pin))

    def running(self) -> bool:
        time.sleep(POLL_S)
        return any(p.poll() is None for p in self.processes)

    def stop(self) -> None:
        for p in self.processes:
            p.terminate()
        for p in self.processes:
            p.wait()


@dataclass(frozen=True)
class Launch:
    """Where a sweep's workers run: ``local`` processes, or Ray actors on a cluster (``address``
    None: a Ray instance started on this machine for the run)."""

    launcher: str = "local"
    address: str | None = None
    cpus_per_worker: float | None = None
    gpus_per_worker: float | None = None

    def __post_init__(self) -> None:
        if self.launcher not in LAUNCHERS:
            raise LauncherError(f"--launcher {self.launcher!r}: expected one of {', '.join(LAUNCHERS)}")
        given = [flag for flag, value in (("--ray-address", self.address), ("--cpus-per-worker", self.cpus_per_worker),
                                          ("--gpus-per-worker", self.gpus_per_worker)) if value is not None]
        if self.launcher == "local" and given:
            raise LauncherError(f"{given[0]} is for --launcher ray; local workers split this machine's cores")


def run_sweep(sweep_file: Path, *, workers: int = 1, url: str | None = None, trials: int | None = None,
              results_root: Path = Path("results"), on_progress: Callable[[Progress], None] | None = None,
              launch: Launch = Launch()) -> optuna.Study:
    """Create or resume the sweep's study and run ``workers`` workers to the end, as local
    processes or, with ``launch.launcher == "ray"``, as Ray actors."""
    sweep = load_sweep(sweep_file)
    url = storage_url(sweep, url)
    results_dir = results_dir_for(sweep, results_root)
    layout = SweepLayout(results_dir)
    with worker_pool(sweep, sweep_file, workers, url, trials, results_root, layout, launch) as pool:
        study = open_study(sweep, results_dir, url)  # a storage that fails leaves no folder behind
        results_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(sweep_file, layout.sweep_file)
        total = budget_total(sweep, trials)
        started, done_before = time.time(), counted_trials(study)
        layout.logs.mkdir(exist_ok=True)
        pool.start(workers)
        try:
            next_report = 0.0
            # Progress reads the study (every 2 s); the exit check is cheap, so a run ends within
            # a tenth of a second of its last worker, not up to a whole reporting interval later.
            while pool.running():
                if on_progress and time.monotonic() >= next_report:
                    on_progress(progress_of(study, sweep, total, started, done_before))
                    next_report = time.monotonic() + 2.0
        except KeyboardInterrupt:
            pool.stop()
            raise
    if on_progress:
        on_progress(progress_of(study, sweep, total, started, done_before))
    return study


@contextlib.contextmanager
def worker_pool(sweep: SweepConfig, sweep_file: Path, workers: int, url: str | None, trials: int | None,
                results_root: Path, layout: SweepLayout, launch: Launch) -> Iterator[LocalWorkers | RayWorkers]:
    """The launcher's workers, not started yet. For Ray, every check a cluster needs (reachable,
    a node that can hold a worker, a storage every node reaches) is made here, before the study
    or any trial exists; a Ray instance started for the run ends with the block."""
    if launch.launcher == "local":
        yield LocalWorkers(sweep_file, results_root, url, trials, layout)
        return
    cluster = RayCluster.connect(ray_address(launch.address))
    try:
        cpus = sweep.resources.cpus_per_worker if launch.cpus_per_worker is None else launch.cpus_per_worker
        gpus = sweep.resources.gpus_per_worker if launch.gpus_per_worker is None else launch.gpus_per_worker
        placement = default_placement(cpus, gpus, workers, local=cluster.started_here)
        cluster.check(placement, url)
        text, path, root = sweep_file.read_text(), str(sweep_file.resolve()), str(results_root.resolve())
        # A worker is replaced as often as a trial may be retried, and at least once.
        yield RayWorkers(cluster, placement, max(1, sweep.budget.max_retries),
                         run_args=lambda index: (text, path, root, url, index, trials))
    finally:
        cluster.shutdown()


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

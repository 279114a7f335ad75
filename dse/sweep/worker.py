"""A sweep worker: asks the study for candidates and trains them, until the budget is spent.

Identical workers may run anywhere that reaches the storage. Each running trial carries
its worker's identity and a heartbeat; any worker that finds a RUNNING trial whose
process is gone (same host) or whose heartbeat is stale (any host) fails it with the
reason and, within ``budget.max_retries``, enqueues the same candidate again. The run
directory of a candidate is keyed by its values and seed, so the retry resumes from the
dead trial's last checkpoint.
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.trial import TrialState

import dse
from dse.arch import expand, summarize
from dse.compress.bound import compressed_bytes_bound
from dse.contract import LATENCIES, STAND_INS, RunResult, Source, SweepLayout, TrialAttr, TrialStatus, names, run_metrics
from dse.data import Splits, load_splits
from dse.errors import DseError
from dse.sweep.asha import (
    PROMOTED_FROM,
    Rungs,
    duplicate_of,
    enqueue_finish,
    enqueue_promotion,
    finishing,
    promoted_trials,
)
from dse.sweep.config import SweepConfig
from dse.sweep.space import SEED_PARAM, suggest
from dse.train import Hooks, train_and_evaluate
from dse.train.checkpoint import EpochCheckpoints
from dse.train.trainer import resolve_config

HEARTBEAT_S = 10.0
STALE_AFTER_S = 120.0  # a trial whose heartbeat is older than this is dead, on any host
POLL_S = 2.0
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


def _process_start(pid: int) -> str:
    """Start time of ``pid`` (clock ticks since boot) so a reused pid is not mistaken for ours."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def worker_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{_process_start(os.getpid())}"


def death_reason(trial: optuna.trial.FrozenTrial, now: float) -> str | None:
    """Why ``trial`` is a zombie, or None while its worker lives."""
    worker = trial.user_attrs.get(TrialAttr.WORKER, "")
    host, _, rest = worker.partition(":")
    pid, _, started = rest.partition(":")
    if host == socket.gethostname() and pid.isdigit() and _process_start(int(pid)) != started:
        return f"worker process {pid} on {host} is gone"
    beat = trial.user_attrs.get(TrialAttr.HEARTBEAT)
    if beat is not None and now - beat > STALE_AFTER_S:
        return f"no heartbeat from worker {host}:{pid} for {now - beat:.0f} s"
    return None


def recover_dead_trials(study: optuna.Study, max_retries: int) -> list[int]:
    """Fail the RUNNING trials whose worker died; re-enqueue each within its retry budget."""
    recovered = []
    now = time.time()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        reason = death_reason(trial, now)
        if reason is None:
            continue
        retries = trial.user_attrs.get(TrialAttr.RETRIES, 0)
        retry = retries < max_retries
        storage = study._storage
        try:
            storage.set_trial_user_attr(trial._trial_id, TrialAttr.STATUS, str(TrialStatus.WORKER_DIED))
            storage.set_trial_user_attr(trial._trial_id, TrialAttr.REASON, reason)
            storage.set_trial_user_attr(trial._trial_id, TrialAttr.WILL_RETRY, retry)
            if not storage.set_trial_state_values(trial._trial_id, TrialState.FAIL):
                continue
        except (optuna.exceptions.UpdateFinishedTrialError, RuntimeError):
            continue  # another worker recovered it first
        if retry:
            study.enqueue_trial(trial.params, user_attrs={TrialAttr.RETRIES: retries + 1, TrialAttr.RETRY_OF: trial.number},
                                skip_if_exists=False)
        recovered.append(trial.number)
    return recovered


def counted_trials(study: optuna.Study) -> int:
    """Finished trials that spend the budget, one per candidate: a dead worker's trial that is
    retried does not, nor does a paused trial that a promotion continues, nor a duplicate promotion."""
    trials = study.get_trials(deepcopy=False)
    promoted = promoted_trials(trials)
    return sum(1 for t in trials if t.state in FINISHED and not t.user_attrs.get(TrialAttr.WILL_RETRY, False)
               and t.number not in promoted and t.user_attrs.get(TrialAttr.STATUS) != TrialStatus.DUPLICATE)


def budget_total(sweep: SweepConfig, trials_override: int | None) -> int | None:
    if trials_override is not None:
        return trials_override
    if sweep.budget.trials is not None:
        return sweep.budget.trials
    return sweep.design_space_size() if sweep.sampler.name == "grid" else None


class _Heartbeat:
    """Writes ``heartbeat`` into the running trial every few seconds from a daemon thread."""

    def __init__(self, study: optuna.Study, trial: optuna.Trial):
        self._stop = threading.Event()
        self._storage, self._trial_id = study._storage, trial._trial_id
        self._thread = threading.Thread(target=self._beat, daemon=True)

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                self._storage.set_trial_user_attr(self._trial_id, TrialAttr.HEARTBEAT, time.time())
            except Exception:  # the trial finished or the storage hiccupped; the next beat retries
                pass

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


@dataclass
class _Outcome:
    status: TrialStatus
    reason: str
    history: list[dict]
    state: TrialState
    values: list[float] | None = None


@dataclass
class Worker:
    study: optuna.Study
    sweep: SweepConfig
    results_dir: Path
    trials_override: int | None = None
    deadline: float | None = None  # time.time() after which no trial starts

    def __post_init__(self) -> None:
        self._splits: dict[str, Splits] = {}
        self.layout = SweepLayout(self.results_dir)

    def run(self) -> int:
        """Train trials until the study's budget is spent; returns how many this worker ran."""
        ran = 0
        total = budget_total(self.sweep, self.trials_override)
        while True:
            recover_dead_trials(self.study, self.sweep.budget.max_retries)
            late = self.deadline is not None and time.time() > self.deadline
            ending = False  # the budget's end: no new candidate, it could not train all its epochs
            if self.sweep.pruner.name == "asha" and not late:
                left = None if self.deadline is None else self.deadline - time.time()
                pace = None if left is None else finishing(self.study, self.sweep, left)
                if pace is None:
                    enqueue_promotion(self.study, self.sweep)  # ASHA: a promotable paused trial before a new one
                else:
                    ending = True
                    enqueue_finish(self.study, self.sweep, left, pace)  # the best paused trial that can end
            waiting = self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
            # A dead worker's retried trial is not counted, so its retry still fits the budget.
            spent = total is not None and counted_trials(self.study) + self._running() >= total
            if self.sweep.sampler.name == "grid" and not waiting:
                spent = True  # every point x seed was enqueued at creation; retries come back as WAITING
            if spent or late:
                if self._running() and not late:
                    time.sleep(POLL_S)  # stay to recover a trial whose worker dies
                    continue
                return ran
            trial = self._next_trial(sample=not ending)
            if trial is None:
                if ending:  # nothing left that ends before the budget, unless a running trial pauses soon
                    if not self._running():
                        return ran
                    time.sleep(POLL_S)
                continue  # or another worker took the last grid point since we looked: see what is left
            self.run_trial(trial)
            ran += 1

    def _next_trial(self, sample: bool = True) -> optuna.Trial | None:
        """The next trial to train: a waiting one (promotions first), else a new sample; without
        ``sample``, only a trial that continues a run. A grid sweep takes enqueued points only:
        ``ask`` with none left (another worker just took the last) would sample an extra candidate."""
        trial_id = pop_waiting_trial(self.study, new_candidates=sample)
        if trial_id is None:
            return self.study.ask() if sample and self.sweep.sampler.name != "grid" else None
        trial = optuna.Trial(self.study, trial_id)
        earlier = duplicate_of(self.study.get_trials(deepcopy=False), self.study._storage.get_trial(trial_id))
        if earlier is not None:
            trial.set_user_attr(TrialAttr.STATUS, str(TrialStatus.DUPLICATE))
            trial.set_user_attr(TrialAttr.REASON, f"trial {earlier} is this promotion (two workers promoted at once)")
            self.study.tell(trial, state=TrialState.FAIL)
            return None
        return trial

    def _running(self) -> int:
        return len(self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))

    def _data(self, cfg) -> Splits:
        key = cfg.data.model_dump_json()
        if key not in self._splits:
            self._splits[key] = load_splits(cfg.data)
        return self._splits[key]

    def run_trial(self, trial: optuna.Trial) -> None:
        trial.set_user_attr(TrialAttr.WORKER, worker_identity())
        trial.set_user_attr(TrialAttr.HEARTBEAT, time.time())
        trial.set_user_attr(TrialAttr.DSE_VERSION, dse.__version__)
        history: list[dict] = []
        try:
            # The heartbeat stops before the trial is told finished: a beat after that
            # would be an update of a finished trial, which the journal rejects.
            with _Heartbeat(self.study, trial):
                outcome = self._train(trial, history)
        except optuna.TrialPruned as stop:
            outcome = _Outcome(TrialStatus.PRUNED, str(stop) or f"pruned after epoch {len(history)}", history,
                               TrialState.PRUNED)
            for key, value in last_epoch_metrics(history).items():
                trial.set_user_attr(key, value)
        except DseError as err:
            outcome = _Outcome(TrialStatus.INVALID, str(err), history, TrialState.FAIL)
        except Exception as err:
            log = self.layout.trial_log(trial.number)
            log.parent.mkdir(parents=True, exist_ok=True)
            log.write_text(traceback.format_exc())
            outcome = _Outcome(TrialStatus.CRASHED, f"{type(err).__name__}: {err} (traceback in {log})", history,
                               TrialState.FAIL)
        finally:
            import jax

            jax.clear_caches()  # one worker trains many architectures: do not keep every executable
        trial.set_user_attr(TrialAttr.STATUS, str(outcome.status))
        trial.set_user_attr(TrialAttr.REASON, outcome.reason)
        trial.set_user_attr(TrialAttr.HISTORY, outcome.history)
        self.study.tell(trial, outcome.values, state=outcome.state)

    def _train(self, trial: optuna.Trial, history: list[dict]) -> _Outcome:
        values = suggest(trial, self.sweep)
        grid_seed = values.pop(SEED_PARAM, None)
        base_cfg = self.sweep.train_config(values, f"trial {trial.number}")
        seeds = [base_cfg.seed + grid_seed] if grid_seed is not None else [base_cfg.seed + r for r in range(self.sweep.repeats)]
        trial.set_user_attr(TrialAttr.SEED, seeds[0])
        splits = self._data(base_cfg)
        cfg = resolve_config(base_cfg, splits)
        if any(m.metric in LATENCIES for m in [*self.sweep.objectives, *self.sweep.constraints]):
            cfg = cfg.model_copy(update={"measure_latency": True})
        summary = summarize(expand(cfg.model))
        static = summary.static_metrics()
        if cfg.compress is not None:
            static["compressed_bytes_bound"] = compressed_bytes_bound(cfg)
        trial.set_user_attr(TrialAttr.CONFIG, cfg.model.model_dump(mode="json"))
        for key, value in static.items():
            trial.set_user_attr(key, value)
        violations = [v for c in self.sweep.constraints if c.before_training and (v := c.violation(static))]
        violations += [v for c in self.sweep.constraints if (v := c.bound_violation(static))]
        if violations:
            return _Outcome(TrialStatus.INFEASIBLE, "; ".join(violations), history, TrialState.FAIL)

        first = self.sweep.objectives[0].metric
        prunable = len(self.sweep.objectives) == 1  # Optuna takes intermediate values for one objective only
        first_run = run_key(cfg.model_copy(update={"seed": seeds[0]}))  # the run the hooks watch
        trial.set_user_attr(TrialAttr.RUN, first_run)  # its folder under runs/: what `dse export` takes
        asha = Rungs.of(self.study, trial, first_run, self.sweep, cfg.epochs) if self.sweep.pruner.name == "asha" else None

        def report(record: dict) -> None:
            history.append(record)
            if prunable and first in record:
                trial.report(record[first], record["epoch"])
                if trial.should_prune():
                    raise optuna.TrialPruned()
            if asha is not None:
                values = [rung_value(o.metric, record, static) for o in self.sweep.objectives]
                reason = asha.reason_to_stop(record["epoch"], values)
                if reason:
                    raise optuna.TrialPruned(reason)

        def resumed(info: dict) -> None:
            # A retried trial resumes its candidate's checkpoint: the epochs before it belong to
            # its curve (and to the pruner's view of it) as much as the ones it trains now.
            for record in info["history"]:
                report(record)

        runs = []
        for i, seed in enumerate(seeds):
            run_cfg = cfg.model_copy(update={"seed": seed})
            run = self.layout.run(run_key(run_cfg))
            hooks = Hooks(on_start=resumed, on_epoch=report) if i == 0 else None
            result = train_and_evaluate(run_cfg, run.root, hooks=hooks, splits=splits)
            if result["status"] == TrialStatus.DIVERGED:
                reason = f"loss diverged (NaN/inf) in epoch {result['diverged_epoch']} with seed {seed}"
                return _Outcome(TrialStatus.DIVERGED, reason, result["history"], TrialState.FAIL)
            runs.append(result)
            keep_final_checkpoint(run.checkpoints)  # what `dse export` / `dse compress` of a front point read
        metrics = mean_metrics(runs)
        for key, value in metrics.items():
            trial.set_user_attr(key, value)
        measured = {**metrics, **static}
        reason = self._check_after_training(trial, measured)
        objective_values = [measured[o.metric] for o in self.sweep.objectives]
        return _Outcome(TrialStatus.COMPLETED, reason, runs[0]["history"], TrialState.COMPLETE, objective_values)

    def _check_after_training(self, trial: optuna.Trial, measured: dict[str, float]) -> str:
        """Record the constraints known only now (e.g. compressed bytes): ``feasible``, each
        constraint's excess for the samplers, and the violations, if any, as the trial's reason."""
        if all(c.before_training for c in self.sweep.constraints):
            return ""
        for constraint in self.sweep.constraints:
            trial.set_constraint(constraint.name, constraint.excess(measured))
        violations = [v for c in self.sweep.constraints if (v := c.violation(measured))]
        trial.set_user_attr(TrialAttr.FEASIBLE, not violations)
        return "; ".join(violations)


def rung_value(metric: str, record: dict, static: dict) -> float | None:
    """An objective's value at an ASHA rung: its own if known by this epoch, else its stand-in's
    (the uncompressed accuracy for a compressed one, the byte bound for the file's bytes)."""
    for name in (metric, STAND_INS.get(metric)):
        for known in (record, static):
            if name in known:
                return known[name]
    return None


def keep_final_checkpoint(directory: Path) -> None:
    """A finished run's last epoch only: the earlier one orbax keeps for safety is dead weight now."""
    if directory.is_dir():
        checkpoints = EpochCheckpoints(directory)
        checkpoints.keep_last_only()
        checkpoints.close()


def pop_waiting_trial(study: optuna.Study, new_candidates: bool = True) -> int | None:
    """Claim a WAITING trial (ASHA's promotions first, then by number) as Optuna's ``ask`` does:
    the state change WAITING -> RUNNING succeeds for one worker only. Without ``new_candidates``
    only the trials that continue a run (promotions, retries) are claimed, not grid points."""
    waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    if not new_candidates:
        waiting = [t for t in waiting if PROMOTED_FROM in t.user_attrs or TrialAttr.RETRY_OF in t.user_attrs]
    for trial in sorted(waiting, key=lambda t: (PROMOTED_FROM not in t.user_attrs, t.number)):
        try:
            if study._storage.set_trial_state_values(trial._trial_id, state=TrialState.RUNNING):
                return trial._trial_id
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
    return None


def run_key(cfg) -> str:
    """Directory name of one candidate and seed, from its whole resolved config: a retry lands in
    the same place and resumes there; a candidate of a changed base, or one that trains alike but
    compresses otherwise (two workers may run those at once), does not."""
    whole = hashlib.sha256(cfg.model_dump_json().encode()).hexdigest()[:16]
    return f"{whole}-seed{cfg.seed}"


def last_epoch_metrics(history: list[dict]) -> dict[str, float]:
    """A stopped trial's metrics as of its last epoch, so it still shows (as a low-fidelity point)."""
    if not history:
        return {}
    last = history[-1]
    return {**{key: last[key] for key in names(Source.EPOCH) if key in last}, "epochs_completed": last["epoch"]}


def mean_metrics(runs: list[RunResult]) -> dict[str, float]:
    """Trial metrics averaged over the seeds of one configuration (non-grid repeats)."""
    per_run = [run_metrics(r) for r in runs]
    shared = set.intersection(*(set(m) for m in per_run))
    return {key: sum(m[key] for m in per_run) / len(per_run) for key in per_run[0] if key in shared}

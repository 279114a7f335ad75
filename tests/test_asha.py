"""ASHA for one objective or several: the ranking on hand-made points, and real workers on a
real journal study with the stub trainer of ``results_fixture`` (so every metric is known)."""

import math
import re
import socket
import threading
import time
from pathlib import Path
from unittest import mock

import optuna
import pytest
import yaml
from results_fixture import BASE, StubTrainer, _fake_splits, history

from dse.errors import ConfigError
from dse.sweep import worker as worker_module
from dse.sweep.asha import STOPPED_AT, crowding_distances, pareto_fronts, positions, rung_attr
from dse.sweep.config import load_sweep
from dse.sweep.study import open_study
from dse.sweep.worker import Worker

# sr x bypass, in enqueue order (trial number = index). The stub's accuracy rises with SR and
# bypass adds simple +0.01 (no parameters), complex +0.005 (more parameters); sizes rise with
# SR and complex bypass. Accuracies at every epoch keep the final order (one offset per epoch).
GRID = {"model.sr": [0.125, 0.25, 0.5], "model.bypass": ["none", "simple", "complex"]}
ACCURACY_AND_SIZE = [{"metric": "val_top1", "goal": "maximize"}, {"metric": "model_size_mb", "goal": "minimize"}]
ACCURACY = [{"metric": "val_top1", "goal": "maximize"}]
ASHA = {"name": "asha", "min_epochs": 1, "reduction_factor": 3}  # 9 epochs: rungs at epochs 1 and 3
EPOCHS = 9


# ---- the ranking, on hand-made points (every objective minimised) ----
def test_non_dominated_sort_and_crowding_on_hand_made_points():
    points = [(1, 9), (3, 5), (5, 4), (9, 1), (4, 6), (6, 6), (3, 5), (10, 10)]
    # (1,9) (3,5) (5,4) (9,1) trade off; (4,6) is beaten by (3,5); (6,6) by (5,4) and (4,6); the
    # copy of (3,5) sits with it; (10,10) is beaten by all.
    assert pareto_fronts(points) == [0, 0, 0, 0, 1, 2, 0, 3]
    front = [(1, 9), (3, 5), (5, 4), (9, 1), (3, 5)]
    # Spans 8 and 8; (3,5): (5-1)/8 + (9-4)/8 = 1.125; (5,4): (9-3)/8 + (5-1)/8 = 1.25.
    assert crowding_distances(front) == [math.inf, 1.125, 1.25, math.inf, 1.125]
    # Extremes first, then (5,4) (more room), then the two (3,5) sharing a place, then the later fronts.
    assert positions(points) == [0, 3, 2, 0, 5, 6, 3, 7]


def test_one_objective_is_plain_ranking():
    assert positions([(0.5,), (0.2,), (0.9,), (0.2,), (0.1,)]) == [3, 1, 4, 1, 0]


# ---- the schema ----
def write_sweep(tmp_path: Path, name="asha", objectives=ACCURACY_AND_SIZE, pruner=ASHA, **overrides) -> Path:
    sweep = {"name": name, "base": {**BASE, "epochs": EPOCHS}, "space": {k: {"values": v} for k, v in GRID.items()},
             "objectives": objectives, "pruner": pruner, "sampler": {"name": "grid"}, **overrides}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(sweep, sort_keys=False))
    return path


INVALID = [
    ({"pruner": {**ASHA, "reduction_factor": 1}}, "pruner.reduction_factor: Input should be greater than or equal to 2"),
    ({"pruner": {**ASHA, "min_epochs": 0}}, "pruner.min_epochs: Input should be greater than or equal to 1"),
    ({"pruner": {**ASHA, "min_epochs": 9}}, "pruner.min_epochs: 9 leaves no rung before the last epoch (9)"),
    ({"pruner": {**ASHA, "min_epochs": 12}, "space": {"epochs": {"values": [3, 12]}}},
     "pruner.min_epochs: 12 leaves no rung before the last epoch (12)"),
    ({"pruner": {"name": "median", "min_epochs": 2}}, "pruner: min_epochs applies to asha, not median"),
    ({"objectives": [{"metric": "test_top1", "goal": "maximize"}, {"metric": "params", "goal": "minimize"}]},
     "test_top1 is known only at the end of a run"),
    ({"objectives": [{"metric": "val_top1", "goal": "maximize"}, {"metric": "compressed_bytes", "goal": "minimize"}],
      "base": {**BASE, "compress": {"sparsity": 0.5}}}, "compressed_bytes is known only at the end of a run"),
    ({"objectives": [{"metric": "params", "goal": "minimize"}]}, "pruner: asha needs an objective reported per epoch"),
    ({"pruner": {"name": "hyperband"}}, "Optuna prunes single-objective studies only; use pruner asha or none"),
]


@pytest.mark.parametrize("overrides, fragment", INVALID, ids=[f"invalid{i}" for i in range(len(INVALID))])
def test_invalid_asha_configs_fail_at_load_with_one_line(tmp_path, overrides, fragment):
    path = write_sweep(tmp_path, **overrides)
    with pytest.raises(ConfigError) as err:
        load_sweep(path)
    message = str(err.value)
    assert fragment in message and message.startswith(str(path)) and "\n" not in message, message


def test_asha_takes_several_objectives_static_ones_and_a_swept_epochs(tmp_path):
    for objectives in (ACCURACY_AND_SIZE, ACCURACY, [{"metric": "macs", "goal": "minimize"}, *ACCURACY]):
        assert load_sweep(write_sweep(tmp_path, objectives=objectives)).pruner.reduction_factor == 3
    swept = load_sweep(write_sweep(tmp_path, pruner={"name": "asha", "min_epochs": 4}, space={"epochs": {"values": [2, 5]}}))
    assert (swept.pruner.min_epochs, swept.pruner.reduction_factor, swept.max_epochs()) == (4, 3, 5)


# ---- real workers on a real journal study, trainer stubbed ----
class Killed(BaseException):
    """A worker process dying mid-trial (SIGKILL): nothing in the worker catches it."""


class CheckpointingStub:
    """The fixture's stub trainer plus checkpoints: a run resumes from the epochs it trained before
    (reported to ``on_start``, as the real trainer does), and ``victim`` dies once after ``die_after``."""

    def __init__(self, victim: tuple | None = None, die_after: int = 0, epoch_s: float = 0.0):
        self.stub, self.checkpoints = StubTrainer(prune=set()), {}
        self.victim, self.die_after, self.epoch_s = victim, die_after, epoch_s

    def __call__(self, cfg, workdir, *, hooks=None, splits=None):
        done = self.checkpoints.get(workdir, [])

        def on_start(info):
            hooks.on_start({**info, "start_epoch": len(done), "history": [dict(r) for r in done]})

        def on_epoch(record):
            if record["epoch"] <= len(done):
                return  # restored from the checkpoint, not trained again
            time.sleep(self.epoch_s)
            self.checkpoints[workdir] = [*self.checkpoints.get(workdir, []), record]  # saved before the hook, as the trainer does
            hooks.on_epoch(record)
            if (cfg.model.sr, cfg.model.bypass) == self.victim and record["epoch"] == self.die_after:
                self.victim = None
                raise Killed

        return self.stub(cfg, workdir, hooks=worker_module.Hooks(on_start=on_start, on_epoch=on_epoch), splits=splits)


def run_workers(path: Path, trainer, workers: int = 1, trials: int | None = None, ran: list | None = None) -> optuna.Study:
    """Run ``workers`` real workers at once (threads, each with its own journal storage object, as
    separate processes would have) until the grid is done or ``trials`` are; ``ran`` gets how many
    trials each trained."""
    sweep = load_sweep(path)
    directory = path.parent / "results"
    studies = [open_study(sweep, directory, None, index) for index in range(workers)]
    with mock.patch.object(worker_module, "train_and_evaluate", trainer), \
            mock.patch.object(worker_module, "load_splits", _fake_splits):
        threads = [threading.Thread(target=run_until_killed, args=(Worker(study, sweep, directory, trials), ran))
                   for study in studies]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    return open_study(sweep, directory, None)


def run_until_killed(worker: Worker, ran: list | None) -> None:
    try:
        count = worker.run()
        if ran is not None:
            ran.append(count)
    except Killed:
        pass  # the trial stays RUNNING with this worker's identity, as after a SIGKILL


def candidate(trial) -> tuple:
    return trial.params["model.sr"], trial.params["model.bypass"]


def decisions(study) -> dict[tuple, str]:
    """Each candidate's fate: ``completed`` or the rung reason it was stopped with."""
    return {candidate(t): t.user_attrs["reason"] if t.state == optuna.trial.TrialState.PRUNED else t.user_attrs["status"]
            for t in study.trials if t.state != optuna.trial.TrialState.FAIL}


# Two objectives, one worker, trials arriving in grid order (#0 .. #8). At rung sizes (MB) and
# accuracies (final; one offset per epoch keeps the order): #0 .125 none .051/.8655,
# #1 .125 simple .051/.8755, #2 .125 complex .076/.8705, #3 .25 none .095/.873, #4 .25 simple
# .095/.883, #5 .25 complex .119/.878, #6 .5 none .182/.888, #7 .5 simple .182/.898, #8 .5 complex
# .206/.893. Each simple bypass dominates its none and complex (as small or smaller, more accurate),
# and #1 also dominates #2 and #3. A trial goes on if fewer than ceil(n / 3) are strictly ahead.
# Rung 0 (epoch 1), n = 1..9:
#   #0 alone; #1 dominates #0: both go on.  #2 (n 3, kept 1): #1 is ahead: stopped, rank 2 of 3.
#   #3 (n 4, kept 2): behind #1 only, on front 1 with #0 and #2 as its extreme: goes on.
#   #4 (n 5): on front 0 with #1: goes on.  #5 (n 6, kept 2): #1 and #4 ahead: stopped, rank 3 of 6.
#   #6 (n 7, kept 3) and #7 (n 8): the most accurate, extremes of front 0: go on.
#   #8 (n 9, kept 3): #1, #4, #7 ahead: stopped, rank 4 of 9.
# Rung 1 (epoch 3), the six that went on: #0 alone, #1 ahead of it: go on; #3 (n 3, kept 1): #1
#   ahead: stopped, rank 2 of 3; #4, #6, #7 each arrive as an extreme of front 0: go on.
# So #0 completes though dominated: the first trials at a rung always go on (asynchronous ASHA).
EXPECTED_TWO_OBJECTIVES = {
    (0.125, "none"): "completed",
    (0.125, "simple"): "completed",
    (0.125, "complex"): "asha: rung 0 (epoch 1): rank 2 of 3, kept 1",
    (0.25, "none"): "asha: rung 1 (epoch 3): rank 2 of 3, kept 1",
    (0.25, "simple"): "completed",
    (0.25, "complex"): "asha: rung 0 (epoch 1): rank 3 of 6, kept 2",
    (0.5, "none"): "completed",
    (0.5, "simple"): "completed",
    (0.5, "complex"): "asha: rung 0 (epoch 1): rank 4 of 9, kept 3",
}


def test_two_objective_grid_stops_the_expected_trials_at_each_rung(tmp_path):
    study = run_workers(write_sweep(tmp_path), CheckpointingStub())
    assert decisions(study) == EXPECTED_TWO_OBJECTIVES
    check_rung_records(study)
    for trial in study.trials:
        if trial.state == optuna.trial.TrialState.PRUNED:
            epoch = [1, 3][trial.system_attrs[STOPPED_AT]]
            assert trial.user_attrs["status"] == "pruned"
            # The last rung's metrics stay, so the trial shows as a low-fidelity point.
            expected = history(trial.user_attrs["config"], 0, EPOCHS)[epoch - 1]
            assert trial.user_attrs["val_top1"] == pytest.approx(expected["val_top1"])
            assert trial.user_attrs["epochs_completed"] == epoch and len(trial.user_attrs["history"]) == epoch
            assert trial.user_attrs["model_size_mb"] > 0
        else:
            assert trial.user_attrs["status"] == "completed" and len(trial.user_attrs["history"]) == EPOCHS


def check_rung_records(study) -> None:
    """Each trial recorded a vector at each rung it reached (a retry: none, its dead trial did),
    and each run once per rung."""
    for trial in study.trials:
        if trial.user_attrs.get("status") == "worker_died":
            continue  # its history died with it
        recorded = [rung for rung in range(3) if rung_attr(rung) in trial.system_attrs]
        reached = [rung for rung, epoch in enumerate([1, 3]) if epoch <= len(trial.user_attrs["history"])]
        assert recorded == ([] if "retry_of" in trial.user_attrs else reached), (trial.number, recorded)
    for rung in range(2):
        runs = [t.system_attrs[rung_attr(rung)]["run"] for t in study.trials if rung_attr(rung) in t.system_attrs]
        assert len(runs) == len(set(runs))


def test_one_objective_is_ordinary_asha(tmp_path):
    """By accuracy alone (#0 .8655, #1 .8755, #2 .8705, #3 .873, #4 .883, #5 .878, #6 .888, #7 .898,
    #8 .893): at rung 0 only #2 (n 3, kept 1, behind #1) has too many ahead; at rung 1 the eight
    left arrive as #0 #1 #3 ...: #3 (n 3, kept 1) is behind #1; every later one is behind at most one
    with at least two kept."""
    study = run_workers(write_sweep(tmp_path, objectives=ACCURACY), CheckpointingStub())
    stopped = {c: reason for c, reason in decisions(study).items() if reason != "completed"}
    assert stopped == {(0.125, "complex"): "asha: rung 0 (epoch 1): rank 2 of 3, kept 1",
                       (0.25, "none"): "asha: rung 1 (epoch 3): rank 2 of 3, kept 1"}
    assert all(t.intermediate_values for t in study.trials)  # one objective: Optuna's per-epoch reports too
    check_rung_records(study)


def test_a_retry_resumes_past_its_rungs_without_recording_them_again(tmp_path):
    """#4 (.25 simple, on at both rungs) dies after epoch 5; its retry replays epochs 1-5 from the
    checkpoint, keeps the dead trial's rung records and decisions, and the other trials decide as if
    nothing happened. A candidate suggested again after it was stopped stops where it stopped."""
    path, trainer = write_sweep(tmp_path), CheckpointingStub(victim=(0.25, "simple"), die_after=5)
    study = run_workers(path, trainer)
    dead = study.trials[4]
    assert dead.state == optuna.trial.TrialState.RUNNING and len(study.trials) == 9
    study._storage.set_trial_user_attr(dead._trial_id, "worker", f"{socket.gethostname()}:999999999:0")  # its pid is gone
    study = run_workers(path, trainer)
    assert decisions(study) == EXPECTED_TWO_OBJECTIVES
    retry = study.trials[9]
    assert retry.user_attrs["retry_of"] == 4 and retry.state == optuna.trial.TrialState.COMPLETE
    assert [r["epoch"] for r in retry.user_attrs["history"]] == list(range(1, EPOCHS + 1))
    assert rung_attr(0) in study.trials[4].system_attrs and rung_attr(0) not in retry.system_attrs
    check_rung_records(study)

    again = study.trials[5]  # .25 complex, stopped at rung 0
    study.enqueue_trial(again.params, skip_if_exists=False)
    study = run_workers(path, trainer, trials=10)  # one past the grid
    assert study.trials[10].user_attrs["reason"] == "asha: rung 0 (epoch 1): stopped as trial 5 was"
    assert rung_attr(0) not in study.trials[10].system_attrs


def test_workers_one_after_another_on_one_journal_decide_as_one(tmp_path):
    """A second worker (its own storage object, as a second process) reads the first one's rung records."""
    path = write_sweep(tmp_path)
    run_workers(path, CheckpointingStub(), trials=4)
    assert decisions(run_workers(path, CheckpointingStub())) == EXPECTED_TWO_OBJECTIVES


def test_two_workers_at_once_make_consistent_decisions(tmp_path):
    """Two workers sharing the journal: every candidate trains once, every run is recorded once per
    rung it reached, and every stop follows the rule for the trials at the rung when it was made."""
    ran = []
    study = run_workers(write_sweep(tmp_path), CheckpointingStub(epoch_s=0.01), workers=2, ran=ran)
    assert sorted(decisions(study)) == sorted(EXPECTED_TWO_OBJECTIVES) and len(study.trials) == 9
    assert sorted(ran) != [0, 9] and sum(ran) == 9  # both trained, and nothing past the grid
    check_rung_records(study)
    at_rung = [sum(rung_attr(rung) in t.system_attrs for t in study.trials) for rung in range(2)]
    for trial in study.trials:
        if trial.state != optuna.trial.TrialState.PRUNED:
            continue
        match = re.fullmatch(r"asha: rung (\d) \(epoch (\d)\): rank (\d+) of (\d+), kept (\d+)", trial.user_attrs["reason"])
        rung, epoch, rank, n, kept = map(int, match.groups())
        assert trial.system_attrs[STOPPED_AT] == rung and len(trial.user_attrs["history"]) == epoch
        assert kept == math.ceil(n / 3) and rank > kept and n <= at_rung[rung]

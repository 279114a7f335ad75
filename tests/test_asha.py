"""ASHA for one objective or several: the ranking on hand-made points, and real workers on a
real journal study with the stub trainer of ``results_fixture`` (so every metric is known)."""

import datetime
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
from rich.console import Console

from dse.console import trials_table
from dse.errors import ConfigError
from dse.pareto import crowding_distances, hypervolume, hypervolume_contributions, pareto_fronts
from dse.results.analysis import pareto_front
from dse.results.frames import frames_from_study
from dse.sweep import worker as worker_module
from dse.sweep.asha import (
    FINISH,
    PROMOTED_FROM,
    PROMOTION,
    STOPPED_AT,
    Pace,
    latest_values,
    positions,
    promoted_trials,
    reference_bounds,
    reference_point,
    rung_attr,
)
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
# The traces below that check retries and duplicates were written for crowding distance, which
# sends one candidate straight through both rungs (an extreme of every front it meets).
ASHA_CROWDING = {**ASHA, "tie_break": "crowding"}
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
    assert positions(points, "crowding") == [0, 3, 2, 0, 5, 6, 3, 7]
    # Hypervolume up to (10.9, 10.9) (worst values + a tenth of the span): the front's staircase
    # gives each point (next x - x) * (previous y - y): (1,9) 2*1.9, (3,5) 2*4, (5,4) 4*1, (9,1) 1.9*3.
    reference = reference_point(points)
    assert reference == pytest.approx((10.9, 10.9))
    assert hypervolume_contributions(front, reference) == pytest.approx([3.8, 8.0, 4.0, 5.7, 8.0])
    # The two (3,5) first, sharing a place; then (9,1), (5,4), (1,9): extremes get no free pass.
    assert positions(points) == [4, 0, 3, 2, 5, 6, 0, 7]
    # Columns between the front's x values, each up from its lowest y: 2*1.9 + 2*5.9 + 4*6.9 + 1.9*9.9;
    # the points behind the front add nothing.
    assert hypervolume(points, reference) == pytest.approx(62.01)
    # Three objectives, by inclusion-exclusion: boxes 27, 16, 8; pairwise overlaps 12, 6, 4; all three 4.
    assert hypervolume([(1, 1, 1), (2, 2, 0), (3, 0, 2)], (4, 4, 4)) == pytest.approx(27 + 16 + 8 - 12 - 6 - 4 + 4)


def test_constraint_bounds_the_reference_so_the_large_accurate_end_counts(tmp_path):
    # Rung 1 (epoch 3) of the 2026-12-02 asha seed-0 bench run, (val top-1, MB) in arrival order:
    # the 168,138-param network (0.842, 0.641), the most accurate of nine, was measured against a
    # size just past its own and stayed paused.
    rung = [(0.842, 0.641), (0.709, 0.069), (0.69, 0.017), (0.776, 0.363), (0.82, 0.153), (0.8, 0.318),
            (0.486, 0.008), (0.668, 0.028), (0.812, 0.64)]
    points = [(-accuracy, size) for accuracy, size in rung]
    kept = 9 // 3
    assert positions(points)[0] >= kept  # paused: the reference sits at 0.641 + a tenth of the span
    sweep = load_sweep(write_sweep(tmp_path, constraints=[{"metric": "model_size_mb", "max": 1.0},
                                                          {"metric": "val_top1", "min": 0.4}]))
    bounds = reference_bounds(sweep)
    assert bounds == (-0.4, 1.0)  # (maximised val_top1's min, negated; model_size_mb's max)
    assert reference_point(points, bounds) == pytest.approx((-0.4, 1.0))
    assert positions(points, bounds=bounds)[0] < kept  # out to 1 MB its accuracy is worth a place
    # No constraint on an objective: the rung's own reference; a bound tighter than the values is not used.
    assert reference_bounds(load_sweep(write_sweep(tmp_path))) == (None, None)
    assert reference_point(points, (-0.9, 0.5)) == pytest.approx(reference_point(points))


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
    ({"pruner": {**ASHA, "tie_break": "random"}}, "pruner.tie_break: Input should be 'hypervolume' or 'crowding'"),
    ({"pruner": {"name": "none", "tie_break": "crowding"}}, "pruner: tie_break applies to asha, not none"),
    ({"objectives": [{"metric": "test_top1", "goal": "maximize"}, {"metric": "params", "goal": "minimize"}]},
     "test_top1 is known only at the end of a run"),
    ({"objectives": [{"metric": "val_top1", "goal": "maximize"}, {"metric": "compression_ratio", "goal": "maximize"}],
      "base": {**BASE, "compress": {"sparsity": 0.5}}}, "compression_ratio is known only at the end of a run"),
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
    (reported to ``on_start``, as the real trainer does), and ``victim`` dies once after ``die_after``.
    ``trained`` lists, per run, the epochs it really trained (not replayed from a checkpoint)."""

    def __init__(self, victim: tuple | None = None, die_after: int = 0, epoch_s: float = 0.0):
        self.stub, self.checkpoints, self.trained = StubTrainer(prune=set()), {}, {}
        self.victim, self.die_after, self.epoch_s = victim, die_after, epoch_s

    def __call__(self, cfg, workdir, *, hooks=None, splits=None):
        done = self.checkpoints.get(workdir, [])

        def on_start(info):
            hooks.on_start({**info, "start_epoch": len(done), "history": [dict(r) for r in done]})

        def on_epoch(record):
            if record["epoch"] <= len(done):
                return  # restored from the checkpoint, not trained again
            time.sleep(self.epoch_s)
            self.trained.setdefault(workdir, []).append(record["epoch"])
            self.checkpoints[workdir] = [*self.checkpoints.get(workdir, []), record]  # saved before the hook, as the trainer does
            hooks.on_epoch(record)
            if (cfg.model.sr, cfg.model.bypass) == self.victim and record["epoch"] == self.die_after:
                self.victim = None
                raise Killed

        return self.stub(cfg, workdir, hooks=worker_module.Hooks(on_start=on_start, on_epoch=on_epoch), splits=splits)

    def check_never_retrained(self) -> None:
        """Each run trained each epoch once: promotions and retries resumed its checkpoint."""
        for run, epochs in self.trained.items():
            assert epochs == list(range(1, len(epochs) + 1)), (run, epochs)


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
    """Each candidate's fate, from its last trial: ``completed`` or the rung reason it paused with."""
    fates = {}
    for t in sorted(study.trials, key=lambda t: t.number):
        if t.state != optuna.trial.TrialState.FAIL:
            fates[candidate(t)] = t.user_attrs["reason"] if t.state == optuna.trial.TrialState.PRUNED else t.user_attrs["status"]
    return fates


def promotions(study) -> dict[int, int]:
    """Promotion trial number -> the paused trial it continues."""
    return {t.number: t.user_attrs[PROMOTED_FROM] for t in study.trials if PROMOTED_FROM in t.user_attrs}


# Two objectives, crowding distance, one worker, trials arriving in grid order (#0 .. #8). At rung sizes (MB) and
# accuracies (final; one offset per epoch keeps the order): #0 .125 none .051/.8655,
# #1 .125 simple .051/.8755, #2 .125 complex .076/.8705, #3 .25 none .095/.873, #4 .25 simple
# .095/.883, #5 .25 complex .119/.878, #6 .5 none .182/.888, #7 .5 simple .182/.898, #8 .5 complex
# .206/.893. Each simple bypass dominates its none and complex (as small or smaller, more accurate),
# and #1 also dominates #2 and #3. Of n at a rung, those with fewer than floor(n / 3) strictly
# ahead are promotable; an arriving trial goes on at once if it is, else it pauses, and before
# each new grid point the worker promotes a promotable paused trial (highest rung first).
# Rung 0 (epoch 1):
#   #0 (n 1) and #1 (n 2): none promotable yet: both pause.  #2 (n 3, 1 promotable): #1 is ahead:
#   pauses, rank 2 of 3.  #1 is now promotable: promotion #9 resumes it (rung 1: n 1, pauses).
#   #3 (n 4): behind #1, pauses rank 2 of 4.  #4 (n 5): on front 0 with #1, both extremes: goes on;
#   rung 1 (n 2, none promotable): pauses rank 1 of 2.  #5 (n 6, 2 promotable): #1 and #4 ahead,
#   pauses rank 3 of 6.  #6 (n 7): an extreme of front 0 (#1 #4 #6): goes on; rung 1 (n 3, 1
#   promotable): an extreme again: goes on, completes.  #1's run (#9) is now promotable at rung 1
#   (the other extreme): promotion #10 completes it.  #7 (n 8) dominates #6, an extreme: on at both
#   rungs.  #8 (n 9, 3 promotable): front 0 is #1 #4 #7, it is an extreme of front 1: rank 4 of 9.
# #4 stays paused at rung 1: with four there, #1's run and #7 are the extremes ahead of it.
EXPECTED_CROWDING = {
    (0.125, "none"): "asha: rung 0 (epoch 1): paused at rank 1 of 1, 0 promotable",
    (0.125, "simple"): "completed",
    (0.125, "complex"): "asha: rung 0 (epoch 1): paused at rank 2 of 3, 1 promotable",
    (0.25, "none"): "asha: rung 0 (epoch 1): paused at rank 2 of 4, 1 promotable",
    (0.25, "simple"): "asha: rung 1 (epoch 3): paused at rank 1 of 2, 0 promotable",
    (0.25, "complex"): "asha: rung 0 (epoch 1): paused at rank 3 of 6, 2 promotable",
    (0.5, "none"): "completed",
    (0.5, "simple"): "completed",
    (0.5, "complex"): "asha: rung 0 (epoch 1): paused at rank 4 of 9, 3 promotable",
}


def test_two_objective_grid_pauses_and_promotes_the_expected_trials_at_each_rung(tmp_path):
    trainer = CheckpointingStub()
    study = run_workers(write_sweep(tmp_path, pruner=ASHA_CROWDING), trainer)
    assert decisions(study) == EXPECTED_CROWDING
    assert promotions(study) == {9: 1, 10: 9}
    trainer.check_never_retrained()
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
    # The results show the paused trials that were continued as promoted, and what continued them.
    trials, _, _ = frames_from_study(study)
    assert trials.set_index("number").loc[[1, 9], "status"].tolist() == ["promoted", "promoted"]
    assert trials.set_index("number").loc[[9, 10], PROMOTED_FROM].tolist() == [1, 9]
    assert (trials["status"] == "pruned").sum() == 6 and (trials["status"] == "completed").sum() == 3
    # `dse sweep status` renders that DataFrame: promoted trials say so, and the starred set is its front.
    sweep = load_sweep(write_sweep(tmp_path, pruner=ASHA_CROWDING))
    table = Console(width=400, record=True)
    table.print(trials_table(trials, sweep))
    rows = {int(line.split()[1].rstrip("*")): line for line in table.export_text().splitlines() if line[:2] == "│ "
            and line.split()[1].rstrip("*").isdigit()}
    assert "promoted" in rows[1] and "promoted" in rows[9]
    front = set(trials.loc[pareto_front(trials, [(o.metric, o.goal) for o in sweep.objectives]), "number"])
    assert front and {n for n, line in rows.items() if f"{n}*" in line} == front


# The default, hypervolume contribution, on the same grid and order. Within a front each vector
# gets the area only it dominates, up to the rung's worst values plus a tenth of their span.
# Rung 0: #0 #1 pause (n < 3).  #2 (n 3): #1 dominates #0 and #2, and of those two (front 1) #0's
#   area is larger (.001 x .0247 vs .005 x .0024): rank 3.  #1 is promoted (#9; rung 1, n 1: pauses).
#   #3 (n 4): behind #1, last.  #4 (n 5, 1 promotable): front 0 is #1 and #4; #1's area (.01175 x
#   .0435) beats #4's (.0075 x .00435): rank 2.  #5 (n 6, 2 promotable): behind #4, its front's
#   most accurate end gets the least area: rank 6; #4 is now promotable (#10; rung 1, n 2: pauses).
#   #6 (n 7): front 0 but behind #1 and #4: rank 3.  #7 (n 8): beats #6: front 0 is #1 #4 #7,
#   rank 3.  #8 (n 9, 3 promotable): behind #7: rank 8.  #7 is now promotable (#11).
# Rung 1 (n 3, 1 promotable): #1's, #4's and #7's runs form the front; the middle one (#4's run,
#   .25 simple) has the most area: promotion #12 trains it to the end.
# One candidate of nine completes and three of nine pass rung 0: floor(n / 3) at each rung, where
# crowding distance passed four and completed three (its two extremes always tie first).
EXPECTED_TWO_OBJECTIVES = {
    (0.125, "none"): "asha: rung 0 (epoch 1): paused at rank 1 of 1, 0 promotable",
    (0.125, "simple"): "asha: rung 1 (epoch 3): paused at rank 1 of 1, 0 promotable",
    (0.125, "complex"): "asha: rung 0 (epoch 1): paused at rank 3 of 3, 1 promotable",
    (0.25, "none"): "asha: rung 0 (epoch 1): paused at rank 4 of 4, 1 promotable",
    (0.25, "simple"): "completed",
    (0.25, "complex"): "asha: rung 0 (epoch 1): paused at rank 6 of 6, 2 promotable",
    (0.5, "none"): "asha: rung 0 (epoch 1): paused at rank 3 of 7, 2 promotable",
    (0.5, "simple"): "asha: rung 1 (epoch 3): paused at rank 2 of 3, 1 promotable",
    (0.5, "complex"): "asha: rung 0 (epoch 1): paused at rank 8 of 9, 3 promotable",
}


def test_hypervolume_tie_break_passes_one_in_reduction_factor_at_each_rung(tmp_path):
    trainer = CheckpointingStub()
    study = run_workers(write_sweep(tmp_path), trainer)
    assert decisions(study) == EXPECTED_TWO_OBJECTIVES
    assert promotions(study) == {9: 1, 10: 4, 11: 7, 12: 10}
    trainer.check_never_retrained()
    check_rung_records(study)
    runs_at = [{t.system_attrs[rung_attr(rung)]["run"] for t in study.trials if rung_attr(rung) in t.system_attrs}
               for rung in range(2)]
    assert [len(runs) for runs in runs_at] == [9, 3]
    assert sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials) == 1


def check_rung_records(study) -> None:
    """Each trial recorded a vector at each rung it reached past the one it was promoted from (a
    retry: none, its dead trial did), and each run once per rung."""
    for trial in study.trials:
        if trial.user_attrs.get("status") in ("worker_died", "duplicate"):
            continue  # its history died with it, or it never trained
        recorded = [rung for rung in range(3) if rung_attr(rung) in trial.system_attrs]
        reached = [rung for rung, epoch in enumerate([1, 3]) if epoch <= len(trial.user_attrs["history"])]
        promoted_at = int(trial.user_attrs.get(PROMOTION, "@-1").rsplit("@", 1)[1])
        expected = [] if "retry_of" in trial.user_attrs else [rung for rung in reached if rung > promoted_at]
        assert recorded == expected, (trial.number, recorded)
    for rung in range(2):
        runs = [t.system_attrs[rung_attr(rung)]["run"] for t in study.trials if rung_attr(rung) in t.system_attrs]
        assert len(runs) == len(set(runs))


def test_one_objective_is_ordinary_asha(tmp_path):
    """By accuracy alone (#0 .8655, #1 .8755, #2 .8705, #3 .873, #4 .883, #5 .878, #6 .888, #7 .898,
    #8 .893). Rung 0: #0 and #1 pause (none promotable with n < 3); #2 and #3 pause behind #1, which
    is promoted (#9) and pauses alone at rung 1; #4 leads: on, then pauses at rung 1 (n 2); #5
    (n 6, 2 promotable) is second: on, and pauses at rung 1 behind #4 (n 3), which is now promoted
    (#10) and completes; #6, #7 and #8 are within the promotable at both rungs."""
    trainer = CheckpointingStub()
    study = run_workers(write_sweep(tmp_path, objectives=ACCURACY), trainer)
    stopped = {c: reason for c, reason in decisions(study).items() if reason != "completed"}
    assert stopped == {(0.125, "none"): "asha: rung 0 (epoch 1): paused at rank 1 of 1, 0 promotable",
                       (0.125, "simple"): "asha: rung 1 (epoch 3): paused at rank 1 of 1, 0 promotable",
                       (0.125, "complex"): "asha: rung 0 (epoch 1): paused at rank 2 of 3, 1 promotable",
                       (0.25, "none"): "asha: rung 0 (epoch 1): paused at rank 2 of 4, 1 promotable",
                       (0.25, "complex"): "asha: rung 1 (epoch 3): paused at rank 2 of 3, 1 promotable"}
    assert promotions(study) == {9: 1, 10: 4}
    assert all(t.intermediate_values for t in study.trials)  # one objective: Optuna's per-epoch reports too
    trainer.check_never_retrained()
    check_rung_records(study)


def test_a_retry_resumes_past_its_rungs_without_recording_them_again(tmp_path):
    """#6 (.5 none, on at both rungs) dies after epoch 5; its retry replays epochs 1-5 from the
    checkpoint, keeps the dead trial's rung records and decisions, and the other trials decide as if
    nothing happened. A candidate suggested again after it paused stops where it paused."""
    path, trainer = write_sweep(tmp_path, pruner=ASHA_CROWDING), CheckpointingStub(victim=(0.5, "none"), die_after=5)
    study = run_workers(path, trainer)
    dead = study.trials[6]
    assert dead.state == optuna.trial.TrialState.RUNNING and len(study.trials) == 10  # the grid and promotion #9
    study._storage.set_trial_user_attr(dead._trial_id, "worker", f"{socket.gethostname()}:999999999:0")  # its pid is gone
    study = run_workers(path, trainer)
    assert decisions(study) == EXPECTED_CROWDING
    (retry,) = [t for t in study.trials if "retry_of" in t.user_attrs]
    assert retry.user_attrs["retry_of"] == 6 and retry.state == optuna.trial.TrialState.COMPLETE
    assert [r["epoch"] for r in retry.user_attrs["history"]] == list(range(1, EPOCHS + 1))
    assert rung_attr(0) in study.trials[6].system_attrs and rung_attr(0) not in retry.system_attrs
    trainer.check_never_retrained()
    check_rung_records(study)

    again = study.trials[5]  # .25 complex, paused at rung 0
    study.enqueue_trial(again.params, skip_if_exists=False)
    study = run_workers(path, trainer, trials=10)  # one past the grid
    assert study.trials[-1].user_attrs["reason"] == "asha: rung 0 (epoch 1): stopped as trial 5 was"
    assert rung_attr(0) not in study.trials[-1].system_attrs


def test_a_promotion_taken_twice_trains_once(tmp_path):
    """Two workers that promote one paused trial at the same moment enqueue two promotions; the
    later one is recorded as a duplicate, never trained, and the budget does not count it."""
    path, trainer = write_sweep(tmp_path, pruner=ASHA_CROWDING), CheckpointingStub()
    study = run_workers(path, trainer, trials=3)  # #0 #1 #2 pause; #1 is promoted (#9)
    (promotion,) = [t for t in study.trials if PROMOTED_FROM in t.user_attrs]
    assert promotion.number == 9 and promoted_trials(study.trials) == {1}
    study.enqueue_trial(promotion.params, skip_if_exists=False, user_attrs={
        PROMOTED_FROM: 1, PROMOTION: promotion.user_attrs[PROMOTION]})  # what the other worker would enqueue
    study = run_workers(path, trainer)
    duplicate = study.trials[10]
    assert duplicate.state == optuna.trial.TrialState.FAIL and duplicate.user_attrs["status"] == "duplicate"
    assert duplicate.user_attrs["reason"] == "trial 9 is this promotion (two workers promoted at once)"
    assert decisions(study) == EXPECTED_CROWDING  # the grid is done: the duplicate took no grid point's place
    trainer.check_never_retrained()
    check_rung_records(study)


def test_workers_one_after_another_on_one_journal_decide_as_one(tmp_path):
    """A second worker (its own storage object, as a second process) reads the first one's rung records."""
    path = write_sweep(tmp_path, pruner=ASHA_CROWDING)
    run_workers(path, CheckpointingStub(), trials=4)
    assert decisions(run_workers(path, CheckpointingStub())) == EXPECTED_CROWDING


def test_two_workers_at_once_make_consistent_decisions(tmp_path):
    """Two workers sharing the journal: every candidate is decided, no run trains an epoch twice,
    every run is recorded once per rung it reached, each paused trial is promoted at most once, and
    every pause follows the rule for the trials at the rung when it was made."""
    ran, trainer = [], CheckpointingStub(epoch_s=0.01)
    study = run_workers(write_sweep(tmp_path, pruner=ASHA_CROWDING), trainer, workers=2, ran=ran)
    assert sorted(decisions(study)) == sorted(EXPECTED_CROWDING)
    assert len([t for t in study.trials if PROMOTED_FROM not in t.user_attrs]) == 9
    trained = [t for t in study.trials if t.user_attrs.get("status") != "duplicate"]
    assert sorted(ran) != [0, len(trained)] and sum(ran) == len(trained)  # both trained, nothing past the grid
    promoted = [t.user_attrs[PROMOTION] for t in trained if PROMOTION in t.user_attrs]
    assert promoted and len(promoted) == len(set(promoted))
    trainer.check_never_retrained()
    check_rung_records(study)
    at_rung = [sum(rung_attr(rung) in t.system_attrs for t in study.trials) for rung in range(2)]
    for trial in study.trials:
        if trial.state != optuna.trial.TrialState.PRUNED or "stopped as" in trial.user_attrs["reason"]:
            continue
        match = re.fullmatch(r"asha: rung (\d) \(epoch (\d)\): paused at rank (\d+) of (\d+), (\d+) promotable",
                             trial.user_attrs["reason"])
        rung, epoch, rank, n, kept = map(int, match.groups())
        assert trial.system_attrs[STOPPED_AT] == rung and len(trial.user_attrs["history"]) == epoch
        assert kept == n // 3 and rank > kept and n <= at_rung[rung]


# ---- NSGA-II under asha ----
@pytest.mark.parametrize("sampler_class, generation", [("NSGAIISampler", 0), ("NSGAIIOverRungs", 1)])
def test_nsga2_counts_paused_candidates_toward_its_generations(tmp_path, sampler_class, generation):
    # Optuna's GA samplers count a generation as population_size COMPLETE trials: paused (PRUNED)
    # candidates never count, and an asha sweep stays in the random first generation for good.
    from dse.sweep import space

    sweep = load_sweep(write_sweep(tmp_path, sampler={"name": "nsga2", "seed": 0, "population_size": 2},
                                   space={"model.sr": {"low": 0.125, "high": 1.0, "step": 0.125}}, budget={"trials": 9}))
    sampler = space.make_sampler(sweep)
    assert type(sampler).__name__ == "NSGAIIOverRungs"  # what an asha sweep gets
    sampler = getattr(space, sampler_class, None) or getattr(optuna.samplers, sampler_class)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler(seed=0, population_size=2))
    for run, values in (("a", [0.5, 0.1]), ("b", [0.6, 0.2])):  # two candidates paused at rung 0
        trial = study.ask()
        space.suggest(trial, sweep)
        trial.set_user_attr("run", run)
        study._storage.set_trial_system_attr(trial._trial_id, rung_attr(0), {"run": run, "values": values})
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    child = study.ask()
    space.suggest(child, sweep)
    assert study._storage.get_trial(child._trial_id).system_attrs["NSGAIISampler:generation"] == generation
    parents = study._storage.get_study_system_attrs(study._study_id).get("NSGAIISampler:parent:1")
    bred_from = None if parents is None else sorted(parents)  # the two paused candidates, as parents
    assert bred_from == (None if generation == 0 else [t._trial_id for t in study.trials[:2]])
    assert [t.state for t in study.trials[:2]] == [optuna.trial.TrialState.PRUNED] * 2  # the study itself unchanged


def test_latest_values_take_the_highest_rung_then_the_final_values():
    def trial(number, state, run, rungs=(), values=None):
        return optuna.trial.create_trial(
            state=state, values=values, params={}, distributions={}, user_attrs={"run": run},
            system_attrs={rung_attr(r): {"run": run, "values": v} for r, v in rungs})

    pruned, complete = optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.COMPLETE
    trials = [trial(0, pruned, "a", [(0, [0.5, 0.1])]),                 # paused at rung 0
              trial(1, pruned, "a", [(1, [0.7, 0.1])]),                 # its promotion, paused at rung 1
              trial(2, pruned, "b", [(0, [0.4, 0.3])]),
              trial(3, complete, "b", [], values=[0.8, 0.3]),           # b's promotion, trained to the end
              trial(4, pruned, "c", [(1, [0.6, 0.2]), (0, [0.3, 0.2])])]  # attrs in any order
    assert latest_values(trials) == {"a": [0.7, 0.1], "b": [0.8, 0.3], "c": [0.6, 0.2]}


# ---- the budget's end ----
def test_pace_counts_each_runs_epochs_once_and_scales_by_its_epoch_time():
    start = datetime.datetime(2026, 12, 3, 6, 0)

    def trial(run, seconds, epochs, epoch_train_s, state=optuna.trial.TrialState.PRUNED):
        frozen = optuna.trial.create_trial(
            state=state, values=[0.8, 0.1] if state == optuna.trial.TrialState.COMPLETE else None, params={},
            distributions={}, user_attrs={"run": run, "history": [{"epoch": e, "epoch_train_s": epoch_train_s}
                                                                   for e in range(1, epochs + 1)]})
        frozen.datetime_start, frozen.datetime_complete = start, start + datetime.timedelta(seconds=seconds)
        return frozen

    assert Pace.of([]) is None
    infeasible = optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL, params={}, distributions={})
    # Run a paused after 1 epoch (60 s: 30 s besides training), its promotion replays that epoch and
    # trains 8 (300 s: 60 besides); run b paused after 1 epoch (40 s: 30 besides). Besides training,
    # through (1, 30), (8, 60), (1, 30): 30/7 s per epoch and 40 - 30/7 * 10/3 s fixed.
    pace = Pace.of([trial("a", 60, 1, 30.0), trial("a", 300, 9, 30.0, optuna.trial.TrialState.COMPLETE),
                    trial("b", 40, 1, 10.0), infeasible])
    assert pace.per_epoch_s == pytest.approx(30 / 7) and pace.fixed_s == pytest.approx(40 - 30 / 7 * 10 / 3)
    assert pace.epoch_train_s == {"a": 30.0, "b": 10.0}
    assert pace.seconds(6, "b") == pytest.approx(pace.fixed_s + 6 * (10 + 30 / 7))
    assert pace.seconds(9) == pytest.approx(pace.fixed_s + 9 * (20 + 30 / 7))  # a new candidate: the mean run
    # One trial length only: what is not training is all fixed.
    assert Pace.of([trial("b", 40, 1, 10.0)]) == Pace(30.0, 0.0, {"b": 10.0})


def run_to_the_end(path: Path, seconds_left: float) -> optuna.Study:
    """One worker on the study at ``path`` whose budget ends in ``seconds_left``, its epochs 4x the
    stub's epoch train time (the stub's trials take milliseconds; its epoch train time rises with
    SR: 85, 90 and 100 s at SR .125, .25 and .5), nothing besides; 100 s before any trial ran."""
    sweep = load_sweep(path)
    directory = path.parent / "results"
    real = Pace.of

    def slow(trials):
        pace = real(trials)
        return Pace(0.0, 0.0, {run: 4 * s for run, s in pace.epoch_train_s.items()} if pace else {"no run yet": 100.0})

    with mock.patch.object(worker_module, "train_and_evaluate", CheckpointingStub()), \
            mock.patch.object(worker_module, "load_splits", _fake_splits), mock.patch.object(Pace, "of", slow):
        Worker(open_study(sweep, directory, None), sweep, directory, deadline=time.time() + seconds_left).run()
    return open_study(sweep, directory, None)


# After the grid of EXPECTED_TWO_OBJECTIVES: two runs paused at rung 1 (epoch 3), six at rung 0. A new
# candidate needs 9 epochs of the mean run (825 s); the rung-1 runs need 6 more epochs (510 s at SR
# .125, 600 s at SR .5), the rung-0 runs 8 (680, 720 and 800 s).
@pytest.mark.parametrize("seconds_left, finished", [
    (550, [(0.125, "simple")]),  # only the faster rung-1 run fits
    (760, [(0.125, "simple"), (0.5, "simple"), (0.125, "none"), (0.125, "complex"), (0.25, "none"), (0.25, "complex")]),
], ids=["550s", "760s"])
def test_at_the_budgets_end_paused_trials_that_fit_train_to_the_end(tmp_path, seconds_left, finished):
    path = write_sweep(tmp_path)
    run_workers(path, CheckpointingStub())
    study = run_to_the_end(path, seconds_left)
    assert len(study.trials) == 13 + len(finished)  # the grid and its four promotions, then these
    ends = study.trials[13:]
    assert [candidate(t) for t in ends] == [candidate(study.trials[t.user_attrs[PROMOTED_FROM]]) for t in ends]
    assert sorted(candidate(t) for t in ends) == sorted(finished)
    rungs = [int(t.user_attrs[PROMOTION].rsplit("@", 1)[1]) for t in ends]
    assert rungs == sorted(rungs, reverse=True)  # the highest rung first
    for trial in ends:  # to the end: past rung 1 too, where only one in three would go on
        assert trial.user_attrs[FINISH] and trial.state == optuna.trial.TrialState.COMPLETE
        assert len(trial.user_attrs["history"]) == EPOCHS
    check_rung_records(study)
    still_paused = set(EXPECTED_TWO_OBJECTIVES) - set(finished) - {(0.25, "simple")}
    assert {c for c, fate in decisions(study).items() if fate != "completed"} == still_paused


def test_at_the_budgets_end_no_new_candidate_starts(tmp_path):
    """A sampled sweep whose budget ends before a new candidate could train: the worker stops
    without asking the sampler (nothing is paused yet, so nothing can end)."""
    path = write_sweep(tmp_path, sampler={"name": "random", "seed": 0}, budget={"wall_clock_minutes": 20, "trials": 3})
    assert len(run_to_the_end(path, seconds_left=600).trials) == 0  # a new candidate needs 900 s
    assert len(run_to_the_end(path, seconds_left=1000).trials) >= 3  # 900 s fit: it samples


# ---- compressed objectives: rungs on stand-ins, a byte bound before training ----
COMPRESSED = [{"metric": "val_top1_compressed", "goal": "maximize"}, {"metric": "compressed_bytes", "goal": "minimize"}]


def test_compressed_objectives_rank_rungs_on_stand_ins_and_a_hopeless_bound_trains_nothing(tmp_path):
    from dse.compress.bound import compressed_bytes_bound
    from dse.train import TrainConfig

    # Bounds at these widths, 50% sparsity: SR 0.125/0.25/0.5 at 2 bits 27,411/35,829/51,456 bytes,
    # at 8 bits 62,069/75,875/101,092. A 25,000-byte limit x the 2.5 margin = 62,500.
    base = {**BASE, "epochs": EPOCHS, "compress": {"sparsity": 0.5, "bits": 4}}
    path = write_sweep(tmp_path, objectives=COMPRESSED, base=base,
                       space={"model.sr": {"values": [0.125, 0.25, 0.5]}, "compress.bits": {"values": [2, 8]}},
                       constraints=[{"metric": "compressed_bytes", "max": 25_000}])
    trainer = CheckpointingStub()
    study = run_workers(path, trainer)
    by_point = {(t.params["model.sr"], t.params["compress.bits"]): t for t in study.trials if PROMOTED_FROM not in t.user_attrs}
    assert len(by_point) == 6
    for (sr, bits), trial in by_point.items():
        cfg = TrainConfig.model_validate({**base, "model": {**BASE["model"], "sr": sr},
                                          "compress": {"sparsity": 0.5, "bits": bits}})
        bound = compressed_bytes_bound(cfg)
        assert trial.user_attrs["compressed_bytes_bound"] == bound
        if bound > 62_500:  # (0.25, 8) and (0.5, 8): never trained
            assert trial.user_attrs["status"] == "infeasible" and "run" not in trial.user_attrs, (sr, bits)
            assert f"compressed_bytes_bound={bound:,} > 2.5 x max 25,000" in trial.user_attrs["reason"]
            continue
        # The first rung (epoch 1) ranked the uncompressed accuracy and the bound: what is known by then.
        first_epoch = trial.user_attrs["history"][0]
        assert trial.system_attrs[rung_attr(0)]["values"] == [first_epoch["val_top1"], bound], (sr, bits)
    assert sum(t.user_attrs["status"] == "infeasible" for t in by_point.values()) == 2
    assert len(trainer.trained) == 4  # the four candidates within the margin trained, and only they
    trainer.check_never_retrained()


def test_an_asha_sweep_may_optimise_compressed_metrics_through_their_stand_ins(tmp_path):
    # (A compressed metric with no stand-in, compression_ratio, is refused: INVALID above.)
    sweep = load_sweep(write_sweep(tmp_path, objectives=COMPRESSED, base={**BASE, "epochs": EPOCHS, "compress": {"bits": 6}}))
    assert [o.metric for o in sweep.objectives] == ["val_top1_compressed", "compressed_bytes"]

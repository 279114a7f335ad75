"""The contract module is the one spelling of metrics, statuses and folders; the worker's
budget and dead-worker rules on an in-memory storage."""

from __future__ import annotations

import ast
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState
from results_fixture import SEED, StubTrainer, _fake_splits

from dse.arch import ArchConfig, expand, summarize
from dse.contract import METRICS, Source, TrialAttr, TrialStatus, names
from dse.sweep import worker as worker_module
from dse.sweep.config import SweepConfig, load_sweep
from dse.sweep.runner import study_deadline
from dse.sweep.space import make_sampler
from dse.sweep.study import CREATED_AT, open_study
from dse.sweep.worker import Worker, budget_total, counted_trials, recover_dead_trials

PACKAGE = Path(__file__).resolve().parents[1] / "dse"


def _sources() -> list[tuple[Path, ast.AST]]:
    return [(p, ast.parse(p.read_text())) for p in sorted(PACKAGE.rglob("*.py")) if p.name != "contract.py"]


def test_no_status_word_is_spelled_outside_the_contract():
    statuses = {str(s) for s in TrialStatus}
    found = [f"{path.name}:{node.lineno} {node.value!r}" for path, tree in _sources() for node in ast.walk(tree)
             if isinstance(node, ast.Constant) and node.value in statuses]
    assert found == []


def test_trial_attrs_are_spelled_in_the_contract_only():
    """Reads and writes of a trial's user attrs name their key through TrialAttr, never as a string."""
    keys = {str(a) for a in TrialAttr}
    found = []
    for path, tree in _sources():
        for node in ast.walk(tree):
            call = isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            if call and node.func.attr in ("set_user_attr", "set_trial_user_attr", "get") and any(
                    isinstance(a, ast.Constant) and a.value in keys for a in node.args[:2]):
                target = ast.unparse(node.func.value)
                if node.func.attr != "get" or target.endswith("user_attrs"):
                    found.append(f"{path.name}:{node.lineno} {ast.unparse(node)}")
    assert found == []


def test_no_list_of_metric_names_outside_the_contract():
    """Producers key their values by metric name; a *list* of names elsewhere would be a second registry."""
    found = []
    for path, tree in _sources():
        for node in ast.walk(tree):
            if isinstance(node, ast.Tuple | ast.List | ast.Set):
                listed = [e.value for e in node.elts if isinstance(e, ast.Constant) and e.value in METRICS]
                if len(listed) >= 2:
                    found.append(f"{path.name}:{node.lineno} {listed}")
    assert found == []


def test_the_registry_says_where_each_metric_comes_from():
    summary = summarize(expand(ArchConfig.preset("squeezenet_small")))
    assert tuple(summary.static_metrics()) == names(Source.STATIC)  # the spec produces exactly the static ones
    assert set(names(Source.EPOCH)) == {"val_top1", "val_top5", "val_loss"}
    assert all(m.goal in ("maximize", "minimize") for m in METRICS.values())


def test_contract_imports_nothing_heavy():
    code = "import sys, dse.contract; print(sorted(m for m in ('jax', 'optuna', 'pandas') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --------------------------------------------------------------------------- worker rules, in memory


def _sweep(**overrides) -> SweepConfig:
    data = {"name": "mem", "base": {"epochs": 2, "model": {"base_e": 16, "incr_e": 16}},
            "space": {"model.sr": {"values": [0.25, 0.5, 1.0]}}, "sampler": {"name": "random"}, "budget": {"trials": 3}}
    data.update(overrides)
    return SweepConfig.model_validate(data)


def _study(sweep: SweepConfig) -> optuna.Study:
    return optuna.create_study(storage=optuna.storages.InMemoryStorage(), directions=[o.goal for o in sweep.objectives])


def _run(study, sweep, tmp_path, deadline=None) -> int:
    from unittest import mock

    with mock.patch.object(worker_module, "train_and_evaluate", StubTrainer(prune=set())), \
            mock.patch.object(worker_module, "load_splits", _fake_splits):
        return Worker(study, sweep, tmp_path, deadline=deadline).run()


def test_the_trial_budget_counts_for_the_study_not_the_run(tmp_path):
    sweep = _sweep()
    study = _study(sweep)
    assert _run(study, sweep, tmp_path) == 3 and counted_trials(study) == 3
    assert _run(study, sweep, tmp_path) == 0  # a rerun finds the budget spent
    assert budget_total(sweep, None) == 3 and budget_total(sweep, 5) == 5
    assert budget_total(_sweep(sampler={"name": "grid"}, budget={}, repeats=2), None) == 6


def test_no_trial_starts_after_the_deadline(tmp_path):
    sweep = _sweep()
    study = _study(sweep)
    assert _run(study, sweep, tmp_path, deadline=time.time() - 1) == 0 and not study.trials


def test_wall_clock_budget_counts_from_the_studys_creation(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"name": "clock", "space": {"model.sr": {"values": [0.5]}},
                                    "sampler": {"name": "random"}, "budget": {"wall_clock_minutes": 10}}))
    sweep = load_sweep(path)
    before = time.time()
    study = open_study(sweep, tmp_path, None)
    created = study.user_attrs[CREATED_AT]
    assert before <= created <= time.time()
    assert study_deadline(study, sweep) == pytest.approx(created + 600)
    time.sleep(0.05)  # a later run resumes: the deadline does not move
    assert study_deadline(open_study(sweep, tmp_path, None), sweep) == pytest.approx(created + 600)


def _running_trial(study: optuna.Study, worker: str, heartbeat: float | None, retries: int = 0) -> optuna.Trial:
    trial = study.ask()
    trial.set_user_attr("worker", worker)
    trial.set_user_attr("retries", retries)
    if heartbeat is not None:
        trial.set_user_attr("heartbeat", heartbeat)
    return trial


def test_a_dead_workers_trial_is_failed_with_its_reason_and_retried_within_the_budget():
    study = optuna.create_study(storage=optuna.storages.InMemoryStorage())
    host = socket.gethostname()
    alive = _running_trial(study, worker_module.worker_identity(), time.time())
    reused_pid = _running_trial(study, f"{host}:{os.getpid()}:not-our-start-time", time.time())  # same pid, other process
    silent = _running_trial(study, "elsewhere:123:456", time.time() - 10 * worker_module.STALE_AFTER_S)
    exhausted = _running_trial(study, f"{host}:{os.getpid()}:gone", None, retries=2)

    recovered = recover_dead_trials(study, max_retries=2)
    assert sorted(recovered) == sorted([reused_pid.number, silent.number, exhausted.number])
    trials = {t.number: t for t in study.get_trials()}
    assert trials[alive.number].state == TrialState.RUNNING
    for number in recovered:
        attrs = trials[number].user_attrs
        assert trials[number].state == TrialState.FAIL and attrs["status"] == TrialStatus.WORKER_DIED
    assert "is gone" in trials[reused_pid.number].user_attrs["reason"]
    assert "no heartbeat" in trials[silent.number].user_attrs["reason"]
    assert trials[exhausted.number].user_attrs["will_retry"] is False
    waiting = study.get_trials(states=(TrialState.WAITING,))
    assert len(waiting) == 2 and {t.user_attrs["retries"] for t in waiting} == {1}
    # Retried trials do not spend the budget; the one out of retries does.
    assert counted_trials(study) == 1


def test_a_resumed_trial_that_is_pruned_keeps_the_epochs_before_the_resume(tmp_path):
    """The trainer hands the restored history to ``on_start``; the worker puts it on the curve."""
    from unittest import mock

    sweep = _sweep(budget={"trials": 1}, space={"model.sr": {"values": [0.5]}})
    study = _study(sweep)

    def resumed_then_pruned(cfg, workdir, *, hooks=None, splits=None):
        restored = [{"epoch": 1, "val_top1": 0.5}, {"epoch": 2, "val_top1": 0.6}]
        hooks.on_start({"epochs": 4, "steps_per_epoch": 1, "start_epoch": 2, "history": restored})
        hooks.on_epoch({"epoch": 3, "val_top1": 0.61})
        raise optuna.TrialPruned()

    with mock.patch.object(worker_module, "train_and_evaluate", resumed_then_pruned), \
            mock.patch.object(worker_module, "load_splits", _fake_splits):
        Worker(study, sweep, tmp_path).run()
    trial = study.trials[0]
    assert trial.state == TrialState.PRUNED and trial.user_attrs["status"] == TrialStatus.PRUNED
    assert [r["epoch"] for r in trial.user_attrs["history"]] == [1, 2, 3]
    assert trial.user_attrs["seed"] == SEED


def test_a_constraint_on_a_trained_metric_is_checked_when_the_trial_ends(tmp_path):
    """The trial completes, is marked infeasible with its reason, and the sampler sees the excess."""
    import dse.results as dr
    from dse.results.frames import frames_from_study

    sweep = _sweep(sampler={"name": "tpe"}, budget={"trials": 6}, constraints=[{"metric": "latency_ms", "max": 2.2}])
    study = _study(sweep)
    study.sampler = make_sampler(sweep)
    _run(study, sweep, tmp_path)
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    assert {t.user_attrs["feasible"] for t in study.trials} == {True, False}  # the stub's latency: 1.5 ms + SR
    for trial in study.trials:
        feasible = trial.user_attrs["latency_ms"] <= 2.2
        excess = trial.system_attrs[f"{optuna.samplers._base._CONSTRAINTS_KEY}:latency_ms <= 2.2"]
        assert trial.user_attrs["feasible"] is feasible and (excess <= 0) is feasible
        assert (trial.user_attrs["reason"] == "") is feasible and ("latency_ms=" in trial.user_attrs["reason"]) is not feasible
    trials, _, _ = frames_from_study(study, sweep.model_dump(mode="json"))
    front = trials[dr.pareto_front(trials, ["val_top1", "model_size_mb"])]
    assert front["feasible"].all()

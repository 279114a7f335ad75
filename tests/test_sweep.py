"""Sweeps as users run them: real worker processes, real storages, tiny budgets."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from conftest import requires_fashion_mnist, run_dse

from dse.errors import ConfigError, StorageError
from dse.sweep.config import load_sweep
from dse.sweep.space import make_sampler
from dse.sweep.storage import JOURNAL_FILE, mask, open_storage
from dse.sweep.study import open_study

TINY_BASE = {
    "model": {"base_e": 16, "incr_e": 16, "batch_norm": True, "head_relu": False},
    "data": {"train_subset": 256, "val_subset": 128, "test_subset": 128},
    "epochs": 1, "batch_size": 64, "eval_batch_size": 128,
}


def write_sweep(tmp_path: Path, name="tiny", **overrides) -> Path:
    sweep = {
        "name": name, "base": TINY_BASE, "space": {"model.sr": {"values": [0.25, 0.5]}}, "repeats": 2,
        "objectives": [{"metric": "val_top1", "goal": "maximize"}, {"metric": "model_size_mb", "goal": "minimize"}],
        "sampler": {"name": "grid"},
    }
    sweep.update(overrides)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(sweep))
    return path


def dse(*args, cache: Path, **kwargs) -> subprocess.Popen | subprocess.CompletedProcess:
    # the persistent compilation cache lives under HOME
    return run_dse(*args, env={"HOME": str(cache)}, timeout=600, **kwargs)


def study_of(results: Path, name="tiny", storage=None) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=storage or open_storage(None, results / name))


def finished(study):
    return [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]


def point(trial):
    return (trial.params["model.sr"], trial.params["seed"])


# ---- the schema: a corpus of invalid files, each one line naming the key path ----
INVALID = [
    ("name: x\nbase: {}\nspace: {model.sr: {values: [0.5]}}\nsampler: {name: grid}\nbogus: 1\n", "bogus: unknown key"),
    ("name: x\nspace: {model.sr: {values: []}}\nsampler: {name: grid}\n", "space.model.sr: values is empty"),
    ("name: x\nspace: {model.sr: {low: 0.9, high: 0.1}}\nbudget: {trials: 3}\n", "space.model.sr: empty range"),
    ("name: x\nspace: {model.sr: {low: 0.1, high: 0.9}}\nsampler: {name: grid}\n", "a grid cannot sweep a continuous range"),
    ("name: x\nspace: {model.sr: {values: [0.5]}}\nobjectives: [{metric: accuracy, goal: maximize}]\nsampler: {name: grid}\n",
     "objectives.0.metric: unknown metric 'accuracy'"),
    ("name: x\nspace: {model.sqeeze: {values: [0.5]}}\nsampler: {name: grid}\n",
     "space.model.sqeeze: not a valid training config"),
    ("name: x\nbase: {optim: {lr: 0.1}}\nspace: {model.sr: {values: [0.5]}}\nsampler: {name: grid}\n",
     "base.optim.lr: unknown key"),
    ("name: x\nbase: {epochs: many}\nspace: {model.sr: {values: [0.5]}}\nsampler: {name: grid}\n",
     "base.epochs: Input should be"),
    ("name: x\nspace: {model.sr: {values: [0.5]}}\nsampler: {name: tpe}\n", "needs budget.trials or budget.wall_clock_minutes"),
    ("name: x\nspace: {model.sr: {values: [0.5]}}\nsampler: {name: grid}\nconstraints: [{metric: accuracy, max: 0.5}]\n",
     "constraints.0: unknown metric 'accuracy'"),
    ("name: x\nspace: {model.sr: {values: [0.5]}}\nsampler: {name: grid}\nconstraints: [{metric: compressed_bytes, max: 5e5}]\n",
     "compressed_bytes needs compression: add base.compress"),
    ("name: x\nspace: {model.sr: {values: [0.5]}}\nsampler: {name: grid}\npruner: {name: median}\n"
     "objectives: [{metric: val_top1, goal: maximize}, {metric: params, goal: minimize}]\n",
     "prunes single-objective studies only"),
    ("name: x\nspace: {model.sr: {values: [0.5]}}\nsampler: {name: annealing}\n", "sampler.name: Input should be"),
    ("name: x\nspace: {model.sr: {values: [0.5]}}\nsampler: {name: grid}\nrepeats: 0\n", "repeats: Input should be greater"),
    ("name: ../evil\nspace: {model.sr: {values: [0.5]}}\nsampler: {name: grid}\n", "name: must be a folder name"),
    ("name: x\nspace: [model.sr]\n", "space: Input should be a valid dictionary"),
    ("name: x\nspace: {model.sr: {values: [0.5]}\n", "invalid YAML"),
    ("- just\n- a list\n", "expected a mapping"),
    ("name: x\nspace: {seed: {values: [1, 2]}}\nsampler: {name: grid}\n", "use repeats for seeds"),
    ("name: x\nspace: {model.sr: {values: [0.5]}}\nsampler: {name: nsga2}\nbudget: {trials: 4}\n",
     "nsga2 is for several objectives"),
    ("name: x\nbase: {model: {base_e: 32, incr_e: 32}}\nspace: {model.pct3x3: {values: [0.5, 0.01]}}\nsampler: {name: grid}\n",
     "space: grid point model.pct3x3=0.01: pct3x3=0.01: fire2 3x3 expand width rounds to 0 (e=32)"),
    ("name: x\nspace: {model.sr: {values: [0.5]}}\nsampler: {name: grid, population_size: 8}\n",
     "sampler: population_size applies to nsga2, not grid"),
    # Every bound lives in the schema: a range is checked at both ends, a list at every value, at load.
    ("name: x\nspace: {model.sr: {low: 0.1, high: 2.0}}\nbudget: {trials: 3}\n",
     "space.model.sr: not a valid training config field or value (high 2.0: sr=2.0: squeeze ratio must be in (0, 1])"),
    ("name: x\nspace: {model.pct3x3: {low: -0.5, high: 0.5}}\nbudget: {trials: 3}\n",
     "(low -0.5: pct3x3=-0.5: must be in [0, 1])"),
    ("name: x\nspace: {model.base_e: {low: 0, high: 64, step: 16}}\nbudget: {trials: 3}\n", "(low 0: base_e=0"),
    ("name: x\nspace: {model.sr: {values: [0.25, 0.5, 1.5]}}\nsampler: {name: grid}\n", "(value 1.5: sr=1.5"),
    ("name: x\nspace: {optim.momentum: {low: 0.5, high: 1.0}}\nbudget: {trials: 3}\n", "(high 1.0: Input should be less than 1)"),
    # A group of settings swept together is checked like any other value, in full.
    ("name: x\nspace: {model: {values: [{num_fires: 4}, {num_fires: 20}]}}\nsampler: {name: grid}\n",
     "space.model: not a valid training config field or value "
     "(value {'num_fires': 20}: num_fires=20: must be an integer in 2..16)"),
    ("name: x\nspace: {model: {values: [{num_fires: 4, downsample_at: [0.5, 0.6]}]}}\nsampler: {name: grid}\n",
     "0.5 and 0.6 both put a pool after fire3"),
    ("name: x\nspace: {model: {values: [{nm_fires: 4}]}}\nsampler: {name: grid}\n", "(value {'nm_fires': 4}: unknown key)"),
]


@pytest.mark.parametrize("text, fragment", INVALID, ids=[f"invalid{i}" for i in range(len(INVALID))])
def test_invalid_sweep_files_fail_with_one_line_naming_the_key(tmp_path, text, fragment):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_sweep(path)
    message = str(err.value)
    assert fragment in message and message.startswith(str(path)) and "\n" not in message, message


def test_validate_cli_prints_design_space_and_rejects_bad_files(tmp_path):
    good = dse("sweep", "validate", "sweeps/quickstart.yaml", cache=tmp_path)
    assert good.returncode == 0 and "12 points x 1 seeds = 12 trials" in good.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text(INVALID[0][0])
    out = dse("sweep", "validate", bad, cache=tmp_path)
    assert out.returncode == 2 and out.stderr.strip() == f"dse: error: {bad}: bogus: unknown key"


def test_a_swept_group_of_settings_merges_into_the_base(tmp_path):
    """Linked settings (a depth with its own widths) are one swept value; the rest of
    ``base.model`` stays, and each value is a distinct candidate."""
    groups = [{"num_fires": 4}, {"num_fires": 8, "base_e": 13, "incr_e": 13}]
    sweep = load_sweep(write_sweep(tmp_path, space={"model": {"values": groups}}))
    shallow, narrow = (sweep.train_config({"model": group}).model for group in groups)
    assert (shallow.num_fires, shallow.base_e, shallow.batch_norm, shallow.head_relu) == (4, 16, True, False)
    assert (narrow.num_fires, narrow.base_e, narrow.incr_e, narrow.batch_norm) == (8, 13, 13, True)
    assert sweep.design_space_size() == 4


@pytest.mark.parametrize("path", sorted(Path("sweeps").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_sweep_file_validates(path):
    sweep = load_sweep(path)
    assert sweep.name == path.stem


def test_resuming_a_grid_whose_file_changed_is_refused(tmp_path):
    results = tmp_path / "results"
    study = open_study(load_sweep(write_sweep(tmp_path)), results, None)
    assert len(study.trials) == 4  # 2 points x 2 seeds enqueued
    assert len(open_study(load_sweep(write_sweep(tmp_path)), results, None).trials) == 4  # same file: resumes
    changed = load_sweep(write_sweep(tmp_path, space={"model.sr": {"values": [0.25, 0.75]}}))
    with pytest.raises(StorageError, match="study 'tiny' was created with another space"):
        open_study(changed, results, None)
    with pytest.raises(StorageError, match="another repeats"):
        open_study(load_sweep(write_sweep(tmp_path, repeats=3)), results, None)
    new_base = {**TINY_BASE, "epochs": 2}
    with pytest.raises(StorageError, match=r"another base \(changed: base.epochs 1 -> 2\)"):
        open_study(load_sweep(write_sweep(tmp_path, base=new_base)), results, None)


def test_any_study_refuses_a_changed_base_but_takes_a_new_budget(tmp_path):
    results = tmp_path / "results"
    tpe = {"sampler": {"name": "tpe"}, "budget": {"trials": 2}, "objectives": [{"metric": "val_top1", "goal": "maximize"}]}
    open_study(load_sweep(write_sweep(tmp_path, **tpe)), results, None)
    assert open_study(load_sweep(write_sweep(tmp_path, **{**tpe, "budget": {"trials": 5}})), results, None)
    with pytest.raises(StorageError, match="base.optim.learning_rate"):
        open_study(load_sweep(write_sweep(tmp_path, **tpe, base={**TINY_BASE, "optim": {"learning_rate": 0.1}})), results, None)


def test_hyperband_spans_the_longest_swept_run(tmp_path):
    from dse.sweep.space import make_pruner

    sweep = load_sweep(write_sweep(tmp_path, space={"epochs": {"values": [2, 9, 4]}}, pruner={"name": "hyperband"},
                                   objectives=[{"metric": "val_top1", "goal": "maximize"}]))
    assert sweep.max_epochs() == 9 and make_pruner(sweep)._max_resource == 9
    assert load_sweep(write_sweep(tmp_path)).max_epochs() == 1  # not swept: the base's


def test_the_gp_sampler_hint_names_an_extra_that_exists():
    import tomllib

    from dse.sweep import space

    extras = tomllib.loads(Path("pyproject.toml").read_text())["project"]["optional-dependencies"]
    hint = Path(space.__file__).read_text().split("pip install -e '.[", 1)[1].split("]", 1)[0]
    assert hint in extras and any(dep.startswith("scipy") for dep in extras[hint])


def test_nsga2_breeds_generations_of_the_configured_size(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("name: p\nspace: {model.sr: {values: [0.25, 0.5]}}\nbudget: {trials: 8}\n"
                    "objectives: [{metric: val_top1, goal: maximize}, {metric: params, goal: minimize}]\n"
                    "sampler: {name: nsga2, seed: 3, population_size: 6}\n")
    sampler = make_sampler(load_sweep(path))
    assert isinstance(sampler, optuna.samplers.NSGAIISampler) and sampler._population_size == 6


def test_storage_urls_are_checked_and_credentials_masked(tmp_path):
    assert mask("postgresql://alice:s3cret@db.example:5432/dse") == "postgresql://alice:***@db.example:5432/dse"
    with pytest.raises(StorageError, match="SQLite locks"):
        open_storage("sqlite:///x.db", tmp_path)
    with pytest.raises(StorageError, match="unsupported URL scheme 'redis'"):
        open_storage("redis://localhost", tmp_path)
    sweep = write_sweep(tmp_path)
    out = dse("sweep", "run", sweep, "--storage", "postgresql://alice:s3cret@127.0.0.1:1/nodb", "--results-root",
              tmp_path / "r", cache=tmp_path)
    assert out.returncode == 2 and "alice:***@" in out.stderr and "s3cret" not in out.stderr + out.stdout
    assert len(out.stderr.strip().splitlines()) == 1


# ---- running: resume, parallel workers, SIGKILL ----
@pytest.mark.slow
@requires_fashion_mnist
def test_rerun_resumes_with_two_workers_and_the_budget_counts_for_the_study(tmp_path):
    sweep, results = write_sweep(tmp_path), tmp_path / "results"
    first = dse("sweep", "run", sweep, "--trials", "2", "--results-root", results, cache=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    assert len(finished(study_of(results))) == 2
    again = dse("sweep", "run", sweep, "--trials", "2", "--results-root", results, cache=tmp_path)
    assert again.returncode == 0 and len(finished(study_of(results))) == 2  # budget already spent: nothing new
    # the rest by two local workers on the journal: each grid point once, no lock errors
    rest = dse("sweep", "run", sweep, "--workers", "2", "--results-root", results, cache=tmp_path)
    assert rest.returncode == 0, rest.stderr[-3000:]
    logs = "".join(p.read_text() for p in (results / "tiny" / "logs").glob("worker-*.log"))
    assert "database is locked" not in logs and "Traceback" not in logs
    progress = [line for line in rest.stdout.splitlines() if line.startswith("trials ")]
    assert progress[-1].startswith("trials 4/4 finished, 0 running")
    # It ends with what it found and where to look next; those commands take the sweep file.
    assert "sweep tiny: Pareto front" in rest.stdout and f"dse sweep status {sweep}" in rest.stdout
    for command in ("status", "plot", "export"):
        looked = dse("sweep", command, sweep, "--results-root", results, cache=tmp_path)
        assert looked.returncode == 0, (command, looked.stderr[-2000:])
    assert "trials 4/4 finished" in dse("sweep", "status", sweep, "--results-root", results, cache=tmp_path).stdout
    events = [line.split(", ETA")[0] for line in progress]  # a line per event, not per tick of the ETA
    assert all(a != b for a, b in zip(events, events[1:], strict=False)), progress
    study = study_of(results)
    assert len(study.trials) == 4 and sorted(map(point, finished(study))) == [(0.25, 0), (0.25, 1), (0.5, 0), (0.5, 1)]
    for trial in finished(study):
        assert trial.user_attrs["status"] == "completed" and trial.user_attrs["history"]
        assert {"params", "model_size_mb", "macs", "val_top1", "test_top1", "train_s", "dse_version"} <= trial.user_attrs.keys()
    assert (results / "tiny" / "trials.parquet").exists() and list((results / "tiny" / "plots").glob("*.png"))
    # A finished run keeps its last checkpoint, so a point picked from the results exports.
    runs = sorted((results / "tiny" / "runs").iterdir())
    assert len(runs) == 4 and all(sorted(p.name for p in (r / "checkpoints").iterdir() if p.name.isdigit()) == ["1"]
                                  for r in runs)
    exported = dse("export", runs[0], "--format", "onnx", "--output", tmp_path / "picked.onnx", cache=tmp_path)
    assert exported.returncode == 0 and (tmp_path / "picked.onnx").stat().st_size > 0, exported.stderr[-2000:]


@pytest.mark.slow
@requires_fashion_mnist
def test_sigkilled_worker_loses_only_its_trial_which_is_retried(tmp_path):
    # Long enough to be killed after its first epoch, short enough for the retry to finish.
    base = {**TINY_BASE, "epochs": 10, "data": {**TINY_BASE["data"], "train_subset": 1024}}
    sweep = write_sweep(tmp_path, base=base, space={"model.sr": {"values": [0.25]}}, repeats=1)
    results = tmp_path / "results"
    env = {**os.environ, "HOME": str(tmp_path)}
    victim = subprocess.Popen([sys.executable, "-m", "dse", "sweep", "worker", sweep, "--results-root", results], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    journal = results / "tiny" / JOURNAL_FILE
    deadline = time.time() + 240
    while time.time() < deadline:  # wait until the trial has trained at least one epoch
        time.sleep(1)
        if journal.exists() and any(t.intermediate_values or t.user_attrs.get("history") for t in study_of(results).trials) \
                or list((results / "tiny" / "runs").glob("*/metrics.jsonl")):
            break
    assert victim.poll() is None, "worker ended before it could be killed"
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert [t.state for t in study_of(results).trials] == [optuna.trial.TrialState.RUNNING]  # a zombie, for now
    out = dse("sweep", "worker", sweep, "--results-root", results, cache=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    dead, retry = study_of(results).trials
    assert dead.state == optuna.trial.TrialState.FAIL and dead.user_attrs["status"] == "worker_died"
    assert "is gone" in dead.user_attrs["reason"]
    assert retry.state == optuna.trial.TrialState.COMPLETE and retry.user_attrs["retry_of"] == dead.number
    assert retry.params == dead.params
    # The retry resumed the dead trial's checkpoint: its curve holds every epoch, each once.
    assert [r["epoch"] for r in retry.user_attrs["history"]] == list(range(1, 11))


# ---- PostgreSQL: identical workers sharing a real server on loopback (conftest's postgres) ----
@pytest.mark.slow
@requires_fashion_mnist
@pytest.mark.postgres
def test_two_workers_share_a_postgresql_study(tmp_path, postgres):
    sweep, results = write_sweep(tmp_path, repeats=1), tmp_path / "results"  # two grid points for two workers
    env = {**os.environ, "HOME": str(tmp_path)}
    command = [sys.executable, "-m", "dse", "sweep", "worker", sweep, "--storage", postgres, "--results-root", results]
    workers = [subprocess.Popen([*command, "--worker-index", str(i)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True) for i in range(2)]
    outputs = [w.communicate(timeout=600)[0] for w in workers]
    assert all(w.returncode == 0 for w in workers), outputs
    assert all("unused" not in out for out in outputs)  # the password never reaches output
    study = optuna.load_study(study_name="tiny", storage=postgres)
    assert len(study.trials) == 2 and len(set(map(point, finished(study)))) == 2
    status = dse("sweep", "status", results / "tiny", "--storage", postgres, cache=tmp_path)
    assert status.returncode == 0 and "completed" in status.stdout

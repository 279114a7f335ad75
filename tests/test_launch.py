"""Sweeps past one machine: Ray actors on a real Ray instance on loopback, the gRPC storage proxy
in front of a real PostgreSQL, the Slurm recipe's worker command; never a mock of Ray."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from conftest import requires_fashion_mnist, run_dse, run_python

from dse.sweep.ray_launcher import LauncherError, Placement, RayCluster, SweepWorkerActor, check_launch, claim_cores

TINY_BASE = {
    "model": {"base_e": 16, "incr_e": 16, "batch_norm": True, "head_relu": False},
    "data": {"train_subset": 256, "val_subset": 128, "test_subset": 128},
    "epochs": 1, "batch_size": 64, "eval_batch_size": 128,
}
REPO = Path(__file__).resolve().parent.parent
SLURM_RECIPE = REPO / "sweeps" / "slurm" / "dse-sweep.sbatch"
COMPLETE, RUNNING, FAIL = optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.FAIL


def write_sweep(tmp_path: Path, name="tiny", **overrides) -> Path:
    sweep = {"name": name, "base": TINY_BASE, "space": {"model.sr": {"values": [0.25, 0.5, 1.0]}},
             "objectives": [{"metric": "val_top1", "goal": "maximize"}, {"metric": "model_size_mb", "goal": "minimize"}],
             "sampler": {"name": "grid"}, **overrides}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(sweep))
    return path


def dse(*args, home: Path, **kwargs) -> subprocess.CompletedProcess:
    return run_dse(*args, env={"HOME": str(home)}, timeout=600, **kwargs)


def journal_study(results: Path, name="tiny") -> optuna.Study:
    from dse.sweep.storage import open_storage

    return optuna.load_study(study_name=name, storage=open_storage(None, results / name))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_error_line(out: subprocess.CompletedProcess, fragment: str) -> None:
    assert out.returncode == 2, (out.stdout[-2000:], out.stderr[-2000:])
    lines = [line for line in out.stderr.strip().splitlines() if line.startswith("dse: ")]
    assert len(lines) == 1 and fragment in lines[0], out.stderr
    assert "Traceback" not in out.stderr + out.stdout


# ---- pure parts: cores, environment, the launch checks ----
def test_each_worker_claims_its_own_cores_and_a_dead_workers_come_free(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", "import time\nfrom pathlib import Path\n"
                               "from dse.sweep.ray_launcher import claim_cores\n"
                               f"print(sorted(claim_cores(1, [0, 1], Path({str(tmp_path)!r}))[0]), flush=True)\ntime.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "[0]"
    cores, fd = claim_cores(1, [0, 1], tmp_path)
    assert cores == {1} and fd is not None  # the slot the other process holds is skipped
    os.close(fd)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    cores, fd = claim_cores(1, [0, 1], tmp_path)
    assert cores == {0}  # the killed worker's lock died with its process
    held = [claim_cores(1, [0, 1], tmp_path) for _ in range(2)]  # all taken: shares a slot, unlocked
    assert held[0][0] == {1} and held[1][1] is None and held[1][0] <= {0, 1}
    assert claim_cores(2, [0, 1, 2, 3], tmp_path / "wide")[0] == {0, 1}


def test_a_gpu_worker_sees_its_gpus_and_a_fraction_does_not_preallocate():
    from dse.sweep.ray_launcher import worker_environment

    assert worker_environment(["0", "1"], 2) == {"CUDA_VISIBLE_DEVICES": "0,1"}
    assert worker_environment(["2"], 0.25)["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"
    assert worker_environment([], 0)["JAX_PLATFORMS"] == "cpu"


def test_the_sweep_file_holds_per_worker_resources(tmp_path):
    from dse.errors import ConfigError
    from dse.sweep.config import load_sweep

    sweep = load_sweep(write_sweep(tmp_path, resources={"cpus_per_worker": 4, "gpus_per_worker": 0.5}))
    assert (sweep.resources.cpus_per_worker, sweep.resources.gpus_per_worker) == (4, 0.5)
    with pytest.raises(ConfigError, match="resources.gpus_per_worker: .*1.5: a fraction of one GPU"):
        load_sweep(write_sweep(tmp_path, resources={"gpus_per_worker": 1.5}))
    with pytest.raises(ConfigError, match="resources.cpus_per_worker: Input should be greater than 0"):
        load_sweep(write_sweep(tmp_path, resources={"cpus_per_worker": 0}))


def test_launch_checks_refuse_a_journal_on_many_nodes_and_an_unplaceable_worker():
    check_launch([{"CPU": 4.0, "GPU": 1.0}, {"CPU": 4.0}], Placement(2, 0.5), "grpc://10.0.0.1:13000")
    with pytest.raises(LauncherError, match="a journal file is one machine's, and this Ray cluster has 3 nodes"):
        check_launch([{"CPU": 4.0}] * 3, Placement(1), None)
    with pytest.raises(LauncherError, match="no Ray node can place a worker of 1 CPUs and 1 GPUs"):
        check_launch([{"CPU": 4.0}], Placement(1, 1), "postgresql://db/s")


# ---- bad input on the command line: one line, exit 2, nothing trained ----
def test_bad_launch_options_are_one_line_and_exit_2(tmp_path):
    sweep, results = write_sweep(tmp_path), tmp_path / "results"
    closed = free_port()
    one_error_line(dse("sweep", "run", sweep, "--launcher", "ray", "--ray-address", f"127.0.0.1:{closed}",
                       "--results-root", results, home=tmp_path), f"ray address 127.0.0.1:{closed}: cannot connect")
    one_error_line(dse("sweep", "run", sweep, "--launcher", "ray", "--ray-address", "nowhere",
                       "--results-root", results, home=tmp_path), "expected host:port")
    one_error_line(dse("sweep", "run", sweep, "--gpus-per-worker", "1", "--results-root", results, home=tmp_path),
                   "--gpus-per-worker is for --launcher ray")
    one_error_line(dse("sweep", "run", sweep, "--launcher", "slurm", "--results-root", results, home=tmp_path),
                   "--launcher 'slurm': expected one of local, ray")
    one_error_line(dse("sweep", "run", sweep, "--storage", f"grpc://127.0.0.1:{closed}", "--results-root", results,
                       home=tmp_path), "is `dse sweep proxy` running there?")
    # Without the extra, `import ray` fails as it would in an environment that lacks it.
    blocked = run_python("-c", "import sys; sys.modules['ray'] = None; from dse.cli import main; "
                         f"sys.argv = ['dse', 'sweep', 'run', {str(sweep)!r}, '--launcher', 'ray', '--results-root', "
                         f"{str(results)!r}]; main()", env={"HOME": str(tmp_path)})
    one_error_line(blocked, "needs the 'ray' extra: pip install 'dse[ray]'")
    assert not results.exists()


@pytest.mark.slow
def test_a_worker_no_node_can_place_stops_before_any_trial(tmp_path):
    sweep, results = write_sweep(tmp_path), tmp_path / "results"
    one_error_line(dse("sweep", "run", sweep, "--launcher", "ray", "--gpus-per-worker", "1", "--results-root", results,
                       home=tmp_path), "CPUs and 1 GPUs (the largest offer")
    assert not results.exists()  # no study, no journal: nothing trained, nothing to lose


# ---- real sweeps on a local Ray instance ----
@pytest.mark.slow
def test_ray_workers_hold_what_they_asked_ray_for():
    cluster = RayCluster.connect(None, cpus=2)
    ray = cluster.ray
    try:
        actor = ray.remote(SweepWorkerActor).options(num_cpus=1)
        workers = [actor.remote(Placement(1)) for _ in range(2)]
        views = ray.get([w.placement_view.remote() for w in workers])
        assert ray.available_resources().get("CPU", 0) == 0  # two 1-CPU workers hold both of Ray's CPUs
        assert len({v["pid"] for v in views}) == 2
        assert sorted(c for v in views for c in v["cores"]) == sorted(os.sched_getaffinity(0))[:2]  # disjoint cores
        for view in views:
            assert view["gpu_ids"] == [] and view["env"] == {"CUDA_VISIBLE_DEVICES": "", "JAX_PLATFORMS": "cpu"}
        with pytest.raises(LauncherError, match="no Ray node can place"):
            cluster.check(Placement(1, 0.5), None)
        with pytest.raises(LauncherError, match="no Ray node can place a worker of 3 CPUs"):
            cluster.check(Placement(3), None)
    finally:
        cluster.shutdown()


@pytest.mark.slow
@requires_fashion_mnist
def test_ray_workers_run_the_grid_the_local_workers_run(tmp_path):
    sweep = write_sweep(tmp_path)
    runs = {}
    for launcher in ("local", "ray"):
        results = tmp_path / launcher
        out = dse("sweep", "run", sweep, "--launcher", launcher, "--workers", "2", "--results-root", results, home=tmp_path)
        assert out.returncode == 0, out.stderr[-3000:]
        assert "trials 3/3 finished, 0 running" in out.stdout
        runs[launcher] = journal_study(results).trials
    for trials in runs.values():
        assert [t.state for t in trials] == [COMPLETE] * 3
        assert sorted(t.params["model.sr"] for t in trials) == [0.25, 0.5, 1.0]  # every grid point once
    def points(trials):
        return sorted(sorted(t.params.items()) for t in trials)

    assert points(runs["ray"]) == points(runs["local"])  # the same trials: params and seeds
    assert {t.user_attrs["params"] for t in runs["ray"]} == {t.user_attrs["params"] for t in runs["local"]}
    workers = {t.user_attrs["worker"].split(":")[1] for t in runs["ray"]}
    assert len(workers) == 2  # both actors trained


@pytest.fixture
def grpc_proxy(postgres, tmp_path):
    """``dse sweep proxy`` in front of the test's PostgreSQL, on loopback; yields its grpc:// URL."""
    port = free_port()
    proxy = subprocess.Popen([sys.executable, "-m", "dse", "sweep", "proxy", "--storage", postgres, "--port", str(port)],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert proxy.poll() is None and time.time() < deadline, proxy.stdout.read()
                time.sleep(0.5)
        yield f"grpc://127.0.0.1:{port}"
    finally:
        proxy.terminate()
        proxy.wait(timeout=30)


@pytest.mark.slow
@requires_fashion_mnist
@pytest.mark.postgres
def test_a_killed_ray_worker_is_replaced_and_its_trial_resumes_through_the_proxy(tmp_path, grpc_proxy):
    # Two candidates, long enough for a worker to be killed after its first epochs.
    base = {**TINY_BASE, "epochs": 8, "data": {**TINY_BASE["data"], "train_subset": 1024}}
    sweep = write_sweep(tmp_path, base=base, space={"model.sr": {"values": [0.25, 0.5]}})
    results = tmp_path / "results"
    run = subprocess.Popen([sys.executable, "-m", "dse", "sweep", "run", sweep, "--launcher", "ray", "--workers", "2",
                            "--storage", grpc_proxy, "--results-root", results],
                           env={**os.environ, "HOME": str(tmp_path)}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True)
    storage = optuna.storages.GrpcStorageProxy(host="127.0.0.1", port=int(grpc_proxy.rsplit(":", 1)[1]))
    victim, deadline = None, time.time() + 300
    while victim is None and time.time() < deadline and run.poll() is None:
        time.sleep(1)
        try:
            trials = optuna.load_study(study_name="tiny", storage=storage).get_trials(states=(RUNNING,))
        except KeyError:
            continue  # the study is not created yet
        for trial in trials:
            history = trial.user_attrs.get("run") and results / "tiny" / "runs" / trial.user_attrs["run"] / "metrics.jsonl"
            if history and history.exists() and len(history.read_text().splitlines()) >= 2:
                victim = trial
                break
    assert victim is not None, run.communicate()[0][-3000:]
    os.kill(int(victim.user_attrs["worker"].split(":")[1]), signal.SIGKILL)  # the actor's process, mid-trial
    output = run.communicate(timeout=600)[0]
    assert run.returncode == 0, output[-3000:]
    trials = optuna.load_study(study_name="tiny", storage=storage).trials
    dead = trials[victim.number]
    assert dead.state == FAIL and dead.user_attrs["status"] == "worker_died" and "is gone" in dead.user_attrs["reason"]
    retries = [t for t in trials if t.user_attrs.get("retry_of") == dead.number]
    assert len(retries) == 1 and retries[0].state == COMPLETE and retries[0].params == dead.params
    assert not [t for t in trials if t.state == RUNNING]
    assert sorted(t.params["model.sr"] for t in trials if t.state == COMPLETE) == [0.25, 0.5]  # every candidate
    # The retry resumed the dead trial's checkpoint: its curve has every epoch once, and only
    # the epochs after the checkpoint were trained again.
    assert [r["epoch"] for r in retries[0].user_attrs["history"]] == list(range(1, 9))
    resumed = json.loads((results / "tiny" / "runs" / retries[0].user_attrs["run"] / "results.json").read_text())
    assert resumed["resumed_from_epoch"] >= 1  # from the checkpoint, not from scratch
    assert retries[0].user_attrs["worker"] != dead.user_attrs["worker"]


# ---- Slurm without Ray: the recipe's worker command, run here as two array tasks ----
@pytest.mark.slow
@requires_fashion_mnist
@pytest.mark.postgres
def test_the_slurm_recipe_runs_its_workers_against_the_proxy(tmp_path, grpc_proxy):
    text = SLURM_RECIPE.read_text()
    assert "#SBATCH --array=" in text and "sweep worker" in text
    sweep, results = write_sweep(tmp_path, space={"model.sr": {"values": [0.25, 0.5]}}), tmp_path / "results"
    env = {**os.environ, "HOME": str(tmp_path), "SWEEP": str(sweep), "DSE_STORAGE": grpc_proxy,
           "DSE_RESULTS": str(results), "DSE": f"{sys.executable} -m dse"}
    tasks = [subprocess.Popen(["bash", SLURM_RECIPE], env={**env, "SLURM_ARRAY_TASK_ID": str(i)}, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for i in range(2)]
    outputs = [task.communicate(timeout=600)[0] for task in tasks]
    assert [task.returncode for task in tasks] == [0, 0], outputs
    assert {f"worker {i} done" for i in range(2)} <= {line.split(":")[0] for out in outputs for line in out.splitlines()}
    storage = optuna.storages.GrpcStorageProxy(host="127.0.0.1", port=int(grpc_proxy.rsplit(":", 1)[1]))
    trials = optuna.load_study(study_name="tiny", storage=storage).trials
    assert sorted(t.params["model.sr"] for t in trials if t.state == COMPLETE) == [0.25, 0.5] and len(trials) == 2
    without = subprocess.run(["bash", SLURM_RECIPE], env={k: v for k, v in env.items() if k != "DSE_STORAGE"},
                             capture_output=True, text=True)
    assert without.returncode != 0 and "set DSE_STORAGE" in without.stderr


# ---- a real two-node Ray cluster on loopback: a head and a second raylet (`ray start`) ----
@pytest.fixture
def two_node_ray(tmp_path):
    """A Ray head and a worker node, one CPU each, both on 127.0.0.1; yields the head's address."""
    ray_cli = [sys.executable, "-m", "ray.scripts.scripts"]
    # Token authentication off, for a cluster on loopback; its clients say the same (on_cluster). An
    # inherited RAY_AUTH_MODE=token (what ray.init leaves in a process) would otherwise decide it.
    env = {**os.environ, "HOME": str(tmp_path), "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    address = f"127.0.0.1:{free_port()}"
    common = ["--node-ip-address", "127.0.0.1", "--num-cpus", "1", "--num-gpus", "0", "--disable-usage-stats"]
    try:
        for role in (["--head", "--port", address.split(":")[1], "--include-dashboard", "false"], ["--address", address]):
            started = subprocess.run([*ray_cli, "start", *role, *common], env=env, capture_output=True, text=True,
                                     timeout=180)
            assert started.returncode == 0, started.stderr[-3000:]
        status = ""
        for _ in range(60):  # the second raylet registers with the head a few seconds after `ray start` returns
            status = subprocess.run([*ray_cli, "status", "--address", address], env=env, capture_output=True,
                                    text=True, timeout=60).stdout
            if status.count(" node_") == 2:
                break
            time.sleep(1)
        assert status.count(" node_") == 2, status
        yield address
    finally:
        subprocess.run([*ray_cli, "stop", "--force"], env=env, capture_output=True, timeout=120)


def on_cluster(*args, home: Path, auth_mode: str = "disabled") -> subprocess.CompletedProcess:
    """``dse`` as a client of the two-node cluster, which runs without token authentication."""
    return run_dse(*args, env={"HOME": str(home), "RAY_AUTH_MODE": auth_mode}, timeout=600)


@pytest.mark.slow
def test_a_journal_on_a_two_node_cluster_is_refused_before_any_trial(tmp_path, two_node_ray):
    sweep, results = write_sweep(tmp_path), tmp_path / "results"
    launch = ("sweep", "run", sweep, "--launcher", "ray", "--ray-address", two_node_ray, "--workers", "2",
              "--results-root", results)
    one_error_line(on_cluster(*launch, home=tmp_path), "a journal file is one machine's, and this Ray cluster has 2 nodes")
    # A client that expects a token it does not hold is told how to give one, in one line.
    one_error_line(on_cluster(*launch, home=tmp_path, auth_mode="token"), "set RAY_AUTH_TOKEN")
    assert not results.exists()  # no study, no journal: nothing trained, nothing to lose


@pytest.mark.slow
@requires_fashion_mnist
@pytest.mark.postgres
def test_a_two_node_cluster_runs_the_sweep_against_postgresql(tmp_path, two_node_ray, postgres):
    sweep, results = write_sweep(tmp_path, name="two_nodes"), tmp_path / "results"
    out = on_cluster("sweep", "run", sweep, "--launcher", "ray", "--ray-address", two_node_ray, "--workers", "2",
                     "--storage", postgres, "--results-root", results, home=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    trials = optuna.load_study(study_name="two_nodes", storage=postgres).trials
    assert sorted(t.params["model.sr"] for t in trials if t.state == COMPLETE) == [0.25, 0.5, 1.0]
    # One CPU per node and one per worker: the two actors that trained sit on different nodes.
    assert len({t.user_attrs["worker"].split(":")[1] for t in trials}) == 2

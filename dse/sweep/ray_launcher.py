"""``dse sweep run --launcher ray``: the same sweep workers, placed by Ray.

Each worker is a Ray actor (Ray core, not Ray Tune: Tune's ``OptunaSearch`` would run ask and
tell in its own driver and replace dse's worker loop, ASHA and hand-joined workers). The
actor runs, in its own process, exactly what ``dse sweep worker`` runs, against the sweep's
storage. Ray gives it ``num_cpus``/``num_gpus`` and restarts it when its process dies
(``max_restarts``), retrying its loop there (``max_task_retries``); the restarted loop finds
the dead trial through dse's own recovery (:func:`dse.sweep.worker.recover_dead_trials`:
the process is gone on this host, or its heartbeat is stale on any host), fails it with the
reason and enqueues it again, to resume from its last checkpoint when the results folder is
shared.

Ray's CPU counts are bookkeeping, not isolation, and XLA sizes its thread pool from the
cores a process may run on, so each actor claims its own cores on its node (a lock file
per slot, released when the process dies) and pins itself to them before JAX starts. GPUs:
Ray picks them, :func:`worker_environment` passes them to JAX.

Ray is an optional extra (``pip install 'dse[ray]'``); this module imports it only when a
launch starts.
"""

from __future__ import annotations

import fcntl
import math
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dse.errors import DseError
from dse.sweep.storage import mask, reachable, shared_across_hosts

LAUNCHERS = ("local", "ray")
CORE_LOCKS = Path(tempfile.gettempdir()) / "dse-cores"  # node-local: slots are this machine's cores
# A local instance's object store holds nothing of dse's (workers talk to the study
# storage, not to each other): a small one keeps Ray's memory to its processes.
LOCAL_OBJECT_STORE_BYTES = 80 * 1024**2
POLL_S = 0.1


class LauncherError(DseError):
    """A launcher that cannot start: missing extra, unreachable cluster, unplaceable worker."""


@dataclass(frozen=True)
class Placement:
    """What one worker asks of its node."""

    cpus: float
    gpus: float = 0.0

    @property
    def cores(self) -> int:
        """Whole cores to pin the worker to (a fraction of a core still runs on one)."""
        return max(1, math.ceil(self.cpus))


def worker_environment(gpu_ids: list[str], gpus_per_worker: float) -> dict[str, str]:
    """The environment a worker's JAX starts in, given the GPUs Ray assigned it.

    A CPU worker sees no GPU (a GPU node's other workers own them) and runs on JAX's CPU
    backend. A GPU worker sees only its own GPUs. A worker on a fraction of a GPU must not
    preallocate: JAX takes 75% of a GPU's memory at start by default, so a second worker on
    the same GPU would fail to start.

    >>> worker_environment([], 0)
    {'CUDA_VISIBLE_DEVICES': '', 'JAX_PLATFORMS': 'cpu'}
    >>> worker_environment(["3"], 1)
    {'CUDA_VISIBLE_DEVICES': '3'}
    >>> worker_environment(["1"], 0.5)
    {'CUDA_VISIBLE_DEVICES': '1', 'XLA_PYTHON_CLIENT_PREALLOCATE': 'false'}
    """
    if gpus_per_worker == 0:
        return {"CUDA_VISIBLE_DEVICES": "", "JAX_PLATFORMS": "cpu"}
    env = {"CUDA_VISIBLE_DEVICES": ",".join(gpu_ids)}
    if gpus_per_worker < 1:
        env["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
    return env


def claim_cores(count: int, cores: list[int] | None = None, lock_dir: Path = CORE_LOCKS) -> tuple[set[int], int | None]:
    """Disjoint cores for this process on its node: the first free slot of ``count`` cores,
    held by an exclusive lock on the slot's file for as long as the returned descriptor is
    open (the kernel releases it when the process dies, so a replaced worker's cores come
    free). When every slot is taken (Ray was told fractions of a CPU), the process shares
    a slot, unlocked, as its oversubscribed reservation implies.
    """
    cores = sorted(os.sched_getaffinity(0)) if cores is None else cores
    slots = [cores[i:i + count] for i in range(0, len(cores) - count + 1, count)] or [cores]
    lock_dir.mkdir(parents=True, exist_ok=True)
    for slot in slots:
        fd = os.open(lock_dir / f"cores-{'-'.join(map(str, slot))}.lock", os.O_CREAT | os.O_RDWR, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return set(slot), fd
        except BlockingIOError:
            os.close(fd)
    return set(slots[os.getpid() % len(slots)]), None


class SweepWorkerActor:
    """One dse sweep worker in a Ray actor's process (wrapped by ``ray.remote`` at launch).

    ``__init__`` runs in the new process before JAX is imported, on every restart too: it
    pins the process to its cores and sets the GPUs JAX may see.
    """

    def __init__(self, placement: Placement):
        import ray

        self.cores, self._core_lock = claim_cores(placement.cores)
        os.sched_setaffinity(0, self.cores)
        os.environ.update(worker_environment([str(g) for g in ray.get_gpu_ids()], placement.gpus))

    def run(self, sweep_text: str, sweep_path: str, results_root: str, url: str | None, index: int,
            trials: int | None) -> int:
        from dse.sweep.runner import run_worker
        from dse.train.devices import one_cpu_device_per_core

        path = Path(sweep_path)
        if not path.is_file():  # a node that does not share the driver's files: the file's text travels
            path = Path(tempfile.mkdtemp(prefix="dse-sweep-")) / path.name
            path.write_text(sweep_text)
        one_cpu_device_per_core()
        return run_worker(path, url=url, worker_index=index, trials=trials, results_root=Path(results_root))

    def placement_view(self) -> dict:
        """What this worker was given: its pid, cores, GPUs and the JAX-facing environment."""
        import ray

        keys = ("CUDA_VISIBLE_DEVICES", "JAX_PLATFORMS", "XLA_PYTHON_CLIENT_PREALLOCATE")
        return {"pid": os.getpid(), "cores": sorted(os.sched_getaffinity(0)), "gpu_ids": list(ray.get_gpu_ids()),
                "env": {k: os.environ[k] for k in keys if k in os.environ}}


def import_ray():
    try:
        import ray
    except ImportError:
        raise LauncherError("--launcher ray needs the 'ray' extra: pip install 'dse[ray]'") from None
    return ray


def ray_address(flag: str | None) -> str | None:
    """The cluster to join: ``--ray-address``, else ``RAY_ADDRESS``, else None (a local instance)."""
    return flag or os.environ.get("RAY_ADDRESS") or None


def check_reachable(address: str) -> None:
    """``host:port`` (a head node's GCS) or ``ray://host:port`` (Ray Client) answers on TCP, so an
    unreachable cluster is one line at once rather than Ray's minute of retries."""
    if address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise LauncherError(f"ray address {address!r}: expected host:port, ray://host:port or auto")
    reachable(host, int(port), f"ray address {address}", "is a Ray head node running there (ray start --head)?")


@dataclass
class RayCluster:
    """A connected Ray cluster: the one this launch started on this machine, or one it joined."""

    ray: object
    started_here: bool
    # ray.init() writes RAY_AUTH_MODE into this process's environment for a local instance;
    # what it held before, restored on shutdown so later subprocesses do not inherit it.
    auth_mode_before: str | None = None

    @classmethod
    def connect(cls, address: str | None, cpus: int | None = None) -> RayCluster:
        """Join ``address``, or start a local instance on loopback with this process's cores."""
        import logging

        ray = import_ray()
        options = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.WARNING}
        if address is None:  # "local": a new instance even where `ray start` left one running
            address = "local"
            # Ray enables token authentication for a new local instance and says so on every
            # start: a line of noise above dse's own, for an instance on loopback.
            logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
            options.update(num_cpus=cpus or len(os.sched_getaffinity(0)), _node_ip_address="127.0.0.1",
                           object_store_memory=LOCAL_OBJECT_STORE_BYTES)
        else:
            check_reachable(address)
            if address.removeprefix("ray://").startswith(("127.", "localhost:")):
                # A cluster on loopback is this machine's: the driver joins its raylet there, not at
                # the address Ray would detect from the network interfaces (where none listens).
                options["_node_ip_address"] = "127.0.0.1"
        auth_mode_before = os.environ.get("RAY_AUTH_MODE")
        try:
            ray.init(address=address, **options)
        except ray.exceptions.AuthenticationError:
            raise LauncherError(f"ray address {address}: the cluster wants an authentication token and this process "
                                "has none or another: set RAY_AUTH_TOKEN (or RAY_AUTH_TOKEN_PATH) to the cluster's "
                                "token, or RAY_AUTH_MODE=disabled for a cluster started without one") from None
        except (ConnectionError, RuntimeError, ValueError) as err:
            detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise LauncherError(f"ray address {address}: cannot connect: {detail}") from None
        return cls(ray, started_here=address == "local", auth_mode_before=auth_mode_before)

    def nodes(self) -> list[dict[str, float]]:
        """Each alive node's resources (``CPU``, ``GPU``, ...)."""
        return [node["Resources"] for node in self.ray.nodes() if node["Alive"]]

    def check(self, placement: Placement, url: str | None) -> None:
        """Before any trial: the storage reaches every node, and some node can hold a worker."""
        check_launch(self.nodes(), placement, url)

    def shutdown(self) -> None:
        if self.ray.is_initialized():
            self.ray.shutdown()
        if self.auth_mode_before is None:
            os.environ.pop("RAY_AUTH_MODE", None)
        else:
            os.environ["RAY_AUTH_MODE"] = self.auth_mode_before


def check_launch(nodes: list[dict[str, float]], placement: Placement, url: str | None) -> None:
    """The launch's two ways to fail before a trial runs, as one line each.

    >>> check_launch([{"CPU": 2.0}], Placement(1), None)
    >>> check_launch([{"CPU": 2.0}, {"CPU": 8.0}], Placement(1), None)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    dse.sweep.ray_launcher.LauncherError: storage (embedded journal): a journal file is one machine's, and this Ray ...
    >>> check_launch([{"CPU": 8.0, "GPU": 1.0}, {"CPU": 16.0}], Placement(4, 2), "db")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    dse.sweep.ray_launcher.LauncherError: no Ray node can place a worker of 4 CPUs and 2 GPUs (the largest offer 16 CPUs, 1 ...
    """
    if len(nodes) > 1 and not shared_across_hosts(url):
        raise LauncherError(f"storage {mask(url)}: a journal file is one machine's, and this Ray cluster has "
                            f"{len(nodes)} nodes; give --storage postgresql://... or grpc://host:port (dse sweep proxy)")
    if not any(n.get("CPU", 0) >= placement.cpus and n.get("GPU", 0) >= placement.gpus for n in nodes):
        most_cpus = max((n.get("CPU", 0) for n in nodes), default=0)
        most_gpus = max((n.get("GPU", 0) for n in nodes), default=0)
        raise LauncherError(f"no Ray node can place a worker of {placement.cpus:g} CPUs and {placement.gpus:g} GPUs "
                            f"(the largest offer {most_cpus:g} CPUs, {most_gpus:g} GPUs); "
                            "lower --cpus-per-worker / --gpus-per-worker or add such a node")


def default_placement(cpus_per_worker: float | None, gpus_per_worker: float, workers: int, local: bool) -> Placement:
    """A local instance splits this machine's cores among the workers, as the local launcher
    does; on a joined cluster a worker takes one CPU unless told otherwise.

    >>> default_placement(None, 0, 2, local=True, ) == Placement(len(os.sched_getaffinity(0)) // 2 or 1)
    True
    >>> default_placement(None, 0.5, 8, local=False)
    Placement(cpus=1, gpus=0.5)
    """
    if cpus_per_worker is None:
        cpus_per_worker = max(1, len(os.sched_getaffinity(0)) // workers) if local else 1
    return Placement(cpus_per_worker, gpus_per_worker)


class RayWorkers:
    """N sweep workers as Ray actors, each replaced up to ``replacements`` times when its process dies."""

    def __init__(self, cluster: RayCluster, placement: Placement, replacements: int, run_args: Callable[[int], tuple]):
        self.cluster, self.placement, self.replacements, self.run_args = cluster, placement, replacements, run_args
        self.actors: list = []
        self.pending: dict = {}  # ObjectRef of a worker's loop -> its index
        self.lost: list[str] = []  # workers that died past their replacements

    def start(self, count: int) -> None:
        ray = self.cluster.ray
        actor_class = ray.remote(SweepWorkerActor).options(
            num_cpus=self.placement.cpus, num_gpus=self.placement.gpus,
            max_restarts=self.replacements, max_task_retries=self.replacements)
        for index in range(count):
            actor = actor_class.remote(self.placement)
            self.actors.append(actor)
            self.pending[actor.run.remote(*self.run_args(index))] = index

    def running(self) -> bool:
        """Wait briefly for a worker's loop to end; False once every loop has ended."""
        ray = self.cluster.ray
        if not self.pending:
            return False
        ready, _ = ray.wait(list(self.pending), num_returns=1, timeout=POLL_S)
        for ref in ready:
            index = self.pending.pop(ref)
            try:
                ray.get(ref)
            except ray.exceptions.RayTaskError as err:
                if isinstance(err.cause, DseError):
                    raise err.cause from None  # a user error in the sweep: the same line as `dse sweep worker`
                self.lost.append(f"worker {index}: {type(err.cause).__name__}: {err.cause}")
            except ray.exceptions.RayActorError as err:
                self.lost.append(f"worker {index} died {self.replacements + 1} times: {str(err).splitlines()[0]}")
        return bool(self.pending)

    def stop(self) -> None:
        for actor in self.actors:
            self.cluster.ray.kill(actor, no_restart=True)

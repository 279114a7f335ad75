"""What the Ray launcher costs before the first trial, next to the local launcher.

Both launchers start the same worker loop, whose own cost (importing JAX, opening the
study) is the same in both; this measures what each adds to start N idle workers:

- ``local``: N ``python`` processes (the local launcher's ``subprocess.Popen``), until each
  has run a first line;
- ``ray``: a local Ray instance on loopback (:meth:`dse.sweep.ray_launcher.RayCluster.connect`)
  and N :class:`~dse.sweep.ray_launcher.SweepWorkerActor` actors, until each has claimed its
  cores and answered; and the resident memory of Ray's own processes (GCS, raylet, its
  helpers; the actors excluded), which a run holds for as long as it lasts.

    python bench/ray_startup.py --workers 2 --rounds 3
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

import psutil


def local_start(workers: int) -> float:
    started = time.perf_counter()
    processes = [subprocess.Popen([sys.executable, "-c", "pass"]) for _ in range(workers)]
    for p in processes:
        p.wait()
    return time.perf_counter() - started


def ray_start(workers: int) -> tuple[float, float, float]:
    """(seconds to a connected instance, seconds to N answering actors, MiB held by Ray's processes)."""
    from dse.sweep.ray_launcher import Placement, RayCluster, SweepWorkerActor

    started = time.perf_counter()
    cluster = RayCluster.connect(None)
    connected = time.perf_counter() - started
    try:
        actor = cluster.ray.remote(SweepWorkerActor).options(num_cpus=1)
        actors = [actor.remote(Placement(1)) for _ in range(workers)]
        pids = {view["pid"] for view in cluster.ray.get([a.placement_view.remote() for a in actors])}
        ready = time.perf_counter() - started
        ray_processes = [p for p in psutil.Process().children(recursive=True) if p.pid not in pids]
        memory = sum(p.memory_info().rss for p in ray_processes) / 2**20
    finally:
        cluster.shutdown()
    return connected, ready, memory


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    local, ray = [], []
    for _ in range(args.rounds):  # interleaved, so both see the machine in the same state
        local.append(local_start(args.workers))
        ray.append(ray_start(args.workers))
    med = statistics.median
    print(f"{args.workers} workers, {args.rounds} rounds, median [min, max]")
    print(f"local launcher: {med(local):.2f} s [{min(local):.2f}, {max(local):.2f}] to {args.workers} started processes, "
          "no resident process of its own")
    for name, column in (("ray instance up", 0), ("actors answering", 1)):
        values = [r[column] for r in ray]
        print(f"ray launcher, {name}: {med(values):.2f} s [{min(values):.2f}, {max(values):.2f}]")
    memory = [r[2] for r in ray]
    print(f"ray's own processes: {med(memory):.0f} MiB resident [{min(memory):.0f}, {max(memory):.0f}]")
    print(f"ratio, ray / local time to started workers: {med(r[1] for r in ray) / med(local):.0f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

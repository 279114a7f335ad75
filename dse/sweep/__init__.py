"""Sweeps: YAML schema, the search-space translation, studies, workers and the runner."""

from dse.sweep.config import SweepConfig, load_sweep
from dse.sweep.runner import run_sweep, run_worker

__all__ = ["SweepConfig", "load_sweep", "run_sweep", "run_worker"]

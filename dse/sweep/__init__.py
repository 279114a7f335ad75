"""Sweeps: YAML schema, the search-space translation, studies, workers and the runner."""

from dse._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "config": ("SweepConfig", "load_sweep"),
    "runner": ("run_sweep", "run_worker"),
})

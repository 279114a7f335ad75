"""JAX's persistent compilation cache, on by default, with a visible hit count.

Two trials of one architecture compile the same program (hyperparameters are data,
see ``dse.train.optim``), so the second and every later worker process reads it from
disk instead of spending seconds in XLA.
"""

from __future__ import annotations

import threading
from pathlib import Path

import jax

_counts = {"hits": 0, "misses": 0}
_lock = threading.Lock()
_EVENTS = {"/jax/compilation_cache/cache_hits": "hits", "/jax/compilation_cache/cache_misses": "misses"}
_state: dict[str, object] = {"listening": False, "dir": None}


def _on_event(event: str, **_: object) -> None:
    key = _EVENTS.get(event)
    if key:
        with _lock:
            _counts[key] += 1


def enable(cache_dir: Path | None) -> None:
    """Point JAX at ``cache_dir`` (``None`` leaves the cache off) and start counting hits.

    JAX reads the setting when it first compiles, so the first directory given in a
    process is the one used; later calls with another directory keep the first.
    """
    if not _state["listening"]:
        jax.monitoring.register_event_listener(_on_event)
        _state["listening"] = True
    if cache_dir is None or _state["dir"] is not None:
        return
    cache_dir.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(cache_dir))
    # Cache every program: a SqueezeNet step compiles in seconds, below JAX's 1 s default
    # only on fast machines, and small entries are cheap.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    _state["dir"] = cache_dir


def counts() -> dict[str, int]:
    """Persistent-cache hits and misses in this process so far."""
    with _lock:
        return dict(_counts)

"""Observers of a training run. Plain Python, so the CLI's progress display imports no JAX."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Hook = Callable[[dict[str, Any]], None]


@dataclass
class Hooks:
    """Optional observers. ``on_epoch`` may raise (a sweep's pruner does) to stop the run."""

    # {"epochs", "steps_per_epoch", "start_epoch", "history"}: history holds the epoch
    # records restored with a checkpoint, so an observer of a resumed run sees them too.
    on_start: Hook | None = None
    on_step: Hook | None = None  # every ``log_every`` steps: {"epoch", "step", "loss", "images_per_s"}
    on_epoch: Hook | None = None  # the epoch's metrics record
    log_every: int = 20

"""The network a deployment runs: BatchNorm folded away, weights as numpy, normalisation attached.

Two sources give one :class:`InferenceModel`: a trained run folder (its last checkpoint,
restored as ``dse compress`` restores it, with the normalisation of the run's train
split) and a compressed ``.dsez`` file (decoded weights and the normalisation stored in
its header). Exporters and latency measurements take an ``InferenceModel`` and never
ask where it came from.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dse.arch.families import GraphSpec
from dse.arch.spec import ArchConfig, NetSpec, expand
from dse.compress.container import SUFFIX as COMPRESSED_SUFFIX
from dse.errors import DataError


@dataclass(frozen=True)
class InferenceModel:
    """A BatchNorm-free network, its weights and the per-channel normalisation of its inputs.

    Attributes:
        spec: the spec of the network as built with ``batch_norm=False``.
        params: nested dict of float32 numpy arrays, the ``params`` of that network.
        mean, std: float32 (C,) in [0, 1] pixel units: the model sees ``(pixel / 255 - mean) / std``.
        source: the run folder or file it was read from (None when built in memory).
    """

    spec: NetSpec | GraphSpec
    params: dict
    mean: np.ndarray
    std: np.ndarray
    source: Path | None = None

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self.spec.input_shape


def from_variables(model_cfg: ArchConfig, params: Any, batch_stats: Any, mean: Any, std: Any,
                   source: Path | None = None) -> InferenceModel:
    """The inference network of trained Flax variables: BatchNorm folded into the convs (eval-mode semantics)."""
    from dse.compress.fold import fold_batch_norm, folded_model_config

    spec = expand(folded_model_config(model_cfg))
    return InferenceModel(spec, fold_batch_norm(params, batch_stats), np.asarray(mean, np.float32),
                          np.asarray(std, np.float32), source)


def from_run(run_dir: Path) -> InferenceModel:
    """The last checkpoint of a trained run; the normalisation is recomputed from the run's train split,
    as the trainer computed it (the run folder does not store it)."""
    import jax

    from dse.arch import build_model
    from dse.compress.pipeline import load_run, restore_last_state
    from dse.data import load_splits

    cfg, layout = load_run(run_dir)
    state, _ = restore_last_state(cfg, layout, build_model(expand(cfg.model)))
    splits = load_splits(cfg.data)
    return from_variables(cfg.model, jax.device_get(state.params), jax.device_get(state.batch_stats), splits.mean,
                          splits.std, run_dir)


def from_compressed(path: Path) -> InferenceModel:
    """A ``.dsez`` file, decoded; its network is already BatchNorm-free."""
    from dse.compress.pipeline import read_model_file

    decoded = read_model_file(path)
    return InferenceModel(expand(decoded.model_config), decoded.params, decoded.mean, decoded.std, path)


def load_inference_model(path: str | Path) -> InferenceModel:
    """A run folder (``dse train --workdir``) or a ``.dsez`` file, as an :class:`InferenceModel`.

    Raises:
        DataError: neither a run folder nor a ``.dsez`` file, no checkpoint, or a damaged file.
    """
    path = Path(path)
    if path.is_dir():
        return from_run(path)
    if path.suffix == COMPRESSED_SUFFIX and path.is_file():
        return from_compressed(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    raise DataError(f"{path}: expected a run folder (dse train --workdir) or a {COMPRESSED_SUFFIX} file")

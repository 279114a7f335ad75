"""The JAX trainer: config schema, optimizer factory, pure steps, ``train_and_evaluate``."""

from dse.train.config import OptimConfig, TrainConfig
from dse.train.trainer import Hooks, train_and_evaluate

__all__ = ["Hooks", "OptimConfig", "TrainConfig", "train_and_evaluate"]

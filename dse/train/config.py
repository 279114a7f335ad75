"""Schema of one training run: model, data, optimizer, budget. ``dse train`` and every
sweep trial build one of these; unknown keys fail at load with their path."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from dse.arch.spec import ArchConfig
from dse.compress.config import CompressConfig, family_problem
from dse.data.config import DataConfig

OptimizerName = Literal["sgd", "adam", "adamw"]
ScheduleName = Literal["linear", "cosine", "constant"]
DEFAULT_CACHE_DIR = Path.home() / ".cache" / "dse" / "xla"


class OptimConfig(BaseModel):
    """Defaults are the official Caffe solver: SGD momentum 0.9, weight decay 2e-4, LR 0.04
    decayed linearly to 0 over the run (``lr_policy: poly``, ``power: 1``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: OptimizerName = "sgd"
    learning_rate: float = Field(0.04, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum, or Adam's b1")
    weight_decay: float = Field(2e-4, ge=0)
    schedule: ScheduleName = "linear"
    warmup_epochs: float = Field(0.0, ge=0)
    label_smoothing: float = Field(0.0, ge=0, lt=1)


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    model: ArchConfig = ArchConfig.preset("squeezenet_small")
    data: DataConfig = DataConfig()
    optim: OptimConfig = OptimConfig()
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(128, ge=1)
    eval_batch_size: int = Field(1000, ge=1)
    seed: int = 42
    max_steps_per_epoch: int | None = Field(None, ge=1, description="cap steps per epoch (smoke tests)")
    measure_latency: bool = Field(False, description="time inference after training: latency_ms (ONNX Runtime, batch 1, "
                                  "one thread), latency_b64_ms (batch 64), latency_jax_ms (jitted JAX, batch 1)")
    checkpoint: bool = Field(True, description="save every epoch and resume from the last one")
    compilation_cache_dir: Path | None = Field(DEFAULT_CACHE_DIR, description="JAX persistent cache; null disables it")
    compress: CompressConfig | None = Field(None, description="Deep Compression of the trained model (dse compress) at the "
                                            "end of the run: adds compressed_bytes, test_top1_compressed, ...")

    @field_validator("model", mode="before")
    @classmethod
    def _small_preset_is_the_base(cls, value):
        # Training targets small images by default: ``model:`` fields override the
        # squeezenet_small preset unless the file names another preset.
        if isinstance(value, dict) and "preset" not in value:
            return {"preset": "squeezenet_small", **value}
        return value

    @model_validator(mode="after")
    def _coherent(self) -> TrainConfig:
        if self.optim.warmup_epochs >= self.epochs:
            raise ValueError(f"optim.warmup_epochs ({self.optim.warmup_epochs}) must be less than epochs ({self.epochs})")
        if self.compress is not None and not self.checkpoint:
            raise ValueError("compress works on the run's checkpoint: it needs checkpoint: true")
        if self.compress is not None and family_problem(self.model.family):
            raise ValueError(f"compress: {family_problem(self.model.family)}")
        return self

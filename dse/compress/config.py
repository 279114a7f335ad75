"""Settings of one Deep Compression: a plain schema, importable without JAX, so a training
config (and a sweep file) can carry a ``compress:`` section."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Scope = Literal["per_layer", "global"]
MIN_BITS, MAX_BITS = 2, 8  # cluster indices are stored as uint8
COMPRESSIBLE_FAMILY = "squeezenet"


def family_problem(family: str) -> str | None:
    """Why a network of ``family`` cannot be compressed (one line), or None.

    The pipeline knows SqueezeNet's layers (its classifier conv10, its Fire modules' convs);
    the baseline families are trained and deployed for comparison, not compressed.
    """
    if family == COMPRESSIBLE_FAMILY:
        return None
    return f"compression works on SqueezeNet networks only; this model's family is {family}"


class CompressConfig(BaseModel):
    """Settings of one compression; the defaults are the paper's SqueezeNet setting (33% sparsity, 8 bits)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sparsity: float = Field(0.33, ge=0.0, lt=1.0, description="fraction of conv-kernel weights pruned")
    scope: Scope = Field("per_layer", description="per_layer: every kernel to `sparsity`; global: one threshold")
    bits: int = Field(8, ge=MIN_BITS, le=MAX_BITS, description="bits per kept weight, every layer")
    bits_conv: int | None = Field(None, ge=MIN_BITS, le=MAX_BITS, description="override `bits` for conv layers")
    bits_classifier: int | None = Field(None, ge=MIN_BITS, le=MAX_BITS, description="override `bits` for conv10")
    prune_finetune_epochs: int = Field(1, ge=0, description="masked retraining after pruning")
    quant_finetune_epochs: int = Field(1, ge=0, description="centroid fine-tuning after weight sharing")
    finetune_learning_rate: float | None = Field(None, gt=0, description="retraining peak LR; default: the run's / 10")
    centroid_learning_rate: float = Field(1e-4, gt=0, description="Adam LR for codebooks and biases")
    kmeans_iterations: int = Field(30, ge=0, description="Lloyd iterations per layer (0: linear centroids)")
    batch_size: int | None = Field(None, ge=1, description="fine-tuning batch size; default: the run's")
    eval_batch_size: int | None = Field(None, ge=1, description="default: the run's")
    max_steps_per_epoch: int | None = Field(None, ge=1, description="cap fine-tuning steps per epoch (smoke tests)")
    seed: int = 0

    @property
    def conv_bits(self) -> int:
        return self.bits_conv or self.bits

    @property
    def classifier_bits(self) -> int:
        return self.bits_classifier or self.bits

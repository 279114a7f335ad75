"""Schema of the ``data:`` section shared by ``dse train`` configs and sweep files."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

DatasetFormat = Literal["fashion_mnist", "idx", "cifar10", "cifar100", "image_folder", "npz"]


class AugmentConfig(BaseModel):
    """Augmentation for small images, applied to training batches only."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    random_crop_padding: int = Field(0, ge=0, description="zero-pad by this many pixels, then crop back")
    horizontal_flip: bool = False


class DataConfig(BaseModel):
    """Which dataset to train on and how to split and feed it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dataset: DatasetFormat = "fashion_mnist"
    path: Path | None = Field(None, description="file or folder for user datasets; fashion_mnist defaults to the Debian package")
    image_size: int | None = Field(None, gt=0, description="resize image folders to this square size")
    val_fraction: float = Field(0.1, ge=0.0, lt=1.0, description="share of train carved out for validation")
    split_seed: int = 0
    train_subset: int | None = Field(None, gt=0, description="use only the first N training images (after the split)")
    val_subset: int | None = Field(None, gt=0)
    test_subset: int | None = Field(None, gt=0)
    augment: AugmentConfig = AugmentConfig()
    prefetch: int = Field(2, ge=0, description="batches prepared ahead of the trainer")

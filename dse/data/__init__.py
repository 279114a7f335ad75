"""Datasets and the input pipeline: on-disk formats, splits and batches."""

from dse.data.arrays import ArrayDataset
from dse.data.datasets import Splits, load_splits
from dse.data.formats import load_cifar, load_idx, load_image_folder, load_npz
from dse.data.pipeline import batches, steps_per_epoch

__all__ = [
    "ArrayDataset",
    "Splits",
    "batches",
    "load_cifar",
    "load_idx",
    "load_image_folder",
    "load_npz",
    "load_splits",
    "steps_per_epoch",
]

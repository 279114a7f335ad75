"""Datasets and the input pipeline: on-disk formats, splits and batches."""

from dse._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "arrays": ("ArrayDataset",),
    "datasets": ("Splits", "load_splits"),
    "pipeline": ("batches", "steps_per_epoch"),
    "formats": ("load_cifar", "load_idx", "load_image_folder", "load_npz"),
})

"""Turns a ``data:`` config into train/val/test splits with normalisation statistics."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np

from dse.data.arrays import ArrayDataset, fail
from dse.data.config import DataConfig
from dse.data.formats import load_cifar, load_idx, load_image_folder, load_npz
from dse.errors import DataError

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
# Share of the examples held out as test set for datasets that ship without one.
TEST_FRACTION = 0.1
# Fixed, independent of split_seed, so runs with different split seeds share one test set.
_TEST_SPLIT_SEED = 0x7E57

_Loaded = tuple[ArrayDataset, ArrayDataset | None]


@dataclasses.dataclass(frozen=True)
class Splits:
    """The three splits of a dataset, plus per-channel statistics of the train split.

    Attributes:
        train, val, test: the splits, after carving and subsetting.
        mean, std: float32 arrays of shape (C,), in [0, 1] pixel units (uint8 / 255),
            computed from the final train split only so no val/test information leaks.
    """

    train: ArrayDataset
    val: ArrayDataset
    test: ArrayDataset
    mean: np.ndarray
    std: np.ndarray


def _find_idx(folder: Path, stems: tuple[str, ...], kind: str) -> Path | None:
    """Returns ``folder/<stem>-<kind>`` raw or gzipped (MNIST names), or None."""
    for stem in stems:
        for sep in ("-", "."):  # some mirrors write "train-images.idx3-ubyte"
            for suffix in ("", ".gz"):
                path = folder / f"{stem}{sep}{kind}{suffix}"
                if path.is_file():
                    return path
    return None


def _load_idx_folder(folder: Path, class_names: tuple[str, ...] | None) -> _Loaded:
    """Loads train (and, when present, t10k/test) IDX pairs from a folder."""
    found = {(split, kind): _find_idx(folder, stems, kind)
             for split, stems in (("train", ("train",)), ("test", ("t10k", "test")))
             for kind in ("images-idx3-ubyte", "labels-idx1-ubyte")}
    for (split, kind), path in found.items():
        if split == "train" and path is None:
            raise fail(folder, f"no train-{kind}[.gz] IDX file")
    train = load_idx(found["train", "images-idx3-ubyte"], found["train", "labels-idx1-ubyte"], class_names)
    test_images, test_labels = found["test", "images-idx3-ubyte"], found["test", "labels-idx1-ubyte"]
    if (test_images is None) != (test_labels is None):
        raise fail(folder, "test IDX images and labels must both be present or both absent")
    test = load_idx(test_images, test_labels, class_names) if test_images else None
    return train, test


def _fashion_mnist(cfg: DataConfig) -> _Loaded:
    folder = cfg.path or FASHION_MNIST_DIR
    if _find_idx(folder, ("train",), "images-idx3-ubyte") is None:
        raise DataError(f"Fashion-MNIST not found in {folder}: install it with "
                        "'apt-get install dataset-fashion-mnist' or set data.path")
    return _load_idx_folder(folder, FASHION_MNIST_CLASSES)


def _require_path(cfg: DataConfig) -> Path:
    if cfg.path is None:
        raise DataError(f"data.path is required for dataset '{cfg.dataset}'")
    if not cfg.path.exists():
        raise fail(cfg.path, "no such file or folder")
    return cfg.path


# One loader per DataConfig.dataset value; each returns (train, test or None).
_LOADERS: dict[str, Callable[[DataConfig], _Loaded]] = {
    "fashion_mnist": _fashion_mnist,
    "idx": lambda cfg: _load_idx_folder(_require_path(cfg), None),
    "cifar10": lambda cfg: load_cifar(_require_path(cfg), "cifar10"),
    "cifar100": lambda cfg: load_cifar(_require_path(cfg), "cifar100"),
    "image_folder": lambda cfg: load_image_folder(_require_path(cfg), cfg.image_size),
    "npz": lambda cfg: load_npz(_require_path(cfg)),
}


def _seeded_split(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Returns (held-out, rest) index arrays of a seeded permutation of range(n).

    Both keep the permuted order, so "the first N" of either is a random sample even
    when the file is sorted by class.
    """
    perm = np.random.default_rng(seed).permutation(n)
    n_out = int(round(n * fraction))
    return perm[:n_out], perm[n_out:]


def _harmonise(path: str, train: ArrayDataset, test: ArrayDataset) -> tuple[ArrayDataset, ArrayDataset]:
    """Gives both splits the larger class set; rejects image shapes that differ."""
    if train.images.shape[1:] != test.images.shape[1:]:
        raise fail(path, f"train images are {train.images.shape[1:]} but test images are {test.images.shape[1:]}")
    wider = max(train, test, key=lambda d: d.num_classes)
    keep = {"num_classes": wider.num_classes, "class_names": wider.class_names}
    return dataclasses.replace(train, **keep), dataclasses.replace(test, **keep)


def channel_stats(images: np.ndarray, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std of uint8 NHWC images, in [0, 1] units.

    Args:
        images: uint8 array (N, H, W, C).
        chunk: images per step; bounds the float64 temporary for large datasets.

    Returns:
        (mean, std), float32 arrays of shape (C,); a constant channel gets std 1.
    """
    total = np.zeros(images.shape[-1])
    total_sq = np.zeros(images.shape[-1])
    for start in range(0, len(images), chunk):
        block = images[start:start + chunk].astype(np.float64) / 255.0
        total += block.sum(axis=(0, 1, 2))
        total_sq += np.square(block).sum(axis=(0, 1, 2))
    count = max(1, images.size // images.shape[-1])
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 0.0))
    # A constant channel would divide by zero; leave it merely centred.
    std = np.where(std > 1e-6, std, 1.0)
    return mean.astype(np.float32), std.astype(np.float32)


def load_splits(cfg: DataConfig) -> Splits:
    """Loads the configured dataset and splits it into train/val/test.

    Datasets without a test split get a deterministic TEST_FRACTION carved out first;
    then ``val_fraction`` of train becomes val (permutation seeded by ``split_seed``);
    then ``train_subset``/``val_subset``/``test_subset`` keep the first N of each.
    Nothing is ever downloaded.

    Args:
        cfg: the ``data:`` section of the config.

    Returns:
        The splits, with mean/std of the final train split.
    """
    train, test = _LOADERS[cfg.dataset](cfg)
    where = str(cfg.path or FASHION_MNIST_DIR)
    if test is None:
        test_idx, rest = _seeded_split(len(train), TEST_FRACTION, _TEST_SPLIT_SEED)
        train, test = train.take(rest), train.take(test_idx)
    train, test = _harmonise(where, train, test)
    val_idx, train_idx = _seeded_split(len(train), cfg.val_fraction, cfg.split_seed)
    train, val = train.take(train_idx), train.take(val_idx)
    # Slicing past the end just keeps everything: a subset larger than the split is a no-op.
    train = train.take(slice(cfg.train_subset))
    val = val.take(slice(cfg.val_subset))
    test = test.take(slice(cfg.test_subset))
    if len(train) == 0:
        raise fail(where, "the train split is empty")
    mean, std = channel_stats(train.images)
    return Splits(train=train, val=val, test=test, mean=mean, std=std)

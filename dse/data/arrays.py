"""The in-memory dataset type shared by every format parser, and error helpers."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from dse.errors import DataError


@dataclasses.dataclass(frozen=True)
class ArrayDataset:
    """One split of a dataset, fully in memory.

    Attributes:
        images: uint8 array of shape (N, H, W, C); grayscale data has C=1.
        labels: int32 array of shape (N,) with values in [0, num_classes).
        num_classes: number of classes of the whole dataset (not only those present).
        class_names: one name per class, index = label.
    """

    images: np.ndarray
    labels: np.ndarray
    num_classes: int
    class_names: tuple[str, ...]

    def __post_init__(self) -> None:
        # These are programming errors (a parser bug), not user errors, hence ValueError.
        if self.images.dtype != np.uint8 or self.images.ndim != 4:
            raise ValueError(f"images must be uint8 NHWC, got {self.images.dtype} {self.images.shape}")
        if self.labels.dtype != np.int32 or self.labels.shape != (len(self.images),):
            raise ValueError(f"labels must be int32 of shape ({len(self.images)},), got {self.labels.shape}")
        if len(self.class_names) != self.num_classes:
            raise ValueError(f"{len(self.class_names)} class names for {self.num_classes} classes")

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, indices: np.ndarray | slice) -> ArrayDataset:
        """Returns the examples at ``indices`` (an index array or a slice), same classes.

        Args:
            indices: integer index array or slice into the examples.

        Returns:
            A new ArrayDataset sharing num_classes and class_names.
        """
        return dataclasses.replace(self, images=self.images[indices], labels=self.labels[indices])


def fail(path: str | Path, problem: str) -> DataError:
    """Builds the one-line DataError ``"<path>: <problem>"``.

    Args:
        path: the file or folder at fault.
        problem: what is wrong with it.

    Returns:
        The error, for the caller to raise.
    """
    # The CLI prints the message as one line, so fold any newline an exception carried.
    return DataError(" ".join(f"{path}: {problem}".split("\n")))


def make_dataset(images: np.ndarray, labels: np.ndarray, class_names: Sequence[str] | None = None,
                 num_classes: int | None = None) -> ArrayDataset:
    """Builds an ArrayDataset, naming classes "0".."K-1" when no names are known.

    Args:
        images: uint8 NHWC images.
        labels: integer labels, any integer dtype.
        class_names: optional class names; fixes num_classes when given.
        num_classes: optional class count; defaults to len(class_names) or max label + 1.

    Returns:
        The dataset.
    """
    labels = np.asarray(labels).astype(np.int32, copy=False)
    if num_classes is None:
        num_classes = len(class_names) if class_names is not None else int(labels.max(initial=-1)) + 1
    names = tuple(class_names) if class_names is not None else tuple(str(i) for i in range(num_classes))
    return ArrayDataset(images=images, labels=labels, num_classes=num_classes, class_names=names)


def check_labels(path: str | Path, labels: np.ndarray, num_classes: int) -> None:
    """Raises DataError unless every label is in [0, num_classes).

    Args:
        path: the file the labels came from, for the message.
        labels: the labels.
        num_classes: the number of classes.
    """
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise fail(path, f"labels out of range: found {labels.min()}..{labels.max()}, expected 0..{num_classes - 1}")

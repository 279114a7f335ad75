"""The input pipeline: batches of normalised (and for training, augmented) images.

Built on ``grain.MapDataset``: one element per *batch*, so every step is a gather
plus vectorised numpy over the whole batch. A per-example pipeline (including grain's
own per-index ``shuffle``) costs about half a second of Python per Fashion-MNIST
epoch, which would compete with the trainer for the GIL.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence

import grain
import numpy as np

from dse.data.arrays import ArrayDataset
from dse.data.config import AugmentConfig
from dse.errors import DataError

Batch = dict[str, np.ndarray]

# Distinct first words keep the shuffle and augmentation random streams independent.
_SHUFFLE_STREAM = 0x5F
_AUGMENT_STREAM = 0xA6


def steps_per_epoch(n: int, batch_size: int, *, train: bool = True) -> int:
    """Number of batches ``batches`` yields for ``n`` examples.

    Args:
        n: examples in the split.
        batch_size: examples per batch.
        train: training drops the last incomplete batch; evaluation pads it.

    Returns:
        n // batch_size when training, else ceil(n / batch_size).
    """
    return n // batch_size if train else -(-n // batch_size)


def _rng(*words: int) -> np.random.Generator:
    """A generator determined by the given integers (any sign or size)."""
    return np.random.default_rng(np.random.SeedSequence([w % 2**64 for w in words]))


def epoch_order(n: int, *, seed: int, epoch: int) -> np.ndarray:
    """The training order of epoch ``epoch``: a permutation that depends only on (seed, epoch).

    Args:
        n: examples in the split.
        seed: the run's data seed.
        epoch: the epoch number, so each epoch is shuffled differently.

    Returns:
        int64 permutation of range(n).
    """
    # Depending on nothing but (seed, epoch) is what makes a resumed run replay exactly.
    return _rng(_SHUFFLE_STREAM, seed, epoch).permutation(n)


def _random_crop(images: np.ndarray, padding: int, rng: np.random.Generator) -> np.ndarray:
    """Zero-pads a uint8 NHWC batch by ``padding`` and crops each image back at a random offset."""
    b, h, w, _ = images.shape
    padded = np.pad(images, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    dy = rng.integers(0, 2 * padding + 1, size=b)
    dx = rng.integers(0, 2 * padding + 1, size=b)
    rows = (dy[:, None] + np.arange(h))[:, :, None]  # (B, H, 1)
    cols = (dx[:, None] + np.arange(w))[:, None, :]  # (B, 1, W)
    return padded[np.arange(b)[:, None, None], rows, cols]


def _random_flip(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Mirrors a random half (in expectation) of the batch left-right."""
    flip = rng.random(len(images)) < 0.5
    images = images.copy()
    images[flip] = images[flip, :, ::-1]
    return images


def augment_batch(images: np.ndarray, augment: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """Applies the configured augmentation to a uint8 NHWC batch.

    Args:
        images: uint8 (B, H, W, C).
        augment: which augmentations to apply.
        rng: the batch's random generator.

    Returns:
        Augmented uint8 (B, H, W, C).
    """
    if augment.random_crop_padding > 0:
        images = _random_crop(images, augment.random_crop_padding, rng)
    if augment.horizontal_flip:
        images = _random_flip(images, rng)
    return images


class _BatchMaker:
    """Builds the batch with a given index: gather, augment, normalise, pad."""

    def __init__(self, ds: ArrayDataset, order: np.ndarray, batch_size: int, mean: Sequence[float],
                 std: Sequence[float], augment: AugmentConfig | None, seed: int, epoch: int):
        self.ds, self.order, self.batch_size = ds, order, batch_size
        self.augment, self.seed, self.epoch = augment, seed, epoch
        # (x / 255 - mean) / std == x * scale - shift, with one multiply-add per pixel.
        std = np.asarray(std, np.float32)
        self.scale = (1.0 / (255.0 * std)).astype(np.float32)
        self.shift = (np.asarray(mean, np.float32) / std).astype(np.float32)

    def __call__(self, index: int) -> Batch:
        idx = self.order[index * self.batch_size:(index + 1) * self.batch_size]
        images = self.ds.images[idx]
        if self.augment is not None:
            # Keyed by the batch index, so batch k is the same however the epoch was reached.
            images = augment_batch(images, self.augment, _rng(_AUGMENT_STREAM, self.seed, self.epoch, index))
        out = images.astype(np.float32) * self.scale - self.shift
        labels = self.ds.labels[idx]
        mask = np.ones(len(idx), np.float32)
        pad = self.batch_size - len(idx)
        if pad:
            # Evaluation pads the last batch so a jitted step sees a single shape.
            out = np.concatenate([out, np.zeros((pad, *out.shape[1:]), np.float32)])
            labels = np.concatenate([labels, np.zeros(pad, np.int32)])
            mask = np.concatenate([mask, np.zeros(pad, np.float32)])
        return {"image": out, "label": labels, "mask": mask}


def batches(ds: ArrayDataset, *, batch_size: int, mean: Sequence[float] | np.ndarray,
            std: Sequence[float] | np.ndarray, train: bool, seed: int, epoch: int,
            augment: AugmentConfig, prefetch: int, start_batch: int = 0) -> Iterator[Batch]:
    """Yields one epoch of batches.

    Training batches are shuffled by (seed, epoch), augmented, and the last
    incomplete batch is dropped; evaluation batches are in order, not augmented, and
    the last one is padded to ``batch_size`` with ``mask`` 0 on the padding.

    Args:
        ds: the split to iterate.
        batch_size: examples per batch.
        mean, std: per-channel statistics in [0, 1] units (see ``Splits``).
        train: training or evaluation mode (see above).
        seed: the run's data seed.
        epoch: the epoch number; the same (seed, epoch) always gives the same batches.
        augment: augmentation applied when training.
        prefetch: batches prepared ahead in background threads; 0 prepares on demand.
        start_batch: skip this many batches, to resume mid-epoch with the same batches.

    Returns:
        An iterator of dicts: "image" float32 (B, H, W, C), "label" int32 (B,),
        "mask" float32 (B,).
    """
    if batch_size <= 0 or start_batch < 0:
        raise ValueError(f"need batch_size > 0 and start_batch >= 0, got {batch_size} and {start_batch}")
    if train and len(ds) < batch_size:
        raise DataError(f"train split has {len(ds)} examples, fewer than batch_size {batch_size}: "
                        "lower batch_size or raise data.train_subset")
    order = epoch_order(len(ds), seed=seed, epoch=epoch) if train else np.arange(len(ds))
    make = _BatchMaker(ds, order, batch_size, mean, std, augment if train else None, seed, epoch)
    steps = steps_per_epoch(len(ds), batch_size, train=train)
    dataset = grain.MapDataset.range(steps).map(make)[start_batch:]
    # Threads help because numpy releases the GIL in the copies; more than the cores is waste.
    threads = min(prefetch, os.cpu_count() or 1)
    options = grain.ReadOptions(num_threads=threads, prefetch_buffer_size=prefetch)
    return _iterate(dataset.to_iter_dataset(options))


def _iterate(dataset: grain.IterDataset) -> Iterator[Batch]:
    """Yields the batches; prefetch threads start on the first ``next`` and stop when abandoned."""
    it = iter(dataset)
    try:
        yield from it
    finally:
        it.close()

"""Image-folder datasets: one subfolder of image files per class (ImageNet layout)."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from dse.data.arrays import ArrayDataset, fail, make_dataset

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"})


def _class_dirs(root: Path) -> list[Path]:
    """Returns the class subfolders of ``root``, sorted by name, hidden ones skipped."""
    dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not dirs:
        raise fail(root, "no class folders: expected one subfolder of images per class")
    return dirs


def _image_files(class_dir: Path) -> list[Path]:
    """Returns the image files of one class folder; other files (README, .txt) are ignored."""
    files = sorted(p for p in class_dir.iterdir()
                   if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
    if not files:
        raise fail(class_dir, f"empty class folder '{class_dir.name}': no image files")
    return files


def _resize_center_crop(img: Image.Image, size: int) -> Image.Image:
    """Scales the shorter side to ``size``, then crops the central size x size square."""
    w, h = img.size
    scale = size / min(w, h)
    new_w, new_h = max(size, round(w * scale)), max(size, round(h * scale))
    img = img.resize((new_w, new_h), Image.Resampling.BILINEAR)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    return img.crop((left, top, left + size, top + size))


def _decode(path: Path, size: int | None) -> np.ndarray:
    """Decodes one image file to an RGB uint8 (H, W, 3) array, resized when size is set."""
    try:
        with Image.open(path) as img:
            if size is not None:
                # Lets JPEG decode at a reduced scale: ImageNet photos are far above 224 px.
                img.draft("RGB", (size, size))
            img = img.convert("RGB")
            if size is not None:
                img = _resize_center_crop(img, size)
            return np.asarray(img, dtype=np.uint8)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise fail(path, f"cannot decode image: {e}") from None


def _stack(files: list[Path], arrays: list[np.ndarray]) -> np.ndarray:
    """Stacks decoded images, naming the first whose size differs from the first image."""
    first = arrays[0].shape
    for path, arr in zip(files, arrays, strict=True):
        if arr.shape != first:
            raise fail(path, f"image is {arr.shape[1]}x{arr.shape[0]} but {files[0].name} is "
                             f"{first[1]}x{first[0]}: set data.image_size to resize")
    return np.stack(arrays)


def _load_split(root: Path, size: int | None, class_names: list[str] | None) -> ArrayDataset:
    """Loads every image under ``root``; class_names (from train) fixes the label order."""
    dirs = _class_dirs(root)
    names = class_names if class_names is not None else [d.name for d in dirs]
    files, labels = [], []
    for d in dirs:
        if d.name not in names:
            raise fail(d, "class folder has no counterpart in the train split")
        found = _image_files(d)
        files += found
        labels += [names.index(d.name)] * len(found)
    # PIL releases the GIL while decoding, so threads give a real speed-up.
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        arrays = list(pool.map(lambda p: _decode(p, size), files))
    return make_dataset(_stack(files, arrays), np.asarray(labels), names)


def load_image_folder(path: str | Path, image_size: int | None) -> tuple[ArrayDataset, ArrayDataset | None]:
    """Loads an image-folder dataset into memory (RGB, uint8).

    Layouts: ``path/<class>/<image>``, or ``path/train/<class>/...`` with an optional
    ``path/test/<class>/...`` (or ``path/val/...``, as in Imagenette) giving the test
    split; ``test/`` wins when both exist. Class names are the sorted train folder names.

    Args:
        path: the dataset folder.
        image_size: resize (shorter side, then center crop) to this square size;
            None keeps the native size, which must then be the same for all images.

    Returns:
        (train, test); test is None when the folder has no split subfolders.
    """
    path = Path(path)
    if not path.is_dir():
        raise fail(path, "not a folder: expected one subfolder of images per class")
    if not (path / "train").is_dir():
        return _load_split(path, image_size, None), None
    train = _load_split(path / "train", image_size, None)
    test_root = next((path / n for n in ("test", "val") if (path / n).is_dir()), None)
    test = _load_split(test_root, image_size, list(train.class_names)) if test_root else None
    return train, test

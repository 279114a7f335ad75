"""Parsers for the on-disk dataset formats ``dse`` reads.

Every parser returns :class:`ArrayDataset` objects holding the whole split in memory
as uint8 NHWC images and int32 labels. Anything wrong with a file raises
:class:`~dse.errors.DataError` whose one-line message starts with the file's path.
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import pickle
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from dse.data.arrays import ArrayDataset, check_labels, fail, make_dataset
from dse.data.image_folder import load_image_folder

_GZIP_MAGIC = b"\x1f\x8b"
_IDX_IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions (N, H, W)
_IDX_LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension (N,)


# --------------------------------------------------------------------------- IDX


def _read_maybe_gzip(path: Path) -> bytes:
    """Reads a file, decompressing it when it starts with the gzip magic bytes."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise fail(path, f"cannot read file: {e.strerror or e}") from None
    # Sniff the content, not the extension: MNIST mirrors ship both with and without .gz.
    if not raw.startswith(_GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:
        raise fail(path, f"corrupt gzip data: {e}") from None


def _parse_idx(path: Path, magic: int, kind: str) -> tuple[tuple[int, ...], bytes]:
    """Checks an IDX header and returns (dims, payload) of exactly prod(dims) bytes."""
    data = _read_maybe_gzip(path)
    if len(data) < 4:
        raise fail(path, f"too short for an IDX file: {len(data)} bytes")
    (found,) = struct.unpack(">I", data[:4])
    if found != magic:
        raise fail(path, f"not an IDX {kind} file: magic number 0x{found:08x}, expected 0x{magic:08x}")
    ndim = magic & 0xFF
    if len(data) < 4 + 4 * ndim:
        raise fail(path, f"truncated IDX header: {len(data)} bytes")
    dims = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    if 0 in dims:
        raise fail(path, f"IDX header has an empty dimension: {dims}")
    payload = data[4 + 4 * ndim:]
    expected = int(np.prod(dims))
    if len(payload) != expected:
        shape = f"{dims[0]} {kind} of {dims[1]}x{dims[2]}" if ndim == 3 else f"{dims[0]} {kind}"
        what = "truncated IDX file" if len(payload) < expected else "IDX file has trailing bytes"
        unit = "pixel" if ndim == 3 else "label"
        raise fail(path, f"{what}: header says {shape}, found {len(payload)} bytes of {unit} data")
    return dims, payload


def load_idx(images_path: str | Path, labels_path: str | Path,
             class_names: Sequence[str] | None = None) -> ArrayDataset:
    """Loads an MNIST-style pair of IDX files (gzipped or raw).

    Args:
        images_path: IDX file of uint8 images, magic 0x00000803.
        labels_path: IDX file of uint8 labels, magic 0x00000801.
        class_names: optional names; otherwise classes are named "0".."K-1".

    Returns:
        Grayscale images of shape (N, H, W, 1) with their labels.
    """
    images_path, labels_path = Path(images_path), Path(labels_path)
    (n, h, w), pixels = _parse_idx(images_path, _IDX_IMAGES_MAGIC, "images")
    (n_labels,), label_bytes = _parse_idx(labels_path, _IDX_LABELS_MAGIC, "labels")
    if n_labels != n:
        raise fail(labels_path, f"{n_labels} labels but {images_path.name} has {n} images")
    images = np.frombuffer(pixels, dtype=np.uint8).reshape(n, h, w, 1)
    ds = make_dataset(images, np.frombuffer(label_bytes, dtype=np.uint8), class_names)
    check_labels(labels_path, ds.labels, ds.num_classes)
    return ds


# --------------------------------------------------------------------------- CIFAR


@dataclasses.dataclass(frozen=True)
class _CifarLayout:
    folder: str
    train: tuple[str, ...]
    test: str
    meta: str
    label_key: bytes
    names_key: bytes
    num_classes: int


_CIFAR_LAYOUTS = {
    "cifar10": _CifarLayout("cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)),
                            "test_batch", "batches.meta", b"labels", b"label_names", 10),
    "cifar100": _CifarLayout("cifar-100-python", ("train",), "test", "meta",
                             b"fine_labels", b"fine_label_names", 100),
}

# The official batches are Python 2 pickles of dicts, lists, bytes and numpy arrays;
# refusing every other global keeps a hostile "dataset" from running code.
_PICKLE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
}


class _CifarUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):  # noqa: ANN201 - pickle API
        if (module, name) not in _PICKLE_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")
        # numpy 2 moved numpy.core to numpy._core; old pickles name the former.
        return super().find_class(module.replace("numpy.core", "numpy._core"), name)


def _read_cifar_members(path: Path, layout: _CifarLayout) -> dict[str, bytes]:
    """Reads the known CIFAR members from an extracted folder, its parent or a tarball."""
    names = [*layout.train, layout.test, layout.meta]
    if path.is_file():
        return _read_tar_members(path, layout.folder, names)
    folder = path / layout.folder if (path / layout.folder).is_dir() else path
    if not folder.is_dir():
        raise fail(path, f"not found: expected {layout.folder}/ or its .tar.gz")
    found = {}
    for name in names:
        if not (folder / name).is_file():
            raise fail(folder / name, f"missing CIFAR batch file (expected the {layout.folder} layout)")
        try:
            found[name] = (folder / name).read_bytes()
        except OSError as e:
            raise fail(folder / name, f"cannot read file: {e.strerror or e}") from None
    return found


def _read_tar_members(path: Path, folder: str, names: list[str]) -> dict[str, bytes]:
    """Reads members ``folder/name`` in one sequential pass, without extracting to disk."""
    wanted = {f"{folder}/{n}": n for n in names}
    found = {}
    try:
        # Stream mode: seeking backwards in a .tar.gz re-decompresses from the start.
        with tarfile.open(path, "r|*") as tar:
            for member in tar:
                name = wanted.get(member.name.removeprefix("./"))
                if name is not None and member.isfile():
                    found[name] = tar.extractfile(member).read()
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise fail(path, f"cannot read tar archive: {e}") from None
    missing = [f"{folder}/{n}" for n in names if n not in found]
    if missing:
        raise fail(path, f"missing CIFAR batch file {missing[0]} in archive")
    return found


def _unpickle(where: str, raw: bytes) -> dict:
    """Unpickles one batch with the restricted unpickler; the result must be a dict."""
    try:
        obj = _CifarUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except Exception as e:  # noqa: BLE001 - a corrupt pickle can raise almost anything
        raise fail(where, f"cannot unpickle CIFAR batch: {type(e).__name__}: {e}") from None
    if not isinstance(obj, dict):
        raise fail(where, f"CIFAR batch is a {type(obj).__name__}, expected a dict")
    return obj


def _cifar_batch(where: str, batch: dict, label_key: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Returns (NHWC uint8 images, labels) of one unpickled batch."""
    for key in (b"data", label_key):
        if key not in batch:
            raise fail(where, f"CIFAR batch has no '{key.decode()}' entry")
    data, labels = np.asarray(batch[b"data"]), np.asarray(batch[label_key])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise fail(where, f"wrong array size: data is {data.dtype} {data.shape}, expected uint8 (N, 3072)")
    if labels.shape != (len(data),):
        raise fail(where, f"wrong array size: {labels.shape[0] if labels.ndim else 0} labels for {len(data)} images")
    # Rows are stored channel-major (all R, then G, then B); the model wants NHWC.
    images = np.ascontiguousarray(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    return images, labels


def load_cifar(path: str | Path, variant: str) -> tuple[ArrayDataset, ArrayDataset]:
    """Loads CIFAR-10 or CIFAR-100 from the official "python version" files.

    Args:
        path: the extracted folder (``cifar-10-batches-py`` / ``cifar-100-python``),
            its parent, or the original ``.tar.gz`` (read without extracting).
        variant: "cifar10" or "cifar100" (CIFAR-100 uses the 100 fine labels).

    Returns:
        (train, test) datasets of 32x32x3 images.
    """
    if variant not in _CIFAR_LAYOUTS:
        raise ValueError(f"unknown CIFAR variant {variant!r}; expected one of {sorted(_CIFAR_LAYOUTS)}")
    layout, path = _CIFAR_LAYOUTS[variant], Path(path)
    members = _read_cifar_members(path, layout)
    where = {n: f"{path}[{layout.folder}/{n}]" if path.is_file() else str(path / n) for n in members}
    meta = _unpickle(where[layout.meta], members[layout.meta])
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in meta.get(layout.names_key, [])]
    if len(names) != layout.num_classes:
        raise fail(where[layout.meta], f"expected {layout.num_classes} class names, found {len(names)}")

    def split(batch_names: Sequence[str]) -> ArrayDataset:
        parts = [_cifar_batch(where[n], _unpickle(where[n], members[n]), layout.label_key) for n in batch_names]
        ds = make_dataset(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), names)
        check_labels(where[batch_names[0]], ds.labels, ds.num_classes)
        return ds

    return split(layout.train), split([layout.test])


# --------------------------------------------------------------------------- npz


def _npz_images(path: Path, key: str, x: np.ndarray) -> np.ndarray:
    """Validates an image array from an npz file and returns it as uint8 NHWC."""
    if x.ndim not in (3, 4):
        raise fail(path, f"'{key}' has shape {x.shape}; expected (N, H, W) or (N, H, W, C)")
    if np.issubdtype(x.dtype, np.floating):
        if x.size and (np.nanmin(x) < 0.0 or np.nanmax(x) > 1.0 or np.isnan(x).any()):
            raise fail(path, f"'{key}' is {x.dtype} with values outside [0, 1]")
        x = np.round(x * 255.0).astype(np.uint8)
    elif x.dtype != np.uint8:
        raise fail(path, f"'{key}' has dtype {x.dtype}; expected uint8, or float in [0, 1]")
    return x[..., None] if x.ndim == 3 else x


def _npz_labels(path: Path, key: str, y: np.ndarray, n: int) -> np.ndarray:
    """Validates a label array from an npz file against its image count."""
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise fail(path, f"'{key}' is {y.dtype} of shape {y.shape}; expected integers of shape (N,)")
    if len(y) != n:
        raise fail(path, f"length mismatch: '{key}' has {len(y)} labels for {n} images")
    if len(y) and y.min() < 0:
        raise fail(path, f"'{key}' has negative labels")
    return y


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """Reads every array of an npz archive; object arrays (pickles) are refused."""
    try:
        with path.open("rb") as f:
            head = f.read(4)
        # np.load guesses the format from the content; say plainly when it is not a zip.
        if not head.startswith(b"PK"):
            raise fail(path, "not an npz archive (expected a zip of arrays x and y, as written by np.savez)")
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise fail(path, f"cannot read npz file: {getattr(e, 'strerror', None) or e}") from None


def load_npz(path: str | Path) -> tuple[ArrayDataset, ArrayDataset | None]:
    """Loads a dataset from a NumPy ``.npz`` file.

    The file holds ``x`` (N,H,W) or (N,H,W,C), uint8 or float in [0, 1], and ``y`` (N,)
    integer labels; ``x_test``/``y_test`` optionally give a test split and
    ``class_names`` optionally names the classes.

    Args:
        path: the ``.npz`` file.

    Returns:
        (train, test); test is None when the file has no ``x_test``.
    """
    path = Path(path)
    arrays = _read_npz(path)
    pairs = [("x", "y")] + ([("x_test", "y_test")] if "x_test" in arrays or "y_test" in arrays else [])
    for key in (k for pair in pairs for k in pair):
        if key not in arrays:
            raise fail(path, f"missing key '{key}' (found: {', '.join(sorted(arrays)) or 'none'})")
    parsed = []
    for xk, yk in pairs:
        x = _npz_images(path, xk, arrays[xk])
        parsed.append((x, _npz_labels(path, yk, arrays[yk], len(x))))
    num_classes = max(int(y.max(initial=-1)) + 1 for _, y in parsed)
    names = [str(n) for n in arrays["class_names"]] if "class_names" in arrays else None
    if names is not None and len(names) < num_classes:
        raise fail(path, f"{len(names)} class_names for labels up to {num_classes - 1}")
    out = [make_dataset(x, y, names, num_classes=len(names) if names else num_classes) for x, y in parsed]
    return out[0], (out[1] if len(out) > 1 else None)


__all__ = ["ArrayDataset", "load_cifar", "load_idx", "load_image_folder", "load_npz"]

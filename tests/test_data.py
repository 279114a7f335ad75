"""Tests of dse.data: real on-disk formats built in tmp_path, splits, and the batch pipeline."""

from __future__ import annotations

import gzip
import io
import os
import pickle
import struct
import tarfile
import typing
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dse.data import (
    ArrayDataset,
    batches,
    load_cifar,
    load_idx,
    load_image_folder,
    load_npz,
    load_splits,
    steps_per_epoch,
)
from dse.data import datasets as datasets_module
from dse.data.config import AugmentConfig, DataConfig, DatasetFormat
from dse.errors import DataError

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


def assert_data_error(excinfo: pytest.ExceptionInfo, name: str, *words: str) -> None:
    """The message is one line, names the file, and says what is wrong."""
    msg = str(excinfo.value)
    assert "\n" not in msg
    assert name in msg, msg
    for word in words:
        assert word in msg, msg


# --------------------------------------------------------------------------- IDX


def write_idx(path: Path, magic: int, dims: tuple[int, ...], payload: bytes, gz: bool) -> Path:
    raw = struct.pack(">I", magic) + struct.pack(f">{len(dims)}I", *dims) + payload
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


def write_idx_pair(folder: Path, prefix: str, n: int, gz: bool, h: int = 4, w: int = 5) -> tuple[Path, Path]:
    pixels = (np.arange(n * h * w) % 251).astype(np.uint8).tobytes()
    labels = (np.arange(n) % 3).astype(np.uint8).tobytes()
    suffix = ".gz" if gz else ""
    images = write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", 0x803, (n, h, w), pixels, gz)
    labels_path = write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", 0x801, (n,), labels, gz)
    return images, labels_path


@pytest.mark.parametrize("gz", [False, True])
def test_load_idx_raw_and_gzip(tmp_path, gz):
    images, labels = write_idx_pair(tmp_path, "train", 7, gz)
    ds = load_idx(images, labels)
    assert ds.images.shape == (7, 4, 5, 1) and ds.images.dtype == np.uint8
    assert ds.labels.dtype == np.int32 and ds.labels.tolist() == [0, 1, 2, 0, 1, 2, 0]
    assert ds.num_classes == 3 and ds.class_names == ("0", "1", "2")
    assert ds.images[1, 0, 0, 0] == 20  # row-major pixel order: image 1 starts at byte 20


def test_load_idx_detects_gzip_by_content_not_extension(tmp_path):
    images, labels = write_idx_pair(tmp_path, "train", 3, gz=True)
    images.rename(tmp_path / "imgs.raw")
    labels.rename(tmp_path / "labels.gz.but.raw")
    assert len(load_idx(tmp_path / "imgs.raw", tmp_path / "labels.gz.but.raw")) == 3


def test_load_idx_truncated(tmp_path):
    images, labels = write_idx_pair(tmp_path, "train", 5, gz=True)
    raw = gzip.decompress(images.read_bytes())
    images.write_bytes(gzip.compress(raw[:-30]))
    with pytest.raises(DataError) as e:
        load_idx(images, labels)
    assert_data_error(e, images.name, "truncated IDX file: header says 5 images of 4x5, found 70 bytes of pixel data")


def test_load_idx_wrong_magic(tmp_path):
    images, labels = write_idx_pair(tmp_path, "train", 5, gz=False)
    with pytest.raises(DataError) as e:
        load_idx(labels, images)  # swapped files
    assert_data_error(e, labels.name, "magic number 0x00000801", "0x00000803")


def test_load_idx_count_mismatch(tmp_path):
    images, _ = write_idx_pair(tmp_path, "train", 5, gz=False)
    labels = write_idx(tmp_path / "short-labels", 0x801, (4,), bytes(4), gz=False)
    with pytest.raises(DataError) as e:
        load_idx(images, labels)
    assert_data_error(e, labels.name, "4 labels", "5 images")


def test_load_idx_corrupt_gzip(tmp_path):
    images, labels = write_idx_pair(tmp_path, "train", 5, gz=True)
    images.write_bytes(images.read_bytes()[:20])
    with pytest.raises(DataError) as e:
        load_idx(images, labels)
    assert_data_error(e, images.name, "gzip")


# --------------------------------------------------------------------------- CIFAR


def cifar_rows(n: int, offset: int) -> np.ndarray:
    """CIFAR rows whose R, G, B planes hold distinct, per-image values."""
    rows = np.empty((n, 3, 1024), np.uint8)
    for c in range(3):
        rows[:, c, :] = (offset + np.arange(n) * 3 + c)[:, None] % 256
    return rows.reshape(n, 3072)


def cifar_members(variant: str, per_batch: int = 3) -> dict[str, bytes]:
    """The official file names and pickled dicts (bytes keys, as the Python 2 originals)."""
    def batch(n, offset, key):
        labels = [(offset + i) % (10 if key == b"labels" else 100) for i in range(n)]
        return pickle.dumps({b"batch_label": b"x", key: labels, b"data": cifar_rows(n, offset)}, protocol=2)

    if variant == "cifar10":
        files = {f"cifar-10-batches-py/data_batch_{i}": batch(per_batch, 10 * i, b"labels") for i in range(1, 6)}
        files["cifar-10-batches-py/test_batch"] = batch(per_batch, 100, b"labels")
        names = [f"class{i}".encode() for i in range(10)]
        files["cifar-10-batches-py/batches.meta"] = pickle.dumps({b"label_names": names}, protocol=2)
        return files
    files = {"cifar-100-python/train": batch(5 * per_batch, 0, b"fine_labels"),
             "cifar-100-python/test": batch(per_batch, 100, b"fine_labels"),
             "cifar-100-python/meta": pickle.dumps({b"fine_label_names": [f"f{i}".encode() for i in range(100)],
                                                    b"coarse_label_names": [b"c"] * 20}, protocol=2)}
    return files


def write_members(root: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)


def write_tar(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.parametrize("where", ["folder", "parent", "tar"])
def test_load_cifar10(tmp_path, where):
    files = cifar_members("cifar10")
    if where == "tar":
        path = write_tar(tmp_path / "cifar-10-python.tar.gz", files)
    else:
        write_members(tmp_path, files)
        path = tmp_path / "cifar-10-batches-py" if where == "folder" else tmp_path
    train, test = load_cifar(path, "cifar10")
    assert train.images.shape == (15, 32, 32, 3) and test.images.shape == (3, 32, 32, 3)
    assert train.num_classes == 10 and train.class_names[3] == "class3"
    assert train.labels[:3].tolist() == [0, 1, 2]  # batch 1 holds labels 10, 11, 12 mod 10
    # Channel-major rows become NHWC: pixel (5, 7) of image 1 is (R, G, B) = offset + 3, +4, +5.
    assert train.images[1, 5, 7].tolist() == [13, 14, 15]


def test_load_cifar100_tar_uses_fine_labels(tmp_path):
    path = write_tar(tmp_path / "cifar-100-python.tar.gz", cifar_members("cifar100"))
    train, test = load_cifar(path, "cifar100")
    assert train.images.shape == (15, 32, 32, 3) and len(test) == 3
    assert train.num_classes == 100 and train.class_names[:2] == ("f0", "f1")
    assert test.labels.tolist() == [0, 1, 2]


def test_load_cifar_missing_batch(tmp_path):
    files = cifar_members("cifar10")
    del files["cifar-10-batches-py/data_batch_3"]
    write_members(tmp_path, files)
    with pytest.raises(DataError) as e:
        load_cifar(tmp_path, "cifar10")
    assert_data_error(e, "data_batch_3", "missing")
    with pytest.raises(DataError) as e:
        load_cifar(write_tar(tmp_path / "c.tar.gz", files), "cifar10")
    assert_data_error(e, "c.tar.gz", "data_batch_3")


def test_load_cifar_wrong_array_size(tmp_path):
    files = cifar_members("cifar10")
    files["cifar-10-batches-py/test_batch"] = pickle.dumps(
        {b"labels": [0, 1], b"data": np.zeros((2, 3000), np.uint8)}, protocol=2)
    write_members(tmp_path, files)
    with pytest.raises(DataError) as e:
        load_cifar(tmp_path, "cifar10")
    assert_data_error(e, "test_batch", "wrong array size")


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_load_cifar_refuses_foreign_pickle_globals(tmp_path):
    files = cifar_members("cifar10")
    files["cifar-10-batches-py/batches.meta"] = pickle.dumps({b"label_names": _Evil()}, protocol=2)
    write_members(tmp_path, files)
    with pytest.raises(DataError) as e:
        load_cifar(tmp_path, "cifar10")
    assert_data_error(e, "batches.meta", "refusing")


# --------------------------------------------------------------------------- image folders


def write_png(path: Path, size: tuple[int, int], value: int, mode: str = "RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, value if mode == "L" else (value, 0, 255 - value)).save(path)


def write_image_folder(root: Path) -> None:
    write_png(root / "dog" / "a.png", (12, 10), 200)
    write_png(root / "dog" / "b.png", (10, 20), 150, mode="L")  # grayscale becomes RGB
    write_png(root / "cat" / "c.png", (16, 16), 50)
    (root / "cat" / "notes.txt").write_text("not an image, ignored")


def test_load_image_folder(tmp_path):
    write_image_folder(tmp_path)
    train, test = load_image_folder(tmp_path, image_size=8)
    assert test is None
    assert train.images.shape == (3, 8, 8, 3) and train.class_names == ("cat", "dog")
    assert train.labels.tolist() == [0, 1, 1]
    assert train.images[0, 4, 4].tolist() == [50, 0, 205]
    assert train.images[2, 4, 4].tolist() == [150, 150, 150]


def test_load_image_folder_with_splits(tmp_path):
    write_image_folder(tmp_path / "train")
    write_png(tmp_path / "val" / "dog" / "v.png", (9, 9), 10)
    train, test = load_image_folder(tmp_path, image_size=4)
    assert len(train) == 3 and test.images.shape == (1, 4, 4, 3)
    assert test.labels.tolist() == [1] and test.class_names == ("cat", "dog")


def test_load_image_folder_errors(tmp_path):
    write_image_folder(tmp_path)
    (tmp_path / "empty_class").mkdir()
    with pytest.raises(DataError) as e:
        load_image_folder(tmp_path, image_size=8)
    assert_data_error(e, "empty_class", "empty class folder")
    (tmp_path / "empty_class").rmdir()
    (tmp_path / "cat" / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(DataError) as e:
        load_image_folder(tmp_path, image_size=8)
    assert_data_error(e, "broken.png", "cannot decode")
    with pytest.raises(DataError) as e:
        load_image_folder(tmp_path / "cat", image_size=8)
    assert_data_error(e, "cat", "no class folders")


def test_load_image_folder_native_sizes_must_agree(tmp_path):
    write_image_folder(tmp_path)
    with pytest.raises(DataError) as e:
        load_image_folder(tmp_path, image_size=None)
    assert_data_error(e, ".png", "image_size")


# --------------------------------------------------------------------------- npz


def test_load_npz(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, (6, 5, 4), dtype=np.uint8)
    np.savez(tmp_path / "d.npz", x=x, y=np.array([0, 1, 2, 0, 1, 2]))
    train, test = load_npz(tmp_path / "d.npz")
    assert test is None and train.images.shape == (6, 5, 4, 1) and train.num_classes == 3
    np.testing.assert_array_equal(train.images[..., 0], x)


def test_load_npz_float_and_test_split(tmp_path):
    x = np.full((4, 3, 3, 3), 0.5, np.float32)
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(4), x_test=x[:2], y_test=np.array([4, 1]))
    train, test = load_npz(tmp_path / "d.npz")
    assert train.images.dtype == np.uint8 and train.images.max() == 128
    assert len(test) == 2 and train.num_classes == test.num_classes == 5


@pytest.mark.parametrize(("arrays", "words"), [
    ({"x": np.zeros((3, 2, 2), np.uint8)}, ("missing key 'y'",)),
    ({"x": np.zeros((3, 2, 2), np.uint8), "y": np.zeros(2, int)}, ("length mismatch",)),
    ({"x": np.zeros((3, 2, 2), np.int64), "y": np.zeros(3, int)}, ("dtype int64",)),
    ({"x": np.zeros((3, 2), np.uint8), "y": np.zeros(3, int)}, ("shape (3, 2)",)),
    ({"x": np.full((3, 2, 2), 2.0), "y": np.zeros(3, int)}, ("outside [0, 1]",)),
])
def test_load_npz_errors(tmp_path, arrays, words):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError) as e:
        load_npz(tmp_path / "bad.npz")
    assert_data_error(e, "bad.npz", *words)


# --------------------------------------------------------------------------- splits


def indexed_npz(path: Path, n: int, **extra) -> Path:
    """An npz whose image i stores i in its first two pixels, to trace examples."""
    x = np.random.default_rng(1).integers(0, 256, (n, 4, 4, 3), dtype=np.uint8)
    x[:, 0, 0, 0], x[:, 0, 1, 0] = np.arange(n) // 256, np.arange(n) % 256
    np.savez(path, x=x, y=np.arange(n) % 5, **extra)
    return path


def ids(ds: ArrayDataset) -> list[int]:
    return (ds.images[:, 0, 0, 0].astype(int) * 256 + ds.images[:, 0, 1, 0]).tolist()


def test_load_splits_carves_test_and_val_deterministically(tmp_path):
    cfg = DataConfig(dataset="npz", path=indexed_npz(tmp_path / "d.npz", 1000), val_fraction=0.2, split_seed=3)
    s = load_splits(cfg)
    assert (len(s.train), len(s.val), len(s.test)) == (720, 180, 100)
    assert sorted(ids(s.train) + ids(s.val) + ids(s.test)) == list(range(1000))
    again = load_splits(cfg)
    assert ids(again.val) == ids(s.val) and ids(again.test) == ids(s.test)
    other = load_splits(cfg.model_copy(update={"split_seed": 4}))
    assert ids(other.test) == ids(s.test) and ids(other.val) != ids(s.val)  # test set is shared


def test_load_splits_subsets_and_stats(tmp_path):
    x = np.zeros((50, 2, 2, 3), np.uint8)
    x[..., 0] = 255  # red channel: mean 1, std 0 -> std falls back to 1
    x[::2, ..., 1] = 255  # green: half the images
    np.savez(tmp_path / "d.npz", x=x, y=np.zeros(50, int), x_test=x[:10], y_test=np.zeros(10, int))
    cfg = DataConfig(dataset="npz", path=tmp_path / "d.npz", val_fraction=0.2, train_subset=30, val_subset=4, test_subset=3)
    s = load_splits(cfg)
    assert (len(s.train), len(s.val), len(s.test)) == (30, 4, 3)
    assert s.mean.dtype == np.float32 and s.mean.shape == (3,)
    np.testing.assert_allclose(s.mean[[0, 2]], [1.0, 0.0])
    np.testing.assert_allclose(s.std[[0, 2]], [1.0, 1.0])
    green = s.train.images[..., 1].mean() / 255
    np.testing.assert_allclose(s.mean[1], green, rtol=1e-5)


def test_load_splits_idx_cifar_and_image_folder(tmp_path):
    (tmp_path / "idx").mkdir()
    write_idx_pair(tmp_path / "idx", "train", 20, gz=True)
    write_idx_pair(tmp_path / "idx", "t10k", 6, gz=False)
    s = load_splits(DataConfig(dataset="idx", path=tmp_path / "idx", val_fraction=0.25))
    assert (len(s.train), len(s.val), len(s.test)) == (15, 5, 6) and s.train.images.shape[1:] == (4, 5, 1)
    tar = write_tar(tmp_path / "c.tar.gz", cifar_members("cifar100"))
    s = load_splits(DataConfig(dataset="cifar100", path=tar, val_fraction=0.2))
    assert (len(s.train), len(s.val), len(s.test)) == (12, 3, 3) and s.test.num_classes == 100
    write_image_folder(tmp_path / "imgs")
    s = load_splits(DataConfig(dataset="image_folder", path=tmp_path / "imgs", image_size=6, val_fraction=0.0))
    assert s.train.images.shape[1:] == (6, 6, 3) and len(s.train) + len(s.test) == 3


def test_every_dataset_format_has_a_loader():
    assert set(datasets_module._LOADERS) == set(typing.get_args(DatasetFormat))


def test_fashion_mnist_missing(tmp_path):
    with pytest.raises(DataError) as e:
        load_splits(DataConfig(dataset="fashion_mnist", path=tmp_path))
    assert str(e.value) == (f"Fashion-MNIST not found in {tmp_path}: install it with "
                            "'apt-get install dataset-fashion-mnist' or set data.path")


def test_user_dataset_needs_path():
    with pytest.raises(DataError, match="data.path is required"):
        load_splits(DataConfig(dataset="npz"))


@pytest.mark.skipif(not (FASHION_DIR / "train-images-idx3-ubyte.gz").exists(),
                    reason=f"Fashion-MNIST not installed in {FASHION_DIR} (apt-get install dataset-fashion-mnist)")
def test_real_fashion_mnist():
    s = load_splits(DataConfig(dataset="fashion_mnist", val_fraction=0.1))
    assert (len(s.train), len(s.val), len(s.test)) == (54000, 6000, 10000)
    assert s.train.images.shape[1:] == (28, 28, 1) and s.test.images.shape[1:] == (28, 28, 1)
    assert s.train.class_names[0] == "T-shirt/top" and s.train.num_classes == 10
    assert np.bincount(s.test.labels).tolist() == [1000] * 10
    np.testing.assert_allclose(s.mean, [0.286], atol=0.01)


# --------------------------------------------------------------------------- pipeline


@pytest.fixture(scope="module")
def small_ds() -> ArrayDataset:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (70, 8, 8, 3), dtype=np.uint8)
    images[:, 0, 0, 0] = np.arange(70)  # traceable id
    return ArrayDataset(images=images, labels=(np.arange(70) % 4).astype(np.int32), num_classes=4,
                        class_names=("a", "b", "c", "d"))


NO_AUGMENT = AugmentConfig()


def run(ds, *, train=True, seed=0, epoch=0, augment=NO_AUGMENT, prefetch=2, batch_size=16, **kw):
    return list(batches(ds, batch_size=batch_size, mean=np.zeros(3), std=np.ones(3), train=train, seed=seed,
                        epoch=epoch, augment=augment, prefetch=prefetch, **kw))


def batch_ids(bs) -> list[int]:
    # With mean 0 and std 1 the image is pixel / 255; recover the id pixel.
    return [int(round(v)) for b in bs for v in b["image"][:, 0, 0, 0] * 255]


def test_train_batches_reproducible_and_differ_between_epochs(small_ds):
    epoch0, epoch1 = run(small_ds, epoch=0), run(small_ds, epoch=1)
    assert len(epoch0) == steps_per_epoch(70, 16) == 4
    assert all(b["image"].shape == (16, 8, 8, 3) and b["image"].dtype == np.float32 for b in epoch0)
    assert all(b["label"].dtype == np.int32 and b["mask"].tolist() == [1.0] * 16 for b in epoch0)
    assert batch_ids(epoch0) != batch_ids(epoch1)
    assert len(set(batch_ids(epoch0))) == 64  # each example at most once; 6 dropped
    for prefetch in (0, 2):  # same (seed, epoch) -> identical, with or without prefetch
        again = run(small_ds, epoch=1, prefetch=prefetch)
        for a, b in zip(epoch1, again, strict=True):
            np.testing.assert_array_equal(a["image"], b["image"])
            np.testing.assert_array_equal(a["label"], b["label"])
    assert batch_ids(run(small_ds, seed=1)) != batch_ids(epoch0)


def test_resume_mid_epoch_gives_the_same_batches(small_ds):
    aug = AugmentConfig(random_crop_padding=2, horizontal_flip=True)
    full = run(small_ds, epoch=3, augment=aug)
    tail = run(small_ds, epoch=3, augment=aug, start_batch=2)
    assert len(tail) == 2
    for a, b in zip(full[2:], tail, strict=True):
        np.testing.assert_array_equal(a["image"], b["image"])


def test_eval_batches_cover_every_example_once(small_ds):
    bs = run(small_ds, train=False, augment=AugmentConfig(random_crop_padding=2, horizontal_flip=True))
    assert len(bs) == steps_per_epoch(70, 16, train=False) == 5
    assert all(b["image"].shape == (16, 8, 8, 3) for b in bs)
    mask = np.concatenate([b["mask"] for b in bs])
    assert mask.sum() == 70 and mask[70:].tolist() == [0.0] * 10
    ids_ = np.array(batch_ids(bs))[mask == 1]
    assert ids_.tolist() == list(range(70))  # in order, no augmentation
    labels = np.concatenate([b["label"] for b in bs])[mask == 1]
    np.testing.assert_array_equal(labels, small_ds.labels)


def test_augmentation_keeps_shapes_and_changes_pixels(small_ds):
    plain = run(small_ds, epoch=2)
    for aug in (AugmentConfig(random_crop_padding=3), AugmentConfig(horizontal_flip=True)):
        augmented = run(small_ds, epoch=2, augment=aug)
        for a, b in zip(plain, augmented, strict=True):
            assert a["image"].shape == b["image"].shape
            np.testing.assert_array_equal(a["label"], b["label"])  # same order, only pixels change
        changed = np.mean([not np.array_equal(a["image"], b["image"]) for a, b in zip(plain, augmented, strict=True)])
        assert changed == 1.0


def test_flip_mirrors_and_crop_pads_with_zeros():
    img = np.arange(2 * 4 * 3, dtype=np.uint8).reshape(1, 2, 4, 3).repeat(32, axis=0)
    ds = ArrayDataset(images=img, labels=np.zeros(32, np.int32), num_classes=1, class_names=("x",))
    out = run(ds, batch_size=32, augment=AugmentConfig(horizontal_flip=True))[0]["image"] * 255
    flipped = np.isclose(out, img[:, :, ::-1]).all(axis=(1, 2, 3))
    assert np.all(flipped | np.isclose(out, img).all(axis=(1, 2, 3))) and 0 < flipped.sum() < 32
    cropped = run(ds, batch_size=32, augment=AugmentConfig(random_crop_padding=5))[0]["image"] * 255
    assert (cropped == 0).any()  # some crops reach into the zero padding


def test_normalised_train_images_have_zero_mean(tmp_path):
    s = load_splits(DataConfig(dataset="npz", path=indexed_npz(tmp_path / "d.npz", 600)))
    images = np.concatenate([b["image"] for b in batches(
        s.train, batch_size=50, mean=s.mean, std=s.std, train=True, seed=0, epoch=0,
        augment=AugmentConfig(), prefetch=1)])
    np.testing.assert_allclose(images.mean(axis=(0, 1, 2)), 0.0, atol=0.05)
    np.testing.assert_allclose(images.std(axis=(0, 1, 2)), 1.0, atol=0.05)


def test_train_split_smaller_than_batch(small_ds):
    with pytest.raises(DataError, match="fewer than batch_size 128"):
        run(small_ds, batch_size=128)
    assert len(run(small_ds, train=False, batch_size=128)) == 1

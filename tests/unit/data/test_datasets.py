"""Tests for the dataset readers and ``load_dataset``."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from archsearch.data import DATASET_NAMES, Dataset, load_dataset
from archsearch.errors import DataError

# ---------------------------------------------------------------- helpers


def _assert_normalised(ds: Dataset) -> None:
    mean = ds.x_train.double().mean(dim=(0, 2, 3))
    std = ds.x_train.double().std(dim=(0, 2, 3), unbiased=False)
    assert torch.allclose(mean, torch.zeros_like(mean), atol=1e-5)
    assert torch.allclose(std, torch.ones_like(std), atol=1e-4)


def _one_line(exc: pytest.ExceptionInfo[DataError]) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


def _cifar_batch(count: int, offset: int) -> dict[bytes, object]:
    rng = np.random.default_rng(offset)
    return {
        b"batch_label": b"fake batch",
        b"labels": [int(v) for v in (np.arange(count) + offset) % 10],
        b"data": rng.integers(0, 256, size=(count, 3072), dtype=np.uint8),
        b"filenames": [f"img_{offset + i}.png".encode() for i in range(count)],
    }


def _write_cifar(folder: Path, per_batch: int = 10) -> Path:
    folder.mkdir(parents=True)
    for i in range(1, 6):
        with (folder / f"data_batch_{i}").open("wb") as handle:
            pickle.dump(_cifar_batch(per_batch, 10 * i), handle, protocol=2)
    with (folder / "test_batch").open("wb") as handle:
        pickle.dump(_cifar_batch(per_batch, 0), handle, protocol=2)
    meta = {b"label_names": [f"class{i}".encode() for i in range(10)], b"num_vis": 3072}
    with (folder / "batches.meta").open("wb") as handle:
        pickle.dump(meta, handle, protocol=2)
    return folder


def _write_png(path: Path, size: tuple[int, int], mode: str, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    color = value if mode == "L" else (value, 255 - value, value // 2)
    Image.new(mode, size, color).save(path)


def _write_classes(root: Path, per_class: int, mode: str = "L", size=(6, 6)) -> None:
    for label, name in enumerate(("cat", "ant", "bee")):
        for i in range(per_class):
            _write_png(root / name / f"{i}.png", size, mode, 20 * label + i)


# ---------------------------------------------------------------- dispatcher


def test_dataset_names() -> None:
    assert DATASET_NAMES == ("digits", "cifar10", "npz", "folder")


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(DataError) as exc:
        load_dataset("mnist")
    assert all(name in _one_line(exc) for name in DATASET_NAMES)


@pytest.mark.parametrize("name", ["cifar10", "npz", "folder"])
def test_data_dir_required(name: str) -> None:
    with pytest.raises(DataError, match="--data-dir"):
        load_dataset(name)


@pytest.mark.parametrize("name", ["cifar10", "npz", "folder"])
def test_nonexistent_path(name: str, tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(DataError, match="does not exist") as exc:
        load_dataset(name, missing)
    assert str(missing) in _one_line(exc)


@pytest.mark.parametrize(
    "kwargs", [{"test_fraction": 0.0}, {"test_fraction": 1.0}, {"limit": 0}, {"seed": 1.5}]
)
def test_bad_options(kwargs: dict) -> None:
    with pytest.raises(DataError):
        load_dataset("digits", **kwargs)


# ---------------------------------------------------------------- digits


def test_digits_shapes_and_normalisation() -> None:
    ds = load_dataset("digits")
    assert ds.x_train.shape == (1437, 1, 8, 8) and ds.x_test.shape == (360, 1, 8, 8)
    assert ds.x_train.dtype == torch.float32 and ds.y_train.dtype == torch.int64
    assert ds.num_classes == 10 and len(ds.class_names) == 10
    assert ds.in_channels == 1 and ds.image_size == 8
    assert ds.describe() == "digits: 1437 train / 360 test, 1x8x8, 10 classes"
    _assert_normalised(ds)
    assert 0.0 < ds.mean[0] < 1.0 and ds.std[0] > 0.0
    # Test split uses the train statistics: undoing them lands back in [0, 1].
    raw_test = ds.x_test * ds.std[0] + ds.mean[0]
    assert raw_test.min() >= -1e-5 and raw_test.max() <= 1 + 1e-5


def test_digits_deterministic_and_stratified() -> None:
    a, b, c = load_dataset("digits"), load_dataset("digits"), load_dataset("digits", seed=1)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert not torch.equal(a.y_train, c.y_train)
    assert set(a.y_test.tolist()) == set(range(10))
    assert torch.bincount(a.y_test).min() >= 35


def test_digits_rejects_data_dir(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="built in"):
        load_dataset("digits", tmp_path)


def test_limit_keeps_seeded_subset() -> None:
    a = load_dataset("digits", limit=100)
    b = load_dataset("digits", limit=100)
    assert a.x_train.shape[0] == 100 and a.x_test.shape[0] == 360
    assert torch.equal(a.x_train, b.x_train)
    _assert_normalised(a)


def test_image_size_requires_square() -> None:
    x = torch.zeros(2, 1, 4, 5)
    y = torch.zeros(2, dtype=torch.int64)
    ds = Dataset("npz", x, y, x, y, 1, ("a",), (0.0,), (1.0,))
    with pytest.raises(DataError, match="4x5"):
        _ = ds.image_size


# ---------------------------------------------------------------- cifar10


def test_cifar10_reads_batch_folder(tmp_path: Path) -> None:
    folder = _write_cifar(tmp_path / "cifar-10-batches-py")
    ds = load_dataset("cifar10", folder)
    assert ds.x_train.shape == (50, 3, 32, 32) and ds.x_test.shape == (10, 3, 32, 32)
    assert ds.class_names == tuple(f"class{i}" for i in range(10)) and ds.num_classes == 10
    expected = np.concatenate([(np.arange(10) + 10 * i) % 10 for i in range(1, 6)])
    assert ds.y_train.tolist() == expected.tolist()
    # Pixels survive the reshape: undo normalisation and compare with the raw bytes.
    raw = _cifar_batch(10, 10)[b"data"].reshape(10, 3, 32, 32) / 255.0
    mean = torch.tensor(ds.mean).view(1, 3, 1, 1)
    std = torch.tensor(ds.std).view(1, 3, 1, 1)
    restored = (ds.x_train[:10] * std + mean).numpy()
    assert np.allclose(restored, raw, atol=1e-5)
    _assert_normalised(ds)


def test_cifar10_accepts_parent_folder(tmp_path: Path) -> None:
    _write_cifar(tmp_path / "cifar-10-batches-py")
    ds = load_dataset("cifar10", tmp_path, test_fraction=0.5)  # test_fraction ignored
    assert ds.x_test.shape[0] == 10


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


def test_cifar10_refuses_forbidden_global(tmp_path: Path) -> None:
    folder = _write_cifar(tmp_path / "cifar-10-batches-py")
    marker = tmp_path / "pwned"
    batch = _cifar_batch(10, 10)
    batch[b"labels"] = _Evil(marker)
    with (folder / "data_batch_3").open("wb") as handle:
        pickle.dump(batch, handle, protocol=2)
    with pytest.raises(DataError, match="refusing") as exc:
        load_dataset("cifar10", folder)
    assert "data_batch_3" in _one_line(exc)
    assert not marker.exists()


def test_cifar10_refuses_other_class(tmp_path: Path) -> None:
    from collections import OrderedDict

    folder = _write_cifar(tmp_path / "cifar-10-batches-py")
    with (folder / "test_batch").open("wb") as handle:
        pickle.dump(OrderedDict(_cifar_batch(10, 0)), handle, protocol=2)
    with pytest.raises(DataError, match="collections.OrderedDict"):
        load_dataset("cifar10", folder)


def test_cifar10_truncated_file(tmp_path: Path) -> None:
    folder = _write_cifar(tmp_path / "cifar-10-batches-py")
    path = folder / "data_batch_2"
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(DataError, match="data_batch_2") as exc:
        load_dataset("cifar10", folder)
    _one_line(exc)


def test_cifar10_missing_batch_and_folder(tmp_path: Path) -> None:
    folder = _write_cifar(tmp_path / "cifar-10-batches-py")
    (folder / "data_batch_5").unlink()
    with pytest.raises(DataError, match="'data_batch_5'"):
        load_dataset("cifar10", folder)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="'data_batch_1'.*cifar-10-batches-py"):
        load_dataset("cifar10", empty)


def test_cifar10_bad_labels_and_shape(tmp_path: Path) -> None:
    folder = _write_cifar(tmp_path / "cifar-10-batches-py")
    batch = _cifar_batch(10, 0)
    batch[b"labels"][0] = 10
    with (folder / "test_batch").open("wb") as handle:
        pickle.dump(batch, handle, protocol=2)
    with pytest.raises(DataError, match="labels must lie in"):
        load_dataset("cifar10", folder)
    batch = _cifar_batch(10, 0)
    batch[b"data"] = batch[b"data"][:, :100]
    with (folder / "test_batch").open("wb") as handle:
        pickle.dump(batch, handle, protocol=2)
    with pytest.raises(DataError, match="shape"):
        load_dataset("cifar10", folder)


def test_cifar10_str_keys_and_protocol_5(tmp_path: Path) -> None:
    folder = _write_cifar(tmp_path / "cifar-10-batches-py")
    batch = {k.decode(): v for k, v in _cifar_batch(10, 0).items()}
    with (folder / "test_batch").open("wb") as handle:
        pickle.dump(batch, handle, protocol=5)
    assert load_dataset("cifar10", folder).x_test.shape == (10, 3, 32, 32)


# ---------------------------------------------------------------- npz


def _labels(count: int, classes: int = 3) -> np.ndarray:
    return np.arange(count) % classes


def test_npz_channels_last_uint8(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    x_train = np.random.default_rng(0).integers(0, 256, (12, 5, 5, 3), dtype=np.uint8)
    x_test = np.full((6, 5, 5, 3), 255, dtype=np.uint8)
    names = np.array(["a", "b", "c"])
    np.savez(
        path,
        x_train=x_train,
        y_train=_labels(12),
        x_test=x_test,
        y_test=_labels(6),
        class_names=names,
    )
    ds = load_dataset("npz", path)
    assert ds.x_train.shape == (12, 3, 5, 5) and ds.x_test.shape == (6, 3, 5, 5)
    assert ds.class_names == ("a", "b", "c") and ds.num_classes == 3
    _assert_normalised(ds)
    restored = ds.x_train[:, 1] * ds.std[1] + ds.mean[1]
    assert np.allclose(restored.numpy(), x_train[..., 1] / 255.0, atol=1e-5)


def test_npz_grayscale_float_in_folder(tmp_path: Path) -> None:
    x = np.random.default_rng(1).random((8, 4, 4)).astype(np.float64)
    np.savez(
        tmp_path / "only.npz",
        x_train=x,
        y_train=_labels(8, 2),
        x_test=x[:2],
        y_test=np.array([0, 1]),
    )
    ds = load_dataset("npz", tmp_path)
    assert ds.x_train.shape == (8, 1, 4, 4) and ds.x_train.dtype == torch.float32
    assert ds.class_names == ("0", "1")


def test_npz_missing_key(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, x_train=np.zeros((4, 4, 4), np.uint8))
    with pytest.raises(DataError, match="'y_train'") as exc:
        load_dataset("npz", path)
    assert str(path) in _one_line(exc)


@pytest.mark.parametrize(
    ("labels", "extra", "pattern"),
    [
        (np.array([0, 1, 2, 3]), {"class_names": np.array(["a", "b", "c"])}, "class_names"),
        (np.array([0, 1, -1, 0]), {}, "negative"),
        (np.array([0.5, 1, 1, 0]), {}, "integer"),
    ],
)
def test_npz_bad_labels(tmp_path: Path, labels: np.ndarray, extra: dict, pattern: str) -> None:
    path = tmp_path / "d.npz"
    x = np.zeros((4, 3, 3), np.uint8)
    np.savez(path, x_train=x, y_train=labels, x_test=x, y_test=np.zeros(4, int), **extra)
    with pytest.raises(DataError, match=pattern):
        load_dataset("npz", path)


def test_npz_nan_and_bad_shape(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    x = np.zeros((4, 3, 3), np.float32)
    x[1, 1, 1] = np.nan
    np.savez(path, x_train=x, y_train=_labels(4, 2))
    with pytest.raises(DataError, match="'x_train'.*NaN"):
        load_dataset("npz", path)
    np.savez(path, x_train=np.zeros((4, 3)), y_train=_labels(4, 2))
    with pytest.raises(DataError, match="'x_train' has shape"):
        load_dataset("npz", path)


def test_npz_without_test_arrays_is_split(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    x = np.random.default_rng(2).integers(0, 256, (30, 1, 4, 4), dtype=np.uint8)
    np.savez(path, x_train=x, y_train=_labels(30))
    a = load_dataset("npz", path, test_fraction=0.2)
    b = load_dataset("npz", path, test_fraction=0.2)
    assert a.x_train.shape == (24, 1, 4, 4) and a.x_test.shape == (6, 1, 4, 4)
    assert sorted(a.y_test.tolist()) == [0, 0, 1, 1, 2, 2]
    assert torch.equal(a.x_test, b.x_test)


def test_npz_corrupt_file(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    path.write_bytes(b"PK\x03\x04 definitely not a zip")
    with pytest.raises(DataError, match="cannot read") as exc:
        load_dataset("npz", path)
    _one_line(exc)


def test_npz_folder_needs_exactly_one(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="exactly one"):
        load_dataset("npz", tmp_path)


# ---------------------------------------------------------------- folder


def test_folder_split_layout(tmp_path: Path) -> None:
    _write_classes(tmp_path / "train", per_class=3, mode="RGB")
    _write_classes(tmp_path / "test", per_class=1, mode="RGB")
    ds = load_dataset("folder", tmp_path)
    assert ds.class_names == ("ant", "bee", "cat")
    assert ds.x_train.shape == (9, 3, 6, 6) and ds.x_test.shape == (3, 3, 6, 6)
    assert ds.y_train.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    # "cat" (label 2) was written with value 0 + i: its red channel is the smallest.
    red = ds.x_train[:, 0].mean(dim=(1, 2))
    assert red[6:].max() < red[:6].min()


def test_folder_class_layout_is_split_and_grayscale(tmp_path: Path) -> None:
    _write_classes(tmp_path, per_class=5, mode="L")
    ds = load_dataset("folder", tmp_path, test_fraction=0.2, seed=3)
    assert ds.x_train.shape == (12, 1, 6, 6) and ds.x_test.shape == (3, 1, 6, 6)
    assert sorted(ds.y_test.tolist()) == [0, 1, 2]
    again = load_dataset("folder", tmp_path, test_fraction=0.2, seed=3)
    assert torch.equal(ds.x_train, again.x_train)


def test_folder_mixed_modes_become_rgb(tmp_path: Path) -> None:
    _write_classes(tmp_path, per_class=5, mode="L")
    _write_png(tmp_path / "ant" / "color.png", (6, 6), "RGB", 9)
    ds = load_dataset("folder", tmp_path)
    assert ds.in_channels == 3


def test_folder_size_mismatch(tmp_path: Path) -> None:
    _write_classes(tmp_path, per_class=3)
    odd = tmp_path / "bee" / "9.png"
    _write_png(odd, (7, 6), "L", 1)
    with pytest.raises(DataError, match="7x6.*6x6") as exc:
        load_dataset("folder", tmp_path)
    assert str(odd) in _one_line(exc)


def test_folder_fake_png(tmp_path: Path) -> None:
    _write_classes(tmp_path, per_class=3)
    fake = tmp_path / "cat" / "fake.png"
    fake.write_text("not an image")
    with pytest.raises(DataError, match="cannot read image") as exc:
        load_dataset("folder", tmp_path)
    assert str(fake) in _one_line(exc)


def test_folder_layout_errors(tmp_path: Path) -> None:
    (tmp_path / "train" / "a").mkdir(parents=True)
    with pytest.raises(DataError, match="test"):
        load_dataset("folder", tmp_path)
    (tmp_path / "test" / "a").mkdir(parents=True)
    with pytest.raises(DataError, match="no images"):
        load_dataset("folder", tmp_path)

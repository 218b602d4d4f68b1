"""Arrays from a numpy ``.npz`` archive (``x_train, y_train[, x_test, y_test, class_names]``).

The archive is opened with ``allow_pickle=False`` so an object array can never run code.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from archsearch.data._dataset import RawSplits, one_line, stratified_split, uint8_to_unit
from archsearch.errors import DataError

# Trailing sizes that mark an (N, H, W, C) array as channels-last.
_LAST_AXIS_CHANNELS = (1, 3)


def find_npz(data_dir: Path) -> Path:
    """Return ``data_dir`` itself or the single ``.npz`` file inside that folder.

    Raises:
        DataError: If the folder holds no ``.npz`` file or more than one.
    """
    if data_dir.is_file():
        return data_dir
    found = sorted(p for p in data_dir.iterdir() if p.suffix.lower() == ".npz" and p.is_file())
    if len(found) != 1:
        names = ", ".join(p.name for p in found) if found else "none"
        raise DataError(
            f"npz: expected exactly one .npz file in {data_dir}, found {len(found)} ({names})"
        )
    return found[0]


def _load_arrays(path: Path) -> dict[str, np.ndarray]:
    """Read every array of the archive eagerly so all I/O errors surface here."""
    try:
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise DataError(f"npz: {path} is a single .npy array, not an .npz archive")
        with archive:
            return {key: archive[key] for key in archive.files}
    except DataError:
        raise
    except Exception as exc:  # zipfile, zlib, numpy and OS errors for damaged archives
        raise DataError(f"npz: cannot read {path}: {one_line(exc)}") from exc


def _images(path: Path, key: str, arr: np.ndarray) -> np.ndarray:
    """Convert one image array to float32 (N, C, H, W) in the [0, 1] scale (if uint8)."""
    if arr.ndim == 3:
        arr = arr[:, None, :, :]
    elif arr.ndim == 4:
        # (N, 1|3, H, W) is channels-first; otherwise a trailing 1 or 3 means channels-last.
        if arr.shape[1] not in _LAST_AXIS_CHANNELS and arr.shape[3] in _LAST_AXIS_CHANNELS:
            arr = arr.transpose(0, 3, 1, 2)
    else:
        raise DataError(
            f"npz: {path}: '{key}' has shape {arr.shape}; expected (N, H, W), (N, H, W, C) "
            "or (N, C, H, W)"
        )
    if arr.shape[0] == 0 or min(arr.shape[1:]) == 0:
        raise DataError(f"npz: {path}: '{key}' is empty (shape {arr.shape})")
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(uint8_to_unit(arr))
    if arr.dtype.kind != "f":
        raise DataError(f"npz: {path}: '{key}' has dtype {arr.dtype}; expected uint8 or float")
    if not np.isfinite(arr).all():
        raise DataError(f"npz: {path}: '{key}' contains NaN or infinite values")
    return np.ascontiguousarray(arr, dtype=np.float32)


def _labels(path: Path, key: str, arr: np.ndarray, count: int) -> np.ndarray:
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1 or arr.shape[0] != count:
        raise DataError(f"npz: {path}: '{key}' has shape {arr.shape}; expected ({count},)")
    if arr.dtype.kind == "f":
        # Labels saved as floats are fine as long as every value is a whole number.
        if not np.isfinite(arr).all() or not np.array_equal(arr, np.round(arr)):
            raise DataError(f"npz: {path}: '{key}' must hold integer class labels")
    elif arr.dtype.kind not in "iu":
        raise DataError(f"npz: {path}: '{key}' has dtype {arr.dtype}; expected integers")
    labels = arr.astype(np.int64)
    if labels.size and labels.min() < 0:
        raise DataError(f"npz: {path}: '{key}' has negative label {int(labels.min())}")
    return labels


def _class_names(
    path: Path, arrays: dict[str, np.ndarray], labels: list[np.ndarray]
) -> tuple[str, ...]:
    top = max(int(y.max()) for y in labels if y.size) + 1
    if "class_names" not in arrays:
        return tuple(str(i) for i in range(top))
    names = arrays["class_names"]
    if names.ndim != 1 or names.dtype.kind not in "US":
        raise DataError(f"npz: {path}: 'class_names' must be a 1-D array of strings")
    if top > names.shape[0]:
        raise DataError(
            f"npz: {path}: labels go up to {top - 1} but 'class_names' lists only "
            f"{names.shape[0]} classes"
        )
    return tuple(n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n) for n in names)


def _require(path: Path, arrays: dict[str, np.ndarray], key: str) -> np.ndarray:
    if key not in arrays:
        have = ", ".join(sorted(arrays)) or "no arrays"
        raise DataError(f"npz: {path} has no key '{key}' (found: {have})")
    return arrays[key]


def read(data_dir: Path | None, *, seed: int, test_fraction: float) -> RawSplits:
    """Read an ``.npz`` archive; split ``x_train`` if it has no test arrays.

    Args:
        data_dir: The ``.npz`` file or a folder with exactly one.
        seed: ``random_state`` of the split when there are no test arrays.
        test_fraction: Fraction held out when there are no test arrays.

    Returns:
        Float32 images (N, C, H, W) and int64 labels.

    Raises:
        DataError: On a missing key, a bad shape or dtype, NaN, or out-of-range labels.
    """
    if data_dir is None:
        raise DataError("npz: --data-dir is needed (path to an .npz file)")
    path = find_npz(data_dir)
    arrays = _load_arrays(path)
    x_train = _images(path, "x_train", _require(path, arrays, "x_train"))
    y_train = _labels(path, "y_train", _require(path, arrays, "y_train"), x_train.shape[0])
    has_test = [key in arrays for key in ("x_test", "y_test")]
    if any(has_test) and not all(has_test):
        missing = "x_test" if not has_test[0] else "y_test"
        raise DataError(f"npz: {path} has no key '{missing}' (x_test and y_test come together)")
    if all(has_test):
        x_test = _images(path, "x_test", arrays["x_test"])
        y_test = _labels(path, "y_test", arrays["y_test"], x_test.shape[0])
        if x_test.shape[1:] != x_train.shape[1:]:
            raise DataError(
                f"npz: {path}: 'x_test' images are {x_test.shape[1:]} (C, H, W) but "
                f"'x_train' images are {x_train.shape[1:]}"
            )
    else:
        x_train, x_test, y_train, y_test = stratified_split(
            "npz", x_train, y_train, seed=seed, test_fraction=test_fraction
        )
    names = _class_names(path, arrays, [y_train, y_test])
    return RawSplits(x_train, y_train, x_test, y_test, names)

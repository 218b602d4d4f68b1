"""CIFAR-10 from the python-pickle batch folder ``cifar-10-batches-py``.

The batch files are pickles, and unpickling can run arbitrary code. They are therefore
read with :class:`_BatchUnpickler`, which resolves only the handful of globals a genuine
batch references (numpy array reconstruction) and rejects everything else before it can
be called.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

from archsearch.data._dataset import RawSplits, one_line, uint8_to_unit
from archsearch.errors import DataError

FOLDER_NAME = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
META_FILE = "batches.meta"
CLASS_NAMES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
_CHANNELS, _SIZE = 3, 32
_ROW = _CHANNELS * _SIZE * _SIZE


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """Stand-in for ``_codecs.encode``: protocol-2 pickles written by Python 3 spell every
    bytes object as ``_codecs.encode(text, "latin1")``; no other codec is ever needed."""
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise DataError(f"pickle asks for _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


def _allowed_globals() -> dict[tuple[str, str], Any]:
    # numpy 2 moved numpy.core to numpy._core; old pickles (incl. the original CIFAR
    # files) name the former, new ones the latter, so both map to the live object.
    try:
        from numpy._core import multiarray, numeric
    except ImportError:  # numpy < 2
        from numpy.core import multiarray, numeric  # type: ignore[no-redef]
    allowed: dict[tuple[str, str], Any] = {("numpy", "ndarray"): np.ndarray}
    allowed[("numpy", "dtype")] = np.dtype
    allowed[("_codecs", "encode")] = _latin1_encode
    for module in ("numpy.core", "numpy._core"):
        allowed[(f"{module}.multiarray", "_reconstruct")] = multiarray._reconstruct
        # Protocol-5 array pickles rebuild through _frombuffer; it only copies bytes.
        allowed[(f"{module}.numeric", "_frombuffer")] = numeric._frombuffer
    return allowed


class _BatchUnpickler(pickle.Unpickler):
    """Unpickler that resolves only numpy-array globals and refuses all others."""

    _allowed = _allowed_globals()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise DataError(
                f"refusing to load global '{module}.{name}'; a CIFAR batch holds only numpy arrays"
            ) from None


def _unpickle(path: Path) -> dict[str, Any]:
    """Safely load one batch file into a dict with str keys."""
    try:
        with path.open("rb") as handle:
            obj = _BatchUnpickler(handle, encoding="bytes").load()
    except DataError as exc:
        raise DataError(f"cifar10: {path}: {exc}") from None
    except Exception as exc:  # pickle/numpy raise many types for corrupt files
        raise DataError(f"cifar10: cannot read {path}: {one_line(exc)}") from exc
    if not isinstance(obj, dict):
        raise DataError(f"cifar10: {path} holds a {type(obj).__name__}, expected a dict")
    # Python 2 pickles decoded with encoding="bytes" have bytes keys; be lenient about both.
    return {(k.decode("latin1") if isinstance(k, bytes) else str(k)): v for k, v in obj.items()}


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    batch = _unpickle(path)
    for key in ("data", "labels"):
        if key not in batch:
            raise DataError(f"cifar10: {path} has no '{key}' entry")
    data = batch["data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2:
        raise DataError(f"cifar10: {path}: 'data' must be a uint8 (N, {_ROW}) array")
    if data.shape[1] != _ROW:
        raise DataError(f"cifar10: {path}: 'data' has shape {data.shape}, expected (N, {_ROW})")
    labels = _labels(path, batch["labels"], data.shape[0])
    return data.reshape(-1, _CHANNELS, _SIZE, _SIZE), labels


def _labels(path: Path, raw: Any, count: int) -> np.ndarray:
    try:
        labels = np.asarray(raw)
    except Exception as exc:
        raise DataError(f"cifar10: {path}: unreadable 'labels': {one_line(exc)}") from exc
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise DataError(f"cifar10: {path}: 'labels' must be a flat list of integers")
    if labels.shape[0] != count:
        raise DataError(f"cifar10: {path}: {labels.shape[0]} labels for {count} images")
    if count and (labels.min() < 0 or labels.max() >= len(CLASS_NAMES)):
        raise DataError(
            f"cifar10: {path}: labels must lie in [0, {len(CLASS_NAMES)}), "
            f"found {int(labels.min())}..{int(labels.max())}"
        )
    return labels.astype(np.int64)


def _class_names(folder: Path) -> tuple[str, ...]:
    path = folder / META_FILE
    if not path.is_file():
        return CLASS_NAMES
    names = _unpickle(path).get("label_names")
    if not isinstance(names, list | tuple) or len(names) != len(CLASS_NAMES):
        raise DataError(f"cifar10: {path}: 'label_names' must list {len(CLASS_NAMES)} names")
    if not all(isinstance(n, bytes | str) for n in names):
        raise DataError(f"cifar10: {path}: 'label_names' must hold strings")
    return tuple(n.decode("latin1") if isinstance(n, bytes) else n for n in names)


def find_batch_folder(data_dir: Path) -> Path:
    """Accept the batch folder itself or a parent that contains ``cifar-10-batches-py``.

    Raises:
        DataError: If neither holds the batch files.
    """
    if not data_dir.is_dir():
        raise DataError(f"cifar10: {data_dir} is not a folder; expected the folder '{FOLDER_NAME}'")
    nested = data_dir / FOLDER_NAME
    folder = nested if nested.is_dir() else data_dir
    for name in (*TRAIN_FILES, TEST_FILE):
        if not (folder / name).is_file():
            raise DataError(
                f"cifar10: no file '{name}' in {folder}; expected the python-pickle batch "
                f"folder '{FOLDER_NAME}'"
            )
    return folder


def read(data_dir: Path | None, *, seed: int, test_fraction: float) -> RawSplits:
    """Read the five training batches and the test batch.

    Args:
        data_dir: The batch folder or its parent.
        seed: Unused (CIFAR-10 has a fixed test split).
        test_fraction: Unused, for the same reason.

    Returns:
        Images (N, 3, 32, 32) scaled to [0, 1] and labels 0..9.

    Raises:
        DataError: If a file is missing, corrupt, unsafe or malformed.
    """
    del seed, test_fraction  # the official split is used as is
    if data_dir is None:
        raise DataError("cifar10: --data-dir is needed (path to 'cifar-10-batches-py')")
    folder = find_batch_folder(data_dir)
    class_names = _class_names(folder)
    train = [_read_batch(folder / name) for name in TRAIN_FILES]
    x_test, y_test = _read_batch(folder / TEST_FILE)
    x_train = np.concatenate([x for x, _ in train])
    y_train = np.concatenate([y for _, y in train])
    return RawSplits(uint8_to_unit(x_train), y_train, uint8_to_unit(x_test), y_test, class_names)

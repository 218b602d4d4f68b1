"""The :class:`Dataset` container, the :func:`load_dataset` dispatcher and normalisation.

Every reader returns a :class:`RawSplits` of float32 numpy arrays on the [0, 1] scale in
(N, C, H, W) layout; this module applies ``limit``, computes the per-channel train
statistics, normalises both splits with them and wraps the result in a :class:`Dataset`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from sklearn.model_selection import train_test_split

from archsearch.errors import DataError

DATASET_NAMES: tuple[str, ...] = ("digits", "cifar10", "npz", "folder")

# Examples per chunk when computing statistics: bounds the float64 temporaries to a few
# tens of MB even for CIFAR-sized inputs.
_STATS_CHUNK = 4096


class RawSplits(NamedTuple):
    """What a reader hands back: float32 arrays in [0, 1], (N, C, H, W), int64 labels."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]


@dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """A normalised image-classification dataset held in memory as tensors.

    ``eq=False`` because tensor fields cannot be compared with ``==`` into a single bool;
    equality is identity. ``repr`` is replaced by :meth:`describe` so printing a dataset
    never dumps its pixels.

    Attributes:
        name: Reader that produced it (one of :data:`DATASET_NAMES`).
        x_train: float32 (N, C, H, W), normalised with the train per-channel mean/std.
        y_train: int64 (N,).
        x_test: float32 (M, C, H, W), normalised with the *train* statistics.
        y_test: int64 (M,).
        num_classes: Number of classes K; labels lie in [0, K).
        class_names: One name per class.
        mean: Per-channel mean of the raw train pixels on the [0, 1] scale.
        std: Per-channel standard deviation used for normalisation (never 0).
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    class_names: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __post_init__(self) -> None:
        for split, x, y in (
            ("train", self.x_train, self.y_train),
            ("test", self.x_test, self.y_test),
        ):
            if x.dim() != 4:
                raise DataError(
                    f"{self.name}: x_{split} must be (N, C, H, W), got {tuple(x.shape)}"
                )
            if y.dim() != 1 or y.shape[0] != x.shape[0]:
                raise DataError(
                    f"{self.name}: y_{split} has shape {tuple(y.shape)}; "
                    f"expected ({x.shape[0]},) to match x_{split}"
                )
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise DataError(
                f"{self.name}: train images are {_chw(self.x_train)} but test images are "
                f"{_chw(self.x_test)}"
            )

    @property
    def in_channels(self) -> int:
        """Number of image channels C."""
        return int(self.x_train.shape[1])

    @property
    def image_size(self) -> int:
        """Side length H of the (square) images.

        Raises:
            DataError: If the images are not square.
        """
        height, width = int(self.x_train.shape[2]), int(self.x_train.shape[3])
        if height != width:
            raise DataError(f"{self.name}: images are {height}x{width}; square images are required")
        return height

    def describe(self) -> str:
        """One line such as ``"digits: 1437 train / 360 test, 1x8x8, 10 classes"``."""
        return (
            f"{self.name}: {self.x_train.shape[0]} train / {self.x_test.shape[0]} test, "
            f"{_chw(self.x_train)}, {self.num_classes} classes"
        )

    def __repr__(self) -> str:
        return f"Dataset({self.describe()})"


def _chw(x: torch.Tensor) -> str:
    return "x".join(str(int(s)) for s in x.shape[1:])


def load_dataset(
    name: str,
    data_dir: str | Path | None = None,
    *,
    seed: int = 0,
    test_fraction: float = 0.2,
    limit: int | None = None,
) -> Dataset:
    """Read a dataset, split it if needed and normalise it with the train statistics.

    Args:
        name: One of :data:`DATASET_NAMES`.
        data_dir: Where the data lives (file or folder, depending on the reader); must be
            None for ``digits`` and is required for every other reader.
        seed: Seed for the train/test split and for ``limit``'s shuffle.
        test_fraction: Fraction held out as test set when the data has no test split
            (ignored by ``cifar10``, which has its own).
        limit: If given, keep only this many training examples (after a seeded shuffle).

    Returns:
        The normalised :class:`Dataset`.

    Raises:
        DataError: On an unknown name, a missing or malformed input, or bad arguments.
    """
    key = str(name).strip().lower()
    if key not in DATASET_NAMES:
        raise DataError(f"unknown dataset {name!r}; valid names: {', '.join(DATASET_NAMES)}")
    _check_options(seed, test_fraction, limit)
    path = _resolve_data_dir(key, data_dir)
    reader = importlib.import_module(f"archsearch.data.{key}")
    raw: RawSplits = reader.read(path, seed=seed, test_fraction=test_fraction)
    _check_raw(key, raw)
    x_train, y_train = raw.x_train, raw.y_train
    if limit is not None:
        x_train, y_train = _apply_limit(x_train, y_train, limit, seed)
    return _build(key, raw._replace(x_train=x_train, y_train=y_train))


def _check_options(seed: int, test_fraction: float, limit: int | None) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise DataError(f"seed must be an integer, got {seed!r}")
    if not isinstance(test_fraction, int | float) or not 0.0 < float(test_fraction) < 1.0:
        raise DataError(f"test_fraction must be strictly between 0 and 1, got {test_fraction!r}")
    if limit is not None and (
        isinstance(limit, bool) or not isinstance(limit, int | np.integer) or limit < 1
    ):
        raise DataError(f"limit must be a positive integer or None, got {limit!r}")


def _resolve_data_dir(name: str, data_dir: str | Path | None) -> Path | None:
    if name == "digits":
        if data_dir is not None:
            raise DataError("digits is built in; --data-dir is not used")
        return None
    if data_dir is None or str(data_dir) == "":
        raise DataError(f"{name}: --data-dir is needed (path to the {name} data)")
    path = Path(data_dir).expanduser()
    if not path.exists():
        raise DataError(f"{name}: data path {path} does not exist")
    return path


def _check_raw(name: str, raw: RawSplits) -> None:
    """Guard the reader contract so a reader bug surfaces here, not deep in training."""
    if raw.x_train.shape[0] == 0:
        raise DataError(f"{name}: the training set is empty")
    if raw.x_test.shape[0] == 0:
        raise DataError(f"{name}: the test set is empty")
    num_classes = len(raw.class_names)
    for split, y in (("train", raw.y_train), ("test", raw.y_test)):
        if y.size and (y.min() < 0 or y.max() >= num_classes):
            raise DataError(
                f"{name}: {split} labels must lie in [0, {num_classes}), "
                f"found {int(y.min())}..{int(y.max())}"
            )


def _apply_limit(
    x: np.ndarray, y: np.ndarray, limit: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(x.shape[0])[: int(limit)]
    return x[order], y[order]


def _build(name: str, raw: RawSplits) -> Dataset:
    mean, std = channel_stats(raw.x_train)
    x_train = _normalise(raw.x_train, mean, std)
    x_test = _normalise(raw.x_test, mean, std)
    return Dataset(
        name=name,
        x_train=torch.from_numpy(x_train),
        y_train=torch.from_numpy(np.ascontiguousarray(raw.y_train, dtype=np.int64)),
        x_test=torch.from_numpy(x_test),
        y_test=torch.from_numpy(np.ascontiguousarray(raw.y_test, dtype=np.int64)),
        num_classes=len(raw.class_names),
        class_names=tuple(raw.class_names),
        mean=tuple(float(m) for m in mean),
        std=tuple(float(s) for s in std),
    )


def channel_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation of an (N, C, H, W) array, in float64.

    Two chunked passes keep the float64 temporaries small and avoid the cancellation of
    the one-pass ``E[x^2] - E[x]^2`` formula. A zero std is replaced by 1 so that
    normalising a constant channel leaves it finite.

    Args:
        x: Array of shape (N, C, H, W).

    Returns:
        ``(mean, std)``, each of shape (C,).
    """
    count = x.shape[0] * x.shape[2] * x.shape[3]
    total = np.zeros(x.shape[1], dtype=np.float64)
    for start in range(0, x.shape[0], _STATS_CHUNK):
        total += x[start : start + _STATS_CHUNK].sum(axis=(0, 2, 3), dtype=np.float64)
    mean = total / count
    squares = np.zeros(x.shape[1], dtype=np.float64)
    for start in range(0, x.shape[0], _STATS_CHUNK):
        centred = x[start : start + _STATS_CHUNK].astype(np.float64) - mean[None, :, None, None]
        squares += np.square(centred).sum(axis=(0, 2, 3))
    std = np.sqrt(squares / count)
    std[std < 1e-12] = 1.0
    return mean, std


def _normalise(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    out = np.array(x, dtype=np.float32, copy=True, order="C")
    out -= mean.astype(np.float32)[None, :, None, None]
    out /= std.astype(np.float32)[None, :, None, None]
    return out


def stratified_split(
    name: str, x: np.ndarray, y: np.ndarray, *, seed: int, test_fraction: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Split ``(x, y)`` into train and test, stratified by label, reproducibly.

    Args:
        name: Dataset name for error messages.
        x: Examples, first axis N.
        y: Integer labels (N,).
        seed: ``random_state`` of the split.
        test_fraction: Fraction of examples held out for testing.

    Returns:
        ``(x_train, x_test, y_train, y_test)``.

    Raises:
        DataError: If the data is too small or too unbalanced to stratify.
    """
    try:
        x_train, x_test, y_train, y_test = train_test_split(
            x, y, test_size=test_fraction, random_state=seed, stratify=y
        )
    except ValueError as exc:
        raise DataError(
            f"{name}: cannot make a stratified {test_fraction:g} test split of {len(y)} "
            f"examples in {len(np.unique(y))} classes ({one_line(exc)})"
        ) from exc
    return x_train, x_test, y_train, y_test


def uint8_to_unit(x: np.ndarray) -> np.ndarray:
    """Map a uint8 array to float32 in [0, 1] without a float64 temporary."""
    out = x.astype(np.float32)
    out /= 255.0
    return out


def one_line(exc: BaseException) -> str:
    """``"TypeName: first line of message"`` so wrapped errors stay one line."""
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__

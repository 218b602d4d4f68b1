"""scikit-learn's built-in 8x8 handwritten digits (1797 images, ships with sklearn)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits

from archsearch.data._dataset import RawSplits, stratified_split

# load_digits stores pixel intensities as integers 0..16.
_MAX_PIXEL = 16.0


def read(data_dir: Path | None, *, seed: int, test_fraction: float) -> RawSplits:
    """Load the digits and split them stratified by label.

    Args:
        data_dir: Unused (always None; checked by the dispatcher).
        seed: ``random_state`` of the train/test split.
        test_fraction: Fraction held out for testing.

    Returns:
        Images (N, 1, 8, 8) scaled to [0, 1] and their labels 0..9.
    """
    del data_dir  # built in; the dispatcher already rejected a data_dir
    bunch = load_digits()
    x = (np.asarray(bunch.images, dtype=np.float32) / _MAX_PIXEL)[:, None, :, :]
    y = np.asarray(bunch.target, dtype=np.int64)
    x_train, x_test, y_train, y_test = stratified_split(
        "digits", x, y, seed=seed, test_fraction=test_fraction
    )
    names = tuple(str(int(t)) for t in bunch.target_names)
    return RawSplits(x_train, y_train, x_test, y_test, names)

"""Datasets (built-in digits, CIFAR-10, ``.npz`` archives, image folders) and loaders.

``load_dataset`` returns a :class:`Dataset` of normalised in-memory tensors; ``TensorLoader``
batches them with reproducible shuffling and augmentation.
"""

from __future__ import annotations

from archsearch.data._dataset import DATASET_NAMES, Dataset, load_dataset
from archsearch.data.loader import TensorLoader, cutout, split_in_half

__all__ = [
    "DATASET_NAMES",
    "Dataset",
    "TensorLoader",
    "cutout",
    "load_dataset",
    "split_in_half",
]

"""Images in class folders, read with Pillow.

Two layouts are accepted::

    data_dir/train/<class>/*.png   and   data_dir/test/<class>/*.png
    data_dir/<class>/*.png          (split into train/test here, stratified)

Class names are the sorted folder names. All images must share one size; they are
converted to "L" when every image is grayscale and to "RGB" otherwise.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from archsearch.data._dataset import RawSplits, one_line, stratified_split, uint8_to_unit
from archsearch.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
# Pillow modes with a single luminance channel (plus alpha for "LA").
_GRAY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"})

_Listing = list[tuple[Path, int]]


def _subfolders(folder: Path) -> list[Path]:
    # Hidden folders (.git, .ipynb_checkpoints) are never classes.
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _image_files(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
    )


def _list_classes(root: Path, class_names: tuple[str, ...] | None = None) -> _Listing:
    """List ``(file, label)`` pairs under ``root/<class>/``.

    Args:
        root: Folder whose subfolders are classes.
        class_names: Known classes (from the train folder); None to take them from ``root``.
    """
    classes = _subfolders(root)
    if not classes:
        raise DataError(f"folder: no class folders in {root}; expected {root}/<class>/*.png")
    names = class_names or tuple(p.name for p in classes)
    listing: _Listing = []
    for class_dir in classes:
        if class_dir.name not in names:
            raise DataError(
                f"folder: class folder {class_dir} does not exist in the train folder "
                f"(train classes: {', '.join(names)})"
            )
        files = _image_files(class_dir)
        if not files:
            raise DataError(
                f"folder: class folder {class_dir} has no images ({', '.join(IMAGE_SUFFIXES)})"
            )
        label = names.index(class_dir.name)
        listing.extend((path, label) for path in files)
    return listing


def _open(path: Path) -> Image.Image:
    """Fully decode one image so that truncated or fake files fail here, by name."""
    try:
        with Image.open(path) as image:
            image.load()
            return image.copy()
    except Exception as exc:  # Pillow raises OSError, SyntaxError, ValueError, ...
        raise DataError(f"folder: cannot read image {path}: {one_line(exc)}") from exc


def _read_images(paths: list[Path]) -> np.ndarray:
    """Decode, size-check and stack images into uint8 (N, C, H, W)."""
    images = [_open(path) for path in paths]
    ref_path, ref_size = paths[0], images[0].size
    for path, image in zip(paths, images, strict=True):
        if image.size != ref_size:
            raise DataError(
                f"folder: image {path} is {image.size[0]}x{image.size[1]} but {ref_path} is "
                f"{ref_size[0]}x{ref_size[1]}; all images must share one size"
            )
    mode = "L" if all(image.mode in _GRAY_MODES for image in images) else "RGB"
    arrays = [np.asarray(image.convert(mode), dtype=np.uint8) for image in images]
    stacked = np.stack(arrays)
    if mode == "L":
        return stacked[:, None, :, :]
    return np.ascontiguousarray(stacked.transpose(0, 3, 1, 2))


def _layout(data_dir: Path) -> tuple[_Listing, _Listing | None, tuple[str, ...]]:
    """Return train listing, test listing (None if it must be split) and class names."""
    if not data_dir.is_dir():
        raise DataError(f"folder: {data_dir} is not a folder of class folders")
    train_dir, test_dir = data_dir / "train", data_dir / "test"
    if train_dir.is_dir() != test_dir.is_dir():
        present, absent = (train_dir, test_dir) if train_dir.is_dir() else (test_dir, train_dir)
        raise DataError(
            f"folder: {present} exists but {absent} does not; give both train/ and test/ "
            "or only class folders"
        )
    if train_dir.is_dir():
        names = tuple(p.name for p in _subfolders(train_dir))
        train = _list_classes(train_dir)
        return train, _list_classes(test_dir, names), names
    names = tuple(p.name for p in _subfolders(data_dir))
    return _list_classes(data_dir), None, names


def read(data_dir: Path | None, *, seed: int, test_fraction: float) -> RawSplits:
    """Read an image-class folder tree.

    Args:
        data_dir: Root of the tree (either layout).
        seed: ``random_state`` of the split for the single-folder layout.
        test_fraction: Fraction held out for the single-folder layout.

    Returns:
        Images (N, C, H, W) in [0, 1] with C = 1 or 3, and labels by sorted class name.

    Raises:
        DataError: On a missing/empty folder, an unreadable image or mismatched sizes.
    """
    if data_dir is None:
        raise DataError("folder: --data-dir is needed (path to the image-class folders)")
    train, test, names = _layout(data_dir)
    listing = train + (test or [])
    # Decode both splits together so the size check and the L/RGB choice cover all images.
    x = _read_images([path for path, _ in listing])
    y = np.array([label for _, label in listing], dtype=np.int64)
    if test is None:
        x_train, x_test, y_train, y_test = stratified_split(
            "folder", x, y, seed=seed, test_fraction=test_fraction
        )
    else:
        n_train = len(train)
        x_train, x_test, y_train, y_test = x[:n_train], x[n_train:], y[:n_train], y[n_train:]
    return RawSplits(uint8_to_unit(x_train), y_train, uint8_to_unit(x_test), y_test, names)

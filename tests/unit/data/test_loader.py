"""Tests for ``TensorLoader``, ``split_in_half`` and the augmentations."""

from __future__ import annotations

import pytest
import torch

from archsearch.data import TensorLoader, cutout, split_in_half
from archsearch.data.loader import random_crop, random_flip
from archsearch.errors import DataError


def _data(count: int = 23, size: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    # Each image is filled with its own index so batches can be traced back to examples.
    x = torch.arange(count, dtype=torch.float32).view(count, 1, 1, 1).expand(count, 2, size, size)
    return x.contiguous(), torch.arange(count)


def _epoch(loader: TensorLoader) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = zip(*loader, strict=True)
    return torch.cat(xs), torch.cat(ys)


def test_covers_every_example_once_with_batch_count() -> None:
    x, y = _data()
    loader = TensorLoader(x, y, batch_size=5, seed=1)
    assert len(loader) == 5
    batches = list(loader)
    assert [b[0].shape[0] for b in batches] == [5, 5, 5, 5, 3]
    xs, ys = _epoch(loader)
    assert sorted(ys.tolist()) == list(range(23))
    assert torch.equal(xs[:, 0, 0, 0].long(), ys)  # images stay paired with labels


def test_drop_last_and_no_shuffle() -> None:
    x, y = _data()
    loader = TensorLoader(x, y, batch_size=5, shuffle=False, drop_last=True)
    assert len(loader) == 4
    _, ys = _epoch(loader)
    assert ys.tolist() == list(range(20))


def test_reproducible_and_different_across_epochs() -> None:
    x, y = _data()
    first = TensorLoader(x, y, batch_size=4, seed=7)
    second = TensorLoader(x, y, batch_size=4, seed=7)
    epoch0, epoch1 = _epoch(first)[1], _epoch(first)[1]
    assert not torch.equal(epoch0, epoch1)
    assert torch.equal(_epoch(second)[1], epoch0)
    assert torch.equal(_epoch(second)[1], epoch1)
    other_seed = TensorLoader(x, y, batch_size=4, seed=100)
    assert not torch.equal(_epoch(other_seed)[1], epoch0)


def test_set_epoch_reproduces_an_epoch() -> None:
    x, y = _data()
    loader = TensorLoader(x, y, batch_size=4, seed=3, flip=True, crop_padding=2, cutout_length=2)
    runs = [_epoch(loader) for _ in range(3)]
    fresh = TensorLoader(x, y, batch_size=4, seed=3, flip=True, crop_padding=2, cutout_length=2)
    fresh.set_epoch(2)
    replay = _epoch(fresh)
    assert torch.equal(replay[0], runs[2][0]) and torch.equal(replay[1], runs[2][1])


def test_bad_settings() -> None:
    x, y = _data()
    with pytest.raises(DataError, match="batch_size"):
        TensorLoader(x, y, batch_size=0)
    with pytest.raises(DataError, match="first dimension"):
        TensorLoader(x, y[:-1], batch_size=2)
    with pytest.raises(DataError, match="image batch"):
        TensorLoader(torch.zeros(4, 3), torch.zeros(4), batch_size=2, flip=True)


def test_augmentation_does_not_touch_source() -> None:
    x, y = _data()
    before = x.clone()
    loader = TensorLoader(x, y, batch_size=8, crop_padding=2, flip=True, cutout_length=3)
    xs, ys = _epoch(loader)
    assert torch.equal(x, before)
    assert xs.shape == x.shape
    # Something was zeroed by crop padding or cutout in at least one non-zero image.
    assert bool((xs[ys != 0] == 0).any())


def test_cutout_zeros_a_square() -> None:
    x = torch.ones(16, 3, 10, 10)
    out = cutout(x, 4, torch.Generator().manual_seed(0))
    assert torch.equal(x, torch.ones(16, 3, 10, 10))
    for image in out:
        zero = image[0] == 0
        assert torch.equal(zero, image[1] == 0) and torch.equal(zero, image[2] == 0)
        rows, cols = zero.nonzero(as_tuple=True)
        height = int(rows.max() - rows.min() + 1)
        width = int(cols.max() - cols.min() + 1)
        assert height <= 4 and width <= 4
        assert int(zero.sum()) == height * width  # a filled rectangle, not scattered pixels
    # Away from the borders the square is the full 4x4.
    assert (out[:, 0] == 0).sum(dim=(1, 2)).max() == 16


def test_cutout_zero_length_is_identity() -> None:
    x = torch.randn(2, 1, 5, 5)
    out = cutout(x, 0, torch.Generator())
    assert torch.equal(out, x) and out is not x


def test_crop_keeps_shape_and_shifts_content() -> None:
    x = torch.arange(2 * 8 * 8, dtype=torch.float32).view(1, 2, 8, 8).repeat(32, 1, 1, 1)
    out = random_crop(x, 2, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    # Every output is one of the 5x5 windows of the zero-padded image, and they vary.
    padded = torch.nn.functional.pad(x[0], (2, 2, 2, 2))
    windows = [padded[:, i : i + 8, j : j + 8] for i in range(5) for j in range(5)]
    picks = [next(k for k, w in enumerate(windows) if torch.equal(o, w)) for o in out]
    assert len(set(picks)) > 5


def test_flip_mirrors_some_images() -> None:
    x = torch.arange(6, dtype=torch.float32).view(1, 1, 1, 6).repeat(20, 1, 1, 1)
    out = random_flip(x, torch.Generator().manual_seed(0))
    flipped = [torch.equal(o, x[0].flip(2)) for o in out]
    kept = [torch.equal(o, x[0]) for o in out]
    assert any(flipped) and any(kept) and all(f or k for f, k in zip(flipped, kept, strict=True))


def test_split_in_half() -> None:
    x, y = _data(11)
    (xa, ya), (xb, yb) = split_in_half(x, y, seed=4)
    assert ya.shape[0] == 5 and yb.shape[0] == 6
    assert sorted(ya.tolist() + yb.tolist()) == list(range(11))
    assert torch.equal(xa[:, 0, 0, 0].long(), ya)
    (_, ya2), _ = split_in_half(x, y, seed=4)
    (_, ya3), _ = split_in_half(x, y, seed=5)
    assert torch.equal(ya, ya2) and not torch.equal(ya, ya3)
    with pytest.raises(DataError):
        split_in_half(x[:1], y[:1])


def test_state_dict_continues_the_same_sequence() -> None:
    x, y = _data()
    loader = TensorLoader(x, y, batch_size=4, seed=3, flip=True, cutout_length=2)
    _epoch(loader)
    state = loader.state_dict()
    assert state == {"seed": 3, "epoch": 1}
    expected = _epoch(loader)
    fresh = TensorLoader(x, y, batch_size=4, seed=3, flip=True, cutout_length=2)
    fresh.load_state_dict(state)
    replay = _epoch(fresh)
    assert torch.equal(replay[0], expected[0]) and torch.equal(replay[1], expected[1])
    with pytest.raises(DataError, match="seed 3"):
        TensorLoader(x, y, batch_size=4, seed=4).load_state_dict(state)
    with pytest.raises(DataError, match="not a loader state"):
        fresh.load_state_dict({"epoch": 1})

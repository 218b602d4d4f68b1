"""In-memory mini-batching with reproducible shuffling and augmentation.

The whole dataset already lives in tensors, so a ``torch.utils.data.DataLoader`` (workers,
collation) would only add overhead. :class:`TensorLoader` indexes the tensors directly
and augments only the batch it is about to yield.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F

from archsearch.errors import DataError

Batch = tuple[torch.Tensor, torch.Tensor]


def _generator(seed: int) -> torch.Generator:
    gen = torch.Generator(device="cpu")
    gen.manual_seed(int(seed))
    return gen


def _check_pair(x: torch.Tensor, y: torch.Tensor) -> int:
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise DataError("x and y must be torch tensors")
    if x.dim() == 0 or y.dim() == 0 or x.shape[0] != y.shape[0]:
        raise DataError(
            f"x and y must have the same first dimension, got {tuple(x.shape)} and {tuple(y.shape)}"
        )
    return int(x.shape[0])


def split_in_half(x: torch.Tensor, y: torch.Tensor, *, seed: int = 0) -> tuple[Batch, Batch]:
    """Randomly split examples into two halves (DARTS: weight half and architecture half).

    Args:
        x: Examples, first dimension N (N >= 2).
        y: Labels (N,).
        seed: Seed of the permutation; the same seed gives the same halves.

    Returns:
        ``((x_a, y_a), (x_b, y_b))`` with ``N // 2`` and ``N - N // 2`` examples.

    Raises:
        DataError: If the shapes disagree or there are fewer than two examples.
    """
    count = _check_pair(x, y)
    if count < 2:
        raise DataError(f"cannot split {count} example(s) in half; need at least 2")
    order = torch.randperm(count, generator=_generator(seed)).to(x.device)
    first, second = order[: count // 2], order[count // 2 :]
    return (x[first], y[first.to(y.device)]), (x[second], y[second.to(y.device)])


def _check_images(x: torch.Tensor, what: str) -> None:
    if x.dim() != 4:
        raise DataError(f"{what} needs an image batch (B, C, H, W), got shape {tuple(x.shape)}")


def cutout(x: torch.Tensor, length: int, generator: torch.Generator) -> torch.Tensor:
    """Zero a ``length`` x ``length`` square per image, centred on a random pixel.

    The square is clipped at the borders, so near an edge less than ``length**2`` pixels
    are zeroed. All channels are zeroed at the same place.

    Args:
        x: Batch (B, C, H, W); not modified.
        length: Side of the square; 0 leaves the images unchanged.
        generator: Source of the random centres.

    Returns:
        A new tensor with the squares zeroed.
    """
    _check_images(x, "cutout")
    if length < 0:
        raise DataError(f"cutout length must be >= 0, got {length}")
    if length == 0 or x.shape[0] == 0:
        return x.clone()
    batch, _, height, width = x.shape
    centre_y = torch.randint(0, height, (batch,), generator=generator).to(x.device)
    centre_x = torch.randint(0, width, (batch,), generator=generator).to(x.device)
    rows = _span_mask(centre_y, length, height)
    cols = _span_mask(centre_x, length, width)
    mask = rows[:, :, None] & cols[:, None, :]  # (B, H, W)
    return x.masked_fill(mask[:, None, :, :], 0.0)


def _span_mask(centre: torch.Tensor, length: int, size: int) -> torch.Tensor:
    """(B, size) bool mask of ``[centre - length // 2, centre - length // 2 + length)``."""
    start = centre - length // 2
    positions = torch.arange(size, device=centre.device)[None, :]
    return (positions >= start[:, None]) & (positions < (start + length)[:, None])


def random_crop(x: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Zero-pad each image by ``padding`` and crop back to (H, W) at a random offset.

    Args:
        x: Batch (B, C, H, W); not modified.
        padding: Pixels of zero padding on every side; 0 returns a copy.
        generator: Source of the random offsets.

    Returns:
        A new tensor of the same shape.
    """
    _check_images(x, "random crop")
    if padding < 0:
        raise DataError(f"crop padding must be >= 0, got {padding}")
    if padding == 0 or x.shape[0] == 0:
        return x.clone()
    batch, channels, height, width = x.shape
    padded = F.pad(x, (padding, padding, padding, padding))
    top = torch.randint(0, 2 * padding + 1, (batch,), generator=generator).to(x.device)
    left = torch.randint(0, 2 * padding + 1, (batch,), generator=generator).to(x.device)
    rows = top[:, None] + torch.arange(height, device=x.device)[None, :]  # (B, H)
    cols = left[:, None] + torch.arange(width, device=x.device)[None, :]  # (B, W)
    # Advanced indexing broadcasts these four index tensors to (B, C, H, W) in one gather.
    b_idx = torch.arange(batch, device=x.device)[:, None, None, None]
    c_idx = torch.arange(channels, device=x.device)[None, :, None, None]
    return padded[b_idx, c_idx, rows[:, None, :, None], cols[:, None, None, :]]


def random_flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mirror each image horizontally with probability 1/2; returns a new tensor."""
    _check_images(x, "horizontal flip")
    flip = torch.rand(x.shape[0], generator=generator).to(x.device) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(3), x)


class TensorLoader:
    """Iterate over ``(x, y)`` in mini-batches, reshuffled and re-augmented every epoch.

    Epoch ``e`` draws its order and its augmentation from a generator seeded with
    ``seed + e``; each call to ``iter()`` starts the next epoch, so iterating twice gives
    two different orders, and the whole sequence is reproducible. :meth:`set_epoch`
    chooses the epoch explicitly (e.g. when resuming).

    Args:
        x: Examples, first dimension N (images (N, C, H, W) if augmenting).
        y: Labels (N,).
        batch_size: Examples per batch (>= 1).
        shuffle: Draw a new random order each epoch; otherwise keep the stored order.
        seed: Base seed.
        drop_last: Drop the final batch if it is smaller than ``batch_size``.
        crop_padding: Random crop with this much zero padding (0 = off).
        flip: Random horizontal flip.
        cutout_length: Cutout square side (0 = off).

    Raises:
        DataError: On mismatched tensors or out-of-range settings.
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        batch_size: int,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
        crop_padding: int = 0,
        flip: bool = False,
        cutout_length: int = 0,
    ) -> None:
        self._count = _check_pair(x, y)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise DataError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        if crop_padding < 0 or cutout_length < 0:
            raise DataError(
                f"crop_padding and cutout_length must be >= 0, got {crop_padding} and "
                f"{cutout_length}"
            )
        if crop_padding or flip or cutout_length:
            _check_images(x, "augmentation")
        self.x, self.y = x, y
        self.batch_size = batch_size
        self.shuffle, self.seed, self.drop_last = shuffle, int(seed), drop_last
        self.crop_padding, self.flip, self.cutout_length = crop_padding, flip, cutout_length
        self.epoch = 0

    def __len__(self) -> int:
        if self.drop_last:
            return self._count // self.batch_size
        return -(-self._count // self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Make the next ``iter()`` produce epoch ``epoch`` (then continue from there)."""
        if epoch < 0:
            raise DataError(f"epoch must be >= 0, got {epoch}")
        self.epoch = int(epoch)

    def state_dict(self) -> dict[str, int]:
        """What a checkpoint needs to continue the same sequence: the base seed and the
        epoch the next ``iter()`` produces (each epoch's order and augmentation draw only
        from a generator seeded with ``seed + epoch``, so nothing else is carried over)."""
        return {"seed": self.seed, "epoch": self.epoch}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue from :meth:`state_dict`; a different base seed is refused, because the
        restored loader would then not produce the interrupted run's batches."""
        try:
            seed, epoch = int(state["seed"]), int(state["epoch"])
        except (KeyError, TypeError, ValueError):
            raise DataError(f"not a loader state: {state!r}") from None
        if seed != self.seed:
            raise DataError(f"loader state was saved with seed {seed}, this loader has seed "
                            f"{self.seed}")
        self.set_epoch(epoch)

    def __iter__(self) -> Iterator[Batch]:
        # Advance the epoch when iteration starts, not when it ends, so an interrupted
        # epoch never replays the same order.
        epoch = self.epoch
        self.epoch += 1
        return self._batches(epoch)

    def _batches(self, epoch: int) -> Iterator[Batch]:
        gen = _generator(self.seed + epoch)
        if self.shuffle:
            order = torch.randperm(self._count, generator=gen)
        else:
            order = torch.arange(self._count)
        for batch in range(len(self)):
            idx = order[batch * self.batch_size : (batch + 1) * self.batch_size]
            xb = self.x[idx.to(self.x.device)]
            yield self._augment(xb, gen), self.y[idx.to(self.y.device)]

    def _augment(self, xb: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        if self.crop_padding:
            xb = random_crop(xb, self.crop_padding, gen)
        if self.flip:
            xb = random_flip(xb, gen)
        if self.cutout_length:
            xb = cutout(xb, self.cutout_length, gen)
        return xb

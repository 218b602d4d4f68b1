"""CheckpointedFit: a checkpoint per epoch, exact resume, best-vs-last weights, NaN stops."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from archsearch.data import TensorLoader
from archsearch.errors import ConfigError
from archsearch.train import TRAIN_CHECKPOINT, CheckpointedFit, Trainer, load_checkpoint
from archsearch.train._resumable import TRAIN_CHECKPOINT_KEYS

EPOCHS = 4


class _Net(nn.Module):
    """Dropout draws from the global torch RNG, like drop-path: resume must restore it."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.5),
                                  nn.Linear(16, 3))
        self.poisoned = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        return out * math.nan if self.poisoned else out


def _data(n: int = 48) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 1, 2, 2, generator=g)
    return x, (x.flatten(1) @ torch.randn(4, 3, generator=g)).argmax(1)


def _fit(path: Path, *, val: bool = True) -> CheckpointedFit:
    x, y = _data()
    torch.manual_seed(1)
    model = _Net()
    return CheckpointedFit(Trainer(epochs=EPOCHS, lr=0.1, progress=False), model,
                           TensorLoader(x, y, batch_size=8, seed=3), path=path, seed=5,
                           val_data=(x[:16], y[:16]) if val else None, meta={"note": "tiny"})


def _without_seconds(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in history]


class _Stop(Exception):
    pass


def _interrupt_after(epoch: int) -> Any:
    def on_epoch(record: dict[str, Any]) -> None:
        if record["epoch"] == epoch:
            raise _Stop  # like Ctrl-C right after the checkpoint of `epoch` was written

    return on_epoch


def test_resumed_fit_ends_exactly_like_an_uninterrupted_one(tmp_path: Path) -> None:
    straight = _fit(tmp_path / "a.pt")
    straight.run()
    cut = _fit(tmp_path / "b.pt")
    with pytest.raises(_Stop):
        cut.run(on_epoch=_interrupt_after(2))
    resumed = _fit(tmp_path / "b.pt")
    doc = load_checkpoint(tmp_path / "b.pt", kind=TRAIN_CHECKPOINT, keys=TRAIN_CHECKPOINT_KEYS)
    resumed.restore(doc, source="b.pt")
    assert resumed.epoch == 2
    seen: list[int] = []
    history = resumed.run(on_epoch=lambda r: seen.append(r["epoch"]))
    assert seen == [3, 4]  # only the remaining epochs run (and are logged)
    assert _without_seconds(history) == _without_seconds(straight.history)
    for key, value in straight.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[key], value), key
    assert resumed.best.epoch == straight.best.epoch
    # Without the restored RNG state the dropout masks differ, and so do the weights.
    careless = _fit(tmp_path / "b.pt")
    careless.restore({**doc, "rng": {**doc["rng"], "torch": torch.manual_seed(99).get_state()}},
                     source="b.pt")
    careless.run()
    assert not torch.equal(careless.model.body[1].weight, straight.model.body[1].weight)


def test_checkpoint_content_and_no_temporary_files(tmp_path: Path) -> None:
    fit = _fit(tmp_path / "checkpoint.pt")
    with pytest.raises(_Stop):
        fit.run(on_epoch=_interrupt_after(1))
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]
    doc = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert doc["format"] == TRAIN_CHECKPOINT and doc["note"] == "tiny"
    assert set(TRAIN_CHECKPOINT_KEYS) <= set(doc)
    assert doc["epoch"] == 1 and [r["epoch"] for r in doc["history"]] == [1]
    assert doc["loader"] == {"seed": 3, "epoch": 1}
    assert doc["optimizer"]["state"]  # momentum buffers
    assert {"torch", "numpy"} <= set(doc["rng"])
    assert doc["best"]["epoch"] == 1 and doc["best"]["state_dict"] is not None


def test_best_weights_are_chosen_by_validation_accuracy(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    scores = iter([(0.5, 1.0), (0.9, 0.8), (0.7, 0.5), (0.9, 0.9)])  # (accuracy, loss)
    monkeypatch.setattr(Trainer, "evaluate", lambda self, model, x, y: dict(
        zip(("accuracy", "loss"), next(scores), strict=True)))
    fit = _fit(tmp_path / "c.pt")
    after: dict[int, dict[str, torch.Tensor]] = {}
    fit.run(on_epoch=lambda r: after.update({r["epoch"]: {
        k: v.clone() for k, v in fit.model.state_dict().items()}}))
    # Epoch 4 ties epoch 2 on accuracy with a higher loss: epoch 2 stays the best.
    assert (fit.best.epoch, fit.best.val_accuracy, fit.best.val_loss) == (2, 0.9, 0.8)
    best = fit.best_state_dict()
    assert all(torch.equal(best[k], v) for k, v in after[2].items())
    assert not torch.equal(best["body.1.weight"], fit.model.state_dict()["body.1.weight"])


def test_without_validation_the_best_weights_are_the_last(tmp_path: Path) -> None:
    fit = _fit(tmp_path / "d.pt", val=False)
    fit.run()
    assert fit.best.epoch == EPOCHS and fit.best.val_accuracy is None
    assert fit.best_state_dict() is not None
    assert all(torch.equal(fit.best_state_dict()[k], v)
               for k, v in fit.model.state_dict().items())
    assert "val_accuracy" not in fit.history[-1]


def test_a_nan_stops_the_run_and_keeps_the_previous_checkpoint(tmp_path: Path) -> None:
    fit = _fit(tmp_path / "e.pt")

    def poison(record: dict[str, Any]) -> None:
        if record["epoch"] == 2:
            fit.model.poisoned = True

    with pytest.raises(FloatingPointError) as info:
        fit.run(on_epoch=poison)
    message = str(info.value)
    assert "at epoch 3, step 1;" in message
    assert f"last good checkpoint (epoch 2) stays in {tmp_path / 'e.pt'}" in message
    assert "\n" not in message
    assert torch.load(tmp_path / "e.pt", weights_only=True)["epoch"] == 2


def test_a_checkpoint_of_another_length_is_refused(tmp_path: Path) -> None:
    fit = _fit(tmp_path / "f.pt")
    with pytest.raises(_Stop):
        fit.run(on_epoch=_interrupt_after(1))
    doc = load_checkpoint(tmp_path / "f.pt", kind=TRAIN_CHECKPOINT, keys=TRAIN_CHECKPOINT_KEYS)
    with pytest.raises(ConfigError, match="does not fit"):
        _fit(tmp_path / "f.pt").restore({**doc, "history": []}, source="f.pt")

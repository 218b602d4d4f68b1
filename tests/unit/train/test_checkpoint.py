"""Checkpoint files: atomic writes, one-line errors for broken files, RNG state round trips."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from archsearch.errors import ConfigError
from archsearch.train import (
    check_loss,
    load_checkpoint,
    remove_stale_temporaries,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from archsearch.train.model_file import MODEL_FORMAT, load_model_file, model_document

KIND = "archsearch.test-checkpoint/1"


def _save(path: Path) -> Path:
    return save_checkpoint(path, {"format": KIND, "epoch": 3, "w": torch.arange(1000.0)})


def _one_line_error(path: Path, match: str) -> str:
    with pytest.raises(ConfigError, match=match) as info:
        load_checkpoint(path, kind=KIND, keys=("epoch", "w"))
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    return message


def test_round_trip_leaves_no_temporary_file(tmp_path: Path) -> None:
    path = _save(tmp_path / "checkpoint.pt")
    _save(path)  # replaced in place
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]
    doc = load_checkpoint(path, kind=KIND, keys=("epoch", "w"))
    assert doc["epoch"] == 3 and torch.equal(doc["w"], torch.arange(1000.0))


class _Unsaveable:
    def __reduce__(self) -> tuple:
        raise RuntimeError("cannot be saved")  # like a disk filling up mid-write


def test_a_failed_write_keeps_the_old_checkpoint(tmp_path: Path) -> None:
    path = _save(tmp_path / "checkpoint.pt")
    with pytest.raises(RuntimeError, match="cannot be saved"):
        save_checkpoint(path, {"format": KIND, "epoch": 4, "w": _Unsaveable()})
    assert load_checkpoint(path, kind=KIND, keys=("epoch",))["epoch"] == 3
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_truncated_checkpoint_is_a_one_line_error(tmp_path: Path) -> None:
    path = _save(tmp_path / "checkpoint.pt")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    _one_line_error(path, "truncated")


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all"], ids=["empty", "garbage"])
def test_garbage_is_a_one_line_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(content)
    _one_line_error(path, "not a readable checkpoint")


def test_pickled_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.pt"
    torch.save({"format": KIND, "epoch": 1, "w": Path("/etc")}, path)  # not a plain value
    _one_line_error(path, "not a readable checkpoint")
    path.write_bytes(pickle.dumps({"format": KIND}, protocol=2))
    _one_line_error(path, "not a readable checkpoint")


def test_wrong_format_and_missing_keys(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"format": "something/else", "epoch": 1})
    _one_line_error(path, "expected")
    save_checkpoint(path, {"format": KIND, "epoch": 1})
    _one_line_error(path, "lacks w")
    _one_line_error(tmp_path / "missing.pt", "no checkpoint")


def test_rng_state_round_trip() -> None:
    state = rng_state("cpu")
    expected = torch.rand(3), np.random.rand(3)
    torch.manual_seed(123)
    np.random.seed(123)
    set_rng_state(state, "cpu")
    again = torch.rand(3), np.random.rand(3)
    assert torch.equal(expected[0], again[0]) and np.array_equal(expected[1], again[1])
    with pytest.raises(ConfigError, match="RNG state"):
        set_rng_state({"torch": "nonsense"}, "cpu")


def test_stale_temporaries_are_removed(tmp_path: Path) -> None:
    (tmp_path / ".checkpoint.pt.abc123.tmp").write_bytes(b"half")
    (tmp_path / "checkpoint.pt").write_bytes(b"keep")
    removed = remove_stale_temporaries(tmp_path)
    assert [p.name for p in removed] == [".checkpoint.pt.abc123.tmp"]
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


@pytest.mark.parametrize("loss", [float("nan"), float("inf"), 1e5])
def test_check_loss_names_epoch_and_step(loss: float) -> None:
    with pytest.raises(FloatingPointError, match="at epoch 2, step 7;"):
        check_loss(loss, epoch=2, step=7)
    check_loss(2.3, epoch=2, step=7)


def test_model_file_layout(tmp_path: Path) -> None:
    weights = {"w": torch.ones(2)}
    network = {"channels": 4, "layers": 3, "num_classes": 10, "in_channels": 1,
               "image_size": 8, "auxiliary": False}
    doc = model_document(arch={"format": "archsearch.arch/1"}, network=network,
                         state_dict=weights, best_state_dict=weights, config={"seed": 0},
                         metrics={"test_accuracy": 0.5})
    assert list(doc) == ["format", "arch", "network", "state_dict", "best_state_dict",
                         "config", "metrics"]
    assert doc["format"] == MODEL_FORMAT
    save_checkpoint(tmp_path / "model.pt", doc)
    assert load_model_file(tmp_path / "model.pt")["network"] == network
    with pytest.raises(ValueError, match="image_size"):
        model_document(arch={}, network={k: v for k, v in network.items() if k != "image_size"},
                       state_dict=weights, best_state_dict=weights, config={}, metrics={})

"""A real training process killed with SIGKILL after its first checkpoint resumes to the
same metrics, log and weights (last and best), bit for bit, as one never interrupted —
with drop-path, the auxiliary head and cutout on, so the RNG states must be restored."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

EPOCHS = 4


def _without_seconds(record: dict) -> dict:
    return {k: v for k, v in record.items() if k != "seconds"}


@pytest.fixture
def npz(tmp_path: Path) -> Path:
    rng = np.random.default_rng(1)
    y = np.repeat(np.arange(4), 40)
    x = (rng.random((160, 8, 8)) * 100 + y[:, None, None] * 40).astype(np.uint8)
    path = tmp_path / "data.npz"
    np.savez(path, x_train=x, y_train=y)
    return path


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_killed_training_resumes_to_the_uninterrupted_result(npz: Path,
                                                             kill_and_resume) -> None:
    args = ["train", "darts_v2", "--dataset", "npz", "--data-dir", str(npz), "--recipe", "quick",
            "--epochs", str(EPOCHS), "--channels", "4", "--layers", "3", "--batch-size", "16",
            "--auxiliary", "--drop-path", "0.2", "--cutout", "--seed", "2", "--quiet"]
    killed = kill_and_resume(args)
    straight, cut, _log = killed.straight, killed.cut, killed.log
    assert "model.pt" not in killed.killed_files
    # The checkpoint of an epoch is written before its log line: a kill in between leaves
    # the log an epoch short, which the resume rewrites from the checkpoint.
    assert len(killed.killed_log) < EPOCHS
    assert [r["epoch"] for r in _log(cut)] == list(range(1, EPOCHS + 1))
    assert _log(cut) == _log(straight)
    metrics = [_without_seconds(json.loads((run / "metrics.json").read_text()))
               for run in (straight, cut)]
    assert metrics[0] == metrics[1]
    a, b = (torch.load(run / "model.pt", weights_only=True) for run in (straight, cut))
    assert a["best_state_dict"].keys() == b["best_state_dict"].keys()
    for key in ("state_dict", "best_state_dict"):
        assert all(torch.equal(a[key][k], v) for k, v in b[key].items()), key
    assert sorted(p.name for p in cut.iterdir()) == sorted(p.name for p in straight.iterdir())

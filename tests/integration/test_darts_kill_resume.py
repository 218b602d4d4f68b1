"""A real DARTS search process killed with SIGKILL after its first checkpoint resumes to the
same architecture, log and supernet, bit for bit, as a search that was never interrupted."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

EPOCHS = 4


@pytest.fixture
def npz(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 25)  # 80 training images: 2 steps an epoch at batch 16
    x = (rng.random((100, 8, 8)) * 100 + y[:, None, None] * 40).astype(np.uint8)
    path = tmp_path / "data.npz"
    np.savez(path, x_train=x, y_train=y)
    return path


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_killed_darts_search_resumes_to_the_uninterrupted_result(npz: Path,
                                                                 kill_and_resume) -> None:
    args = ["search", "--dataset", "npz", "--data-dir", str(npz), "--epochs", str(EPOCHS),
            "--channels", "4", "--layers", "3", "--batch-size", "16", "--seed", "3", "--quiet"]
    killed = kill_and_resume(args)
    straight, cut, _log = killed.straight, killed.cut, killed.log
    assert "arch.json" not in killed.killed_files
    # The checkpoint of an epoch is written before its log line: a kill in between leaves
    # the log an epoch short, which the resume rewrites from the checkpoint.
    assert len(killed.killed_log) < EPOCHS
    assert [r["epoch"] for r in _log(cut)] == list(range(1, EPOCHS + 1))
    assert _log(cut) == _log(straight)
    assert (cut / "arch.json").read_bytes() == (straight / "arch.json").read_bytes()
    a, b = (torch.load(run / "supernet.pt", weights_only=True) for run in (straight, cut))
    assert a["alphas"] == b["alphas"]
    assert all(torch.equal(a["state_dict"][k], v) for k, v in b["state_dict"].items())
    assert sorted(p.name for p in cut.iterdir()) == sorted(p.name for p in straight.iterdir())

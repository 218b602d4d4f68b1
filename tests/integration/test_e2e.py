"""End to end through the CLI: search → retrain on digits, second order, npz data, determinism.

Torch is limited to one thread (see tests/unit/test_cli.py: two OpenMP threads per process
thrash on a shared 2-core machine).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from archsearch import cli, runs
from archsearch.space import Arch
from archsearch.spaces import DartsCellSpace

pytestmark = pytest.mark.slow

# The run's results, and the pictures every search draws at its end.
SEARCH_FILES = ["alphas.png", "alphas_epochs.png", "arch.json", "cell_normal.png",
                "cell_normal.svg", "cell_reduce.png", "cell_reduce.svg", "checkpoint.pt",
                "config.json", "log.jsonl", "supernet.pt"]
TRAIN_FILES = ["checkpoint.pt", "config.json", "log.jsonl", "metrics.json", "model.pt"]
TINY_SEARCH = ["search", "--epochs", "1", "--channels", "4", "--layers", "3",
               "--batch-size", "64", "--quiet"]
NUM_EDGES, NUM_OPS = 14, 8


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _jsonl(path: Path) -> list[dict[str, Any]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    assert all(line.strip() for line in lines)
    return [json.loads(line) for line in lines]


def _check_search_dir(out: Path, *, epochs: int, extra: tuple[str, ...] = ()) -> Arch:
    assert _files(out) == sorted([*SEARCH_FILES, *extra])
    config = _json(out / "config.json")
    assert config["command"] == "search"
    assert config["settings"]["epochs"] == epochs
    records = _jsonl(out / "log.jsonl")
    assert [r["epoch"] for r in records] == list(range(1, epochs + 1))
    for record in records:
        assert np.isfinite(record["train_loss"])
        assert 0.0 <= record["val_accuracy"] <= 1.0
        for cell in ("normal", "reduce"):
            alphas = np.asarray(record["alphas"][cell])
            assert alphas.shape == (NUM_EDGES, NUM_OPS)
            assert np.isfinite(alphas).all()
        assert record["genotype"].startswith("normal:")
    doc = _json(out / "arch.json")
    assert "genotype" in doc
    arch = Arch.load(out / "arch.json")
    space = DartsCellSpace.for_arch(arch, source=str(out / "arch.json"))
    assert space.describe(arch) == doc["genotype"] == records[-1]["genotype"]
    checkpoint = torch.load(out / "supernet.pt", weights_only=True)
    assert set(checkpoint) == {"state_dict", "alphas"}
    assert np.asarray(checkpoint["alphas"]["normal"]).shape == (NUM_EDGES, NUM_OPS)
    assert checkpoint["alphas"] == records[-1]["alphas"]
    return arch


def _check_train_dir(out: Path, arch: Arch, *, epochs: int) -> dict[str, Any]:
    assert _files(out) == TRAIN_FILES
    assert _json(out / "config.json")["command"] == "train"
    assert [r["epoch"] for r in _jsonl(out / "log.jsonl")] == list(range(1, epochs + 1))
    metrics = _json(out / "metrics.json")
    assert isinstance(metrics["test_accuracy"], float)
    assert 0.0 <= metrics["test_accuracy"] <= 1.0
    assert metrics["epochs"] == epochs
    checkpoint = torch.load(out / "model.pt", weights_only=True)
    assert set(checkpoint) >= {"state_dict", "arch", "config", "metrics"}
    assert Arch.from_json(checkpoint["arch"]) == arch
    assert checkpoint["metrics"] == metrics
    return metrics


# --- search, then retrain -----------------------------------------------------------------


@pytest.fixture(scope="module")
def search_retrain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("e2e") / "search"
    argv = ["search", "--epochs", "2", "--channels", "8", "--layers", "5",
            "--retrain", "--retrain-epochs", "5", "--quiet", "--out", str(out)]
    assert cli.main(argv) == 0
    return out


def test_search_retrain_search_dir(search_retrain: Path) -> None:
    _check_search_dir(search_retrain, epochs=2, extra=("retrain",))


def test_search_retrain_train_dir(search_retrain: Path) -> None:
    arch = Arch.load(search_retrain / "arch.json")
    metrics = _check_train_dir(search_retrain / "retrain", arch, epochs=5)
    assert metrics["test_accuracy"] > 0.5
    settings = _json(search_retrain / "retrain" / "config.json")["settings"]
    assert settings["epochs"] == 5
    assert (settings["channels"], settings["layers"]) == (16, 6)  # digits train defaults


def test_search_retrain_arch_is_usable(search_retrain: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert runs.resolve_arch(str(search_retrain)) == Arch.load(search_retrain / "arch.json")
    assert cli.main(["profile", str(search_retrain), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["num_params"] > 0 and stats["macs"] > 0


# --- second order -------------------------------------------------------------------------


# The exact HVP is checked against the finite-difference one in the unit tests; its whole
# run through the CLI is an exhaustive check.
@pytest.mark.parametrize("hvp", ["finite-difference",
                                 pytest.param("exact", marks=pytest.mark.exhaustive)])
def test_second_order_search(tmp_path: Path, hvp: str) -> None:
    out = tmp_path / "search"
    assert cli.main([*TINY_SEARCH, "--order", "second", "--hvp", hvp, "--out", str(out)]) == 0
    _check_search_dir(out, epochs=1)
    settings = _json(out / "config.json")["settings"]
    assert (settings["order"], settings["hvp"]) == ("second", hvp)


# --- npz data, train options, determinism -------------------------------------------------


@pytest.fixture
def npz_file(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(60, 16, 16, 3), dtype=np.uint8)
    y = np.repeat(np.arange(3), 20)
    path = tmp_path / "tiny.npz"
    np.savez(path, x_train=x, y_train=y, class_names=np.array(["cat", "dog", "owl"]))
    return path


def _train_npz(npz_file: Path, out: Path, seed: int = 0) -> list[str]:
    return ["train", "darts_v2", "--dataset", "npz", "--data-dir", str(npz_file),
            "--auxiliary", "--drop-path", "0.2", "--cutout", "--epochs", "1", "--channels", "4",
            "--layers", "3", "--batch-size", "16", "--seed", str(seed), "--quiet",
            "--out", str(out)]


def test_train_npz_with_all_options(npz_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "train"
    assert cli.main(_train_npz(npz_file, out)) == 0
    metrics = _check_train_dir(out, DartsCellSpace().named("darts_v2"), epochs=1)
    assert metrics["test_examples"] == 12  # a stratified 20 % of 60
    settings = _json(out / "config.json")["settings"]
    assert settings["auxiliary"] is True
    assert settings["drop_path"] == 0.2
    assert settings["cutout_length"] == 8  # half the side of 16×16 images
    state = torch.load(out / "model.pt", weights_only=True)["state_dict"]
    assert any(k.startswith("aux_head") for k in state)


def test_train_is_deterministic(npz_file: Path, tmp_path: Path) -> None:
    results = []
    for name in ("a", "b"):
        assert cli.main(_train_npz(npz_file, tmp_path / name, seed=7)) == 0
        results.append(_json(tmp_path / name / "metrics.json"))
    assert results[0]["test_accuracy"] == results[1]["test_accuracy"]
    assert results[0]["test_loss"] == results[1]["test_loss"]
    assert results[0]["train_loss"] == results[1]["train_loss"]


def test_search_is_deterministic(tmp_path: Path) -> None:
    for name in ("a", "b"):
        assert cli.main([*TINY_SEARCH, "--seed", "5", "--out", str(tmp_path / name)]) == 0
    a, b = tmp_path / "a", tmp_path / "b"
    assert (a / "arch.json").read_bytes() == (b / "arch.json").read_bytes()
    assert _jsonl(a / "log.jsonl")[0]["alphas"] == _jsonl(b / "log.jsonl")[0]["alphas"]


# --- known problems -----------------------------------------------------------------------


def test_bad_retrain_settings_are_refused_up_front(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "search"
    argv = [*TINY_SEARCH, "--retrain", "--retrain-epochs", "1", "--retrain-channels", "7",
            "--out", str(out)]
    assert cli.main(argv) == 2
    assert len(capsys.readouterr().err.splitlines()) == 1
    assert not out.exists()


def test_overwrite_a_search_retrain_run(tmp_path: Path) -> None:
    out = tmp_path / "search"
    (out / "retrain").mkdir(parents=True)
    for name in SEARCH_FILES:
        (out / name).write_text("old", encoding="utf-8")
    for name in TRAIN_FILES:
        (out / "retrain" / name).write_text("old", encoding="utf-8")
    argv = [*TINY_SEARCH, "--retrain", "--retrain-epochs", "1", "--retrain-channels", "4",
            "--retrain-layers", "3", "--overwrite", "--out", str(out)]
    assert cli.main(argv) == 0
    arch = _check_search_dir(out, epochs=1, extra=("retrain",))
    _check_train_dir(out / "retrain", arch, epochs=1)

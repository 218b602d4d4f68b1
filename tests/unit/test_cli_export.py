"""`archsearch export` in-process: what it writes and prints, and its one-line refusals."""

from __future__ import annotations

import importlib.util
import json
import os

import numpy as np
import pytest
import torch

import archsearch.export as ex
from archsearch.cli import main
from archsearch.commands import export as command
from archsearch.export import export, load_model
from archsearch.runs import resolve_arch
from archsearch.space import Arch
from archsearch.spaces import SPACES

TINY = ["--channels", "2", "--layers", "3", "--image-size", "8", "--classes", "4",
        "--in-channels", "1"]


@pytest.fixture
def train_run(tmp_path):
    """A run directory whose model.pt follows the model-file contract (trained-looking
    weights: a seeded network whose parameters are then shifted)."""
    run = tmp_path / "train"
    path = export("darts_v1", run / "model.pt", "pytorch", channels=2, layers=3, image_size=8,
                  num_classes=4, in_channels=1, seed=5).path
    doc = torch.load(path, weights_only=True)
    doc["state_dict"] = {k: v + 0.1 if v.is_floating_point() else v
                         for k, v in doc["state_dict"].items()}
    torch.save(doc, path)
    return run


def test_the_command_offers_the_library_formats():
    assert command.FORMATS == ex.FORMATS


def test_json_of_a_named_cell(tmp_path, capsys):
    out = tmp_path / "cell.json"
    assert main(["export", "darts_v2", "--format", "json", "--out", str(out)]) == 0
    assert Arch.load(out) == resolve_arch("darts_v2")
    assert f"wrote {out}" in capsys.readouterr().out


@pytest.mark.skipif(any(importlib.util.find_spec(m) is None for m in ("onnx", "onnxruntime")),
                    reason="the ONNX export needs onnx and onnxruntime")
def test_onnx_of_a_train_run_reports_the_check(train_run, tmp_path, capsys):
    out = tmp_path / "exported"
    assert main(["export", str(train_run), "--format", "onnx", "--out", str(out)]) == 0
    printed = capsys.readouterr()
    assert (out / "model.onnx").is_file() and printed.err == ""
    assert "max abs diff" in printed.out and "last weights" in printed.out


def test_pytorch_export_of_a_train_run_keeps_its_weights(train_run, tmp_path):
    out = tmp_path / "w.pt"
    assert main(["export", str(train_run), "--format", "pytorch", "--out", str(out)]) == 0
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(load_model(out)(x), load_model(train_run / "model.pt")(x))


def test_an_arch_without_weights_says_so_on_stderr(tmp_path, capsys):
    out = tmp_path / "m.pt"
    code = main(["export", "darts_v1", "--format", "torchscript", "--out", str(out), *TINY,
                 "--seed", "2"])
    assert code == 0 and out.is_file()
    err = capsys.readouterr().err
    assert "note:" in err and "freshly initialised" in err and "seed 2" in err


def test_a_hostile_model_file_is_one_line_and_exit_2(tmp_path, capsys):
    class Hostile:
        def __reduce__(self):
            return (os.mkdir, (str(tmp_path / "pwned"),))

    run = tmp_path / "run"
    run.mkdir()
    torch.save({"format": "archsearch.model/1", "state_dict": Hostile()}, run / "model.pt")
    out = tmp_path / "out"
    assert main(["export", str(run), "--format", "onnx", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("archsearch: error:") and err.count("\n") == 1
    assert not (tmp_path / "pwned").exists() and not out.exists()


def test_a_truncated_model_file_is_one_line_and_exit_2(train_run, tmp_path, capsys):
    path = train_run / "model.pt"
    path.write_bytes(path.read_bytes()[:100])
    assert main(["export", str(train_run), "--format", "pytorch", "--out",
                 str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.count("\n") == 1 and not (tmp_path / "out").exists()


def test_a_failed_check_is_exit_1_and_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(ex, "run_pytorch", lambda data, inputs: [np.full((len(x), 4), np.nan)
                                                                 for x in inputs])
    out = tmp_path / "m.pt"
    assert main(["export", "darts_v1", "--format", "pytorch", "--out", str(out), *TINY]) == 1
    err = capsys.readouterr().err
    assert "export failed" in err and "nothing written" in err and err.count("\n") == 1
    assert not out.exists() and not list(tmp_path.iterdir())


@pytest.mark.parametrize("argv, message", [
    (["nowhere", "--format", "onnx"], "not a run directory"),
    (["darts_v1", "--format", "onnx", "--channels", "3"], "--channels must be an even"),
    (["darts_v1", "--format", "onnx", "--image-size", "0"], "--image-size must be positive"),
    (["CHAIN", "--format", "pytorch", "--layers", "3"], "--layers applies to DARTS"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, argv, message):
    chain = SPACES.get("chain")().sample(np.random.default_rng(0))
    (tmp_path / "chain.json").write_text(json.dumps(chain.to_json()))
    argv = [str(tmp_path / "chain.json") if a == "CHAIN" else a for a in argv]
    out = tmp_path / "out"
    code = main(["export", *argv, "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1 and not out.exists()


def test_settings_fixed_by_the_weights_are_refused(train_run, tmp_path, capsys):
    code = main(["export", str(train_run), "--format", "pytorch", "--classes", "10",
                 "--out", str(tmp_path / "out")])
    assert code == 2 and "--classes 10" in capsys.readouterr().err


def test_an_unknown_format_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as info:
        main(["export", "darts_v1", "--format", "keras"])
    assert info.value.code == 2


def test_the_json_export_of_a_run_is_its_architecture(train_run, tmp_path):
    out = tmp_path / "a.json"
    assert main(["export", str(train_run), "--format", "json", "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert Arch.from_json(doc) == resolve_arch("darts_v1") and "genotype" in doc

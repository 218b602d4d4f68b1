"""`archsearch describe-space`: files, summary, labelled settings, bad input (exit 2)."""

from __future__ import annotations

import csv

import pytest
import torch

from archsearch.cli import main

torch.set_num_threads(1)
# Small mobilenet spaces and heads: each network builds and trains in well under a second.
# (CPU depthwise convolutions are slow at 16×16, so the trained space keeps 8×8 and 3×3.)
TINY = ["--space-arg", "channels=[8]", "--space-arg", "strides=[1]", "--space-arg", "depths=[1]",
        "--space-arg", "kernels=[3]", "--space-arg", "resolutions=[8]",
        "--build-arg", "last_channels=16"]
TWO = ["--space", "full=mobilenet", "--space", "cheap=mobilenet",
       "--space-arg", "full.channels=[8, 16]", "--space-arg", "full.strides=[1, 2]",
       "--space-arg", "cheap.channels=[8, 16]", "--space-arg", "cheap.strides=[1, 2]",
       "--space-arg", "cheap.kernels=[3]", "--space-arg", "cheap.resolutions=[8]",
       "--build-arg", "full.last_channels=16", "--build-arg", "cheap.last_channels=16"]


def _rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_costs_of_two_labelled_spaces(tmp_path, capsys):
    out = tmp_path / "d"
    assert main(["describe-space", *TWO, "--samples", "6", "--out", str(out), "--quiet"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["costs.csv", "costs.png"]
    rows = _rows(out / "costs.csv")
    assert [r["space"] for r in rows] == ["full"] * 6 + ["cheap"] * 6
    assert (out / "costs.png").read_bytes().startswith(b"\x89PNG")
    text = capsys.readouterr().out
    assert "full (mobilenet): 6 sampled archs" in text and "cheap (mobilenet)" in text
    assert "MACs" in text and "params" in text and "error" not in text


@pytest.mark.slow  # trains two networks for an epoch on digits (~5 s on one core)
def test_training_writes_errors_and_the_edf(tmp_path, capsys):
    out = tmp_path / "d"
    code = main(["describe-space", "--space", "mobilenet", *TINY, "--samples", "3",
                 "--train", "2", "--epochs", "1", "--out", str(out), "--quiet"])
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == ["costs.csv", "costs.png", "edf.png",
                                                      "errors.csv"]
    rows = _rows(out / "errors.csv")
    assert len(rows) == 2 and all(r["space"] == "mobilenet" for r in rows)
    for r in rows:
        assert float(r["error"]) == pytest.approx(1 - float(r["val_acc"]), abs=1e-5)
    # The trained archs are the first of the cost sample (same seed).
    costs = _rows(out / "costs.csv")
    assert [r["fingerprint"] for r in rows] == [r["fingerprint"] for r in costs[:2]]
    assert (out / "edf.png").read_bytes().startswith(b"\x89PNG")
    assert "fraction under 5%" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["--space", "nope"], "nope"),
    (["--space", "mobilenet", "--samples", "0"], "--samples"),
    (["--space", "mobilenet", "--train", "-1"], "--train"),
    (["--space", "mobilenet", "--epochs", "0"], "--epochs"),
    (["--space", "a=mobilenet", "--space", "a=darts"], "twice"),
    (["--space", "a.b=mobilenet"], "LABEL=NAME"),
    (["--space", "mobilenet", "--space", "darts", "--space-arg", "kernels=[3]"],
     "which space"),
    (["--space", "mobilenet", "--space-arg", "other.kernels=[3]"], "no space labelled"),
    (["--space", "mobilenet", "--space-arg", "kernel=[3]"], "kernel"),
    (["--space", "mobilenet", "--space-arg", "kernels=[4]"], "odd"),
    (["--space", "mobilenet", "--build-arg", "depth=3"], "cannot build"),
    (["--space", "mobilenet", "--build-arg", "last_channels=-4"], "last_channels"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, argv, message):
    out = tmp_path / "d"
    assert main(["describe-space", *argv, "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err
    assert not out.exists()


def test_an_existing_output_is_kept_without_overwrite(tmp_path, capsys):
    out = tmp_path / "d"
    out.mkdir()
    (out / "costs.csv").write_text("old", encoding="utf-8")
    argv = ["describe-space", "--space", "mobilenet", *TINY, "--samples", "2", "--out",
            str(out), "--quiet"]
    assert main(argv) == 2 and "--overwrite" in capsys.readouterr().err
    assert (out / "costs.csv").read_text(encoding="utf-8") == "old"
    assert main([*argv, "--overwrite"]) == 0
    assert len(_rows(out / "costs.csv")) == 2

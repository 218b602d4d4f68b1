"""The `archsearch` command line: search, train and profile, called in-process.

Runs use tiny settings (1 epoch, C=4, 3 cells) on the built-in digits. Torch is limited to
one thread here: on a shared 2-core machine two OpenMP threads per process thrash and make
a one-epoch run 10-30× slower, without changing what is tested.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from archsearch import cli, runs
from archsearch.commands import search as search_command
from archsearch.commands import train as train_command
from archsearch.space import Arch
from archsearch.spaces import DartsCellSpace

SEARCH = ["search", "--epochs", "1", "--channels", "4", "--layers", "3", "--batch-size", "64",
          "--quiet"]
TRAIN_OPTS = ["--epochs", "1", "--channels", "4", "--layers", "3", "--quiet"]
# The run's results, and the pictures every search draws at its end.
SEARCH_FILES = ["alphas.png", "alphas_epochs.png", "arch.json", "cell_normal.png",
                "cell_normal.svg", "cell_reduce.png", "cell_reduce.svg", "checkpoint.pt",
                "config.json", "log.jsonl", "supernet.pt"]
TRAIN_FILES = ["checkpoint.pt", "config.json", "log.jsonl", "metrics.json", "model.pt"]
NUM_EDGES, NUM_OPS = 14, 8


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _one_error_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {err!r}"
    assert lines[0].strip(), "empty error line"
    assert lines[0].startswith("archsearch"), lines[0]
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture(scope="module")
def search_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("search") / "run"
    assert cli.main([*SEARCH, "--out", str(out)]) == 0
    return out


# --- search -------------------------------------------------------------------------------


def test_search_run_directory_files(search_run: Path) -> None:
    assert _files(search_run) == SEARCH_FILES


def test_search_config(search_run: Path) -> None:
    config = json.loads((search_run / "config.json").read_text(encoding="utf-8"))
    assert config["command"] == "search"
    settings = config["settings"]
    assert settings["dataset"] == "digits"
    assert (settings["epochs"], settings["channels"], settings["layers"]) == (1, 4, 3)
    assert settings["batch_size"] == 64
    assert settings["order"] == "first"
    assert settings["nodes"] == 4
    assert len(settings["ops"]) == NUM_OPS
    assert settings["retrain"] is None


def test_search_log_has_one_record_per_epoch(search_run: Path) -> None:
    records = _read_jsonl(search_run / "log.jsonl")
    assert len(records) == 1
    record = records[0]
    assert record["epoch"] == 1
    assert isinstance(record["train_loss"], float)
    assert 0.0 <= record["val_accuracy"] <= 1.0
    assert set(record["alphas"]) == {"normal", "reduce"}
    for cell in ("normal", "reduce"):
        alphas = record["alphas"][cell]
        assert len(alphas) == NUM_EDGES
        assert all(len(row) == NUM_OPS for row in alphas)
        assert all(isinstance(v, float) for row in alphas for v in row)
    assert record["genotype"].startswith("normal:")
    assert "reduce:" in record["genotype"]


def test_search_arch_json(search_run: Path) -> None:
    doc = json.loads((search_run / "arch.json").read_text(encoding="utf-8"))
    assert doc["format"] == "archsearch.arch/1"
    assert doc["genotype"].startswith("normal:")
    arch = Arch.load(search_run / "arch.json")
    space = DartsCellSpace.for_arch(arch)
    assert space.describe(arch) == doc["genotype"]
    # The last epoch's genotype is the derived cell.
    assert _read_jsonl(search_run / "log.jsonl")[-1]["genotype"] == doc["genotype"]


def test_search_supernet_checkpoint(search_run: Path) -> None:
    checkpoint = torch.load(search_run / "supernet.pt", weights_only=True)
    assert set(checkpoint) == {"state_dict", "alphas"}
    assert checkpoint["state_dict"]
    assert len(checkpoint["alphas"]["normal"]) == NUM_EDGES


# --- train --------------------------------------------------------------------------------


def _check_train_run(out: Path, arch: Arch) -> dict[str, Any]:
    assert _files(out) == TRAIN_FILES
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert isinstance(metrics["test_accuracy"], float)
    assert 0.0 <= metrics["test_accuracy"] <= 1.0
    assert len(_read_jsonl(out / "log.jsonl")) == metrics["epochs"] == 1
    config = json.loads((out / "config.json").read_text(encoding="utf-8"))
    assert config["command"] == "train"
    checkpoint = torch.load(out / "model.pt", weights_only=True)
    assert set(checkpoint) == {"format", "arch", "network", "state_dict", "best_state_dict",
                               "config", "metrics"}
    assert checkpoint["format"] == "archsearch.model/1"
    assert Arch.from_json(checkpoint["arch"]) == arch
    assert checkpoint["metrics"] == metrics
    assert checkpoint["config"]["channels"] == 4
    network = checkpoint["network"]
    assert network == {"channels": 4, "layers": 3, "num_classes": 10, "in_channels": 1,
                       "image_size": 8, "auxiliary": checkpoint["config"]["auxiliary"]}
    model = runs.build_network(arch, **{k: v for k, v in network.items() if k != "image_size"})
    model.load_state_dict(checkpoint["state_dict"])
    model.load_state_dict(checkpoint["best_state_dict"])
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["format"] == "archsearch.train-checkpoint/1" and state["epoch"] == 1
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
    return metrics


def test_train_named_cell(tmp_path: Path) -> None:
    out = tmp_path / "train"
    assert cli.main(["train", "darts_v2", *TRAIN_OPTS, "--out", str(out)]) == 0
    _check_train_run(out, DartsCellSpace().named("darts_v2"))


def test_train_with_auxiliary_drop_path_cutout(tmp_path: Path) -> None:
    out = tmp_path / "train"
    argv = ["train", "darts_v1", *TRAIN_OPTS, "--auxiliary", "--drop-path", "0.2", "--cutout",
            "--out", str(out)]
    assert cli.main(argv) == 0
    _check_train_run(out, DartsCellSpace().named("darts_v1"))
    settings = json.loads((out / "config.json").read_text(encoding="utf-8"))["settings"]
    assert settings["auxiliary"] is True
    assert settings["drop_path"] == 0.2
    assert settings["cutout_length"] == 4  # half the side of 8×8 digits


def test_train_search_run_directory(search_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "train"
    assert cli.main(["train", str(search_run), *TRAIN_OPTS, "--out", str(out)]) == 0
    _check_train_run(out, Arch.load(search_run / "arch.json"))


def test_train_arch_json_file(tmp_path: Path) -> None:
    arch = DartsCellSpace().named("darts_v1")
    path = tmp_path / "cell.json"
    path.write_text(json.dumps(arch.to_json()), encoding="utf-8")
    out = tmp_path / "train"
    assert cli.main(["train", str(path), *TRAIN_OPTS, "--out", str(out)]) == 0
    _check_train_run(out, arch)


def test_train_same_seed_same_result(tmp_path: Path) -> None:
    accuracies = []
    for name in ("a", "b"):
        out = tmp_path / name
        assert cli.main(["train", "darts_v2", *TRAIN_OPTS, "--seed", "3", "--out", str(out)]) == 0
        accuracies.append(json.loads((out / "metrics.json").read_text())["test_accuracy"])
    assert accuracies[0] == accuracies[1]


# --- existing run directories -------------------------------------------------------------


@pytest.mark.parametrize("argv", [SEARCH, ["train", "darts_v2", *TRAIN_OPTS]],
                         ids=["search", "train"])
def test_non_empty_out_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                  argv: list[str]) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text('{"old": true}', encoding="utf-8")
    assert cli.main([*argv, "--out", str(out)]) == 2
    assert "--overwrite" in _one_error_line(capsys.readouterr().err)
    assert _files(out) == ["config.json"]
    assert (out / "config.json").read_text(encoding="utf-8") == '{"old": true}'


def test_empty_out_is_used(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    assert cli.main(["train", "darts_v2", *TRAIN_OPTS, "--out", str(out)]) == 0
    assert _files(out) == TRAIN_FILES


def test_overwrite_replaces_a_run(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text('{"old": true}', encoding="utf-8")
    (out / "stale.txt").write_text("from an older run", encoding="utf-8")
    assert cli.main(["train", "darts_v2", *TRAIN_OPTS, "--out", str(out), "--overwrite"]) == 0
    assert _files(out) == TRAIN_FILES
    config = json.loads((out / "config.json").read_text(encoding="utf-8"))
    assert config["command"] == "train"


# --- profile ------------------------------------------------------------------------------


def _profile_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, int]:
    assert cli.main(["profile", *argv, "--json"]) == 0
    captured = capsys.readouterr()
    stats = json.loads(captured.out)
    assert list(stats) == ["num_params", "num_params_no_aux", "macs"]
    assert all(isinstance(v, int) for v in stats.values())
    return stats


def test_profile_darts_v2_auxiliary(capsys: pytest.CaptureFixture[str]) -> None:
    stats = _profile_json(capsys, "darts_v2", "--auxiliary")
    assert stats["num_params"] == 3825768
    assert stats["num_params_no_aux"] == 3349342


def test_profile_darts_v1_auxiliary(capsys: pytest.CaptureFixture[str]) -> None:
    stats = _profile_json(capsys, "darts_v1", "--auxiliary")
    assert stats["num_params"] == 3645840
    assert stats["num_params_no_aux"] == 3169414


def test_profile_without_auxiliary_has_no_head(capsys: pytest.CaptureFixture[str]) -> None:
    stats = _profile_json(capsys, "darts_v2", "--channels", "8", "--layers", "5")
    assert stats["num_params"] == stats["num_params_no_aux"]


def test_profile_imagenet_darts_v2(capsys: pytest.CaptureFixture[str]) -> None:
    arch = runs.resolve_arch("darts_v2")
    expected = runs.profile(arch, channels=48, layers=14, num_classes=1000, imagenet=True,
                            auxiliary=True)
    stats = _profile_json(capsys, "darts_v2", "--imagenet", "--auxiliary")
    assert stats["num_params_no_aux"] == 4718752
    assert stats["num_params"] == 5979528
    assert 520e6 < stats["macs"] < 550e6
    assert stats["macs"] == expected["macs"] == 529_911_552
    assert expected["input_shape"] == [1, 3, 224, 224]


def test_profile_text_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["profile", "darts_v1", "--channels", "8", "--layers", "5"]) == 0
    out = capsys.readouterr().out
    assert "CIFAR network, C=8, 5 cells, 10 classes" in out
    assert "parameters:" in out
    assert "MACs" in out


def test_profile_search_run_directory(search_run: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    stats = _profile_json(capsys, str(search_run), "--channels", "8", "--layers", "5",
                          "--classes", "3")
    arch = Arch.load(search_run / "arch.json")
    expected = runs.profile(arch, channels=8, layers=5, num_classes=3, imagenet=False,
                            auxiliary=False)
    assert stats == {k: expected[k] for k in stats}


@pytest.mark.slow
def test_console_entry_point(tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "archsearch", "profile", "darts_v2", "--json"],
                            capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300,
                            check=False)
    assert result.returncode == 0, result.stderr
    stats = json.loads(result.stdout)
    assert stats["num_params"] == stats["num_params_no_aux"] == 3349342
    assert stats["macs"] > 0
    assert list(tmp_path.iterdir()) == []  # profile writes nothing


# --- bad input: one line on stderr, exit code 2, nothing written --------------------------


def _malformed_arch(case: str) -> str | dict[str, Any]:
    doc = DartsCellSpace().named("darts_v2").to_json()
    if case == "invalid-json":
        return '{"format": "archsearch.arch/1", "choices": {'
    if case == "wrong-format":
        doc["format"] = "archsearch.arch/0"
    elif case == "three-inputs":
        doc["choices"]["normal.n3.e2"] = "skip_connect"
    elif case == "unknown-op":
        doc["choices"]["reduce.n2.e0"] = "conv_9x9"
    elif case == "wrong-space-hash":
        doc["space_hash"] = "sha256:" + "f" * 64
    return doc


MALFORMED = ["invalid-json", "wrong-format", "three-inputs", "unknown-op", "wrong-space-hash"]


def _run_bad(argv: list[str], capsys: pytest.CaptureFixture[str], out: Path | None) -> str:
    assert cli.main(argv) == 2
    line = _one_error_line(capsys.readouterr().err)
    if out is not None:
        assert not out.exists() or _files(out) == [], f"{out} holds {_files(out)}"
    return line


@pytest.mark.parametrize("command", ["train", "profile"])
@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_arch_json(tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str,
                             command: str) -> None:
    doc = _malformed_arch(case)
    path = tmp_path / "arch.json"
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc), encoding="utf-8")
    out = tmp_path / "out"
    argv = [command, str(path)]
    argv += [*TRAIN_OPTS, "--out", str(out)] if command == "train" else ["--json"]
    line = _run_bad(argv, capsys, out)
    assert str(path) in line


@pytest.mark.parametrize("command", ["train", "profile"])
def test_unknown_named_cell(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                            command: str) -> None:
    out = tmp_path / "out"
    argv = [command, "darts_v3"] + ([*TRAIN_OPTS, "--out", str(out)] if command == "train" else [])
    line = _run_bad(argv, capsys, out)
    assert "darts_v3" in line


def test_run_directory_without_arch(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty-run").mkdir()
    out = tmp_path / "out"
    _run_bad(["train", str(tmp_path / "empty-run"), *TRAIN_OPTS, "--out", str(out)], capsys, out)


BAD_SEARCH = {
    "cifar10-without-data-dir": ["--dataset", "cifar10"],
    "npz-without-data-dir": ["--dataset", "npz"],
    "missing-data-dir": ["--dataset", "npz", "--data-dir", "{tmp}/no-such-file.npz"],
    "missing-folder": ["--dataset", "folder", "--data-dir", "{tmp}/no-such-folder"],
    "digits-with-data-dir": ["--data-dir", "{tmp}"],
    "nodes-0": ["--nodes", "0"],
    "epochs-0": ["--epochs", "0"],
    "batch-size-0": ["--batch-size", "0"],
    "batch-size-too-big": ["--batch-size", "100000"],
    "unknown-op": ["--ops", "none,foo"],
    "only-none": ["--ops", "none"],
    "duplicate-op": ["--ops", "skip_connect,skip_connect"],
    "device-garbage": ["--device", "garbage"],
    "device-cuda": ["--device", "cuda"],
    "channels-odd": ["--channels", "7"],
    "layers-2": ["--layers", "2"],
    # checked before the search starts, not after it
    "retrain-channels-odd": ["--retrain", "--retrain-channels", "7"],
}

BAD_TRAIN = {
    "cifar10-without-data-dir": ["--dataset", "cifar10"],
    "missing-data-dir": ["--dataset", "cifar10", "--data-dir", "{tmp}/no-such-folder"],
    "channels-odd": ["--channels", "7"],
    "channels-0": ["--channels", "0"],
    "layers-2": ["--layers", "2"],
    "epochs-0": ["--epochs", "0"],
    "batch-size-0": ["--batch-size", "0"],
    "drop-path-1": ["--drop-path", "1.0"],
    "device-garbage": ["--device", "garbage"],
    "device-cuda": ["--device", "cuda:0"],
    "device-unavailable-type": ["--device", "xpu"],
}



def _fill(args: list[str], tmp: Path) -> list[str]:
    return [a.replace("{tmp}", str(tmp)) for a in args]


@pytest.mark.parametrize("case", list(BAD_SEARCH))
def test_bad_search_input(tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str) -> None:
    if case == "device-cuda" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    out = tmp_path / "out"
    _run_bad([*SEARCH, *_fill(BAD_SEARCH[case], tmp_path), "--out", str(out)], capsys, out)


@pytest.mark.parametrize("case", list(BAD_TRAIN))
def test_bad_train_input(tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str) -> None:
    if case == "device-cuda" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    out = tmp_path / "out"
    argv = ["train", "darts_v2", *TRAIN_OPTS, *_fill(BAD_TRAIN[case], tmp_path), "--out", str(out)]
    _run_bad(argv, capsys, out)


@pytest.mark.parametrize("args", [["--channels", "7"], ["--layers", "2"], ["--classes", "1"]],
                         ids=["channels-odd", "layers-2", "classes-1"])
def test_bad_profile_input(capsys: pytest.CaptureFixture[str], args: list[str]) -> None:
    _run_bad(["profile", "darts_v2", *args], capsys, None)


def test_out_is_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    out.write_text("precious", encoding="utf-8")
    _run_bad(["train", "darts_v2", *TRAIN_OPTS, "--out", str(out)], capsys, None)
    assert out.read_text(encoding="utf-8") == "precious"


def test_out_below_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "file").write_text("x", encoding="utf-8")
    argv = ["train", "darts_v2", *TRAIN_OPTS, "--out", str(tmp_path / "file" / "run")]
    try:
        code = cli.main(argv)
    except OSError:
        code = 1
    assert code == 2
    _one_error_line(capsys.readouterr().err)


BAD_ARGUMENTS = {
    "order-third": [*SEARCH, "--order", "third"],
    "hvp-unknown": [*SEARCH, "--hvp", "magic"],
    "dataset-unknown": [*SEARCH, "--dataset", "mnist"],
    "epochs-not-int": [*SEARCH, "--epochs", "two"],
    "drop-path-not-float": ["train", "darts_v2", *TRAIN_OPTS, "--drop-path", "lots"],
    "unknown-flag": [*SEARCH, "--warp-speed"],
    "profile-with-out": ["profile", "darts_v2", "--out", "somewhere"],
    "no-command": [],
    "unknown-command": ["evolve"],
}


@pytest.mark.parametrize("case", list(BAD_ARGUMENTS))
def test_bad_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                       monkeypatch: pytest.MonkeyPatch, case: str) -> None:
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    argv = list(BAD_ARGUMENTS[case])
    if argv and argv[0] in ("search", "train"):
        argv += ["--out", str(out)]
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2
    _one_error_line(capsys.readouterr().err)
    assert list(tmp_path.iterdir()) == []


# --- recipes ------------------------------------------------------------------------------


def _train_settings(*argv: str) -> dict[str, Any]:
    return train_command.train_settings(cli.build_parser().parse_args(["train", "darts_v2", *argv]))


def test_train_recipe_follows_the_dataset() -> None:
    quick = _train_settings()
    assert quick["recipe"] == "quick"
    assert (quick["epochs"], quick["channels"], quick["layers"]) == (30, 16, 6)
    assert (quick["auxiliary"], quick["cutout"], quick["drop_path"]) == (False, False, 0.0)
    assert quick["val_fraction"] == runs.VAL_FRACTION == 0.1
    paper = _train_settings("--dataset", "cifar10")
    expected = {"recipe": "paper", "channels": 36, "layers": 20, "epochs": 600,
                "batch_size": 96, "lr": 0.025, "momentum": 0.9, "weight_decay": 3e-4,
                "auxiliary": True, "auxiliary_weight": 0.4, "drop_path": 0.2, "cutout": True,
                "grad_clip": 5.0, "label_smoothing": 0.0}
    assert {k: paper[k] for k in expected} == expected


def test_train_flags_override_the_recipe() -> None:
    s = _train_settings("--recipe", "paper", "--no-auxiliary", "--epochs", "3", "--cutout",
                        "--label-smoothing", "0.1", "--val-fraction", "0", "--grad-clip", "0")
    assert s["recipe"] == "paper"
    assert (s["auxiliary"], s["epochs"], s["cutout"]) == (False, 3, True)
    assert (s["label_smoothing"], s["val_fraction"], s["grad_clip"]) == (0.1, 0.0, 0.0)
    assert (s["channels"], s["drop_path"]) == (36, 0.2)  # not given: the recipe's
    quick_on_cifar = _train_settings("--dataset", "cifar10", "--recipe", "quick", "--auxiliary")
    assert (quick_on_cifar["channels"], quick_on_cifar["auxiliary"]) == (16, True)


def test_search_retrain_settings_use_the_recipe() -> None:
    args = cli.build_parser().parse_args(["search", "--retrain", "--retrain-epochs", "2"])
    retrain = search_command.search_settings(args)["retrain"]
    assert (retrain["recipe"], retrain["epochs"], retrain["channels"]) == ("quick", 2, 16)


# --- resume -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def train_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("train") / "run"
    assert cli.main(["train", "darts_v2", *TRAIN_OPTS, "--out", str(out)]) == 0
    return out


def test_resume_a_finished_run_says_so(train_run: Path, search_run: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    before = {p.name: p.stat().st_mtime_ns for p in train_run.iterdir()}
    assert cli.main(["train", "--resume", str(train_run), "--epochs", "1", "--quiet"]) == 0
    assert "finished already" in capsys.readouterr().out
    assert {p.name: p.stat().st_mtime_ns for p in train_run.iterdir()} == before
    assert cli.main(["search", "--resume", str(search_run), "--quiet"]) == 0
    assert "finished already" in capsys.readouterr().out


RESUME_ERRORS = {
    "conflicting-epochs": (["train", "--resume", "{train}", "--epochs", "5"], "--epochs 5"),
    "conflicting-recipe": (["train", "--resume", "{train}", "--recipe", "paper"], "--recipe"),
    "arch-and-resume": (["train", "darts_v1", "--resume", "{train}"], "leave out ARCH"),
    "overwrite": (["train", "--resume", "{train}", "--overwrite"], "--overwrite"),
    "other-out": (["train", "--resume", "{train}", "--out", "{tmp}/x"], "--out"),
    "missing-dir": (["train", "--resume", "{tmp}/missing"], "no such run directory"),
    "search-resumes-train": (["search", "--resume", "{train}"], "archsearch train --resume"),
    "train-resumes-search": (["train", "--resume", "{search}"], "archsearch search --resume"),
    "search-conflicting-order": (["search", "--resume", "{search}", "--order", "second"],
                                 "--order second"),
    "search-multitrial-flag": (["search", "--resume", "{search}", "--trials", "5"],
                               "--trials does not apply"),
    "train-without-arch": (["train", *TRAIN_OPTS], "needs ARCH"),
}


@pytest.mark.parametrize("case", list(RESUME_ERRORS))
def test_resume_errors(train_run: Path, search_run: Path, tmp_path: Path,
                       capsys: pytest.CaptureFixture[str], case: str) -> None:
    argv, message = RESUME_ERRORS[case]
    argv = [a.format(train=train_run, search=search_run, tmp=tmp_path) for a in argv]
    assert message in _run_bad([*argv, "--quiet"], capsys, None)
    assert list(tmp_path.iterdir()) == []


def test_resume_with_a_truncated_checkpoint(train_run: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_bytes((train_run / "config.json").read_bytes())
    whole = (train_run / "checkpoint.pt").read_bytes()
    (run / "checkpoint.pt").write_bytes(whole[: len(whole) // 2])
    line = _run_bad(["train", "--resume", str(run), "--quiet"], capsys, None)
    assert "checkpoint.pt" in line and "truncated" in line
    assert _files(run) == ["checkpoint.pt", "config.json"]  # nothing replaced


def test_a_diverging_run_stops_with_exit_code_1(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert cli.main(["train", "darts_v2", *TRAIN_OPTS, "--lr", "1e30", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1
    assert err.startswith("archsearch: stopped: training loss")
    assert "at epoch 1, step " in err and "no checkpoint was written" in err
    assert _files(out) == ["config.json", "log.jsonl"]

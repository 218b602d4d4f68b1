"""`archsearch.runs`: resolving ARCH references and devices, defaults, profiling."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from archsearch import runs
from archsearch.data import load_dataset
from archsearch.errors import ArchError, ArchsearchError, ConfigError
from archsearch.runs import search as search_runs
from archsearch.space import Arch
from archsearch.spaces import DartsCellSpace
from archsearch.spaces.darts import NAMED_CELLS
from archsearch.train import Trainer


def _doc(name: str = "darts_v2") -> dict[str, Any]:
    return DartsCellSpace().named(name).to_json()


def _write(path: Path, doc: Any) -> Path:
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


# --- resolve_arch -------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(NAMED_CELLS))
def test_resolve_named_cell(name: str) -> None:
    arch = runs.resolve_arch(name)
    space = DartsCellSpace()
    assert arch == space.named(name)
    # Same cell as published: per node the same (op, input) pairs (order within a node is
    # normalised by input index).
    got, want = space.to_genotype(arch), NAMED_CELLS[name]
    for cell in ("normal", "reduce"):
        pairs, expected = getattr(got, cell), getattr(want, cell)
        assert [sorted(pairs[k:k + 2]) for k in range(0, len(pairs), 2)] == [
            sorted(expected[k:k + 2]) for k in range(0, len(expected), 2)]


def test_resolve_arch_file(tmp_path: Path) -> None:
    path = _write(tmp_path / "cell.json", _doc("darts_v1"))
    assert runs.resolve_arch(str(path)) == DartsCellSpace().named("darts_v1")


def test_resolve_arch_file_with_genotype_rendering(tmp_path: Path) -> None:
    space = DartsCellSpace()
    arch = space.named("darts_v2")
    path = _write(tmp_path / "arch.json", arch.to_json(genotype=space.describe(arch)))
    assert runs.resolve_arch(str(path)) == arch


def test_resolve_run_directory(tmp_path: Path) -> None:
    run = tmp_path / "search-run"
    run.mkdir()
    _write(run / "arch.json", _doc("darts_v1"))
    (run / "config.json").write_text("{}", encoding="utf-8")
    assert runs.resolve_arch(str(run)) == DartsCellSpace().named("darts_v1")


def test_resolve_arch_of_a_custom_space(tmp_path: Path) -> None:
    space = DartsCellSpace(nodes=3, ops=["none", "skip_connect", "sep_conv_3x3"])
    arch = space.sample(np.random.default_rng(0))
    path = _write(tmp_path / "arch.json", arch.to_json())
    resolved = runs.resolve_arch(str(path))
    assert resolved == arch
    assert resolved.space_args == {"nodes": 3, "ops": ["none", "skip_connect", "sep_conv_3x3"]}


def test_resolve_file_named_like_a_cell_prefers_the_file(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    _write(tmp_path / "darts_v2", _doc("darts_v1"))
    assert runs.resolve_arch("darts_v2") == DartsCellSpace().named("darts_v1")


def test_resolve_unknown_name() -> None:
    with pytest.raises(ArchError, match="darts_v3"):
        runs.resolve_arch("darts_v3")


def test_resolve_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ArchError, match="neither a named cell"):
        runs.resolve_arch(str(tmp_path / "missing.json"))


def test_resolve_directory_without_arch_json(tmp_path: Path) -> None:
    with pytest.raises(ArchError, match="without arch.json"):
        runs.resolve_arch(str(tmp_path))


def _malformed() -> dict[str, Any]:
    three_inputs = _doc()
    three_inputs["choices"]["normal.n3.e2"] = "skip_connect"
    unknown_op = _doc()
    unknown_op["choices"]["normal.n2.e0"] = "conv_9x9"
    wrong_hash = _doc()
    wrong_hash["space_hash"] = "sha256:" + "0" * 64
    wrong_format = _doc()
    wrong_format["format"] = "archsearch.arch/2"
    missing_label = _doc()
    del missing_label["choices"]["reduce.n5.e4"]
    wrong_space = _doc()
    wrong_space["space"] = "nasbench"
    bad_args = _doc()
    bad_args["space_args"] = {"nodes": 4, "ops": ["none", "teleport"]}
    return {
        "invalid-json": '{"format": "archsearch.arch/1", ',
        "not-an-object": "[1, 2, 3]",
        "wrong-format": wrong_format,
        "three-inputs": three_inputs,
        "unknown-op": unknown_op,
        "wrong-space-hash": wrong_hash,
        "missing-label": missing_label,
        "wrong-space": wrong_space,
        "bad-space-args": bad_args,
    }


MALFORMED = _malformed()
MALFORMED_MESSAGES = {
    "invalid-json": "not valid JSON",
    "not-an-object": "JSON object",
    "wrong-format": "format",
    "three-inputs": "3 non-'none' inputs",
    "unknown-op": "conv_9x9",
    "wrong-space-hash": "space_hash",
    "missing-label": "missing label",
    "wrong-space": "nasbench",
    "bad-space-args": "teleport",
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_resolve_malformed_arch_file(tmp_path: Path, case: str) -> None:
    doc = MALFORMED[case]
    path = tmp_path / "arch.json"
    if isinstance(doc, str):
        path.write_text(doc, encoding="utf-8")
    else:
        _write(path, doc)
    with pytest.raises(ArchError, match=MALFORMED_MESSAGES[case]) as info:
        runs.resolve_arch(str(path))
    assert "\n" not in str(info.value)


def test_resolve_binary_file(tmp_path: Path) -> None:
    path = tmp_path / "arch.json"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ArchError, match="UTF-8"):
        runs.resolve_arch(str(path))


# --- resolve_device -----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["cpu", "cpu:0"])
def test_resolve_device_cpu(name: str) -> None:
    assert runs.resolve_device(name).type == "cpu"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("name", ["cuda", "cuda:0", "cuda:1"])
def test_resolve_device_cuda_without_cuda(name: str) -> None:
    with pytest.raises(ConfigError, match="CUDA is not available"):
        runs.resolve_device(name)


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="this machine has MPS")
def test_resolve_device_mps_without_mps() -> None:
    with pytest.raises(ConfigError, match="MPS is not available"):
        runs.resolve_device("mps")


@pytest.mark.parametrize("name", ["garbage", "", "CPU", "cuda:x", "gpu"])
def test_resolve_device_garbage(name: str) -> None:
    with pytest.raises(ConfigError, match="not a device"):
        runs.resolve_device(name)


@pytest.mark.parametrize("name", ["xpu", "meta"])
def test_resolve_device_unavailable_type(name: str) -> None:
    with pytest.raises(ConfigError):
        runs.resolve_device(name)


# --- defaults and profile -----------------------------------------------------------------


def test_defaults_for_digits_and_others() -> None:
    quick = runs.defaults_for("digits", runs.TRAIN_DEFAULTS)
    assert quick == runs.TRAIN_DEFAULTS["quick"]
    assert runs.defaults_for("cifar10", runs.SEARCH_DEFAULTS) == runs.SEARCH_DEFAULTS["paper"]
    quick["epochs"] = -1  # a copy: the table is not changed
    assert runs.TRAIN_DEFAULTS["quick"]["epochs"] != -1


def test_profile_small_network() -> None:
    arch = runs.resolve_arch("darts_v2")
    stats = runs.profile(arch, channels=4, layers=3, num_classes=10, imagenet=False,
                         auxiliary=True, image_size=16)
    assert stats["input_shape"] == [1, 3, 16, 16]
    assert stats["num_params"] > stats["num_params_no_aux"] > 0
    assert stats["macs"] > 0
    plain = runs.profile(arch, channels=4, layers=3, num_classes=10, imagenet=False,
                         auxiliary=False, image_size=16)
    assert plain["num_params"] == plain["num_params_no_aux"] == stats["num_params_no_aux"]
    assert plain["macs"] == stats["macs"]  # the auxiliary head does not run at inference


def test_profile_rejects_bad_sizes() -> None:
    arch = runs.resolve_arch("darts_v1")
    with pytest.raises(ArchsearchError, match="--channels"):
        runs.profile(arch, channels=7, layers=3, num_classes=10, imagenet=False, auxiliary=False)
    with pytest.raises(ArchsearchError, match="--layers"):
        runs.profile(arch, channels=4, layers=2, num_classes=10, imagenet=False, auxiliary=False)


def test_build_network_is_seeded() -> None:
    arch = runs.resolve_arch("darts_v2")
    a = runs.build_network(arch, channels=4, layers=3, num_classes=10, seed=3)
    b = runs.build_network(arch, channels=4, layers=3, num_classes=10, seed=3)
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(x, y), name


def test_arch_round_trips_through_load(tmp_path: Path) -> None:
    arch = runs.resolve_arch("darts_v1")
    path = _write(tmp_path / "arch.json", arch.to_json(genotype="for people"))
    loaded = Arch.load(path)
    assert loaded == arch
    assert loaded.space_args == arch.space_args


# --- checkpointed runs: resume, divergence ------------------------------------------------


class _Stop(Exception):
    pass


@pytest.fixture(scope="module")
def tiny_npz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 20)
    x = (rng.random((60, 8, 8)) * 80 + y[:, None, None] * 60).astype(np.uint8)
    path = tmp_path_factory.mktemp("data") / "tiny.npz"
    np.savez(path, x_train=x, y_train=y)
    return path


def _search_settings(npz: Path, **kwargs: Any) -> dict[str, Any]:
    return {"dataset": "npz", "data_dir": str(npz), "seed": 4, "device": "cpu", "nodes": 4,
            "ops": ["none", "max_pool_3x3", "skip_connect", "sep_conv_3x3"], "order": "first",
            "hvp": "finite-difference", "cost_weight": 0.0, "epochs": 3, "channels": 4,
            "layers": 3, "batch_size": 8, "retrain": None, **kwargs}


def _log(run: Path) -> list[dict[str, Any]]:
    return [{k: v for k, v in json.loads(line).items() if k != "seconds"}
            for line in (run / "log.jsonl").read_text(encoding="utf-8").splitlines()]


def _quiet(_: str) -> None:
    pass


@pytest.mark.parametrize("method", ["darts", "proxyless"])
def test_resumed_search_equals_the_uninterrupted_one(tiny_npz: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     method: str) -> None:
    settings = _search_settings(tiny_npz, method=method)
    straight = tmp_path / "straight"
    arch = runs.run_search(settings, straight, progress=False, log=_quiet)
    save = search_runs.save_checkpoint

    def save_then_die(path: Path, doc: dict[str, Any]) -> None:
        save(path, doc)
        if doc["epoch"] == 2:
            raise _Stop  # killed after the checkpoint, before the epoch reached the log

    cut = tmp_path / "cut"
    monkeypatch.setattr(search_runs, "save_checkpoint", save_then_die)
    with pytest.raises(_Stop):
        runs.run_search(settings, cut, progress=False, log=_quiet)
    monkeypatch.undo()
    (cut / ".checkpoint.pt.x1y2.tmp").write_bytes(b"left by a kill")
    assert len(_log(cut)) == 1 and not (cut / "arch.json").exists()
    assert runs.resume_search(cut, progress=False, log=_quiet) == arch
    assert _log(cut) == _log(straight)  # epoch 2 logged once, from the checkpoint
    assert (cut / "arch.json").read_bytes() == (straight / "arch.json").read_bytes()
    a, b = (torch.load(run / "supernet.pt", weights_only=True) for run in (straight, cut))
    assert a["alphas"] == b["alphas"]
    assert all(torch.equal(a["state_dict"][k], v) for k, v in b["state_dict"].items())
    assert not [p for p in cut.iterdir() if p.name.endswith(".tmp")]


def test_a_diverging_search_names_epoch_and_step_and_keeps_its_checkpoint(
        tiny_npz: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from archsearch.supernet import BilevelOptimizer

    calls = {"n": 0}
    step = BilevelOptimizer.step

    def nan_in_epoch_two(self: BilevelOptimizer, *batches: Any) -> torch.Tensor:
        calls["n"] += 1  # 3 steps an epoch: 24 examples a half, batches of 8
        loss = step(self, *batches)
        return loss * float("nan") if calls["n"] == 5 else loss

    monkeypatch.setattr(BilevelOptimizer, "step", nan_in_epoch_two)
    out = tmp_path / "run"
    with pytest.raises(FloatingPointError) as info:
        runs.run_search(_search_settings(tiny_npz), out, progress=False, log=_quiet)
    message = str(info.value)
    assert "training loss became nan at epoch 2, step 2;" in message
    assert f"last good checkpoint (epoch 1) stays in {out / 'checkpoint.pt'}" in message
    assert torch.load(out / "checkpoint.pt", weights_only=True)["epoch"] == 1
    assert len(_log(out)) == 1 and not (out / "arch.json").exists()


def test_train_run_writes_the_model_file_with_last_and_best_weights(tiny_npz: Path,
                                                                    tmp_path: Path) -> None:
    settings = {"dataset": "npz", "data_dir": str(tiny_npz), "seed": 0, "device": "cpu",
                **runs.resolve_recipe("npz", "quick", {"epochs": 2, "channels": 4, "layers": 3,
                                                       "batch_size": 8, "auxiliary": True}),
                "val_fraction": 0.25}
    arch = runs.resolve_arch("darts_v2")
    metrics = runs.run_train(arch, settings, tmp_path / "run", progress=False, log=_quiet)
    doc = torch.load(tmp_path / "run" / "model.pt", weights_only=True)
    assert doc["format"] == "archsearch.model/1" and Arch.from_json(doc["arch"]) == arch
    assert doc["network"] == {"channels": 4, "layers": 3, "num_classes": 3, "in_channels": 1,
                              "image_size": 8, "auxiliary": True}
    assert doc["metrics"] == metrics and doc["config"]["val_fraction"] == 0.25
    assert (metrics["train_examples"], metrics["val_examples"], metrics["test_examples"]) == \
        (36, 12, 12)
    assert metrics["best_epoch"] in (1, 2)
    model = runs.build_network(arch, **{k: v for k, v in doc["network"].items()
                                        if k != "image_size"})
    for weights, accuracy in ((doc["state_dict"], metrics["test_accuracy"]),
                              (doc["best_state_dict"], metrics["best_test_accuracy"])):
        model.load_state_dict(weights)
        data = load_dataset("npz", str(tiny_npz), seed=0)
        assert Trainer(progress=False).evaluate(model, data.x_test, data.y_test)[
            "accuracy"] == accuracy


def test_resume_of_a_run_that_is_not_there(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such run directory"):
        runs.resume_train(tmp_path / "missing")
    (tmp_path / "config.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ConfigError, match="no readable config.json"):
        runs.resume_search(tmp_path)

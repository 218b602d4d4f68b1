"""archsearch.export: every space's network exported to ONNX / TorchScript / PyTorch gives
the PyTorch logits, trained weights are the ones exported, and bad model files are refused."""

from __future__ import annotations

import importlib.util
import io
import json
import os
import pickle
import sys
import warnings

import numpy as np
import pytest
import torch

import archsearch.export as ex
from archsearch.errors import ArchError, ConfigError
from archsearch.export import ExportCheckError, export, load_model
from archsearch.runs import build_network, resolve_arch
from archsearch.space import Arch
from archsearch.spaces import SPACES

needs_onnx = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("onnx", "onnxruntime")),
    reason="the ONNX export needs onnx and onnxruntime")
# Exporting is dominated by tracing; the bigger networks run in the slow suite.
FAST_SPACES = ("darts", "chain")
SMALL = {"image_size": 8, "num_classes": 5, "in_channels": 1}
DARTS_SMALL = {"channels": 2, "layers": 3}
SPACE_ARGS = {"nasnet": {"blocks": 2}}  # fewer blocks per cell: a quicker trace


def sampled(name: str) -> Arch:
    return SPACES.get(name)(**SPACE_ARGS.get(name, {})).sample(np.random.default_rng(7))


def sizes(arch: Arch) -> dict[str, int]:
    return {**SMALL, **(DARTS_SMALL if arch.space == "darts" else {})}


def reference(arch: Arch, seed: int = 0) -> torch.nn.Module:
    """The PyTorch network that `export` builds for a weightless arch, built independently."""
    s = sizes(arch)
    return build_network(arch, channels=s.get("channels", 16), layers=s.get("layers", 8),
                         num_classes=s["num_classes"], in_channels=s["in_channels"],
                         seed=seed).eval()


def jit_load(path) -> torch.jit.ScriptModule:
    with warnings.catch_warnings():  # torch.jit is deprecated in favour of torch.export
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.load(str(path))


def logits(model: torch.nn.Module, x: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return model(x).numpy()


def space_params(fast: tuple[str, ...] = FAST_SPACES) -> list:
    return [pytest.param(name, marks=() if name in fast else pytest.mark.slow)
            for name in SPACES.names()]


def test_the_fast_set_covers_darts_and_another_space():
    assert set(FAST_SPACES) <= set(SPACES.names()) and len(SPACES.names()) >= 6


def onnx_logits(path, x: torch.Tensor) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x.numpy()})[0]


@needs_onnx
@pytest.mark.parametrize("name", space_params())
def test_every_space_exports_to_onnx_matching_pytorch(name, tmp_path):
    arch = sampled(name)
    result = export(arch, tmp_path / "m.onnx", "onnx", **sizes(arch))
    x = torch.randn(2, 1, 8, 8)  # a batch size the export's own check did not use
    np.testing.assert_allclose(onnx_logits(result.path, x), logits(reference(arch), x),
                               atol=1e-5, rtol=1e-4)
    assert result.max_abs_diff < 1e-4 and result.input_shape == (1, 1, 8, 8)


@pytest.mark.parametrize("name", space_params())
def test_every_space_exports_to_torchscript_matching_pytorch(name, tmp_path):
    arch = sampled(name)
    result = export(arch, tmp_path / "m.ts", "torchscript", **sizes(arch))
    x = torch.randn(2, 1, 8, 8)
    np.testing.assert_allclose(logits(jit_load(result.path), x), logits(reference(arch), x),
                               atol=1e-5, rtol=1e-4)
    assert result.max_abs_diff < 1e-4


@pytest.mark.parametrize("name", space_params(tuple(set(SPACES.names()) - {"nasnet"})))
def test_every_space_round_trips_through_the_pytorch_file(name, tmp_path):
    arch = sampled(name)
    result = export(arch, tmp_path, "pytorch", **sizes(arch))
    assert result.path == tmp_path / "model.weights.pt" and result.max_abs_diff == 0.0
    doc = torch.load(result.path, weights_only=True)  # tensors and plain values only
    assert doc["format"] == "archsearch.model/1" and Arch.from_json(doc["arch"]) == arch
    x = torch.randn(3, 1, 8, 8)
    assert np.array_equal(logits(load_model(result.path), x), logits(reference(arch), x))


def test_dilated_convs_trace_with_plain_convolutions(tmp_path):
    # darts_v2 has dil_conv_3x3, whose untraced CPU forward is a custom autograd Function.
    result = export("darts_v2", tmp_path, "torchscript", **SMALL, **DARTS_SMALL)
    graph = str(jit_load(result.path).inlined_graph)
    assert "_DepthwiseConvFunction" not in graph and "aten::_convolution" in graph


@needs_onnx
def test_mobilenet_shrinking_resize_exports_to_onnx(tmp_path):
    # 32×32 inputs shrink to the arch's 8×8 with an antialiased resize (ONNX opset 18).
    arch = SPACES.get("mobilenet")(resolutions=[8]).sample(np.random.default_rng(0))
    result = export(arch, tmp_path, "onnx", image_size=32, num_classes=3)
    assert result.max_abs_diff < 1e-4 and result.input_shape == (1, 1, 32, 32)


# --- trained weights --------------------------------------------------------------------
def perturbed(model: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {k: v + 0.2 * torch.randn(v.shape, generator=generator) if v.is_floating_point()
            else v.clone() for k, v in model.state_dict().items()}


def write_train_run(run, *, best: bool = True, old: bool = False) -> dict[str, torch.Tensor]:
    """A train run's model.pt under the model-file contract (tiny DARTS net with an auxiliary
    head); returns the weights that should be exported."""
    arch = resolve_arch("darts_v1")
    model = build_network(arch, num_classes=3, in_channels=1, auxiliary=True, **DARTS_SMALL)
    last, best_weights = perturbed(model, 1), perturbed(model, 2)
    doc = {"arch": arch.to_json(), "state_dict": last,
           "config": {**DARTS_SMALL, "auxiliary": True, "dataset": "digits"}}
    if not old:
        doc.update(format="archsearch.model/1", metrics={"test_accuracy": 0.5},
                   network={**DARTS_SMALL, "num_classes": 3, "in_channels": 1,
                            "image_size": 8, "auxiliary": True})
    if best:
        doc["best_state_dict"] = best_weights
    run.mkdir(parents=True, exist_ok=True)
    torch.save(doc, run / "model.pt")
    return best_weights if best else last


def trained(weights: dict[str, torch.Tensor]) -> torch.nn.Module:
    model = build_network(resolve_arch("darts_v1"), num_classes=3, in_channels=1,
                          **DARTS_SMALL).eval()
    model.load_state_dict({k: v for k, v in weights.items() if not k.startswith("aux_head.")})
    return model


@pytest.mark.parametrize("best", [True, False])
def test_a_train_run_exports_its_best_else_last_weights(tmp_path, best):
    weights = write_train_run(tmp_path / "run", best=best)
    result = export(tmp_path / "run", tmp_path / "out", "pytorch")
    x = torch.randn(3, 1, 8, 8)
    got = logits(load_model(result.path), x)
    assert np.array_equal(got, logits(trained(weights), x))
    fresh = build_network(resolve_arch("darts_v1"), num_classes=3, in_channels=1,
                          **DARTS_SMALL).eval()
    assert not np.allclose(got, logits(fresh, x))
    assert ("best" if best else "last") in result.weights and not result.notes
    assert not any(k.startswith("aux_head.") for k in torch.load(result.path)["state_dict"])


@needs_onnx
def test_a_train_run_exports_its_weights_to_onnx(tmp_path):
    weights = write_train_run(tmp_path / "run")
    result = export(tmp_path / "run", tmp_path / "out", "onnx")
    x = torch.randn(2, 1, 8, 8)
    np.testing.assert_allclose(onnx_logits(result.path, x), logits(trained(weights), x),
                               atol=1e-5, rtol=1e-4)


def test_old_model_files_infer_classes_channels_and_image_size(tmp_path):
    weights = write_train_run(tmp_path / "run", best=False, old=True)
    model = load_model(tmp_path / "run" / "model.pt")
    x = torch.randn(2, 1, 8, 8)
    assert np.array_equal(logits(model, x), logits(trained(weights), x))
    result = export(tmp_path / "run", tmp_path / "out", "pytorch")
    assert result.input_shape == (1, 1, 8, 8)  # digits: 8×8, from the run's dataset


def test_a_search_run_uses_its_retrained_weights_else_fresh_ones(tmp_path):
    run = tmp_path / "search"
    run.mkdir()
    arch = resolve_arch("darts_v1")
    (run / "arch.json").write_text(json.dumps(arch.to_json()))
    fresh = export(run, tmp_path / "fresh", "pytorch", **SMALL, **DARTS_SMALL, seed=3)
    assert "freshly initialised" in fresh.notes[0] and "seed 3" in fresh.weights
    weights = write_train_run(run / "retrain")
    result = export(run, tmp_path / "retrained", "pytorch")
    x = torch.randn(2, 1, 8, 8)
    assert np.array_equal(logits(load_model(result.path), x), logits(trained(weights), x))
    assert "retrain" in result.notes[0]


def test_fresh_networks_follow_the_seed(tmp_path):
    def state(seed, name):
        path = export("darts_v1", tmp_path / name, "pytorch", seed=seed, **SMALL,
                      **DARTS_SMALL).path
        return torch.load(path, weights_only=True)["state_dict"]

    a, b, c = state(0, "a"), state(0, "b"), state(1, "c")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_json_export_is_the_arch_with_its_genotype(tmp_path):
    result = export("darts_v2", tmp_path, "json")
    assert Arch.load(result.path) == resolve_arch("darts_v2")
    assert "normal:" in json.loads(result.path.read_text())["genotype"]


# --- refusals ------------------------------------------------------------------------------
class Hostile:
    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return (os.mkdir, (self.target,))


def test_a_pickle_with_code_is_refused_and_never_run(tmp_path):
    marker = tmp_path / "pwned"
    run = tmp_path / "run"
    run.mkdir()
    torch.save({"state_dict": Hostile(str(marker)), "arch": {}}, run / "model.pt")
    with pytest.raises(ConfigError, match="not a readable weights-only"):
        export(run, tmp_path / "out", "onnx")
    (run / "model.pt").write_bytes(pickle.dumps(Hostile(str(marker))))
    with pytest.raises(ConfigError):
        load_model(run / "model.pt")
    assert not marker.exists() and not (tmp_path / "out").exists()


@pytest.mark.parametrize("damage", ["truncate", "garbage", "not a dict", "bad weights"])
def test_damaged_model_files_are_refused(tmp_path, damage):
    write_train_run(tmp_path / "run")
    path = tmp_path / "run" / "model.pt"
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "garbage":
        path.write_bytes(b"\x80" + os.urandom(200))
    elif damage == "not a dict":
        torch.save([1, 2], path)
    else:
        doc = torch.load(path, weights_only=True)
        doc["best_state_dict"]["classifier.weight"] = torch.zeros(7, 7)
        torch.save(doc, path)
    with pytest.raises(ConfigError) as info:
        export(tmp_path / "run", tmp_path / "out", "pytorch")
    assert "\n" not in str(info.value) and not (tmp_path / "out").exists()


@pytest.mark.parametrize("fmt, runner", [
    pytest.param("onnx", "run_onnx", marks=needs_onnx), ("torchscript", "run_torchscript"),
    ("pytorch", "run_pytorch")])
def test_a_failed_check_writes_nothing(tmp_path, monkeypatch, fmt, runner):
    real = getattr(ex, runner)
    monkeypatch.setattr(ex, runner, lambda data, inputs: [y + 1e-2 for y in real(data, inputs)])
    with pytest.raises(ExportCheckError, match="differs from PyTorch"):
        export("darts_v1", tmp_path / "out", fmt, **SMALL, **DARTS_SMALL)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_a_missing_onnx_runtime_is_a_config_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails
    with pytest.raises(ConfigError, match="pip install onnx onnxruntime"):
        export("darts_v1", tmp_path / "m.onnx", "onnx")
    assert not (tmp_path / "m.onnx").exists()


@needs_onnx
def test_an_exporter_failure_is_an_export_error(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("unsupported op\nwith details")

    monkeypatch.setattr(torch.onnx, "export", broken)
    with pytest.raises(ExportCheckError, match="ONNX export failed: unsupported op$"):
        export("darts_v1", tmp_path / "m.onnx", "onnx", **SMALL, **DARTS_SMALL)
    assert not (tmp_path / "m.onnx").exists()


def test_settings_that_conflict_with_the_source_are_refused(tmp_path):
    write_train_run(tmp_path / "run")
    with pytest.raises(ConfigError, match="--classes 10: the weights"):
        export(tmp_path / "run", tmp_path / "out", "pytorch", num_classes=10)
    with pytest.raises(ConfigError, match="--channels applies to DARTS"):
        export(sampled("chain"), tmp_path / "out", "pytorch", channels=8)
    with pytest.raises(ConfigError, match="is the model file being exported"):
        export(tmp_path / "run", tmp_path / "run" / "model.pt", "pytorch", overwrite=True)
    with pytest.raises(ConfigError, match="--format"):
        export("darts_v1", tmp_path / "out", "keras")
    with pytest.raises(ArchError, match="not a run directory"):
        export(str(tmp_path / "nowhere"), tmp_path / "out", "json")
    with pytest.raises(ConfigError, match="cannot run on"):
        export(sampled("nb201"), tmp_path / "out", "pytorch", image_size=1)


def test_an_existing_output_needs_overwrite(tmp_path):
    target = tmp_path / "arch.json"
    target.write_text("keep")
    with pytest.raises(ConfigError, match="--overwrite"):
        export("darts_v1", target, "json")
    assert target.read_text() == "keep"
    export("darts_v1", target, "json", overwrite=True)
    assert Arch.load(target) == resolve_arch("darts_v1")


def test_load_model_reads_file_objects():
    arch = resolve_arch("darts_v1")
    model = build_network(arch, num_classes=3, in_channels=1, **DARTS_SMALL).eval()
    source = ex.Source(arch, {**DARTS_SMALL, "num_classes": 3, "in_channels": 1,
                              "image_size": 8, "auxiliary": False}, None, "fresh")
    buffer = io.BytesIO()
    torch.save(ex.model_document(source, model), buffer)
    buffer.seek(0)
    x = torch.randn(1, 1, 8, 8)
    assert np.array_equal(logits(load_model(buffer), x), logits(model, x))

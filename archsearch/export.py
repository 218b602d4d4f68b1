"""Export a found or trained architecture: Arch JSON, ONNX, TorchScript or a PyTorch weights file.

The source is a train run (its `model.pt`: the weights are exported), a search run (its
`arch.json` / `best_arch.json`, or the weights of its `retrain/model.pt`), an arch JSON file or
a named DARTS cell (DARTS: arXiv:1806.09055, Fig. 4–5). An architecture without weights is
exported as a freshly initialised, seeded network, and the result says so.

Every model export is checked before it is written: ONNX (ONNX Runtime), TorchScript
(re-loaded with `torch.jit.load`) and the PyTorch file (rebuilt with `load_model`) must give
the PyTorch model's logits on random inputs of batch 1 and 3, within `TOLERANCE` × the
outputs' scale. A failed check raises `ExportCheckError` and writes nothing; files are
written atomically (`archsearch.storage`). The exported network is the inference network in
eval mode: logits only, no auxiliary head, no drop-path.

The PyTorch file is a `model.pt`-style dictionary (format `archsearch.model/1`: `arch`,
`network`, `state_dict`) of tensors and plain values, loadable with
`torch.load(path, weights_only=True)`; `load_model(path)` rebuilds the module from it.
"""

from __future__ import annotations

import functools
import io
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from archsearch.errors import ArchsearchError, ConfigError
from archsearch.export_source import (
    MODEL_FORMAT,
    Source,
    build_model,
    load_model,
    model_document,
    read_model_file,
    resolve_source,
)
from archsearch.runs import space_of
from archsearch.space import Arch
from archsearch.spaces.darts import DartsCellSpace
from archsearch.storage import atomic_write_bytes, atomic_write_json

__all__ = ["FORMATS", "MODEL_FORMAT", "ExportCheckError", "ExportResult", "Source",
           "build_model", "export", "load_model", "model_document", "read_model_file",
           "resolve_source"]

FORMATS: tuple[str, ...] = ("json", "onnx", "torchscript", "pytorch")
DEFAULT_NAMES = {"json": "arch.json", "onnx": "model.onnx",
                 "torchscript": "model.torchscript.pt", "pytorch": "model.weights.pt"}
ONNX_OPSET = 18  # the first with antialiased Resize
CHECK_BATCHES = (1, 3)
# |exported − PyTorch| must stay below TOLERANCE · max(1, max |PyTorch logits|).
TOLERANCE = 1e-4


class ExportCheckError(ArchsearchError):
    """An export failed, or its outputs differ from the PyTorch model's; nothing was written."""


@dataclass(frozen=True)
class ExportResult:
    """What `export` wrote and how well the written model matched PyTorch."""

    path: Path
    format: str
    input_shape: tuple[int, ...]
    weights: str
    max_abs_diff: float | None  # None for json (nothing to check)
    notes: tuple[str, ...] = field(default_factory=tuple)

    def summary(self) -> str:
        if self.format == "json":
            return f"wrote {self.path} (the architecture as JSON)"
        line = f"wrote {self.path} ({self.format}; weights: {self.weights})"
        if self.max_abs_diff is not None:
            shape = "x".join(map(str, self.input_shape[1:]))
            line += (f"\ncheck vs PyTorch on random {shape} inputs, batches "
                     f"{', '.join(map(str, CHECK_BATCHES))}: max abs diff "
                     f"{self.max_abs_diff:.3g}")
        return line


# --- export ------------------------------------------------------------------------------
def export(source: str | Path | Arch, out: str | Path, format: str, *,
           image_size: int | None = None, num_classes: int | None = None,
           in_channels: int | None = None, channels: int | None = None,
           layers: int | None = None, seed: int = 0, overwrite: bool = False) -> ExportResult:
    """Export `source` (see `resolve_source`) as `format` to `out`, a file or a folder.

    Args:
        source: a run directory, a model file, an arch JSON file, a named cell or an Arch.
        out: the output file, or a folder for the default name (`DEFAULT_NAMES`).
        format: one of `FORMATS`.
        image_size: the side of the (square) input; default: the run's, else the space's.
        num_classes, in_channels, channels, layers: the network of an arch without weights
            (channels and layers: DARTS only).
        seed: initialises a network without weights and draws the check's inputs.
        overwrite: replace an existing output file.

    Raises:
        ConfigError, ArchError: bad input (nothing is written).
        ExportCheckError: the export failed or does not match PyTorch (nothing is written).
    """
    if format not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, got {format!r}")
    if image_size is not None and (isinstance(image_size, bool) or image_size < 1):
        raise ConfigError(f"--image-size must be positive, got {image_size!r}")
    if format == "onnx":
        _require_onnx()
    src = resolve_source(source, image_size=image_size, seed=seed, num_classes=num_classes,
                         in_channels=in_channels, channels=channels, layers=layers)
    path = output_path(out, format, overwrite=overwrite, source=src.path)
    side = src.network["image_size"]
    if format == "json":
        space = space_of(src.arch)
        key = "genotype" if isinstance(space, DartsCellSpace) else "description"
        atomic_write_json(path, src.arch.to_json(**{key: space.describe(src.arch)}))
        return ExportResult(path, format, (), "none (architecture only)", None, src.notes)
    if side is None:
        raise ConfigError(f"{src.path} does not record its image size; pass --image-size")
    model = build_model(src, seed=seed)
    shape = (src.network["in_channels"], side, side)
    inputs = check_inputs(model, shape, seed=seed)
    data, run = WRITERS[format](model, inputs, src)
    with torch.no_grad():
        references = [model(x) for x in inputs]
    diff = max(compare_outputs(ref, got, what=format)
               for ref, got in zip(references, run(data, inputs), strict=True))
    atomic_write_bytes(path, lambda f: f.write(data))
    return ExportResult(path, format, (1, *shape), src.weights, diff, src.notes)


def output_path(out: str | Path, format: str, *, overwrite: bool = False,
                source: Path | None = None) -> Path:
    """`out` itself, or `out/DEFAULT_NAMES[format]` when `out` is (or will be) a folder."""
    out = Path(out)
    path = out / DEFAULT_NAMES[format] if out.is_dir() or not out.suffix else out
    if path.is_dir():
        raise ConfigError(f"--out {path} is a directory")
    if source is not None and path.resolve() == source.resolve():
        raise ConfigError(f"--out {path} is the model file being exported; choose another path")
    if path.exists() and not overwrite:
        raise ConfigError(f"--out {path} exists; choose another path or pass --overwrite")
    return path


def check_inputs(model: nn.Module, shape: Sequence[int], *, seed: int) -> list[torch.Tensor]:
    """Random N(0, 1) inputs of each batch in CHECK_BATCHES; the model must run on them."""
    generator = torch.Generator().manual_seed(seed)
    inputs = [torch.randn((batch, *shape), generator=generator) for batch in CHECK_BATCHES]
    try:
        with torch.no_grad():
            model(inputs[0])
    except RuntimeError as exc:
        raise ConfigError(f"the network cannot run on {'x'.join(map(str, shape))} inputs "
                          f"(try another --image-size): {_first_line(exc)}") from None
    return inputs


def compare_outputs(reference: torch.Tensor, candidate: Any, *, what: str) -> float:
    """max |candidate − reference|; raises ExportCheckError beyond the tolerance."""
    got = torch.as_tensor(np.asarray(candidate, dtype=np.float32))
    if got.shape != reference.shape:
        raise ExportCheckError(f"{what} export gives outputs of shape {tuple(got.shape)}, "
                               f"PyTorch {tuple(reference.shape)}; nothing written")
    diff = float((got - reference).abs().max())
    limit = TOLERANCE * max(1.0, float(reference.abs().max()))
    if not diff <= limit:  # also catches NaN
        raise ExportCheckError(f"{what} export differs from PyTorch by {diff:.3g} (tolerance "
                               f"{limit:.3g}); nothing written")
    return diff


# Each writer: (model, example inputs, source) -> (file bytes, runner of those bytes).
Runner = Callable[[bytes, list[torch.Tensor]], list[Any]]


def _onnx(model: nn.Module, inputs: list[torch.Tensor], source: Source) -> tuple[bytes, Runner]:
    _register_antialiased_resize()
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings():
            # The TorchScript-based exporter is deprecated in favour of torch.export's, which
            # takes 10–30× longer on these networks and needs onnxscript.
            # Its other warnings are about its own passes; the check below is what counts.
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", UserWarning)
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            torch.onnx.export(model, (inputs[-1],), buffer, dynamo=False,
                              opset_version=ONNX_OPSET, input_names=["input"],
                              output_names=["logits"],
                              dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    except Exception as exc:  # an op the exporter cannot convert
        raise ExportCheckError(f"ONNX export failed: {_first_line(exc)}") from exc
    return buffer.getvalue(), run_onnx


@functools.cache
def _register_antialiased_resize() -> None:
    """Teach the exporter PyTorch's antialiased bilinear resize (MobileNet's `Resize` when it
    shrinks): ONNX's Resize with antialias = 1 (opset 18) and exclude_outside = 1 computes it,
    both renormalising the triangle filter's weights inside the image."""
    from torch.onnx import symbolic_helper

    def resize(g: Any, x: Any, output_size: Any, align_corners: Any, *scales: Any) -> Any:
        if symbolic_helper._maybe_get_const(align_corners, "b"):
            raise RuntimeError("antialiased resize with align_corners=True is not supported")

        def ints(values: list[int]) -> Any:
            return g.op("Constant", value_t=torch.tensor(values, dtype=torch.int64))

        side = symbolic_helper._get_const(output_size, "is", "output_size")
        batch_channels = g.op("Slice", g.op("Shape", x), ints([0]), ints([2]))  # dynamic N, C
        size = g.op("Concat", batch_channels, ints(side), axis_i=0)
        empty = g.op("Constant", value_t=torch.tensor([], dtype=torch.float32))
        return g.op("Resize", x, empty, empty, size, mode_s="linear", antialias_i=1,
                    exclude_outside_i=1, coordinate_transformation_mode_s="half_pixel")

    torch.onnx.register_custom_op_symbolic("aten::_upsample_bilinear2d_aa", resize, ONNX_OPSET)


def run_onnx(data: bytes, inputs: list[torch.Tensor]) -> list[Any]:
    """The outputs of an ONNX model (bytes) under ONNX Runtime's CPU provider."""
    import onnx
    import onnxruntime as ort

    onnx.checker.check_model(onnx.load_from_string(data))
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    return [session.run(None, {"input": x.numpy()})[0] for x in inputs]


def _torchscript(model: nn.Module, inputs: list[torch.Tensor],
                 source: Source) -> tuple[bytes, Runner]:
    buffer = io.BytesIO()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            # Our own check below replaces trace's (which re-runs the model twice).
            torch.jit.save(torch.jit.trace(model, (inputs[-1],), check_trace=False), buffer)
    except Exception as exc:
        raise ExportCheckError(f"TorchScript export failed: {_first_line(exc)}") from exc
    return buffer.getvalue(), run_torchscript


@torch.no_grad()
def run_torchscript(data: bytes, inputs: list[torch.Tensor]) -> list[Any]:
    """The outputs of a saved TorchScript module (bytes), re-loaded with torch.jit.load."""
    with warnings.catch_warnings():  # deprecated in favour of torch.export, still supported
        warnings.simplefilter("ignore", DeprecationWarning)
        module = torch.jit.load(io.BytesIO(data), map_location="cpu")
    return [module(x).numpy() for x in inputs]


def _pytorch(model: nn.Module, inputs: list[torch.Tensor],
             source: Source) -> tuple[bytes, Runner]:
    buffer = io.BytesIO()
    torch.save(model_document(source, model), buffer)
    return buffer.getvalue(), run_pytorch


@torch.no_grad()
def run_pytorch(data: bytes, inputs: list[torch.Tensor]) -> list[Any]:
    """The outputs of the module that `load_model` rebuilds from a PyTorch export (bytes)."""
    module = load_model(io.BytesIO(data))
    return [module(x).numpy() for x in inputs]


WRITERS: dict[str, Callable[..., tuple[bytes, Runner]]] = {
    "onnx": _onnx, "torchscript": _torchscript, "pytorch": _pytorch}


def _require_onnx() -> None:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        raise ConfigError("--format onnx needs the onnx and onnxruntime packages "
                          "(pip install onnx onnxruntime)") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__

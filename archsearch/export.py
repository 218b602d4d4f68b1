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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
from torch import nn

from archsearch.errors import ArchError, ArchsearchError, ConfigError
from archsearch.runs import TRAIN_DEFAULTS, build_network, resolve_arch, space_of
from archsearch.space import Arch
from archsearch.spaces.darts import NAMED_CELLS, DartsCellSpace
from archsearch.storage import atomic_write_bytes, atomic_write_json

FORMATS: tuple[str, ...] = ("json", "onnx", "torchscript", "pytorch")
DEFAULT_NAMES = {"json": "arch.json", "onnx": "model.onnx",
                 "torchscript": "model.torchscript.pt", "pytorch": "model.weights.pt"}
MODEL_FORMAT = "archsearch.model/1"
ONNX_OPSET = 18  # the first with antialiased Resize
CHECK_BATCHES = (1, 3)
# |exported − PyTorch| must stay below TOLERANCE · max(1, max |PyTorch logits|).
TOLERANCE = 1e-4
# Image sides of the datasets, for old model files that do not record theirs.
DATASET_IMAGE_SIZES = {"digits": 8, "cifar10": 32}
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt")
SIZE_FLAGS = {"num_classes": "--classes", "in_channels": "--in-channels",
              "channels": "--channels", "layers": "--layers"}


class ExportCheckError(ArchsearchError):
    """An export failed, or its outputs differ from the PyTorch model's; nothing was written."""


@dataclass(frozen=True)
class Source:
    """What is exported: an arch, how to build its network, and its weights (or None)."""

    arch: Arch
    network: dict[str, Any]  # build_network's settings plus image_size
    state_dict: dict[str, torch.Tensor] | None
    weights: str  # where the weights come from, for people
    path: Path | None = None  # the file read, never to be overwritten
    notes: tuple[str, ...] = ()


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


# --- sources ---------------------------------------------------------------------------
def resolve_source(ref: str | Path | Arch, *, image_size: int | None = None,
                   seed: int = 0, **sizes: int | None) -> Source:
    """RUN_OR_ARCH: a train run, a search run, a model file, an arch JSON file or a named cell.

    `sizes` (num_classes, in_channels, and for DARTS channels and layers; None = default)
    shape a network without weights; a model file fixes them, so they may only repeat its
    values. `image_size` may always be given (the networks pool globally).
    """
    unknown = set(sizes) - set(SIZE_FLAGS)
    if unknown:
        raise TypeError(f"unknown size setting {sorted(unknown)[0]!r}")
    if isinstance(ref, Arch):
        return _fresh(ref, f"the {ref.space} architecture", image_size, sizes, seed)
    path = Path(ref)
    checkpoint = _checkpoint_in(path)
    if checkpoint is None:
        if not path.exists() and str(ref) not in NAMED_CELLS:
            raise ArchError(f"{str(ref)!r} is not a run directory, model file, architecture "
                            f"file or named cell ({', '.join(NAMED_CELLS)})")
        return _fresh(resolve_arch(str(ref)), str(ref), image_size, sizes, seed)
    source = read_model_file(checkpoint)
    for key, value in sizes.items():
        if value is not None and value != source.network[key]:
            raise ConfigError(f"{SIZE_FLAGS[key]} {value}: the weights in {checkpoint} fix it "
                              f"at {source.network[key]}")
    network = {**source.network, "image_size": image_size or source.network["image_size"]}
    notes = source.notes
    if checkpoint == path / "retrain" / "model.pt":
        notes += (f"{path} is a search run: exporting the retrained weights in {checkpoint}",)
    return Source(source.arch, network, source.state_dict, source.weights, checkpoint, notes)


def _checkpoint_in(path: Path) -> Path | None:
    """The model file that `path` names or holds (a train run's, then a search run's
    retraining), or None for an architecture reference."""
    if path.is_dir():
        found = [path / "model.pt", path / "retrain" / "model.pt"]
        return next((p for p in found if p.is_file()), None)
    if path.is_file() and (path.suffix in CHECKPOINT_SUFFIXES or _looks_binary(path)):
        return path
    return None


def _looks_binary(path: Path) -> bool:
    try:
        with open(path, "rb") as f:  # a torch zip file, or a bare pickle
            head = f.read(4)
    except OSError:
        return False
    return head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"


def _fresh(arch: Arch, where: str, image_size: int | None, sizes: Mapping[str, int | None],
           seed: int) -> Source:
    """An architecture without weights: the network is freshly initialised from `seed`."""
    space = space_of(arch, source=where)
    given = {key: value for key, value in sizes.items() if value is not None}
    if not isinstance(space, DartsCellSpace) and {"channels", "layers"} & set(given):
        flag = SIZE_FLAGS["channels" if "channels" in given else "layers"]
        raise ConfigError(f"{flag} applies to DARTS cells; a {arch.space!r} architecture is "
                          "built by its own space")
    paper = TRAIN_DEFAULTS["paper"]  # DARTS: the paper's CIFAR network, as `profile` shows
    network = {"channels": paper["channels"], "layers": paper["layers"],
               "num_classes": arch.space_args.get("num_classes", 10),
               "in_channels": arch.space_args.get("in_channels", 3), **given,
               "auxiliary": False, "image_size": image_size or _native_size(space, arch)}
    note = (f"{where} holds no trained weights: exporting a freshly initialised network "
            f"(seed {seed})")
    return Source(arch, network, None, f"none, initialised from seed {seed}", None, (note,))


def _native_size(space: Any, arch: Arch) -> int:
    """The input side a space's network is meant for (its resolution decision), else 32."""
    if hasattr(space, "scaled_config"):
        return int(space.scaled_config(arch).resolution)
    if hasattr(space, "input_shape"):
        return int(space.input_shape(arch)[-1])
    return 32


# --- model files ------------------------------------------------------------------------
def read_model_file(path: str | Path | BinaryIO) -> Source:
    """A `model.pt` (a train run's, or one written by `export(..., "pytorch")`), checked.

    Old files without `format`/`network` are read too: their class and input-channel counts
    come from the weights' shapes. The best weights are used when the file has them.

    Raises:
        ConfigError: the file is missing, truncated, not weights-only (pickled code is
            refused, never run) or malformed — in one line.
        ArchError: its architecture is not valid in its space.
    """
    name = str(path) if isinstance(path, str | Path) else "model file"
    try:
        with warnings.catch_warnings():  # e.g. about a foreign pickle protocol: refused below
            warnings.simplefilter("ignore", UserWarning)
            doc = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ConfigError(f"{name}: no such model file") from None
    except Exception as exc:  # truncated zip, garbage, a pickle of code: all bad input
        raise ConfigError(f"{name}: not a readable weights-only model file "
                          f"({type(exc).__name__}); truncated, or not made by archsearch?") \
            from None
    if not isinstance(doc, dict) or doc.get("format", MODEL_FORMAT) != MODEL_FORMAT:
        found = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise ConfigError(f"{name}: expected an {MODEL_FORMAT!r} model file, found {found!r}")
    arch = Arch.from_json(doc.get("arch"), source=f"{name} (arch)")
    space_of(arch, source=f"{name} (arch)")
    best = isinstance(doc.get("best_state_dict"), dict)
    state = _weights(doc["best_state_dict"] if best else doc.get("state_dict"), name)
    network = _network(doc, state, name)
    weights = f"{'best' if best else 'last'} weights of {name}"
    return Source(arch, network, state, weights, Path(name) if name != "model file" else None)


def _weights(state: Any, name: str) -> dict[str, torch.Tensor]:
    if not isinstance(state, dict) or not state or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise ConfigError(f"{name}: 'state_dict' is not a mapping of names to tensors")
    return state


def _network(doc: dict[str, Any], state: Mapping[str, torch.Tensor], name: str) -> dict[str, Any]:
    """Build settings of the file; old files: from `config` and the weights' shapes."""
    given = doc.get("network")
    if given is None:  # before archsearch.model/1
        config = doc.get("config") if isinstance(doc.get("config"), dict) else {}
        # The classifier is the last matrix, the stem the first convolution.
        tensors = [v for k, v in state.items() if not k.startswith("aux_head.")]
        given = {"channels": config.get("channels", 16), "layers": config.get("layers", 8),
                 "num_classes": next((v.shape[0] for v in reversed(tensors) if v.dim() == 2),
                                     None),
                 "in_channels": next((v.shape[1] for v in tensors if v.dim() == 4), None),
                 "image_size": DATASET_IMAGE_SIZES.get(config.get("dataset"))}
    if not isinstance(given, dict):
        raise ConfigError(f"{name}: 'network' must be an object")
    size = given.get("image_size")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
        raise ConfigError(f"{name}: network.image_size must be a positive integer, got {size!r}")
    network = {"image_size": size, "auxiliary": False,
               "imagenet": bool(given.get("imagenet", False))}
    for key in ("channels", "layers", "num_classes", "in_channels"):
        value = given.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name}: network.{key} must be a positive integer, got {value!r}")
        network[key] = value
    return network


def build_model(source: Source, *, seed: int = 0) -> nn.Module:
    """The inference network of `source` in eval mode, with its weights if it has any."""
    n = source.network
    model = build_network(source.arch, channels=n["channels"], layers=n["layers"],
                          num_classes=n["num_classes"], in_channels=n["in_channels"],
                          auxiliary=False, imagenet=n.get("imagenet", False), seed=seed)
    if source.state_dict is not None:
        # The auxiliary head is a training device (DARTS §3.2): not part of inference.
        state = {k: v for k, v in source.state_dict.items() if not k.startswith("aux_head.")}
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise ConfigError(f"{source.path or 'model file'}: its weights do not fit the "
                              f"network of its architecture ({_first_line(exc)})") from None
    return model.eval()


def load_model(path: str | Path | BinaryIO, *, device: str | torch.device = "cpu") -> nn.Module:
    """The network of a model file (`export(..., "pytorch")` or a train run's `model.pt`),
    with its weights, in eval mode on `device`."""
    return build_model(read_model_file(path)).to(device)


def model_document(source: Source, model: nn.Module) -> dict[str, Any]:
    """The PyTorch export: tensors and plain values only (no pickled classes)."""
    network = {k: source.network[k] for k in ("channels", "layers", "num_classes",
                                              "in_channels", "image_size", "auxiliary")}
    if source.network.get("imagenet"):
        network["imagenet"] = True
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return {"format": MODEL_FORMAT, "arch": source.arch.to_json(), "network": network,
            "state_dict": state, "weights": source.weights}


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

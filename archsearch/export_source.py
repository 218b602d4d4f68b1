"""What an export reads: a train run's or search run's model file, an architecture JSON file
or a named cell, resolved to a `Source` (arch, network settings, weights or None).

Model files are `archsearch.model/1` documents (`arch`, `network`, `state_dict`, optionally
`best_state_dict`) of tensors and plain values, read with `torch.load(weights_only=True)`:
pickled code is refused, never run. Files of older archsearch versions without `network`
are read too, their sizes taken from the weights' shapes.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import torch
from torch import nn

from archsearch.errors import ArchError, ConfigError
from archsearch.runs import TRAIN_DEFAULTS, build_network, resolve_arch, space_of
from archsearch.space import Arch
from archsearch.spaces.darts import NAMED_CELLS, DartsCellSpace

MODEL_FORMAT = "archsearch.model/1"
# Image sides of the datasets, for old model files that do not record theirs.
DATASET_IMAGE_SIZES = {"digits": 8, "cifar10": 32}
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt")
SIZE_FLAGS = {"num_classes": "--classes", "in_channels": "--in-channels",
              "channels": "--channels", "layers": "--layers"}


@dataclass(frozen=True)
class Source:
    """What is exported: an arch, how to build its network, and its weights (or None)."""

    arch: Arch
    network: dict[str, Any]  # build_network's settings plus image_size
    state_dict: dict[str, torch.Tensor] | None
    weights: str  # where the weights come from, for people
    path: Path | None = None  # the file read, never to be overwritten
    notes: tuple[str, ...] = ()


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


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__

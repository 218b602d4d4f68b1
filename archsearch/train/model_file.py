"""The trained-model file `model.pt`: weights, architecture and configuration in one file.

A retraining run (DARTS §A.2, arXiv:1806.09055, but any found architecture) ends with one
self-describing file that rebuilds the network without the run directory:

    {"format": "archsearch.model/1",
     "arch": Arch.to_json(),
     "network": {"channels", "layers", "num_classes", "in_channels", "image_size",
                 "auxiliary"},          # the arguments of `runs.build_network`
     "state_dict": last weights, "best_state_dict": best weights by validation accuracy,
     "config": the run's settings, "metrics": the run's metrics}

It holds only tensors and plain values: read it with `torch.load(path, weights_only=True)`
(`load_model_file` does, and checks the layout).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from archsearch.errors import ConfigError
from archsearch.train._checkpoint import load_checkpoint, save_checkpoint

MODEL_FORMAT = "archsearch.model/1"
MODEL_KEYS = ("arch", "network", "state_dict", "best_state_dict", "config", "metrics")
NETWORK_KEYS = ("channels", "layers", "num_classes", "in_channels", "image_size", "auxiliary")


def model_document(*, arch: Mapping[str, Any], network: Mapping[str, Any],
                   state_dict: Mapping[str, torch.Tensor],
                   best_state_dict: Mapping[str, torch.Tensor], config: Mapping[str, Any],
                   metrics: Mapping[str, Any]) -> dict[str, Any]:
    """The `model.pt` dictionary (see the module docstring); checks `network`'s keys."""
    missing = [key for key in NETWORK_KEYS if key not in network]
    if missing:
        raise ValueError(f"network description lacks {', '.join(missing)}")
    return {"format": MODEL_FORMAT, "arch": dict(arch),
            "network": {key: network[key] for key in NETWORK_KEYS},
            "state_dict": dict(state_dict), "best_state_dict": dict(best_state_dict),
            "config": dict(config), "metrics": dict(metrics)}


def save_model_file(path: str | Path, doc: Mapping[str, Any]) -> Path:
    """Write a `model_document` atomically."""
    return save_checkpoint(path, doc)


def load_model_file(path: str | Path) -> dict[str, Any]:
    """Read and check a `model.pt`; anything malformed is a one-line ConfigError."""
    doc = load_checkpoint(path, kind=MODEL_FORMAT, keys=MODEL_KEYS)
    network = doc["network"]
    if not isinstance(network, dict) or any(key not in network for key in NETWORK_KEYS):
        raise ConfigError(f"{path}: the network description lacks one of "
                          f"{', '.join(NETWORK_KEYS)}")
    return doc

"""Zero-cost proxies: score an untrained network from one batch, with no training.

Each proxy is a function `(model, x, y) -> float` (larger = predicted better) in the
`PROXIES` registry:

- `synflow`   — Tanaka et al. 2020 (arXiv:2006.05467): Σ |θ ⊙ ∂R/∂θ| with
  R = 1ᵀ f(1; |θ|), the output of the network with all weights made positive on an
  all-ones input, in float64. BatchNorm is handled as in the `synflow` (not `synflow_bn`)
  measure of Abdelfattah et al. 2021 (arXiv:2101.08134): every BN layer is replaced by the
  identity, so R is a sum over input-output paths of products of |θ| — the "linearised"
  network whose path count the score measures. (Kept, BN would rescale each path by
  statistics of the single all-ones input, which have nothing to do with θ.)
- `naswot`    — Mellor et al. 2021 (arXiv:2006.04647): the binary code of every ReLU unit
  per input of the batch, K_H[i, j] = N_A − Hamming(c_i, c_j), score log|det K_H|. Every
  ReLU is seen, module or functional (DARTS ops call `F.relu`).
- `grad_norm` — Abdelfattah et al. 2021: Σ over layers ‖∂L/∂W‖₂ of the cross-entropy L.
- `snip`      — Lee et al. 2019 (arXiv:1810.02340): Σ |θ ⊙ ∂L/∂θ| (connection sensitivity).

As in Abdelfattah et al., the sums run over the weights of convolution and linear layers
(not biases, not BN). `grad_norm`, `snip` and `naswot` run the network in train mode (BN
uses the batch's statistics), `synflow` in eval mode (no BN left; no dropout or drop-path).
Every proxy works on a deep copy, so the caller's model (weights, gradients, BN running
statistics) is not changed.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd
from torch.overrides import TorchFunctionMode

from archsearch.errors import ConfigError
from archsearch.evaluators._base import TrialFailed
from archsearch.evaluators.train import (
    TRAINING_ONLY_PREFIXES,
    check_split,
    forked_rng,
    probe_macs,
    trial_seed,
)
from archsearch.hardware import num_params
from archsearch.registry import Registry
from archsearch.space import Arch, SearchSpace

Proxy = Callable[[nn.Module, Tensor, Tensor], float]
PROXIES: Registry[Proxy] = Registry("proxy")

# Every way a ReLU is spelled in torch; `nn.ReLU` calls `F.relu`.
_RELUS = frozenset({F.relu, F.relu_, torch.relu, torch.relu_, Tensor.relu, Tensor.relu_})
# Columns of binary codes per matmul in naswot: partial sums stay exact in float32 (< 2**24).
_CODE_CHUNK = 1 << 22


def _weighted_layers(model: nn.Module) -> list[nn.Module]:
    """The layers whose weights the proxies sum over: convolutions and linear layers."""
    return [m for m in model.modules() if isinstance(m, _ConvNd | nn.Linear)]


def _sum_over_weights(model: nn.Module, per_layer: Callable[[Tensor, Tensor], Tensor]) -> float:
    """Σ over conv/linear layers of `per_layer(weight, grad)`, in float64; layers that got
    no gradient (heads that did not run) count 0."""
    total = 0.0
    for layer in _weighted_layers(model):
        weight = layer.weight
        if weight.grad is not None:
            total += float(per_layer(weight.detach().double(), weight.grad.double()))
    return total


def _without_batchnorm(model: nn.Module) -> nn.Module:
    """Replace every BN layer by the identity, in place (`model` is a private copy)."""
    for name, module in list(model.named_modules()):
        if name and isinstance(module, _BatchNorm):
            parent_name, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent_name), child, nn.Identity())
    return model


@PROXIES.register("synflow")
def synflow(model: nn.Module, x: Tensor, y: Tensor) -> float:
    """SynFlow (Tanaka et al. 2020): Σ |θ ⊙ ∂R/∂θ|, R = 1ᵀ f(1; |θ|), BN removed, float64.

    Only the shape of `x` is used (the input is all ones); `y` is not used.
    """
    del y
    net = _without_batchnorm(copy.deepcopy(model)).double().eval()
    with torch.no_grad():
        for p in net.parameters():
            p.abs_()  # the linearised network: all weights positive (Tanaka et al. §5)
    net.zero_grad(set_to_none=True)
    ones = torch.ones((1, *x.shape[1:]), dtype=torch.float64, device=x.device)
    net(ones).sum().backward()  # R = 1ᵀ (Π |θ|) 1, summed over all paths
    return _sum_over_weights(net, lambda w, g: (w * g).abs().sum())


def _loss_gradients(model: nn.Module, x: Tensor, y: Tensor) -> nn.Module:
    """A train-mode copy of `model` whose weights hold ∂L/∂θ of the batch's cross-entropy."""
    net = copy.deepcopy(model).train()
    net.zero_grad(set_to_none=True)
    F.cross_entropy(net(x), y).backward()
    return net


@PROXIES.register("grad_norm")
def grad_norm(model: nn.Module, x: Tensor, y: Tensor) -> float:
    """Gradient norm (Abdelfattah et al. 2021): Σ over layers ‖∂L/∂W‖₂ (Frobenius)."""
    return _sum_over_weights(_loss_gradients(model, x, y), lambda w, g: g.norm())


@PROXIES.register("snip")
def snip(model: nn.Module, x: Tensor, y: Tensor) -> float:
    """SNIP (Lee et al. 2019): Σ |θ ⊙ ∂L/∂θ|, the summed connection sensitivity."""
    return _sum_over_weights(_loss_gradients(model, x, y), lambda w, g: (w * g).abs().sum())


class _ReluKernel(TorchFunctionMode):
    """Accumulates K_H = Σ over ReLU units of [c_i = c_j] while a forward pass runs.

    The codes are folded in as each ReLU fires, so only one activation's codes are ever held
    (all of them at once would need N × N_A memory: gigabytes for a DARTS network).
    """

    def __init__(self, batch: int, device: torch.device) -> None:
        super().__init__()
        self.kernel = torch.zeros(batch, batch, dtype=torch.float64, device=device)
        self.units = 0

    def __torch_function__(self, func: Any, types: Any, args: Sequence[Any] = (),
                           kwargs: Mapping[str, Any] | None = None) -> Any:
        out = func(*args, **(kwargs or {}))
        if func in _RELUS:
            self._add((out > 0).flatten(1).float())  # (N, units of this activation)
        return out

    def _add(self, codes: Tensor) -> None:
        self.units += codes.shape[1]
        for start in range(0, codes.shape[1], _CODE_CHUNK):
            c = codes[:, start:start + _CODE_CHUNK]
            # [c_i = c_j] summed over units = c cᵀ + (1 − c)(1 − c)ᵀ = N_A − Hamming(c_i, c_j)
            agree = c @ c.T + (1 - c) @ (1 - c).T
            self.kernel += agree.double()


@PROXIES.register("naswot")
def naswot(model: nn.Module, x: Tensor, y: Tensor) -> float:
    """NASWOT (Mellor et al. 2021): log|det K_H| of the ReLU-code kernel of the batch.

    `y` is not used. Identical codes for two inputs make K_H singular: the score is then
    -inf (as it is for a network without ReLUs).
    """
    del y
    net = copy.deepcopy(model).train()
    recorder = _ReluKernel(len(x), x.device)
    with torch.no_grad(), recorder:
        net(x)
    return float(torch.linalg.slogdet(recorder.kernel).logabsdet)


def _proxy_names(proxy: str | Sequence[str]) -> list[str]:
    names = PROXIES.names() if proxy == "all" else [proxy] if isinstance(proxy, str) else proxy
    for name in names:
        PROXIES.get(name)  # an unknown name raises, suggesting the closest one
    if not names:
        raise ConfigError("proxy: name at least one proxy (or 'all')")
    return list(names)


class ZeroCostEvaluator:
    """Score each architecture with zero-cost proxies of its freshly initialised network.

    The batch is drawn once (seeded) from `x, y`, so every arch is scored on the same
    inputs; each arch's network is initialised from a seed derived from `seed` and the arch.

    Args:
        space: the search space; networks are `space.build(arch, num_classes=...,
            in_channels=C, **build_kwargs)`.
        x, y: images (N, C, H, W) and labels to draw the batch from.
        num_classes: number of classes K.
        proxy: a name in `PROXIES`, a list of names, or "all".
        batch_size: examples in the batch (at most N are used).
        device: where to run.
        seed: seed of the batch and base seed of the networks' initialisation.
        build_kwargs: further keyword arguments for `space.build`.

    Raises:
        ConfigError: the data are unusable or no proxy is named.
        UnknownNameError: a proxy name is not in `PROXIES`.
    """

    def __init__(self, space: SearchSpace, *, x: Tensor, y: Tensor, num_classes: int,
                 proxy: str | Sequence[str] = "synflow", batch_size: int = 64,
                 device: str | torch.device = "cpu", seed: int = 0,
                 build_kwargs: Mapping[str, Any] | None = None) -> None:
        check_split("proxy data", x, y, num_classes)
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
        self.space, self.num_classes, self.seed = space, num_classes, int(seed)
        self.proxies = _proxy_names(proxy)
        self.device = torch.device(device)
        self.build_kwargs = dict(build_kwargs or {})
        chosen = torch.randperm(len(x), generator=torch.Generator().manual_seed(self.seed))
        chosen = chosen[:batch_size].to(x.device)
        self.x, self.y = x[chosen].to(self.device), y[chosen.to(y.device)].to(self.device)

    def __repr__(self) -> str:
        return (f"ZeroCostEvaluator(space={self.space.name!r}, proxies={self.proxies}, "
                f"batch_size={len(self.x)}, device={str(self.device)!r})")

    def metric_names(self) -> tuple[str, ...]:
        """The keys of the metrics every call returns."""
        return (*self.proxies, "num_params", "macs")

    def __call__(self, arch: Arch) -> dict[str, float]:
        """Score `arch`'s freshly initialised network with the chosen proxies.

        Returns:
            `{proxy_name: score, ..., "num_params": ..., "macs": ...}`.

        Raises:
            TrialFailed: a score is not finite (naswot of a network whose ReLU codes
                repeat), or the network cannot run on the input shape.
        """
        seed = trial_seed(self.seed, arch)
        scores = {}
        with forked_rng(self.device):
            torch.manual_seed(seed)
            model = self.space.build(arch, num_classes=self.num_classes,
                                     in_channels=self.x.shape[1], **self.build_kwargs)
            model.to(self.device)
            macs = probe_macs(model, self.x.shape[1:], self.device)
            for name in self.proxies:
                # Reseeded per proxy: a score does not depend on which others were asked for.
                torch.manual_seed(seed)
                scores[name] = PROXIES.get(name)(model, self.x, self.y)
        for name, score in scores.items():
            if not math.isfinite(score):
                raise TrialFailed(f"proxy {name} is {score} for this architecture")
        size = num_params(model, exclude_prefixes=TRAINING_ONLY_PREFIXES)
        return {**scores, "num_params": size, "macs": macs}

"""The supernet of a define-by-run space: every `c.op` becomes a softmax-weighted MixedOp.

The relaxation of DARTS (arXiv:1806.09055, eq. 2) applied to any builder: a decision among
K candidate modules becomes `Σ_k softmax(α)_k · op_k(x)`, with α (shape (K,)) a parameter of
the MixedOp itself, so it lives in `state_dict()` under the op's path. `BuilderSupernet`
knows which parameters are α (`arch_parameter_names`) so `BilevelOptimizer` can train it.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from archsearch.space._chooser import _op_names


class MixedOp(nn.Module):
    """`Σ_k softmax(α)_k · op_k(x)` over K candidate modules (DARTS eq. 2)."""

    def __init__(self, label: str, candidates: Mapping[str, nn.Module]) -> None:
        super().__init__()
        self.label = label
        self.names = tuple(candidates)
        self.candidates = nn.ModuleList(candidates.values())
        # Small random α (as in DARTS' 1e-3 · N(0, 1)) would need a seed; zeros give the
        # uniform mixture, which is where the paper's α starts in expectation.
        self.alpha = nn.Parameter(torch.zeros(len(self.names)))

    def forward(self, x: Tensor) -> Tensor:
        weights = torch.softmax(self.alpha, dim=0)  # (K,)
        return sum(w * op(x) for w, op in zip(weights, self.candidates, strict=True))

    def extra_repr(self) -> str:
        return f"{self.label!r}: {', '.join(self.names)}"


class SupernetChooser:
    """Builds a MixedOp for each `c.op`; value decisions cannot be relaxed (v1)."""

    def __init__(self) -> None:
        self.mixed_ops: list[MixedOp] = []

    def op(self, label: str, candidates: Mapping[str, Callable[[], Any]]) -> MixedOp:
        names = _op_names(label, candidates)
        mixed = MixedOp(label, {name: candidates[name]() for name in names})
        self.mixed_ops.append(mixed)
        return mixed

    def choice(self, label: str, values: Sequence[Hashable]) -> Any:
        raise NotImplementedError(f"value decision {label!r} cannot be relaxed in a supernet; "
                                  "only c.op decisions can (use a multi-trial strategy)")

    def int(self, label: str, low: int, high: int, *, step: int = 1) -> int:
        raise NotImplementedError(f"value decision {label!r} cannot be relaxed in a supernet; "
                                  "only c.op decisions can (use a multi-trial strategy)")


class BuilderSupernet(nn.Module):
    """The built supernet plus the label -> α map of its MixedOps."""

    def __init__(self, model: nn.Module, mixed_ops: Sequence[MixedOp]) -> None:
        super().__init__()
        self.model = model
        names = {id(m): n for n, m in model.named_modules()}
        missing = [m.label for m in mixed_ops if id(m) not in names]
        if missing:
            raise ValueError(f"MixedOp {missing[0]!r} is not part of the built model")
        self._alpha_names = {m.label: f"model.{names[id(m)]}.alpha".replace("..", ".")
                             for m in mixed_ops}
        self._mixed = {m.label: m for m in mixed_ops}

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)

    def arch_parameter_names(self) -> list[str]:
        """The names of the α parameters, as in `named_parameters()`."""
        return list(self._alpha_names.values())

    def alphas(self) -> dict[str, list[float]]:
        """label -> α row (before softmax), for `space.derive` and logs."""
        return {label: m.alpha.detach().cpu().tolist() for label, m in self._mixed.items()}

"""Fixtures of the op tests: the bytes autograd keeps for backward, and a fused step's
values and gradients against the plain layers'."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch


def _saved_bytes(fn: Callable[[], object]) -> int:
    """Bytes of the distinct storages autograd saves for backward while `fn` runs."""
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(storages.values())


@pytest.fixture
def saved_bytes() -> Callable[[Callable[[], object]], int]:
    return _saved_bytes


def _matches_plain(fused: torch.Tensor, plain: torch.Tensor, params: list[torch.Tensor],
                   tol: float) -> torch.Tensor:
    """Assert a fused step's output and gradients (w.r.t. `params`) equal the plain layers';
    returns the output gradient it used."""
    assert torch.allclose(fused, plain, atol=tol)
    g = torch.randn_like(plain)
    for a, b in zip(torch.autograd.grad(fused, params, g), torch.autograd.grad(plain, params, g),
                    strict=True):
        assert torch.allclose(a, b, atol=tol, rtol=1e-4)
    return g


@pytest.fixture
def matches_plain() -> Callable[..., torch.Tensor]:
    return _matches_plain

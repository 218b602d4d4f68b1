"""Fixtures of the op tests: the bytes autograd keeps for backward."""

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

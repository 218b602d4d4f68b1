"""Shared fixtures: a device from ARCHSEARCH_TEST_DEVICE (default cpu) and float64 helpers."""

from __future__ import annotations

import os

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """One intra-op thread per test process (pytest runs two processes, see pyproject)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def device() -> torch.device:
    return torch.device(os.environ.get("ARCHSEARCH_TEST_DEVICE", "cpu"))


@pytest.fixture
def float64():
    """Run a test in float64 (oracle tests compare gradients to tight tolerances)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)

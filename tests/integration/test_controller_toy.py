"""examples/controller_toy.py: REINFORCE picks (linear, linear) for y = 2x + ε.

Zoph & Le's toy (arXiv:1611.01578): the child g(h(x·u)·v) with h, g ∈ {linear, sigmoid};
only (linear, linear) can fit a line, and the controller must learn to put more than 0.95
probability on it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "controller_toy.py"
ARCHS = {"linear,linear", "linear,sigmoid", "sigmoid,linear", "sigmoid,sigmoid"}


@pytest.fixture(scope="module")
def toy() -> ModuleType:
    spec = importlib.util.spec_from_file_location("controller_toy_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _check(mse: dict[str, float], probs: dict[str, float]) -> None:
    assert set(mse) == set(probs) == ARCHS
    assert min(mse, key=mse.get) == "linear,linear"
    assert mse["linear,linear"] < 0.1  # the noise variance is 0.04
    assert min(v for k, v in mse.items() if k != "linear,linear") > 1.0
    assert probs["linear,linear"] > 0.95
    assert sum(probs.values()) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_controller_learns_linear_linear(toy: ModuleType, seed: int) -> None:
    mse, probs, trials = toy.search(seed)
    _check(mse, probs)
    assert trials < 500


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 3])
def test_controller_toy_script(tmp_path: Path, seed: int) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, str(EXAMPLE), "--seed", str(seed), "--json"],
                            capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300,
                            check=False)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert set(doc) == {"mse", "probabilities"}
    _check(doc["mse"], doc["probabilities"])

"""examples/darts_toy.py: the DARTS paper's toy bilevel problem (Figure 2).

Alternating gradient descent with the unrolled gradient of virtual step ξ has the fixed
point α = w = 2 / (1 + 2ξ): (2, 2) at first order, the bilevel optimum (1, 1) at ξ = 0.5.
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

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "darts_toy.py"
STEPS = 2000
TOL = 1e-6


def _fixed_point(xi: float) -> float:
    return 2.0 / (1.0 + 2.0 * xi)


@pytest.fixture(scope="module")
def toy() -> ModuleType:
    spec = importlib.util.spec_from_file_location("darts_toy_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("hvp", ["finite-difference", "exact"])
@pytest.mark.parametrize("xi", [0.0, 0.3, 0.5, 0.7])
def test_toy_reaches_fixed_point(toy: ModuleType, xi: float, hvp: str) -> None:
    alpha, w = toy.solve(xi, STEPS, hvp)
    assert abs(alpha - _fixed_point(xi)) < TOL
    assert abs(w - _fixed_point(xi)) < TOL


def test_toy_main_prints_json(toy: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    toy.main(["--xi", "0.5", "--steps", "200", "--hvp", "exact", "--json"])
    result = json.loads(capsys.readouterr().out)
    assert result["xi"] == 0.5
    assert result["steps"] == 200
    assert set(result) == {"xi", "steps", "alpha", "w"}


@pytest.mark.slow
@pytest.mark.parametrize(("xi", "expected"), [("0", 2.0), ("0.5", 1.0)])
def test_toy_script(tmp_path: Path, xi: str, expected: float) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, str(EXAMPLE), "--xi", xi, "--json"],
                            capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300,
                            check=False)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["steps"] == STEPS
    assert abs(doc["alpha"] - expected) < TOL
    assert abs(doc["w"] - expected) < TOL

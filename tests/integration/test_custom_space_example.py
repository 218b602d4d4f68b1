"""The README's user-written space (examples/custom_space.py) runs and writes its journal."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "custom_space.py"


def test_custom_space_example(tmp_path):
    out = tmp_path / "run"
    done = subprocess.run([sys.executable, str(EXAMPLE), "--trials", "4", "--out", str(out)],
                          capture_output=True, text=True, timeout=300, check=True)
    assert "size 12" in done.stdout and "best of 4 trials" in done.stdout
    records = [json.loads(x) for x in (out / "trials.jsonl").read_text().splitlines()]
    assert sum(r["state"] == "complete" for r in records) == 4
    assert json.loads((out / "best_arch.json").read_text())["space"] == "tiny_net"

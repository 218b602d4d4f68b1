"""A real multi-trial search process killed with SIGKILL mid-run resumes to the same journal
as a run that was never interrupted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ARGS = ["search", "--strategy", "evolution", "--strategy-arg", "population=4",
        "--strategy-arg", "sample_size=2", "--space", "chain", "--space-arg", "layers=2",
        "--epochs", "1", "--trials", "10", "--quiet"]


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "archsearch", *args]


def _journal(run: Path) -> list[dict]:
    """The records without their timings (wall-clock seconds differ between runs)."""
    records = []
    for line in (run / "trials.jsonl").read_text().splitlines():
        record = json.loads(line)
        del record["seconds"], record["elapsed_seconds"], record["metrics"]["train_seconds"]
        records.append(record)
    return records


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_killed_search_resumes_to_the_uninterrupted_result(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    straight, cut = tmp_path / "straight", tmp_path / "cut"
    subprocess.run(_cli(*ARGS, "--out", str(straight)), check=True, env=env, timeout=300,
                   capture_output=True)
    proc = subprocess.Popen(_cli(*ARGS, "--out", str(cut)), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    journal = cut / "trials.jsonl"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if journal.exists() and len(journal.read_text().splitlines()) >= 3:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the search ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert 3 <= len(_journal(cut)) < len(_journal(straight))
    subprocess.run(_cli("search", "--resume", str(cut), "--quiet"), check=True, env=env,
                   timeout=300, capture_output=True)
    assert _journal(cut) == _journal(straight)

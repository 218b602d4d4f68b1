"""No hard-coded CUDA: every tensor and module is placed with `.to(device)`.

`.cuda(...)` and the legacy `torch.cuda.FloatTensor` types break on CPU-only and MPS
machines; device selection lives in `archsearch.runs.resolve_device`.
"""

from __future__ import annotations

from pathlib import Path

import archsearch

FORBIDDEN = (".cuda(", "torch.cuda.FloatTensor")
PACKAGE = Path(archsearch.__file__).resolve().parent


def _offenders() -> list[str]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        lines = path.read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines, start=1):
            for pattern in FORBIDDEN:
                if pattern in line:
                    rel = path.relative_to(PACKAGE.parent)
                    found.append(f"{rel}:{number}: {pattern!r} in {line.strip()!r}")
    return found


def test_package_sources_are_found() -> None:
    files = list(PACKAGE.rglob("*.py"))
    assert PACKAGE / "cli.py" in files
    assert len(files) > 10


def test_no_cuda_calls_in_package() -> None:
    offenders = _offenders()
    assert not offenders, "hard-coded CUDA calls:\n" + "\n".join(offenders)

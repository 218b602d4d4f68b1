"""The latency table's JSON format (`archsearch.latency_table/1`) and its strict reader.

```json
{"format": "archsearch.latency_table/1",
 "space": "darts", "space_args": {"nodes": 4, "ops": ["none", "..."]},
 "space_hash": "sha256:…", "build_kwargs": {"channels": 8, "layers": 3},
 "input": {"batch": 1, "channels": 3, "size": 32},
 "device": "cpu", "device_name": "AMD EPYC", "torch_version": "2.13.0", "threads": 1,
 "timing": {"warmup": 3, "repeats": 20, "clock": "wall", "trim": 0.1},
 "containers": ["DiscreteCell"],
 "coverage": {"archs": 35, "exact": true}, "created": "2025-01-01T00:00:00+00:00",
 "calibration": null,            // or {"intercept_ms": a, "slope": b, "archs": [fingerprints]}
 "entries": {"<20 hex digits>": {"kind": "unit", "label": "SepConv …", "ms": 0.021},
             "sequential": {"kind": "sequential", "label": "…", "ms": 0.0004,
                            "per_call_ms": 0.0001}}}
```

Reading checks every field's type and range, refuses unknown fields, NaN and infinities,
and recreates the space from its name and arguments, which must give the recorded hash.
Every problem raises ConfigError with one line naming it.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from archsearch.errors import ArchsearchError, ConfigError
from archsearch.hardware._op_timing import CLOCKS

if TYPE_CHECKING:
    from archsearch.hardware.latency_table import LatencyTable
    from archsearch.space import SearchSpace

TABLE_FORMAT = "archsearch.latency_table/1"
ENTRY_KINDS = ("unit", "glue", "sequential")
MAX_FILE_BYTES = 256 * 2**20
_KEY = re.compile(r"[0-9a-f]{20}|sequential")
_FIELDS = ("format", "space", "space_args", "space_hash", "build_kwargs", "input", "device",
           "device_name", "torch_version", "threads", "timing", "containers", "coverage",
           "created", "calibration", "entries")


@dataclass(frozen=True)
class Entry:
    """One measured term: a unit, a container's glue, or nn.Sequential's a + b·calls."""

    kind: str
    label: str
    ms: float
    per_call_ms: float = 0.0

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"kind": self.kind, "label": self.label, "ms": self.ms}
        if self.kind == "sequential":
            doc["per_call_ms"] = self.per_call_ms
        return doc


@dataclass(frozen=True)
class Calibration:
    """measured ≈ intercept_ms + slope · (sum of entries), fitted on the archs listed."""

    intercept_ms: float
    slope: float
    archs: tuple[str, ...]

    def apply(self, raw_ms: float) -> float:
        return self.intercept_ms + self.slope * raw_ms

    def to_json(self) -> dict[str, Any]:
        return {"intercept_ms": self.intercept_ms, "slope": self.slope,
                "archs": list(self.archs)}


@contextlib.contextmanager
def threads(count: int) -> Iterator[None]:
    """torch's intra-op thread count set to `count` for the block, then restored."""
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def to_json(t: LatencyTable) -> dict[str, Any]:
    return {
        "format": TABLE_FORMAT, "space": t.space_name, "space_args": t.space_args,
        "space_hash": t.space_hash, "build_kwargs": t.build_kwargs,
        "input": {"batch": t.batch, "channels": t.in_channels, "size": t.input_size},
        "device": t.device, "device_name": t.device_name, "torch_version": t.torch_version,
        "threads": t.threads, "timing": {"warmup": t.warmup, "repeats": t.repeats,
                                          "clock": t.clock, "trim": t.trim},
        "containers": list(t.containers),
        "coverage": {"archs": t.covering, "exact": t.exact_coverage}, "created": t.created,
        "calibration": None if t.calibration is None else t.calibration.to_json(),
        "entries": {key: entry.to_json() for key, entry in t.entries.items()}}


def read(path: str | Path) -> Any:
    """The JSON document of a table file (ConfigError if unreadable or not JSON)."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise ConfigError(f"{path}: larger than {MAX_FILE_BYTES >> 20} MiB; not a "
                              "latency table")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such latency table file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read it ({exc.__class__.__name__})") from None
    try:
        return json.loads(text, parse_constant=_no_constant)
    except (json.JSONDecodeError, RecursionError):
        raise ConfigError(f"{path}: not valid JSON (truncated or not a latency table)") from None


def _no_constant(name: str) -> Any:
    raise json.JSONDecodeError(f"{name} is not allowed", name, 0)


def parse(doc: Any, *, source: str) -> dict[str, Any]:
    """Checked constructor arguments of LatencyTable from a JSON document."""
    v = _Validator(source)
    if not isinstance(doc, dict):
        v.fail(f"must be a JSON object, got {type(doc).__name__}")
    if doc.get("format") != TABLE_FORMAT:
        v.fail(f"format must be {TABLE_FORMAT!r}, got {doc.get('format')!r} (not a latency "
               "table, or from another version)")
    unknown = sorted(set(doc) - set(_FIELDS))
    missing = [f for f in _FIELDS if f not in doc]
    if unknown or missing:
        v.fail(f"unknown field {unknown[0]!r}" if unknown else f"missing field {missing[0]!r}")
    inp, timing, coverage = (v.obj(doc, k) for k in ("input", "timing", "coverage"))
    out = {
        "space": v.text(doc, "space"), "space_args": v.obj(doc, "space_args"),
        "space_hash": v.text(doc, "space_hash"), "build_kwargs": v.obj(doc, "build_kwargs"),
        "batch": v.count(inp, "batch", "input.batch"),
        "in_channels": v.count(inp, "channels", "input.channels"),
        "input_size": v.count(inp, "size", "input.size"),
        "device": v.text(doc, "device"), "device_name": v.text(doc, "device_name"),
        "torch_version": v.text(doc, "torch_version"), "threads": v.count(doc, "threads"),
        "warmup": v.count(timing, "warmup", "timing.warmup", low=0),
        "repeats": v.count(timing, "repeats", "timing.repeats"),
        "clock": v.choice(timing, "clock", CLOCKS, "timing.clock"),
        "trim": v.number(timing, "trim", "timing.trim"),
        "containers": v.texts(doc, "containers"),
        "covering": v.count(coverage, "archs", "coverage.archs", low=0),
        "exact_coverage": v.flag(coverage, "exact", "coverage.exact"),
        "created": v.text(doc, "created", empty=True),
        "calibration": _calibration(v, doc["calibration"]),
        "entries": {key: _entry(v, key, value) for key, value in v.obj(doc, "entries").items()}}
    if not 0 <= out["trim"] <= 0.5:
        v.fail(f"timing.trim must be in [0, 0.5], got {out['trim']}")
    try:
        torch.device(out["device"])
    except (RuntimeError, ValueError):
        v.fail(f"device {out['device']!r} is not a torch device")
    recreate_space(out["space"], out["space_args"], out["space_hash"], source=source)
    return out


def _entry(v: _Validator, key: str, value: Any) -> Entry:
    where = f"entries[{key[:24]!r}]"
    if not _KEY.fullmatch(key):
        v.fail(f"{where}: not a table key (20 hex digits or 'sequential')")
    if not isinstance(value, dict) or set(value) - {"kind", "label", "ms", "per_call_ms"}:
        v.fail(f"{where} must be an object with kind, label, ms")
    kind = value.get("kind")
    if kind not in ENTRY_KINDS or (kind == "sequential") != (key == "sequential"):
        v.fail(f"{where}.kind must be one of {', '.join(ENTRY_KINDS)} (sequential only under "
               f"its own key), got {kind!r}")
    per_call = v.ms(value, "per_call_ms", f"{where}.per_call_ms") if kind == "sequential" else 0.0
    return Entry(kind, v.text(value, "label", f"{where}.label"),
                 v.ms(value, "ms", f"{where}.ms"), per_call)


def _calibration(v: _Validator, value: Any) -> Calibration | None:
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) != {"intercept_ms", "slope", "archs"}:
        v.fail("calibration must be null or an object with intercept_ms, slope, archs")
    slope = v.number(value, "slope", "calibration.slope")
    if not slope > 0:
        v.fail(f"calibration.slope must be positive, got {slope}")
    return Calibration(v.number(value, "intercept_ms", "calibration.intercept_ms"), slope,
                       tuple(v.texts(value, "archs", "calibration.archs")))


def recreate_space(name: str, args: Mapping[str, Any], space_hash: str, *,
                   source: str = "latency table") -> SearchSpace:
    """The registered space `name` with `args`; its hash must be `space_hash`."""
    from archsearch.spaces import SPACES

    try:
        space = SPACES.get(name)(**args)
    except ArchsearchError as exc:
        raise ConfigError(f"{source}: space {name!r}: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{source}: space {name!r} rejects its space_args: {exc}") from None
    if space.space_hash != space_hash:
        raise ConfigError(f"{source}: space_hash does not match space {name!r} with these "
                          "space_args (made by another version of the space?)")
    return space


class _Validator:
    """Typed field access that fails with one line naming the field."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, message: str) -> Any:
        raise ConfigError(f"{self.source}: {message}")

    def _get(self, doc: dict[str, Any], key: str, where: str | None) -> Any:
        if key not in doc:
            self.fail(f"missing field {where or key!r}")
        return doc[key]

    def obj(self, doc: dict[str, Any], key: str, where: str | None = None) -> dict[str, Any]:
        value = self._get(doc, key, where)
        if not isinstance(value, dict):
            self.fail(f"{where or key} must be an object, got {type(value).__name__}")
        return value

    def text(self, doc: dict[str, Any], key: str, where: str | None = None, *,
             empty: bool = False) -> str:
        value = self._get(doc, key, where)
        if not isinstance(value, str) or (not value and not empty) or len(value) > 10_000:
            self.fail(f"{where or key} must be a non-empty string, got {value!r:.60}")
        return value

    def texts(self, doc: dict[str, Any], key: str, where: str | None = None) -> list[str]:
        value = self._get(doc, key, where)
        if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
            self.fail(f"{where or key} must be a list of strings")
        return value

    def choice(self, doc: dict[str, Any], key: str, choices: Any, where: str) -> str:
        value = self._get(doc, key, where)
        if value not in choices:
            self.fail(f"{where} must be one of {', '.join(choices)}, got {value!r:.60}")
        return value

    def flag(self, doc: dict[str, Any], key: str, where: str | None = None) -> bool:
        value = self._get(doc, key, where)
        if not isinstance(value, bool):
            self.fail(f"{where or key} must be true or false, got {value!r:.60}")
        return value

    def count(self, doc: dict[str, Any], key: str, where: str | None = None, *,
              low: int = 1) -> int:
        value = self._get(doc, key, where)
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= 2**31:
            self.fail(f"{where or key} must be an integer ≥ {low}, got {value!r:.60}")
        return value

    def number(self, doc: dict[str, Any], key: str, where: str | None = None) -> float:
        value = self._get(doc, key, where)
        if (not isinstance(value, int | float) or isinstance(value, bool)
                or not math.isfinite(value)):
            self.fail(f"{where or key} must be a finite number, got {value!r:.60}")
        return float(value)

    def ms(self, doc: dict[str, Any], key: str, where: str | None = None) -> float:
        value = self.number(doc, key, where)
        if not 0 <= value < 1e7:
            self.fail(f"{where or key} must be a latency in ms (≥ 0), got {value!r}")
        return value

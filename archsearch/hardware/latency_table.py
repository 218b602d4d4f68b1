"""A per-op latency lookup table, measured on the user's own device (ProxylessNAS,
arXiv:1812.00332, §3.3; FBNet, arXiv:1812.03443, §3.2).

`LatencyTable.build(space, ...)` builds the networks of a covering set of archs
(`_coverage.py`), splits each into units and container glue with forward hooks
(`_trace.py`), and times every distinct entry on the device (`_op_timing.py`): the units of
each network in the order the network runs them, one round per forward pass. An arch's
predicted latency is then the sum of the entries of its network:

    latency(arch) ≈ Σ_units t(unit, input shape) + Σ_containers glue(container)

Nothing is guessed: the stem, the cells' input preprocessing, the classifier, the additions
and concatenations of every cell are table entries measured like the ops. An optional
calibration `measured ≈ slope · sum`, fitted on end-to-end measurements of a few
calibration archs (`calibrate`), corrects what per-op timing misses on a given machine;
its error must be reported on other archs (`evaluate_predictor` refuses calibration archs).

The table is JSON (`archsearch.latency_table/1`): the space and its arguments, the build
settings, the input, the device, torch version and thread count it was measured with, and
the entries. `load` validates every field and raises ConfigError with one line naming the
first problem.
"""

from __future__ import annotations

import datetime
import functools
import math
import platform
import statistics
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from tqdm.auto import tqdm

from archsearch.errors import ConfigError
from archsearch.hardware import _table_json
from archsearch.hardware._coverage import covering_archs
from archsearch.hardware._op_timing import (
    CLOCKS,
    RoundTimer,
    Timer,
    stub_ms,
    time_glue,
    time_one,
    time_sequential,
    time_units,
)
from archsearch.hardware._table_json import TABLE_FORMAT, Calibration, Entry, threads
from archsearch.hardware._trace import Call, trace, walk
from archsearch.space import Arch, SearchSpace

# Modules whose glue is measured, per space: class names or module paths (the root always
# is a container). Their children are the units: DARTS ops, MBConv blocks, chain layers.
CONTAINERS: dict[str, tuple[str, ...]] = {
    "darts": ("DiscreteCell",), "nb201": ("Nb201Cell",), "nasnet": ("NasnetCell",),
    "mobilenet": ("blocks",), "compound": ("blocks",)}
DEFAULT_INPUT_SIZE = 32


class Part(NamedTuple):
    """One term of a prediction: where it is in the network, what, and its latency."""

    path: str
    kind: str  # "unit", "glue" or "sequential"
    key: str
    label: str
    ms: float


class LatencyTable:
    """Per-op latencies of one space's networks on one device; `predict_ms(arch)` sums them.

    Build one with `LatencyTable.build`, or read one with `LatencyTable.load`. The fields
    are the JSON document's (see `_table_json.py`); `entries` maps key -> Entry.
    """

    def __init__(self, *, space: str, space_args: Mapping[str, Any], space_hash: str,
                 build_kwargs: Mapping[str, Any], batch: int, in_channels: int,
                 input_size: int, device: str, device_name: str, torch_version: str,
                 threads: int, warmup: int, repeats: int, clock: str, trim: float,
                 containers: Sequence[str],
                 entries: Mapping[str, Entry], calibration: Calibration | None = None,
                 covering: int = 0, exact_coverage: bool = True, created: str = "") -> None:
        self.space_name, self.space_args, self.space_hash = space, dict(space_args), space_hash
        self.build_kwargs = dict(build_kwargs)
        self.batch, self.in_channels, self.input_size = batch, in_channels, input_size
        self.device, self.device_name, self.torch_version = device, device_name, torch_version
        self.threads, self.warmup, self.repeats = threads, warmup, repeats
        self.clock, self.trim = clock, trim
        self.containers = tuple(containers)
        self.entries: dict[str, Entry] = dict(entries)
        self.calibration = calibration
        self.covering, self.exact_coverage, self.created = covering, exact_coverage, created

    def __repr__(self) -> str:
        return (f"LatencyTable(space={self.space_name!r}, {len(self.entries)} entries, "
                f"device={self.device!r}, threads={self.threads})")

    # --- building ------------------------------------------------------------------------
    @classmethod
    def build(cls, space: SearchSpace, *, build_kwargs: Mapping[str, Any] | None = None,
              input_size: int = DEFAULT_INPUT_SIZE, in_channels: int | None = None, batch: int = 1,
              device: str | torch.device = "cpu", threads: int | None = None,
              warmup: int = 3, repeats: int = 20, clock: str = "wall", trim: float = 0.1,
              archs: Iterable[Arch] | None = None,
              timer: Timer | None = None, seed: int = 0, progress: bool = False,
              containers: Sequence[str] | None = None) -> LatencyTable:
        """Time every unit and glue entry of `space`'s networks on `device`.

        Args:
            space: a registered space (its name and `space_args` recreate it on load).
            build_kwargs: passed to `space.build` (channels, layers, num_classes, ...).
            input_size: side of the square input (the data's, e.g. 8 for the digits).
            in_channels: image channels; None: `build_kwargs`, the space's, or 3.
            batch: batch size of the timed input.
            device: where to time ("cpu", "cuda:0", ...).
            threads: torch intra-op threads while timing (recorded); None: the current.
            warmup, repeats: of the default timer (ignored with `timer`) and of the
                end-to-end measurements of `calibrate` and `evaluate_predictor`.
            clock: "wall" (elapsed time, the default) or "cpu" (the thread's CPU time:
                steadier on a shared machine; one thread only), see `RoundTimer`.
            archs: archs whose networks hold the entries; None: a covering set.
            timer: `timer(calls, labels) -> [ms]` (see `_op_timing.py`); default
                `RoundTimer(warmup=warmup, repeats=repeats, clock=clock, trim=trim)`.
            trim: each entry is the mean of its timings without this share at each end
                (0.5: the median); see `RoundTimer`.
            seed: seeds the weights and inputs of the timed networks.
            progress: show a progress bar over the covering archs.
            containers: class names or module paths of the modules whose glue is measured
                (their children are units); None: the space's (`CONTAINERS`).
        """
        device = torch.device(device)
        kwargs = dict(build_kwargs or {})
        threads = _positive(torch.get_num_threads() if threads is None else threads, "threads")
        if clock not in CLOCKS or (clock == "cpu" and (threads > 1 or device.type != "cpu")):
            raise ConfigError(f"clock must be 'wall', or 'cpu' with one thread on the CPU; got "
                              f"{clock!r} with {threads} threads on {device}")
        table = cls(space=space.name, space_args=space.space_args, space_hash=space.space_hash,
                    build_kwargs=kwargs, batch=_positive(batch, "batch"),
                    in_channels=_in_channels(space, kwargs, in_channels),
                    input_size=_positive(input_size, "input size"), device=str(device),
                    device_name=_device_name(device), torch_version=torch.__version__,
                    threads=threads,
                    warmup=warmup, repeats=repeats, clock=clock, trim=trim,
                    containers=CONTAINERS.get(space.name, ()) if containers is None
                    else containers, entries={},
                    created=datetime.datetime.now(datetime.timezone.utc).isoformat(
                        timespec="seconds"))
        table.__dict__["space"] = space
        table.timer()  # checks warmup, repeats, clock and trim
        exact = True
        if archs is None:
            archs, exact = covering_archs(space, seed=seed)
        archs = list(archs)
        table.covering, table.exact_coverage = len(archs), exact
        table.extend(archs, timer=timer, seed=seed, progress=progress)
        return table

    def extend(self, archs: Iterable[Arch], *, timer: Timer | None = None, seed: int = 0,
               progress: bool = False) -> int:
        """Time the entries of `archs`' networks that the table lacks; returns how many.

        The units of each network that holds a new entry are timed in the network's order
        (see `_op_timing.py`); a unit found in several networks or places gets the mean of
        its times there (means add up to the network's, see `RoundTimer`).
        """
        archs = list(archs)
        device = torch.device(self.device)
        timer = timer or self.timer()
        known = set(self.entries)
        unit_ms: dict[str, list[float]] = {}
        with threads(self.threads), torch.inference_mode():
            stub = stub_ms(timer, device)
            for arch in tqdm(archs, desc="latency table", unit="arch", disable=not progress):
                calls = list(walk(self._trace(arch, keep_tensors=True, seed=seed)))
                if all(call.key in known for call in calls):
                    continue
                units = [call for call in calls if call.kind == "unit"]
                for call, ms in zip(units, time_units(units, timer), strict=True):
                    if call.key not in known:
                        unit_ms.setdefault(call.key, []).append(ms)
                        self.entries.setdefault(call.key, Entry("unit", call.label, ms))
                for call in calls:
                    if call.kind != "unit" and call.key not in self.entries:
                        self.entries[call.key] = self._time_glue(call, timer, stub, device)
        for key, times_ms in unit_ms.items():
            self.entries[key] = Entry("unit", self.entries[key].label, statistics.fmean(times_ms))
        return len(self.entries) - len(known)

    def timer(self) -> RoundTimer:
        """The timer of the table's settings (also used for end-to-end measurements)."""
        return RoundTimer(warmup=self.warmup, repeats=self.repeats, device=self.device,
                           clock=self.clock, trim=self.trim)

    def _time_glue(self, call: Call, timer: Timer, stub: float, device: torch.device) -> Entry:
        if call.kind == "sequential":
            base, per_call = time_sequential(timer, stub, device)
            return Entry("sequential", call.label, base, per_call)
        return Entry("glue", call.label, time_glue(call, timer, stub))

    # --- the space and its networks --------------------------------------------------------
    @functools.cached_property
    def space(self) -> SearchSpace:
        """The space, recreated from its name and arguments (checked against the hash)."""
        return _table_json.recreate_space(self.space_name, self.space_args, self.space_hash)

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        """(batch, channels, height, width) of the input the networks are timed with."""
        return (self.batch, self.in_channels, self.input_size, self.input_size)

    def build_model(self, arch: Arch, *, seed: int = 0) -> torch.nn.Module:
        """`arch`'s network as the table times it (seeded weights; the global RNG is kept)."""
        self.check_arch(arch)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            try:
                model = self.space.build(arch, **self.build_kwargs)
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"space {self.space_name!r} cannot build networks with "
                                  f"{self.build_kwargs}: {exc}") from None
        return model.to(self.device).eval()

    def check_arch(self, arch: Arch) -> None:
        """Raise ConfigError unless `arch` belongs to the table's space (same settings)."""
        if not isinstance(arch, Arch):
            raise ConfigError(f"expected an Arch, got {type(arch).__name__}")
        if arch.space != self.space_name:
            raise ConfigError(f"the latency table is for space {self.space_name!r}; this arch "
                              f"belongs to {arch.space!r}")
        if arch.space_hash != self.space_hash:
            raise ConfigError(f"the latency table's space {self.space_name!r} has other "
                              "settings (space_args) than this arch's; rebuild the table")

    def _trace(self, arch: Arch, *, keep_tensors: bool, seed: int = 0) -> Call:
        model = self.build_model(arch, seed=seed)
        gen = torch.Generator().manual_seed(seed)
        x = torch.randn(self.input_shape, generator=gen).to(self.device)
        return trace(model, (x,), containers=frozenset(self.containers),
                     keep_tensors=keep_tensors)

    # --- prediction ------------------------------------------------------------------------
    def breakdown(self, arch: Arch) -> list[Part]:
        """Every term of `arch`'s prediction, in call order (before any calibration).

        Raises:
            ConfigError: the arch is not of the table's space, or its network has a unit the
                table lacks (an uncovered space: add it with `extend([arch])`).
        """
        parts = []
        for call in walk(self._trace(arch, keep_tensors=False)):
            entry = self.entries.get(call.key)
            if entry is None:
                raise ConfigError(f"the latency table has no entry for {call.label} (built "
                                  f"from {self.covering} archs); extend or rebuild it")
            ms = entry.ms + entry.per_call_ms * len(call.children)
            parts.append(Part(call.path, entry.kind, call.key, entry.label, ms))
        return parts

    def predict_ms(self, arch: Arch, *, raw: bool = False) -> float:
        """Predicted latency of `arch` in ms: the sum of its entries, then the calibration
        (unless `raw` or the table has none)."""
        total = math.fsum(part.ms for part in self.breakdown(arch))
        if raw or self.calibration is None:
            return total
        return self.calibration.apply(total)

    # --- calibration ---------------------------------------------------------------------
    def calibrate(self, archs: Sequence[Arch], *, measure: Any = None) -> Calibration:
        """Fit `measured ≈ slope · sum` on end-to-end latencies of `archs` and keep it.

        A ratio (least squares through the origin), not a free line: with a handful of
        noisy calibration archs an intercept is poorly determined, and the fixed parts of
        the network are already entries. Report errors on other archs.
        """
        if not archs:
            raise ConfigError("calibration needs at least one arch")
        raw = np.array([self.predict_ms(a, raw=True) for a in archs])
        measured = np.array([measure_ms(self, a, measure=measure) for a in archs])
        slope = float(raw @ measured / (raw @ raw)) if raw.any() else 0.0
        if not (slope > 0 and math.isfinite(slope)):
            raise ConfigError(f"calibration gave a slope of {slope:.3g}; the table or the "
                              "measurements are unusable")
        self.calibration = Calibration(0.0, slope, tuple(a.fingerprint() for a in archs))
        return self.calibration

    # --- JSON ------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return _table_json.to_json(self)

    @classmethod
    def from_json(cls, doc: Any, *, source: str = "latency table") -> LatencyTable:
        """Validate `doc` and make the table; ConfigError names the first problem."""
        return cls(**_table_json.parse(doc, source=source))

    def save(self, path: str | Path) -> Path:
        """Write the table as JSON atomically (a crash leaves the old file or the new one)."""
        from archsearch.storage import atomic_write_json

        return atomic_write_json(path, self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> LatencyTable:
        return cls.from_json(_table_json.read(path), source=str(path))


def measure_ms(table: LatencyTable, arch: Arch, *, measure: Any = None, seed: int = 0) -> float:
    """End-to-end latency of `arch`'s network, measured as the table's entries were: same
    build, input, device, threads and timer (one call per round). `measure(arch) -> ms`
    replaces the measurement (tests, or latency measured elsewhere: on a phone, say)."""
    if measure is not None:
        table.check_arch(arch)
        return float(measure(arch))
    model = table.build_model(arch, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(table.input_shape, generator=gen).to(table.device)
    with threads(table.threads), torch.inference_mode():
        return time_one(table.timer(), lambda: model(x), "network")


def _positive(value: Any, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return value


def _in_channels(space: SearchSpace, kwargs: Mapping[str, Any], given: int | None) -> int:
    if given is not None:
        if kwargs.get("in_channels", given) != given:
            raise ConfigError(f"--in-channels {given} contradicts build in_channels "
                              f"{kwargs['in_channels']}")
        kwargs["in_channels"] = _positive(given, "in_channels")  # type: ignore[index]
        return given
    if "in_channels" in kwargs:
        return _positive(kwargs["in_channels"], "in_channels")
    return _positive(int(space.space_args.get("in_channels", 3)), "in_channels")


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


__all__ = ["CONTAINERS", "TABLE_FORMAT", "LatencyTable", "Part", "measure_ms"]

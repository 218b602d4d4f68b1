"""The contract every ask/tell strategy must satisfy, as reusable checks (Optuna's idea of
shipping its sampler tests, `optuna/testing/pytest_samplers.py`).

Each `check_*` function takes a *factory* `(space, seed) -> SampleStrategy` and a space
and raises AssertionError with a readable message when the contract is broken:

- every `ask()` lies in the space, also when asks run ahead of tells;
- `tell(arch, None)` (a failed trial) is tolerated;
- the same seed and the same scores give the same proposals, also in a fresh process;
- `state_dict()` is plain JSON, and restoring it into a new instance continues the exact
  same sequence;
- a learning strategy beats `RandomSearch` on `ToyObjective` (NNI's sanity check), and an
  exhaustive one finds the known optimum;
- a multi-objective strategy (`multi_objective = True`) also does all this when it is told
  tuples of scores (`ToyObjectives`).

A strategy may raise `SpaceExhausted` from `ask` at any time (a small space); the checks
treat that as the end of the run. Plug-in authors subclass `StrategyContract`:

    class TestMyStrategy(StrategyContract):
        strategy_class = MyStrategy
        strategy_kwargs = {"population": 8}
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar

import numpy as np
import pytest

from archsearch.space import Arch, SearchSpace, SpaceExhausted
from archsearch.strategies._base import SampleStrategy
from archsearch.strategies.random import RandomSearch
from archsearch.testing.toys import TOY_SPACES, ToyObjective, best_score, make_toy_space

StrategyFactory = Callable[[SearchSpace, "int | None"], SampleStrategy]


# --- driving a strategy ------------------------------------------------------------------
def _fails(arch: Arch) -> bool:
    """A deterministic ~1-in-7 subset of archs whose trials "fail" (told None)."""
    return int(arch.fingerprint()[:8], 16) % 7 == 0


def drive(strategy: SampleStrategy, objective: Callable[[Arch], Any], trials: int, *,
          batch: int = 1) -> list[Arch]:
    """Ask up to `batch` archs ahead of their tells, then tell them (failures as None),
    until `trials` archs were proposed or the strategy raises SpaceExhausted."""
    proposed: list[Arch] = []
    exhausted = False
    while len(proposed) < trials and not exhausted:
        pending: list[Arch] = []
        while len(pending) < batch and len(proposed) + len(pending) < trials:
            try:
                pending.append(strategy.ask())
            except SpaceExhausted:
                exhausted = True
                break
        for arch in pending:
            strategy.tell(arch, None if _fails(arch) else objective(arch))
        proposed += pending
    return proposed


def proposals(factory: StrategyFactory, space: SearchSpace, *, seed: int | None = 0,
              trials: int = 30, batch: int = 1) -> list[str]:
    """The fingerprints of the archs a fresh strategy proposes on `ToyObjective(space, 0)`."""
    strategy = factory(space, seed)
    return [a.fingerprint() for a in drive(strategy, ToyObjective(space, 0), trials,
                                           batch=batch)]


# --- the checks ----------------------------------------------------------------------------
def _assert_in_space(space: SearchSpace, archs: Iterable[Any]) -> None:
    for arch in archs:
        assert isinstance(arch, Arch), f"ask() returned {type(arch).__name__}, not Arch"
        assert space.contains(arch), f"ask() proposed an arch outside the space: {arch}"


def check_asks_in_space(factory: StrategyFactory, space: SearchSpace, *, trials: int = 30,
                        seed: int = 0) -> None:
    """Every proposal is a valid arch of the space, asked one at a time and in batches."""
    objective = ToyObjective(space, 0)
    for batch in (1, 3):
        _assert_in_space(space, drive(factory(space, seed), objective, trials, batch=batch))


def check_failed_trials_tolerated(factory: StrategyFactory, space: SearchSpace, *,
                                  trials: int = 20, seed: int = 0) -> None:
    """`tell(arch, None)` for every trial, then scored trials: asks stay valid."""
    strategy = factory(space, seed)
    objective = ToyObjective(space, 0)
    for k in range(trials):
        try:
            arch = strategy.ask()
        except SpaceExhausted:
            return
        _assert_in_space(space, [arch])
        strategy.tell(arch, None if k < trials // 2 else objective(arch))


def check_same_seed_same_sequence(factory: StrategyFactory, space: SearchSpace, *,
                                  trials: int = 30, seed: int = 0) -> None:
    """Two strategies with the same seed, told the same scores, propose the same archs."""
    objective = ToyObjective(space, 0)
    runs = [drive(factory(space, seed), objective, trials, batch=2) for _ in range(2)]
    _assert_in_space(space, runs[0])
    assert ([a.fingerprint() for a in runs[0]] == [a.fingerprint() for a in runs[1]]), (
        "the same seed gave different proposals")


def check_state_roundtrip(factory: StrategyFactory, space: SearchSpace, *, warmup: int = 25,
                          compare: int = 20, seed: int = 0) -> None:
    """`state_dict()` survives `json.dumps`/`loads` unchanged, and a new instance that
    loads it continues exactly like the original (saved with one ask still pending)."""
    objective = ToyObjective(space, 0)
    original = factory(space, seed)
    drive(original, objective, warmup, batch=2)
    try:
        pending: Arch | None = original.ask()
    except SpaceExhausted:
        pending = None
    state = original.state_dict()
    try:
        text = json.dumps(state, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise AssertionError(f"state_dict() is not plain JSON: {exc}") from None
    assert json.loads(text) == state, "state_dict() changes in a JSON round trip (tuples?)"
    restored = factory(space, seed)
    restored.load_state_dict(json.loads(text))
    runs = []
    for strategy in (original, restored):
        if pending is not None:
            strategy.tell(pending, objective(pending))
        runs.append(drive(strategy, objective, compare, batch=2))
    _assert_in_space(space, runs[0])
    assert [a.fingerprint() for a in runs[0]] == [a.fingerprint() for a in runs[1]], (
        "a strategy restored from state_dict() proposed other archs")


def check_asks_before_tells(factory: StrategyFactory, space: SearchSpace, *, pending: int = 8,
                            trials: int = 10, seed: int = 0) -> None:
    """Several asks with no tell in between, tells in reverse order, then more asks."""
    strategy = factory(space, seed)
    objective = ToyObjective(space, 0)
    asked = []
    for _ in range(pending):
        try:
            asked.append(strategy.ask())
        except SpaceExhausted:
            break
    _assert_in_space(space, asked)
    for arch in reversed(asked):
        strategy.tell(arch, objective(arch))
    _assert_in_space(space, drive(strategy, objective, trials))


class ToyObjectives:
    """Two `ToyObjective`s with different hidden optima, scored as a tuple: a conflicting
    two-objective toy problem for multi-objective strategies."""

    def __init__(self, space: SearchSpace, seed: int = 0) -> None:
        self.parts = (ToyObjective(space, seed), ToyObjective(space, seed + 1))

    def __call__(self, arch: Arch) -> tuple[float, float]:
        return self.parts[0](arch), self.parts[1](arch)


def check_score_vectors(factory: StrategyFactory, space: SearchSpace, *, trials: int = 30,
                        seed: int = 0) -> None:
    """Told tuples of scores (and failures): asks stay in the space, the same seed gives
    the same proposals, and `state_dict()` is plain JSON that continues the exact same
    sequence in a new instance."""
    objective = ToyObjectives(space)
    runs = [drive(factory(space, seed), objective, trials, batch=2) for _ in range(2)]
    _assert_in_space(space, runs[0])
    assert [a.fingerprint() for a in runs[0]] == [a.fingerprint() for a in runs[1]], (
        "the same seed and score vectors gave different proposals")
    original = factory(space, seed)
    drive(original, objective, trials, batch=2)
    try:
        text = json.dumps(original.state_dict(), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise AssertionError(f"state_dict() is not plain JSON: {exc}") from None
    restored = factory(space, seed)
    restored.load_state_dict(json.loads(text))
    after = [drive(s, objective, trials // 2, batch=2) for s in (original, restored)]
    assert [a.fingerprint() for a in after[0]] == [a.fingerprint() for a in after[1]], (
        "a strategy told score vectors and restored from state_dict() proposed other archs")


def mean_best_score(factory: StrategyFactory, space: SearchSpace, *, trials: int,
                    seeds: Iterable[int]) -> float:
    """The best score within `trials`, averaged over seeds (one objective per seed)."""
    return float(np.mean([best_score(factory(space, s), ToyObjective(space, 1000 + s), trials)
                          for s in seeds]))


def check_beats_random(factory: StrategyFactory, space: SearchSpace, *, trials: int = 80,
                       seeds: Iterable[int] = range(8)) -> None:
    """The mean best score after `trials` exceeds RandomSearch's on the same objectives."""
    seeds = list(seeds)
    score = mean_best_score(factory, space, trials=trials, seeds=seeds)
    baseline = mean_best_score(_random_factory, space, trials=trials, seeds=seeds)
    assert score > baseline, (f"mean best score {score:.4f} after {trials} trials does not "
                              f"beat random search ({baseline:.4f})")


def check_exhaustive_finds_optimum(factory: StrategyFactory, space: SearchSpace, *,
                                   seed: int = 0) -> None:
    """A strategy that enumerates a finite space proposes each arch once and so finds the
    known optimum of `ToyObjective` by the time it raises SpaceExhausted."""
    size = int(space.size())
    objective = ToyObjective(space, seed)
    strategy = factory(space, seed)
    archs = drive(strategy, objective, size + 1)
    fingerprints = {a.fingerprint() for a in archs}
    assert len(archs) == len(fingerprints) == size, (
        f"proposed {len(archs)} archs ({len(fingerprints)} distinct) of a space of {size}")
    assert max(objective(a) for a in archs) == objective.max_score


def _random_factory(space: SearchSpace, seed: int | None) -> SampleStrategy:
    return RandomSearch(space, seed=seed)


# --- reproducibility in a fresh process ------------------------------------------------------
def strategy_reference(cls: type) -> str:
    """`module:QualName` of a strategy class, importable in a fresh process."""
    return f"{cls.__module__}:{cls.__qualname__}"


def _resolve_strategy(name: str) -> type:
    """A class from `module:QualName`, or a registered strategy name."""
    if ":" not in name:
        from archsearch.strategies import STRATEGIES

        return STRATEGIES.get(name)
    module_name, _, qualname = name.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def _resolve_space(name: str, kwargs: Mapping[str, Any]) -> SearchSpace:
    """A toy space by name, or a registered space built with `kwargs`."""
    if name in TOY_SPACES:
        return make_toy_space(name)
    from archsearch.spaces import SPACES

    return SPACES.get(name)(**kwargs)


def run_spec(spec: Mapping[str, Any]) -> list[str]:
    """The proposals of one spec: {"strategy": name or module:Class, "kwargs": {...},
    "space": toy or registered name, "space_kwargs": {...}, "seed": int, "trials": int}."""
    cls = _resolve_strategy(spec["strategy"])
    kwargs = dict(spec.get("kwargs", {}))
    space = _resolve_space(spec["space"], spec.get("space_kwargs", {}))
    return proposals(lambda sp, seed: cls(sp, seed=seed, **kwargs), space,
                     seed=spec["seed"], trials=spec["trials"], batch=2)


def _start_fresh_process(specs: list[Mapping[str, Any]]) -> subprocess.Popen[str]:
    """A new interpreter that runs `run_spec` on each spec and prints the results as JSON."""
    code = ("import json, sys\n"
            "from archsearch.testing.contracts import run_spec\n"
            "print(json.dumps([run_spec(s) for s in json.loads(sys.argv[1])]))\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p),
               PYTHONHASHSEED="random")  # hash randomisation must not matter either
    return subprocess.Popen([sys.executable, "-c", code, json.dumps(list(specs))],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _results_of(child: subprocess.Popen[str], timeout_s: float) -> list[list[str]]:
    try:
        out, err = child.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        child.kill()
        child.communicate()
        raise AssertionError(f"the fresh process took more than {timeout_s} s") from None
    if child.returncode != 0:
        raise AssertionError(f"the fresh process failed:\n{err[-3000:]}")
    return json.loads(out.strip().splitlines()[-1])


def proposals_in_fresh_process(specs: list[Mapping[str, Any]], *,
                               timeout_s: float = 120.0) -> list[list[str]]:
    """`run_spec` for each spec, all in one new Python process (one import of torch)."""
    return _results_of(_start_fresh_process(specs), timeout_s)


def check_same_sequence_in_fresh_process(specs: list[Mapping[str, Any]], *,
                                         timeout_s: float = 120.0) -> None:
    """Each spec proposes the same archs here and in a new interpreter (no hidden global
    random state, no dependence on hash order or import order)."""
    child = _start_fresh_process(specs)  # it imports while this process computes
    try:
        here = [run_spec(spec) for spec in specs]
    except BaseException:
        child.kill()
        child.communicate()
        raise
    there = _results_of(child, timeout_s)
    for spec, ours, theirs in zip(specs, here, there, strict=True):
        assert ours == theirs, (f"{spec['strategy']} on {spec['space']}: a fresh process "
                                "with the same seed proposed other archs")


# --- the pytest base class -------------------------------------------------------------------
class StrategyContract:
    """Subclass as `Test...` with `strategy_class` set to run the whole contract on the toy
    spaces. Set `beats_random = False` for a strategy that does not learn from scores, and
    `exhaustive = True` for one that enumerates a finite space. The class must be importable
    by `strategy_reference` in a fresh process (or override `fresh_process_name`)."""

    strategy_class: ClassVar[type[SampleStrategy]]
    strategy_kwargs: ClassVar[dict[str, Any]] = {}
    beats_random: ClassVar[bool] = True
    exhaustive: ClassVar[bool] = False
    beats_random_trials: ClassVar[int] = 80
    beats_random_seeds: ClassVar[tuple[int, ...]] = tuple(range(8))
    spaces: ClassVar[tuple[str, ...]] = TOY_SPACES  # e.g. only finite ones for grid search

    def make(self, space: SearchSpace, seed: int | None) -> SampleStrategy:
        return self.strategy_class(space, seed=seed, **self.strategy_kwargs)

    def fresh_process_name(self) -> str:
        return strategy_reference(self.strategy_class)

    @pytest.fixture(params=TOY_SPACES)
    def space(self, request: pytest.FixtureRequest) -> SearchSpace:
        if request.param not in self.spaces:
            pytest.skip(f"{request.param} is not among this strategy's spaces")
        return make_toy_space(request.param)

    def test_asks_in_space(self, space: SearchSpace) -> None:
        check_asks_in_space(self.make, space)

    def test_failed_trials_tolerated(self, space: SearchSpace) -> None:
        check_failed_trials_tolerated(self.make, space)

    def test_same_seed_same_sequence(self, space: SearchSpace) -> None:
        check_same_seed_same_sequence(self.make, space)

    def test_state_roundtrip(self, space: SearchSpace) -> None:
        check_state_roundtrip(self.make, space)

    def test_asks_before_tells(self, space: SearchSpace) -> None:
        check_asks_before_tells(self.make, space)

    def test_same_sequence_in_fresh_process(self) -> None:
        check_same_sequence_in_fresh_process([
            {"strategy": self.fresh_process_name(), "kwargs": self.strategy_kwargs,
             "space": name, "seed": 3, "trials": 20} for name in self.spaces])

    @pytest.mark.parametrize("space_name", ["toy_categorical", "toy_mixed"])
    def test_beats_random(self, space_name: str) -> None:
        if not self.beats_random or space_name not in self.spaces:
            pytest.skip("this strategy does not learn from scores on this space")
        check_beats_random(self.make, make_toy_space(space_name),
                           trials=self.beats_random_trials, seeds=self.beats_random_seeds)

    def test_score_vectors(self, space: SearchSpace) -> None:
        if not getattr(self.strategy_class, "multi_objective", False):
            pytest.skip("not a multi-objective strategy")
        check_score_vectors(self.make, space)

    def test_exhaustive_finds_optimum(self) -> None:
        if not self.exhaustive:
            pytest.skip("this strategy does not enumerate the space")
        check_exhaustive_finds_optimum(self.make, make_toy_space("toy_categorical"))

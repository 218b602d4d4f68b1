"""Resume is exact for every registered ask/tell strategy: a search interrupted mid-run and
resumed from its run directory writes the same journal as an uninterrupted one.

Both resume paths are covered: from the strategy state saved after every trial, and by
replaying the whole journal through ask/tell when no state was saved; and both for one
trial at a time and for asynchronous runs with several trials in flight, whose results
are told out of ask order (a deterministic `LifoExecutor` stands in for the workers).
"""

from __future__ import annotations

import json

import pytest

from archsearch._journal import JOURNAL, STRATEGY_STATE
from archsearch._loop import Budget, Objective, search
from archsearch.strategies import STRATEGIES, SampleStrategy
from archsearch.testing import ToyObjective, make_toy_space
from archsearch.workers.toy import LifoExecutor

SAMPLE_STRATEGIES = [name for name in STRATEGIES.names()
                     if issubclass(STRATEGIES.get(name), SampleStrategy)]
TRIALS, CUT = 24, 13
# Small enough that evolution is past its random phase and rl past a few updates at the cut.
SETTINGS = {"evolution": {"population": 8, "sample_size": 3}, "bo": {"initial_trials": 5}}
SCORE = Objective("score")


class Interrupted(BaseException):
    """Stands in for Ctrl-C: raised from inside an evaluation."""


def records(run_dir) -> list[dict]:
    lines = (run_dir / JOURNAL).read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items()
             if k not in ("seconds", "elapsed_seconds")} for line in lines]


# Parallel runs (3 trials in flight) are checked on the replay path, the one that must
# rebuild the asks still in flight when the run stopped.
@pytest.mark.parametrize(("path", "workers"), [("saved-state", 1), ("replay", 1), ("replay", 3)])
@pytest.mark.parametrize("name", SAMPLE_STRATEGIES)
def test_interrupted_and_resumed_search_equals_an_uninterrupted_one(tmp_path, name, path,
                                                                     workers):
    space = make_toy_space("toy_mixed" if name != "grid" else "toy_categorical")
    objective = ToyObjective(space, seed=1)

    def evaluate(arch):
        return objective.metrics(arch)

    def make():
        return STRATEGIES.get(name)(space, seed=7, **SETTINGS.get(name, {}))

    def run(evaluator, run_dir, **kwargs):
        how = ({"evaluator": evaluator} if workers == 1 else
               {"executor": LifoExecutor(evaluator, workers)})
        return search(make(), budget=Budget(trials=TRIALS), objective=SCORE, run_dir=run_dir,
                      progress=False, **how, **kwargs)

    run(evaluate, tmp_path / "straight")
    calls = []

    def interrupting(arch):
        if len(calls) == CUT:
            raise Interrupted
        calls.append(arch)
        return evaluate(arch)

    cut = tmp_path / "cut"
    with pytest.raises(Interrupted):
        run(interrupting, cut, state_every_seconds=0.0 if path == "saved-state" else 1e9)
    if path == "replay":
        assert not (cut / STRATEGY_STATE).exists()
    result = run(evaluate, cut, resume=True)
    assert records(cut) == records(tmp_path / "straight")
    assert result.evaluations == TRIALS
    if workers > 1:  # results really were told out of ask order
        assert any(r["ask"] + 1 < r["asks"] for r in records(cut))

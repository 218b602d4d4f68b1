"""Constraints: infeasible archs are rejected before evaluation and steer the search."""

from __future__ import annotations

import json

import pytest

from archsearch._journal import JOURNAL
from archsearch._loop import Budget, search
from archsearch.constraints import Constraint, violations
from archsearch.errors import ConfigError
from archsearch.space import Int, SearchSpace
from archsearch.strategies import STRATEGIES

SPACE = SearchSpace.from_dims({"width": Int(1, 40), "depth": Int(1, 10)}, name="net")


def cost(arch):
    return {"num_params": arch["width"] * arch["width"] * arch["depth"]}


def accuracy(arch):
    # Bigger is better, so the constraint binds: the best feasible arch is at the limit.
    return {"val_acc": cost(arch)["num_params"] / 16000}


def test_constraint_holds_and_describes_violations():
    c = Constraint("macs", "<=", 100)
    assert c.holds({"macs": 100}) and not c.holds({"macs": 101})
    assert Constraint("val_acc", ">=", 0.5).holds({"val_acc": 0.7})
    assert violations([c], {"macs": 250}) == ["macs = 250 breaks macs <= 100"]
    with pytest.raises(ConfigError, match="does not report"):
        c.holds({"num_params": 3})
    with pytest.raises(ConfigError):
        Constraint("macs", "<", 3)


def test_infeasible_archs_are_never_evaluated_nor_counted(tmp_path):
    evaluated = []

    def evaluator(arch):
        evaluated.append(arch)
        return accuracy(arch)

    limit = Constraint("num_params", "<=", 2000)
    result = search(STRATEGIES.get("random")(SPACE, seed=0), evaluator,
                    budget=Budget(trials=15), constraints=[limit], cost_model=cost,
                    run_dir=tmp_path, progress=False)
    assert len(evaluated) == result.evaluations == 15
    assert all(cost(a)["num_params"] <= 2000 for a in evaluated)
    records = [json.loads(x) for x in (tmp_path / JOURNAL).read_text().splitlines()]
    infeasible = [r for r in records if r["state"] == "infeasible"]
    assert infeasible and all("breaks num_params <= 2000" in r["error"] for r in infeasible)
    assert all(r["metrics"]["num_params"] > 2000 for r in infeasible)
    complete = [r for r in records if r["state"] == "complete"]
    assert all("num_params" in r["metrics"] and "val_acc" in r["metrics"] for r in complete)


def test_evolution_drifts_to_feasible_archs():
    limit = Constraint("num_params", "<=", 2000)
    result = search(STRATEGIES.get("evolution")(SPACE, seed=1, population=8, sample_size=3),
                    accuracy, budget=Budget(trials=60), constraints=[limit],
                    cost_model=cost, progress=False)
    states = [t.state for t in result.trials]
    early, late = states[:40], states[-40:]
    assert late.count("infeasible") < early.count("infeasible")
    assert result.best.metrics["num_params"] <= 2000
    assert result.best.metrics["val_acc"] > 0.09  # close to the limit's 0.125


def test_impossible_constraints_stop_with_a_clear_reason():
    result = search(STRATEGIES.get("random")(SPACE, seed=0, allow_duplicates=True), accuracy,
                    budget=Budget(trials=5), constraints=[Constraint("num_params", "<=", 0)],
                    cost_model=cost, progress=False)
    assert result.evaluations == 0 and "loosen the constraints" in result.stopped
    with pytest.raises(ConfigError, match="cost model"):
        search(STRATEGIES.get("random")(SPACE, seed=0), accuracy, budget=Budget(trials=1),
               constraints=[Constraint("num_params", "<=", 5)], progress=False)

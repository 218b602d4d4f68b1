"""The search loop with several objectives: score vectors told to the strategy, the Pareto
front in the result and in pareto.json / pareto.png, costs from the cost model before
training, and exact resume."""

from __future__ import annotations

import json

import pytest

from archsearch._journal import JOURNAL
from archsearch._loop import Budget, Objective, accepts_score_vectors, search
from archsearch.constraints import Constraint
from archsearch.errors import ConfigError
from archsearch.pareto import PARETO_JSON, PARETO_PNG
from archsearch.space import Arch, Categorical, Int, SearchSpace
from archsearch.strategies import NSGA2, STRATEGIES, RandomSearch, RegularizedEvolution

SPACE = SearchSpace.from_dims({"op": Categorical(("conv", "pool", "skip")),
                               "width": Int(1, 32), "depth": Int(1, 6)}, name="toy")
OBJECTIVES = [Objective("val_acc", "max"), Objective("macs", "min")]


def macs_of(arch: Arch) -> int:
    return arch["width"] * arch["depth"] * (9 if arch["op"] == "conv" else 1) * 1000


def evaluator(arch: Arch) -> dict[str, float]:
    """Accuracy grows with capacity (conflicting with MACs), with an arch-specific wobble."""
    wobble = int(arch.fingerprint()[:6], 16) % 100 / 2000
    return {"val_acc": min(0.99, 0.3 + 0.05 * arch["depth"] + 0.01 * arch["width"] + wobble),
            "macs": macs_of(arch)}


def records(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / JOURNAL).read_text().splitlines()]


def _dominates(a, b) -> bool:
    return all(x >= y for x, y in zip(a, b, strict=True)) and a != b


def test_pareto_json_is_exactly_the_non_dominated_complete_trials(tmp_path):
    told = []

    class Recording(NSGA2):
        def tell(self, arch, score):
            told.append(score)
            super().tell(arch, score)

    result = search(Recording(SPACE, seed=0, population=8), evaluator,
                    budget=Budget(trials=40), objective=OBJECTIVES, run_dir=tmp_path,
                    progress=False)
    complete = {r["trial"]: (r["metrics"]["val_acc"], -r["metrics"]["macs"])
                for r in records(tmp_path) if r["state"] == "complete"}
    expected = {n for n, v in complete.items()
                if not any(_dominates(w, v) for w in complete.values())}
    doc = json.loads((tmp_path / PARETO_JSON).read_text())
    assert [o["metric"] for o in doc["objectives"]] == ["val_acc", "macs"]
    assert {entry["trial"] for entry in doc["front"]} == expected
    assert {t.number for t in result.front} == expected
    assert (tmp_path / PARETO_PNG).read_bytes()[:4] == b"\x89PNG"
    # The strategy was told (accuracy, -MACs) vectors, which the journal keeps as lists.
    assert all(isinstance(s, tuple) and len(s) == 2 for s in told if s is not None)
    for r in records(tmp_path):
        if r["state"] == "complete":
            assert r["score"] == [r["metrics"]["val_acc"], -r["metrics"]["macs"]]
    # The best trial is the best on the first objective.
    assert result.best.metrics["val_acc"] == max(v[0] for v in complete.values())


def test_pareto_json_follows_the_front_as_trials_arrive(tmp_path):
    fronts = []

    def snapshot(trial):
        path = tmp_path / PARETO_JSON
        if path.exists():
            fronts.append([e["trial"] for e in json.loads(path.read_text())["front"]])

    search(RandomSearch(SPACE, seed=1), evaluator, budget=Budget(trials=15),
           objective=OBJECTIVES, run_dir=tmp_path, progress=False, on_trial=snapshot)
    assert fronts[0] == [0] and len(fronts) == 15
    assert len({tuple(f) for f in fronts}) > 2  # rewritten as the front changed


def test_cost_objectives_come_from_the_cost_model_before_training():
    trained = []

    def accuracy_only(arch):
        trained.append(arch)
        return {"val_acc": evaluator(arch)["val_acc"]}

    result = search(NSGA2(SPACE, seed=2, population=6), accuracy_only,
                    budget=Budget(trials=20), objective=OBJECTIVES, progress=False,
                    cost_model=lambda arch: {"macs": macs_of(arch)},
                    constraints=[Constraint("macs", "<=", 150_000)])
    assert len(trained) == 20  # infeasible archs were never trained
    assert any(t.state == "infeasible" for t in result.trials)
    assert result.front and all(t.metrics["macs"] <= 150_000 for t in result.front)


class Interrupt(BaseException):
    pass


def test_resume_continues_exactly_and_rebuilds_the_front(tmp_path):
    def run(run_dir, budget, interrupt_after=None, resume=False):
        calls = []

        def counting(arch):
            if interrupt_after is not None and len(calls) == interrupt_after:
                raise Interrupt
            calls.append(arch)
            return evaluator(arch)

        return search(NSGA2(SPACE, seed=3, population=5, offspring=3), counting,
                      budget=Budget(trials=budget), objective=OBJECTIVES, run_dir=run_dir,
                      resume=resume, progress=False, state_every_seconds=0.0)

    straight = run(tmp_path / "straight", 25)
    with pytest.raises(Interrupt):
        run(tmp_path / "cut", 25, interrupt_after=11)
    resumed = run(tmp_path / "cut", 25, resume=True)

    def strip(rs):
        return [{k: v for k, v in r.items() if k not in ("seconds", "elapsed_seconds")}
                for r in rs]

    assert strip(records(tmp_path / "cut")) == strip(records(tmp_path / "straight"))
    assert [t.number for t in resumed.front] == [t.number for t in straight.front]
    assert ((tmp_path / "cut" / PARETO_JSON).read_text()
            == (tmp_path / "straight" / PARETO_JSON).read_text())


def test_a_single_objective_writes_no_front_files(tmp_path):
    result = search(RegularizedEvolution(SPACE, seed=0, population=4, sample_size=2),
                    evaluator, budget=Budget(trials=8), run_dir=tmp_path, progress=False)
    assert not (tmp_path / PARETO_JSON).exists()
    assert result.front == [result.best]


@pytest.mark.parametrize("objectives, message", [
    ([Objective("val_acc"), Objective("val_acc", "min")], "repeat a metric"),
    ([Objective("val_acc", cost_metric="macs", cost_target=1e5), Objective("macs", "min")],
     "MnasNet"),
    ([], "non-empty"),
])
def test_bad_objectives_are_config_errors(objectives, message):
    with pytest.raises(ConfigError, match=message):
        search(NSGA2(SPACE), evaluator, budget=Budget(trials=2), objective=objectives,
               progress=False)


def test_several_objectives_need_a_strategy_that_takes_score_vectors(tmp_path):
    with pytest.raises(ConfigError, match="RegularizedEvolution optimises one score"):
        search(RegularizedEvolution(SPACE), evaluator, budget=Budget(trials=2),
               objective=OBJECTIVES, run_dir=tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()
    takes = {name for name in STRATEGIES.names()
             if name != "darts" and accepts_score_vectors(STRATEGIES.get(name))}
    assert {"nsga2", "random", "grid"} <= takes and not {"evolution", "bo", "rl"} & takes

"""The multi-trial loop: budgets, failures, repeats, the journal and exact resume."""

from __future__ import annotations

import json
import math
import time

import pytest

from archsearch._journal import BEST_ARCH, JOURNAL, RESULT, STRATEGY_STATE
from archsearch._loop import Budget, Objective, search
from archsearch.errors import ConfigError
from archsearch.evaluators import TrialFailed
from archsearch.space import Arch, Categorical, Float, Int, SearchSpace, SpaceExhausted
from archsearch.strategies import STRATEGIES, SampleStrategy

SPACE = SearchSpace.from_dims({"a": Categorical(("x", "y", "z")), "b": Int(0, 9)}, name="toy")


class HillClimber(SampleStrategy):
    """Mutates the best told arch (random at first): proposals depend on the scores."""

    def __init__(self, space: SearchSpace, *, seed: int | None = None) -> None:
        super().__init__(space, seed=seed)
        self.best: tuple[dict, float] | None = None

    def ask(self) -> Arch:
        if self.best is None:
            return self.space.sample(self.rng)
        return self.space.mutate(self.space.arch(self.best[0]), self.rng)

    def tell(self, arch: Arch, score: float | None) -> None:
        if score is not None and (self.best is None or score > self.best[1]):
            self.best = (dict(arch), score)

    def state_dict(self) -> dict:
        return {**super().state_dict(), "best": self.best}

    def load_state_dict(self, state) -> None:
        super().load_state_dict(state)
        self.best = None if state["best"] is None else (state["best"][0], state["best"][1])


def objective(arch: Arch) -> dict[str, float]:
    return {"val_acc": arch["b"] / 10 + (0.05 if arch["a"] == "z" else 0.0), "cost": 1.0}


def journal(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / JOURNAL).read_text().splitlines()]


def test_trial_budget_best_and_files(tmp_path):
    result = search(HillClimber(SPACE, seed=0), objective, budget=Budget(trials=12),
                    run_dir=tmp_path, progress=False)
    assert result.evaluations == 12
    assert result.stopped == "trial budget used"
    complete = [t for t in result.trials if t.state == "complete"]
    assert result.best.score == max(t.score for t in complete)
    records = journal(tmp_path)
    assert len(records) == len(result.trials)
    assert records[result.best.number]["score"] == result.best.score
    best_doc = json.loads((tmp_path / BEST_ARCH).read_text())
    assert Arch.from_json(best_doc) == result.best.arch
    assert json.loads((tmp_path / RESULT).read_text())["evaluations"] == 12
    assert json.loads((tmp_path / STRATEGY_STATE).read_text())["records"] == len(records)


def test_failed_trials_are_recorded_and_told_as_none(tmp_path):
    told = []

    class Recording(HillClimber):
        def tell(self, arch, score):
            told.append(score)
            super().tell(arch, score)

    def flaky(arch):
        if arch["b"] % 2:
            raise TrialFailed(f"odd b={arch['b']}")
        return objective(arch)

    result = search(Recording(SPACE, seed=1), flaky, budget=Budget(trials=10),
                    run_dir=tmp_path, progress=False, deduplicate=False)
    failed = [t for t in result.trials if t.state == "failed"]
    assert failed and all(t.score is None and t.error.startswith("odd b=") for t in failed)
    assert told.count(None) == len(failed)
    assert result.best.arch["b"] % 2 == 0


def test_repeats_are_answered_from_the_journal_not_counted():
    calls = []

    def counting(arch):
        calls.append(arch.fingerprint())
        return objective(arch)

    result = search(HillClimber(SPACE, seed=2), counting, budget=Budget(trials=10),
                    progress=False)
    assert len(calls) == len(set(calls)) == result.evaluations == 10
    cached = [t for t in result.trials if t.state == "cached"]
    assert cached  # the hill climber revisits its neighbourhood
    for t in cached:
        first = next(u for u in result.trials if u.arch == t.arch and u.state != "cached")
        assert t.score == first.score and t.metrics == first.metrics


class Interrupt(BaseException):
    pass


def interrupting_after(n):
    calls = []

    def evaluator(arch):
        if len(calls) == n:
            raise Interrupt
        calls.append(arch)
        return objective(arch)
    return evaluator


def strip_timing(records):
    return [{k: v for k, v in r.items() if k not in ("seconds", "elapsed_seconds")}
            for r in records]


@pytest.mark.parametrize("damage", ["none", "no-snapshot", "stale-snapshot"])
def test_resume_continues_exactly_like_an_uninterrupted_run(tmp_path, damage):
    search(HillClimber(SPACE, seed=3), objective, budget=Budget(trials=15),
           run_dir=tmp_path / "straight", progress=False)
    cut = tmp_path / "cut"
    with pytest.raises(Interrupt):
        search(HillClimber(SPACE, seed=3), interrupting_after(7), budget=Budget(trials=15),
               run_dir=cut, progress=False, state_every_seconds=0.0)
    snapshot = json.loads((cut / STRATEGY_STATE).read_text())
    assert snapshot["records"] == len(journal(cut))  # saved after every tell, none after
    if damage == "no-snapshot":
        (cut / STRATEGY_STATE).unlink()
    elif damage == "stale-snapshot":  # a crash between the journal line and the snapshot
        lines = (cut / JOURNAL).read_text().splitlines(keepends=True)
        search(HillClimber(SPACE, seed=3), objective, budget=Budget(trials=3),
               run_dir=tmp_path / "early", progress=False)
        early = journal(tmp_path / "early")
        assert strip_timing(early) == strip_timing([json.loads(x) for x in lines[:len(early)]])
        (cut / STRATEGY_STATE).write_text((tmp_path / "early" / STRATEGY_STATE).read_text())
    resumed = search(HillClimber(SPACE, seed=3), objective, budget=Budget(trials=15),
                     run_dir=cut, resume=True, progress=False)
    assert strip_timing(journal(cut)) == strip_timing(journal(tmp_path / "straight"))
    assert resumed.evaluations == 15


def test_resume_with_another_seed_is_refused(tmp_path):
    search(HillClimber(SPACE, seed=4), objective, budget=Budget(trials=5), run_dir=tmp_path,
           progress=False)
    (tmp_path / STRATEGY_STATE).unlink()
    with pytest.raises(ConfigError, match="different architecture"):
        search(HillClimber(SPACE, seed=5), objective, budget=Budget(trials=8),
               run_dir=tmp_path, resume=True, progress=False)


def test_existing_journal_needs_resume_and_corrupt_journal_is_an_error(tmp_path):
    search(HillClimber(SPACE, seed=0), objective, budget=Budget(trials=2), run_dir=tmp_path,
           progress=False)
    with pytest.raises(ConfigError, match="--resume"):
        search(HillClimber(SPACE, seed=0), objective, budget=Budget(trials=2),
               run_dir=tmp_path, progress=False)
    with open(tmp_path / JOURNAL, "a") as f:
        f.write('{"trial": 2, "sta\n')
    with pytest.raises(ConfigError, match="corrupt"):
        search(HillClimber(SPACE, seed=0), objective, budget=Budget(trials=4),
               run_dir=tmp_path, resume=True, progress=False)


def test_a_line_cut_short_by_a_crash_is_dropped_and_run_again(tmp_path):
    search(HillClimber(SPACE, seed=6), objective, budget=Budget(trials=8),
           run_dir=tmp_path / "straight", progress=False)
    cut = tmp_path / "cut"
    with pytest.raises(Interrupt):
        search(HillClimber(SPACE, seed=6), interrupting_after(4), budget=Budget(trials=8),
               run_dir=cut, progress=False)
    text = (cut / JOURNAL).read_text()
    (cut / JOURNAL).write_text(text[:-25])  # the last record half-written
    search(HillClimber(SPACE, seed=6), objective, budget=Budget(trials=8), run_dir=cut,
           resume=True, progress=False)
    assert strip_timing(journal(cut)) == strip_timing(journal(tmp_path / "straight"))


def test_exhausted_strategy_stops_the_search():
    class Fixed(SampleStrategy):
        def __init__(self, space, *, seed=None):
            super().__init__(space, seed=seed)
            self.todo = list(space.enumerate())[:3]

        def ask(self):
            if not self.todo:
                raise SpaceExhausted
            return self.todo.pop(0)

    result = search(Fixed(SPACE), objective, budget=Budget(trials=10), progress=False)
    assert result.stopped == "strategy exhausted the space" and result.evaluations == 3


def test_converged_strategy_stops_instead_of_spinning():
    result = search(HillClimber(SPACE, seed=0), objective, budget=Budget(trials=1000),
                    progress=False)
    assert result.stopped.startswith("strategy proposed only evaluated archs")
    assert result.best.arch["b"] == 9


def test_time_budget_and_minimised_objective():
    space = SearchSpace.from_dims({"x": Float(0.0, 1.0)}, name="line")

    def slow(arch):
        time.sleep(0.02)
        return {"val_acc": arch["x"]}

    result = search(HillClimber(space, seed=0), slow, budget=Budget(seconds=0.2),
                    objective=Objective("val_acc", "min"), progress=False)
    assert result.stopped == "time budget used" and 3 <= result.evaluations <= 12
    assert result.best.metrics["val_acc"] == min(t.metrics["val_acc"] for t in result.trials)


def test_bad_budget_objective_and_metric():
    with pytest.raises(ConfigError):
        Budget()
    with pytest.raises(ConfigError):
        Budget(trials=0)
    with pytest.raises(ConfigError):
        Objective("val_acc", "up")
    with pytest.raises(ConfigError, match="no metric 'val_loss'"):
        search(HillClimber(SPACE, seed=0), objective, budget=Budget(trials=1),
               objective=Objective("val_loss"), progress=False)


def test_non_finite_metric_fails_the_trial():
    result = search(HillClimber(SPACE, seed=0), lambda a: {"val_acc": math.nan},
                    budget=Budget(trials=2), progress=False)
    assert all(t.state in ("failed", "cached") for t in result.trials) and result.best is None


def test_simulated_time_budget_charges_a_metric():
    def charged(arch):
        return {**objective(arch), "sim_seconds": 10.0}

    result = search(HillClimber(SPACE, seed=0), charged, progress=False,
                    budget=Budget(seconds=35.0, time_metric="sim_seconds"))
    assert result.evaluations == 4 and result.stopped == "time budget used"
    assert result.elapsed_seconds == 40.0
    with pytest.raises(ConfigError, match="does not return"):
        search(HillClimber(SPACE, seed=0), objective, progress=False,
               budget=Budget(seconds=35.0, time_metric="sim_seconds"))


def test_custom_dedup_key_treats_equivalent_archs_as_one():
    calls = []

    def counting(arch):
        calls.append(arch)
        return objective(arch)

    # Key on "a" only: at most three distinct evaluations, whatever b is.
    result = search(HillClimber(SPACE, seed=1), counting, budget=Budget(trials=50),
                    progress=False, dedup_key=lambda arch: arch["a"])
    assert len(calls) == 3 and len({a["a"] for a in calls}) == 3
    assert result.stopped.startswith("strategy proposed only evaluated archs")


def test_grid_walks_past_long_runs_of_equivalent_archs():
    """Keyed on "a" only, grid meets 3 distinct archs then 27 equivalent ones per block;
    a fixed-order strategy is never stopped as "converged"."""
    space = SearchSpace.from_dims({"a": Categorical(("x", "y", "z")), "b": Int(0, 299)},
                                  name="long")
    result = search(STRATEGIES.get("grid")(space), objective, budget=Budget(trials=3),
                    dedup_key=lambda arch: arch["a"], progress=False)
    assert result.evaluations == 3 and result.stopped == "trial budget used"
    assert sum(t.state == "cached" for t in result.trials) == 2 * 299


def test_mnasnet_reward_scales_accuracy_by_cost_over_target():
    reward = Objective("val_acc", cost_metric="latency_ms", cost_target=10.0)
    assert reward.score({"val_acc": 0.9, "latency_ms": 10.0}) == pytest.approx(0.9)
    over = reward.score({"val_acc": 0.9, "latency_ms": 20.0})
    assert over == pytest.approx(0.9 * 2 ** -0.07) and over < 0.9
    assert reward.score({"val_acc": 0.9, "latency_ms": 5.0}) > 0.9
    with pytest.raises(ConfigError, match="no metric 'latency_ms'"):
        reward.score({"val_acc": 0.9})
    with pytest.raises(ConfigError, match="positive target"):
        Objective("val_acc", cost_metric="macs", cost_target=0.0)
    with pytest.raises(ConfigError, match="maximised"):
        Objective("val_loss", "min", cost_metric="macs", cost_target=1.0)

"""The search loop on several workers: the serial set and best, repeats of running trials,
an exact trial budget, dead workers, resume of an interrupted parallel run, and the CLI's
checks of --workers and friends."""

from __future__ import annotations

import json

import numpy as np
import pytest

import archsearch.workers as workers
from archsearch._journal import JOURNAL, RESULT, STRATEGY_STATE
from archsearch._loop import Budget, Objective, search
from archsearch.cli import main
from archsearch.errors import ConfigError
from archsearch.space import SpaceExhausted
from archsearch.strategies import RandomSearch, SampleStrategy
from archsearch.testing.toys import ToyObjective, categorical_space
from archsearch.workers import EvaluatorSpec, ProcessExecutor
from archsearch.workers.toy import LifoExecutor, ToyEvaluator

SPACE = categorical_space()  # ToyEvaluator's default space
SCORE = Objective("score")
TRIALS = 12
FAIL_WHEN = {"block0.op": "skip", "block1.op": "skip"}  # one arch in 16 fails


def toy_spec(**kwargs) -> EvaluatorSpec:
    return EvaluatorSpec(ToyEvaluator, {"cpu_seconds": 0.01, "fail_when": FAIL_WHEN, **kwargs})


@pytest.fixture(scope="module")
def pool():
    """Two worker processes for the whole module (starting the first pool takes seconds)."""
    with ProcessExecutor(toy_spec(), 2) as executor:
        yield executor


def evaluated(result) -> set[str]:
    return {t.arch.fingerprint() for t in result.trials if t.state in ("complete", "failed")}


def records(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / JOURNAL).read_text().splitlines()]


def serial(seed: int, trials: int = TRIALS):
    return search(RandomSearch(SPACE, seed=seed), toy_spec().build(),
                  budget=Budget(trials=trials), objective=SCORE, progress=False)


class Interrupt(BaseException):
    """Stands in for Ctrl-C."""


def test_random_search_on_two_workers_evaluates_the_serial_set(pool, tmp_path):
    expected = serial(seed=3)
    result = search(RandomSearch(SPACE, seed=3), budget=Budget(trials=TRIALS), objective=SCORE,
                    run_dir=tmp_path, progress=False, executor=pool)
    assert evaluated(result) == evaluated(expected) and result.evaluations == TRIALS
    assert result.best.arch == expected.best.arch and result.best.score == expected.best.score
    journal = records(tmp_path)
    assert [r["trial"] for r in journal] == list(range(len(journal)))
    assert sorted(r["ask"] for r in journal) == list(range(len(journal)))  # each told once
    assert all(r["worker"] and r["attempts"] == 1 for r in journal)
    # Results are told as they arrive: the first one after both trials were asked.
    assert journal[0]["asks"] == 2
    assert json.loads((tmp_path / STRATEGY_STATE).read_text())["pending"] == {}
    assert pool.in_flight == 0


class Listed(SampleStrategy):
    """Proposes a fixed list of archs (repeats included), then is exhausted."""

    def __init__(self, space, archs, *, seed=None):
        super().__init__(space, seed=seed)
        self.archs, self.position = list(archs), 0

    def ask(self):
        if self.position == len(self.archs):
            raise SpaceExhausted
        self.position += 1
        return self.archs[self.position - 1]


def test_a_repeat_of_a_running_trial_waits_for_its_result(pool):
    a, b, c, d = (SPACE.sample(np.random.default_rng(i)) for i in range(4))
    result = search(Listed(SPACE, [a, a, b, a, c, b, d]), budget=Budget(trials=4),
                    objective=SCORE, progress=False, executor=pool)
    assert result.evaluations == 4 and result.stopped == "trial budget used"
    by_ask = {t.ask: t for t in result.trials}
    assert [by_ask[n].state for n in range(7)] == ["complete", "cached", "complete", "cached",
                                                   "complete", "cached", "complete"]
    # Ask 1 repeated ask 0 while it ran: it was told right after it, with its result.
    position = {t.ask: i for i, t in enumerate(result.trials)}
    assert position[1] == position[0] + 1
    assert by_ask[1].score == by_ask[0].score == ToyObjective(SPACE, seed=0)(a)


class CountingExecutor:
    """Passes everything to an executor, counting submits and the most trials in flight."""

    def __init__(self, executor):
        self.executor, self.submits, self.most = executor, 0, 0
        self.capacity = executor.capacity

    @property
    def in_flight(self):
        return self.executor.in_flight

    def submit(self, key, arch):
        self.submits += 1
        self.executor.submit(key, arch)
        self.most = max(self.most, self.executor.in_flight)

    def wait(self, timeout=None):
        return self.executor.wait(timeout)

    def cancel(self):
        self.executor.cancel()


def test_the_trial_budget_is_never_overshot(pool):
    counting = CountingExecutor(pool)
    result = search(RandomSearch(SPACE, seed=5), budget=Budget(trials=7), objective=SCORE,
                    progress=False, executor=counting)
    assert counting.submits == result.evaluations == 7 and counting.most == 2
    assert result.stopped == "trial budget used"


@pytest.mark.parametrize("path", ["saved-state", "replay"])
def test_an_interrupted_parallel_run_resumes_to_the_serial_set(pool, tmp_path, path):
    def stop_after(n):
        def on_trial(trial):
            if trial.number + 1 == n:
                raise Interrupt
        return on_trial

    with pytest.raises(Interrupt):
        search(RandomSearch(SPACE, seed=4), budget=Budget(trials=TRIALS), objective=SCORE,
               run_dir=tmp_path, progress=False, executor=pool, on_trial=stop_after(5),
               state_every_seconds=0.0 if path == "saved-state" else 1e9)
    assert pool.in_flight == 0  # the trial still running was cancelled
    if path == "saved-state":  # the state names the trial in flight (if any) at the stop
        assert len(json.loads((tmp_path / STRATEGY_STATE).read_text())["pending"]) <= 1
    result = search(RandomSearch(SPACE, seed=4), budget=Budget(trials=TRIALS), objective=SCORE,
                    run_dir=tmp_path, resume=True, progress=False, executor=pool)
    assert evaluated(result) == evaluated(serial(seed=4))
    assert result.evaluations == TRIALS and len(records(tmp_path)) == len(result.trials)
    assert sorted(r["ask"] for r in records(tmp_path)) == list(range(len(result.trials)))


def test_a_worker_killed_mid_trial_fails_only_its_trial_which_is_retried(tmp_path):
    strategy = RandomSearch(SPACE, seed=6)
    victim = [strategy.ask() for _ in range(3)][-1]
    spec = toy_spec(kill_when=dict(victim), kill_times=1, marker_dir=str(tmp_path / "marks"))
    with ProcessExecutor(spec, 2) as executor:
        result = search(RandomSearch(SPACE, seed=6), budget=Budget(trials=8), objective=SCORE,
                        run_dir=tmp_path / "run", progress=False, executor=executor)
    [retried] = [t for t in result.trials if t.attempts > 1]
    assert retried.arch == victim and retried.state == "complete" and retried.attempts == 2
    assert retried.score == ToyObjective(SPACE, seed=0)(victim)
    assert evaluated(result) == evaluated(serial(seed=6, trials=8))
    assert json.loads((tmp_path / "run" / RESULT).read_text())["retried"] == 1
    assert [r["attempts"] for r in records(tmp_path / "run") if r["ask"] == 2] == [2]


def test_a_trial_whose_worker_always_dies_is_recorded_as_lost(tmp_path):
    strategy = RandomSearch(SPACE, seed=7)
    victim = [strategy.ask() for _ in range(2)][-1]
    told = []

    class Recording(RandomSearch):
        def tell(self, arch, score):
            told.append((arch, score))

    with ProcessExecutor(toy_spec(kill_when=dict(victim)), 2, max_retries=1) as executor:
        result = search(Recording(SPACE, seed=7), budget=Budget(trials=6), objective=SCORE,
                        progress=False, executor=executor)
    [lost] = [t for t in result.trials if t.arch == victim]
    assert lost.state == "failed" and lost.attempts == 2 and lost.score is None
    assert lost.error.startswith("worker lost:") and "SIGKILL" in lost.error
    assert (victim, None) in told
    assert result.evaluations == 6 and result.stopped == "trial budget used"


def test_a_simulated_time_budget_charges_each_trial_when_it_ends():
    def charged(arch):
        return {"score": 1.0, "sim_seconds": 10.0}

    result = search(RandomSearch(SPACE, seed=0), budget=Budget(seconds=35.0,
                                                               time_metric="sim_seconds"),
                    objective=SCORE, progress=False, executor=LifoExecutor(charged, 3))
    # 40 simulated seconds after the 4th result; the 2 trials running then still finish.
    assert result.evaluations == 6 and result.elapsed_seconds == 60.0
    assert result.stopped == "time budget used"


def test_search_needs_an_evaluator_or_an_executor_not_both(pool):
    with pytest.raises(ConfigError, match="either an evaluator or an executor"):
        search(RandomSearch(SPACE), budget=Budget(trials=1), objective=SCORE, progress=False)
    with pytest.raises(ConfigError, match="either an evaluator or an executor"):
        search(RandomSearch(SPACE), toy_spec().build(), budget=Budget(trials=1),
               objective=SCORE, progress=False, executor=pool)


ARGS = ["search", "--strategy", "random", "--space", "darts", "--space-arg", "nodes=2",
        "--evaluator", "proxy", "--quiet"]


@pytest.mark.parametrize("flags, message", [
    (["--workers", "0"], "--workers must be a positive integer"),
    (["--cpus-per-trial", "0"], "--cpus-per-trial must be positive"),
    (["--gpus-per-trial", "-1", "--workers", "2"], "--gpus-per-trial must be at least 0"),
    (["--gpus-per-trial", "1"], "--gpus-per-trial reserves GPUs on Ray workers"),
    (["--gpus-per-trial", "1", "--workers", "2"], "add --device cuda"),
    (["--device", "cuda", "--workers", "2"], "needs --gpus-per-trial"),
])
def test_bad_parallel_flags_are_one_line_errors(tmp_path, capsys, monkeypatch, flags,
                                                message):
    monkeypatch.setattr(workers, "ray_available", lambda: True)  # checked before any start
    out = tmp_path / "run"
    assert main([*ARGS, "--out", str(out), *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not out.exists()


def test_ray_address_without_ray_says_how_to_install_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(workers, "ray_available", lambda: False)
    assert main([*ARGS, "--out", str(tmp_path / "run"), "--ray-address", "auto"]) == 2
    assert "pip install 'archsearch[ray]'" in capsys.readouterr().err


@pytest.mark.slow
def test_workers_without_ray_use_local_processes_and_resume_serially(tmp_path, capsys,
                                                                     monkeypatch):
    monkeypatch.setattr(workers, "ray_available", lambda: False)
    out = tmp_path / "run"
    assert main([*ARGS, "--trials", "4", "--out", str(out), "--workers", "2"]) == 0
    printed = capsys.readouterr().out
    assert "Ray is not installed" in printed and "pip install 'archsearch[ray]'" in printed
    assert all(r["worker"] for r in records(out))
    # --workers is a run-time setting: the resumed run goes on in this process.
    assert main(["search", "--resume", str(out), "--trials", "6", "--quiet"]) == 0
    assert [r["worker"] for r in records(out)][4:] == [None, None]
    straight = tmp_path / "straight"
    assert main([*ARGS, "--trials", "6", "--out", str(straight)]) == 0
    assert ({r["fingerprint"] for r in records(out)}
            == {r["fingerprint"] for r in records(straight)})

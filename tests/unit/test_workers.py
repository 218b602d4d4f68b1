"""Executors: serial and process backends give the serial outcomes, survive dead workers."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

import archsearch.workers as workers
from archsearch.errors import ConfigError
from archsearch.testing.toys import ToyObjective, categorical_space
from archsearch.workers import EvaluatorSpec, ProcessExecutor, SerialExecutor, create_executor
from archsearch.workers.toy import ToyEvaluator

SPACE = categorical_space()
ARCHS = [SPACE.sample(np.random.default_rng(i)) for i in range(10)]
FAILING = ARCHS[4]


def run_all(executor, archs) -> dict:
    """Submit every arch (keyed by index) and collect the outcomes by key."""
    for key, arch in enumerate(archs):
        executor.submit(key, arch)
    outcomes = {}
    while executor.in_flight:
        for outcome in executor.wait():
            assert outcome.key not in outcomes, "an outcome came back twice"
            outcomes[outcome.key] = outcome
    return outcomes


def summary(outcomes: dict) -> set:
    return {(k, o.state, None if o.metrics is None else o.metrics["score"], o.error)
            for k, o in outcomes.items()}


def toy_spec(**kwargs) -> EvaluatorSpec:
    return EvaluatorSpec(ToyEvaluator, {"cpu_seconds": 0.02, "fail_when": dict(FAILING),
                                        **kwargs})


def test_serial_executor_evaluates_one_trial_per_wait():
    objective = ToyObjective(SPACE, seed=0)
    with SerialExecutor(toy_spec()) as executor:
        executor.submit("a", ARCHS[0])
        executor.submit("b", FAILING)
        assert executor.in_flight == 2
        [first] = executor.wait()
        assert (first.key, first.state, first.attempts) == ("a", "complete", 1)
        assert first.metrics == {"score": objective(ARCHS[0])}
        [second] = executor.wait()
        assert (second.state, second.metrics, second.attempts) == ("failed", None, 1)
        assert "toy failure" in second.error
        assert executor.in_flight == 0 and executor.wait() == []


def test_serial_executor_lets_an_evaluator_bug_propagate():
    def broken(arch):
        raise ZeroDivisionError("bug")

    with SerialExecutor(broken) as executor:
        executor.submit(0, ARCHS[0])
        with pytest.raises(ZeroDivisionError):
            executor.wait()
        assert executor.in_flight == 0


def test_process_executor_gives_the_serial_outcomes():
    with SerialExecutor(toy_spec()) as serial:
        expected = run_all(serial, ARCHS)
    with ProcessExecutor(toy_spec(), 2) as parallel:
        assert parallel.capacity == 2
        got = run_all(parallel, ARCHS)
    assert summary(got) == summary(expected)
    assert got[4].state == "failed" and got[4].attempts == 1  # TrialFailed: no retry
    assert len({o.worker for o in got.values()}) == 2  # both workers took trials


def test_a_worker_killed_mid_trial_fails_only_its_trial_once(tmp_path):
    victim = ARCHS[2]
    spec = toy_spec(kill_when=dict(victim), kill_times=1, marker_dir=str(tmp_path))
    with ProcessExecutor(spec, 2) as executor:
        got = run_all(executor, ARCHS)
    assert got[2].state == "complete" and got[2].attempts == 2
    assert got[2].metrics == {"score": ToyObjective(SPACE, seed=0)(victim)}
    assert all(o.attempts == 1 for k, o in got.items() if k != 2)
    assert sum(o.state == "complete" for o in got.values()) == len(ARCHS) - 1  # FAILING


def test_a_trial_that_always_kills_its_worker_is_lost_and_the_executor_goes_on():
    victim = ARCHS[1]
    with ProcessExecutor(toy_spec(kill_when=dict(victim)), 2, max_retries=1) as executor:
        got = run_all(executor, ARCHS[:4])
        assert got[1].state == "lost" and got[1].attempts == 2
        assert "SIGKILL" in got[1].error and got[1].metrics is None
        assert {got[k].state for k in (0, 2, 3)} == {"complete"}
        again = run_all(executor, [ARCHS[0], ARCHS[3]])  # still usable, keys reusable
    assert {o.state for o in again.values()} == {"complete"}


def test_process_executor_raises_an_evaluator_bug_with_its_type():
    spec = EvaluatorSpec(ToyEvaluator, {"space": "no_such_space"})  # KeyError when built
    with ProcessExecutor(spec, 1, threads_per_worker=None) as executor:
        executor.submit(0, ARCHS[0])
        with pytest.raises(KeyError, match="no_such_space"):
            executor.wait()


def test_wait_returns_nothing_on_timeout_or_when_idle():
    with ProcessExecutor(EvaluatorSpec(ToyEvaluator, {"cpu_seconds": 0.5}), 1) as executor:
        assert executor.wait(timeout=0) == []
        executor.submit(0, ARCHS[0])
        with pytest.raises(ValueError, match="already in flight"):
            executor.submit(0, ARCHS[1])
        assert executor.wait(timeout=0.01) == []
        assert executor.in_flight == 1
        assert [o.key for o in executor.wait()] == [0]
    with pytest.raises(RuntimeError, match="closed"):
        executor.submit(1, ARCHS[1])


def test_cancel_abandons_running_trials_and_leaves_the_executor_usable():
    objective = ToyObjective(SPACE, seed=0)
    with ProcessExecutor(EvaluatorSpec(ToyEvaluator, {"cpu_seconds": 0.3}), 2) as executor:
        for key in range(3):  # two running, one queued
            executor.submit(key, ARCHS[key])
        executor.cancel()
        assert executor.in_flight == 0 and executor.wait(timeout=0) == []
        executor.cancel()  # cancelling nothing is harmless
        # The same keys for other archs: a stale answer would carry the old arch's score.
        got = run_all(executor, ARCHS[3:6])
    assert {k: o.metrics["score"] for k, o in got.items()} == {
        k: objective(arch) for k, arch in enumerate(ARCHS[3:6])}


def test_create_executor_picks_the_backend(monkeypatch):
    spec = toy_spec()
    assert isinstance(create_executor(spec, 1), SerialExecutor)
    with pytest.raises(ConfigError, match="--workers"):
        create_executor(spec, 0)
    with pytest.raises(ConfigError, match="backend"):
        create_executor(spec, 2, backend="threads")
    monkeypatch.setattr(workers, "ray_available", lambda: False)
    with pytest.raises(ConfigError, match=r"pip install 'archsearch\[ray\]'"):
        create_executor(spec, 2, ray_address="auto")
    notes = []
    with create_executor(spec, 2, log=notes.append) as executor:
        assert isinstance(executor, ProcessExecutor) and executor.capacity == 2
    assert "pip install 'archsearch[ray]'" in notes[0]


def test_an_evaluator_that_cannot_travel_is_a_config_error():
    with pytest.raises(ConfigError, match="top-level"):
        ProcessExecutor(EvaluatorSpec(lambda: None), 2)


def test_settings_spec_rebuilds_a_runs_evaluator_from_plain_settings():
    settings = {"dataset": "digits", "data_dir": None, "seed": 0, "device": "cpu",
                "space": "darts", "space_args": {"nodes": 2}, "evaluator": "proxy",
                "proxy": "synflow", "build_args": {}, "batch_size": 32}
    spec = pickle.loads(pickle.dumps(workers.settings_spec(settings)))  # travels as is
    evaluator = spec.build()
    assert type(evaluator).__name__ == "ZeroCostEvaluator"
    assert evaluator.space.name == "darts" and len(evaluator.space.dims) == 5 * 2

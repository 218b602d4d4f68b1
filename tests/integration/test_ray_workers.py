"""RayExecutor on a local 2-CPU Ray cluster: serial outcomes, and a killed actor's retry."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from archsearch.testing.toys import ToyObjective, categorical_space
from archsearch.workers import EvaluatorSpec, RayExecutor, SerialExecutor
from archsearch.workers.toy import ToyEvaluator

ray = pytest.importorskip("ray")

pytestmark = pytest.mark.slow

SPACE = categorical_space()
ARCHS = [SPACE.sample(np.random.default_rng(i)) for i in range(8)]
FAILING = ARCHS[5]


@pytest.fixture(scope="module", autouse=True)
def cluster():
    """One local cluster for the module (starting Ray takes seconds)."""
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    yield
    ray.shutdown()


def spec(**kwargs) -> EvaluatorSpec:
    return EvaluatorSpec(ToyEvaluator, {"cpu_seconds": 0.02, "fail_when": dict(FAILING),
                                        **kwargs})


def run_all(executor, archs) -> dict:
    for key, arch in enumerate(archs):
        executor.submit(key, arch)
    outcomes = {}
    while executor.in_flight:
        outcomes.update((o.key, o) for o in executor.wait(timeout=60))
    return outcomes


def summary(outcomes: dict) -> set:
    return {(k, o.state, None if o.metrics is None else o.metrics["score"], o.error,
             o.attempts) for k, o in outcomes.items()}


def test_two_ray_workers_give_the_serial_outcomes():
    with SerialExecutor(spec()) as serial:
        expected = run_all(serial, ARCHS)
    with RayExecutor(spec(), 2) as executor:
        got = run_all(executor, ARCHS)
    assert summary(got) == summary(expected)
    assert got[5].state == "failed"
    assert len({o.worker for o in got.values()}) == 2
    assert ray.is_initialized()  # the executor leaves a cluster it did not start alone


def test_an_actor_killed_mid_trial_is_replaced_and_the_trial_retried(tmp_path):
    victim = ARCHS[3]
    killing = spec(kill_when=dict(victim), kill_times=1, marker_dir=str(tmp_path))
    with RayExecutor(killing, 2) as executor:
        got = run_all(executor, ARCHS)
    assert got[3].state == "complete" and got[3].attempts == 2
    assert got[3].metrics == {"score": ToyObjective(SPACE, seed=0)(victim)}
    assert all(o.attempts == 1 for k, o in got.items() if k != 3)



def test_cancel_replaces_busy_actors_and_no_stale_outcome_comes_back():
    objective = ToyObjective(SPACE, seed=0)
    with RayExecutor(spec(cpu_seconds=0.5), 2) as executor:
        for key in range(3):
            executor.submit(key, ARCHS[key])
        executor.cancel()
        assert executor.in_flight == 0 and executor.wait(timeout=0) == []
        got = run_all(executor, ARCHS[6:8] + ARCHS[:1])  # keys 0..2 again, other archs
    assert {k: o.metrics["score"] for k, o in got.items()} == {
        k: objective(arch) for k, arch in enumerate(ARCHS[6:8] + ARCHS[:1])}

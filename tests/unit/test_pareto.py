"""Pareto fronts: NSGA-II's non-dominated sort and crowding distance against brute force and
hand-worked examples, 2-D hypervolume, and the run directory's pareto.json / pareto.png."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from archsearch._loop import Objective, Trial
from archsearch.errors import ConfigError
from archsearch.pareto import (
    PARETO_JSON,
    PARETO_PNG,
    _is_log_scale,
    axis_label,
    crowding_distance,
    dominates,
    front_of,
    hypervolume_2d,
    non_dominated_sort,
    pareto_front,
    plot_front,
    write_front,
)
from archsearch.space import Categorical, Int, SearchSpace

# Small integer coordinates make ties and duplicate points common: the hard cases.
POINTS = st.integers(1, 3).flatmap(lambda m: st.lists(
    st.lists(st.integers(0, 4), min_size=m, max_size=m), min_size=0, max_size=25))


def _brute_dominates(a, b) -> bool:
    return all(x >= y for x, y in zip(a, b, strict=True)) and any(
        x > y for x, y in zip(a, b, strict=True))


@settings(max_examples=150, deadline=None)
@given(POINTS)
def test_non_dominated_sort_matches_the_definition(points):
    fronts = non_dominated_sort(points)
    assert sorted(i for front in fronts for i in front) == list(range(len(points)))
    rank = {i: k for k, front in enumerate(fronts) for i in front}
    for i, p in enumerate(points):
        # Nothing of the same or a later front dominates p ...
        assert not any(_brute_dominates(points[j], p) for j in range(len(points))
                       if rank[j] >= rank[i])
        # ... and from front 2 on, something in the front just before does.
        if rank[i] > 0:
            assert any(_brute_dominates(points[j], p) for j in fronts[rank[i] - 1])
    brute_front = [i for i, p in enumerate(points)
                   if not any(_brute_dominates(q, p) for q in points)]
    assert pareto_front(points) == brute_front == (fronts[0] if fronts else [])


def test_pareto_front_agrees_with_the_sort_on_random_floats():
    rng = np.random.default_rng(0)
    for n, m in ((200, 2), (150, 3), (50, 1)):
        points = rng.normal(size=(n, m))
        assert pareto_front(points) == non_dominated_sort(points)[0]


def test_dominance_needs_one_strict_improvement():
    assert dominates((2, 1), (1, 1)) and not dominates((1, 1), (1, 1))
    assert not dominates((2, 0), (1, 1)) and not dominates((1, 1), (2, 0))
    assert pareto_front([(1, 1), (1, 1), (0, 2), (0, 1)]) == [0, 1, 2]


def test_crowding_distance_on_a_hand_worked_front():
    # Objective 0 spans 4: inner gaps (3 - 0)/4 and (4 - 1)/4; objective 1 spans 4 too:
    # (1, 2) sits between 1 and 4 -> 3/4, (3, 1) between 0 and 2 -> 2/4.
    d = crowding_distance([(0, 4), (1, 2), (3, 1), (4, 0)])
    assert d[0] == d[3] == math.inf
    assert d[1] == pytest.approx(0.75 + 0.75) and d[2] == pytest.approx(0.75 + 0.5)


def test_crowding_distance_ignores_a_flat_objective_and_small_fronts():
    d = crowding_distance([(0, 7), (1, 7), (3, 7), (4, 7)])
    assert d[1] == pytest.approx(3 / 4) and d[2] == pytest.approx(3 / 4)
    assert list(crowding_distance([(1, 2), (2, 1)])) == [math.inf, math.inf]


def test_hypervolume_2d_on_a_hand_worked_example():
    # Union of [0,3]x[0,1], [0,2]x[0,2], [0,1]x[0,3]: 3 + 2·1 + 1·1 = 6.
    front = [(3, 1), (2, 2), (1, 3)]
    assert hypervolume_2d(front, (0, 0)) == pytest.approx(6.0)
    # Dominated points, duplicates and points not beyond the reference add nothing.
    assert hypervolume_2d([*front, (1, 1), (2, 2), (5, -1)], (0, 0)) == pytest.approx(6.0)
    # From (1, 1) only (2, 2) encloses area; the others lie on the reference's lines.
    assert hypervolume_2d(front, (1, 1)) == pytest.approx(1.0)
    assert hypervolume_2d([], (0, 0)) == 0.0
    with pytest.raises(ValueError):
        hypervolume_2d([(1, 2, 3)], (0, 0, 0))


# --- the run directory ------------------------------------------------------------------------
SPACE = SearchSpace.from_dims({"op": Categorical(("a", "b")), "width": Int(1, 64)},
                              name="toy")
OBJECTIVES = (Objective("val_acc", "max"), Objective("macs", "min"))


def _trials(seed: int = 0, n: int = 40) -> list[Trial]:
    rng = np.random.default_rng(seed)
    trials = []
    for k in range(n):
        arch = SPACE.sample(rng)
        macs = int(arch["width"]) * 1000
        acc = float(np.clip(0.5 + 0.4 * np.log(macs) / np.log(64_000) + rng.normal(0, 0.05),
                            0, 1))
        state = ("failed", "cached", "complete", "complete", "complete")[k % 5]
        metrics = {} if state == "failed" else {"val_acc": acc, "macs": macs}
        trials.append(Trial(k, arch, state, metrics))
    # A failed or cached trial must never enter the front, however good its numbers.
    trials[1].metrics = {"val_acc": 1.0, "macs": 1}
    return trials


def test_written_front_is_non_dominated_by_every_evaluated_trial(tmp_path):
    trials = _trials()
    write_front(tmp_path, OBJECTIVES, trials)
    doc = json.loads((tmp_path / PARETO_JSON).read_text())
    assert doc["format"] == "archsearch.pareto/1"
    assert doc["objectives"] == [{"metric": "val_acc", "direction": "max"},
                                 {"metric": "macs", "direction": "min"}]
    complete = [t for t in trials if t.state == "complete"]
    vector = {t.number: (t.metrics["val_acc"], -t.metrics["macs"]) for t in complete}
    front = [entry["trial"] for entry in doc["front"]]
    assert front and set(front) <= set(vector)
    for n in front:
        assert not any(_brute_dominates(vector[m], vector[n]) for m in vector)
    # ... and every complete trial off the front is dominated by one on it.
    for m in set(vector) - set(front):
        assert any(_brute_dominates(vector[n], vector[m]) for n in front)
    accs = [entry["metrics"]["val_acc"] for entry in doc["front"]]
    assert accs == sorted(accs, reverse=True)  # best first by the first objective
    assert all(entry["arch"] == dict(trials[entry["trial"]].arch) for entry in doc["front"])


def test_front_of_a_front_is_itself():
    trials = _trials(seed=3)
    front = front_of(OBJECTIVES, trials)
    assert front_of(OBJECTIVES, front) == front


def test_plot_front_draws_a_png_only_for_a_multi_objective_run(tmp_path):
    assert plot_front(tmp_path) is None
    trials = _trials(seed=1)
    write_front(tmp_path, OBJECTIVES, trials)
    with open(tmp_path / "trials.jsonl", "w") as f:
        for t in trials:
            f.write(json.dumps(t.to_json()) + "\n")
    path = plot_front(tmp_path)
    assert path == tmp_path / PARETO_PNG
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    single = tmp_path / "single"
    write_front(single, OBJECTIVES[:1], trials)
    assert plot_front(single) is None


def test_a_foreign_pareto_json_is_a_config_error(tmp_path):
    (tmp_path / PARETO_JSON).write_text('{"format": "something/1"}')
    with pytest.raises(ConfigError, match="archsearch.pareto/1"):
        plot_front(tmp_path)


def test_axis_labels_carry_units_and_log_scale_past_two_decades():
    assert axis_label("latency_ms", "min", np.array([1.0])) == "latency (ms), lower is better"
    assert "(%)" in axis_label("val_acc", "max", np.array([55.0, 91.2]))
    assert "(fraction)" in axis_label("val_acc", "max", np.array([0.55, 0.91]))
    assert _is_log_scale(np.array([1e3, 2e5])) and not _is_log_scale(np.array([1e3, 9e4]))
    assert not _is_log_scale(np.array([-1.0, 1e4]))  # a log axis needs positive values

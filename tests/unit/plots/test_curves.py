"""Search curves: best-so-far equals a hand computation, is monotone, uses the objective in
its own direction, marks failed and infeasible trials, and is drawn to a valid PNG."""

from __future__ import annotations

import math

import numpy as np
import pytest

from archsearch.errors import ConfigError
from archsearch.plots.curves import best_so_far, curve_data, curve_title, draw_search_curve

NAN = math.nan


def _record(trial, state, val_acc=None, score=None, elapsed=None):
    metrics = {} if val_acc is None else {"val_acc": val_acc, "num_params": 1000}
    return {"trial": trial, "state": state, "metrics": metrics,
            "score": val_acc if score is None else score,
            "elapsed_seconds": float(trial + 1) if elapsed is None else elapsed}


RECORDS = [_record(0, "failed"), _record(1, "complete", 0.30), _record(2, "complete", 0.10),
           _record(3, "infeasible"), _record(4, "complete", 0.50),
           _record(5, "cached", 0.30), _record(6, "complete", 0.40)]


def test_best_so_far_by_hand():
    values = np.array([NAN, 0.3, 0.1, NAN, 0.5, 0.3, 0.4])
    np.testing.assert_array_equal(best_so_far(values, "max"),
                                  [NAN, 0.3, 0.3, 0.3, 0.5, 0.5, 0.5])
    np.testing.assert_array_equal(best_so_far(values, "min"),
                                  [NAN, 0.3, 0.1, 0.1, 0.1, 0.1, 0.1])


def test_curve_of_a_journal_follows_the_objective():
    settings = {"objective": "val_acc", "direction": "max", "strategy": "evolution",
                "space": "nb201"}
    data = curve_data(RECORDS, settings)
    assert data.label == "val_acc (maximised)"
    np.testing.assert_array_equal(data.trial, range(7))
    np.testing.assert_array_equal(data.elapsed_s, [1, 2, 3, 4, 5, 6, 7])
    np.testing.assert_array_equal(data.value, [NAN, 0.3, 0.1, NAN, 0.5, 0.3, 0.4])
    np.testing.assert_array_equal(data.best, [NAN, 0.3, 0.3, 0.3, 0.5, 0.5, 0.5])
    finite = data.best[np.isfinite(data.best)]
    assert np.all(np.diff(finite) >= 0)  # never gets worse
    assert (data.count("failed"), data.count("infeasible"), data.count("cached")) == (1, 1, 1)
    assert curve_title(data, settings) == "evolution on nb201: best val_acc 0.5 (trial 4)"


def test_a_minimised_objective_is_plotted_as_is_with_a_falling_best():
    records = [{"trial": k, "state": "complete", "metrics": {"loss": v}, "score": -v}
               for k, v in enumerate([0.9, 1.2, 0.4, 0.6])]
    data = curve_data(records, {"objective": "loss", "direction": "min"})
    assert data.label == "loss (minimised)"
    np.testing.assert_array_equal(data.best, [0.9, 0.9, 0.4, 0.4])
    assert np.all(np.diff(data.best) <= 0)


def test_a_reward_or_unknown_settings_use_the_score_the_strategy_maximised():
    records = [_record(0, "complete", 0.9, score=0.7), _record(1, "complete", 0.8, score=0.75)]
    reward = curve_data(records, {"objective": "val_acc", "reward_cost": "macs"})
    np.testing.assert_array_equal(reward.value, [0.7, 0.75])
    assert reward.label == "score (maximised)"
    np.testing.assert_array_equal(curve_data(records).value, [0.7, 0.75])


def test_no_complete_trial_yet_gives_an_all_nan_best():
    data = curve_data([_record(0, "failed")], {"objective": "val_acc"})
    assert np.isnan(data.best).all()
    assert curve_title(data, {"strategy": "rl", "space": "darts"}).endswith("no trial completed")


@pytest.mark.parametrize("bad, match", [
    ({"trial": 0, "metrics": {}}, "no 'state'"),
    ({"trial": 0, "state": "complete", "metrics": {"val_acc": "high"}}, "not a number"),
    ({"trial": "zero", "state": "failed"}, "trial is not a number"),
])
def test_malformed_records_are_config_errors(bad, match):
    with pytest.raises(ConfigError, match=match):
        curve_data([RECORDS[1], bad], {"objective": "val_acc"})


def test_the_curve_is_drawn_to_a_png(tmp_path):
    data = curve_data(RECORDS, {"objective": "val_acc"})
    (png,) = draw_search_curve(data, tmp_path / "search_curve", title="t")
    assert png == tmp_path / "search_curve.png"
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")

"""space_stats: the EDF against hand computations, cost distributions, error rows, files."""

from __future__ import annotations

import csv
import io
import math

import numpy as np
import pytest
import torch

from archsearch import space_stats as ss
from archsearch.errors import ConfigError
from archsearch.evaluators import TrialFailed
from archsearch.hardware import count_macs, num_params
from archsearch.spaces.mobilenet import MobileNetSpace

torch.set_num_threads(1)
SMALL = {"channels": [8, 16], "strides": [1, 2], "depths": [1, 2], "width_mults": [1.0, 1.25]}
FULL = MobileNetSpace(**SMALL, kernels=[3, 5, 7], expands=[3, 6], resolutions=[8, 16])
CHEAP = MobileNetSpace(**SMALL, kernels=[3], expands=[3], resolutions=[8])
BUILD = {"last_channels": 32, "num_classes": 10, "in_channels": 1}
SHAPE = (1, 8, 8)


def test_edf_matches_a_hand_computation():
    f = ss.edf([0.3, 0.1, 0.2, 0.2])
    # F(e) = fraction with error strictly below e (Radosavovic et al. 2019, eq. 1).
    points = [0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35]
    assert [f(e) for e in points] == [0.0, 0.0, 0.25, 0.25, 0.75, 0.75, 1.0]
    assert f.quantile(0.5) == 0.2 and f.quantile(0.25) == 0.1 and f.quantile(1.0) == 0.3
    grid = np.linspace(-1, 2, 301)
    values = f(grid)
    assert np.all(np.diff(values) >= 0) and values[0] == 0.0 and values[-1] == 1.0


def test_failed_models_count_but_are_below_no_error():
    f = ss.edf([0.1, math.nan, 0.4, math.nan])
    assert (f.n, f.failed) == (4, 2)
    assert f(1.0) == 0.5 and f(0.2) == 0.25
    assert f.quantile(0.5) == 0.4 and f.quantile(0.75) == math.inf
    assert f.summary()["median"] == 0.4 and f.summary()["F(0.5)"] == 0.5


def test_area_is_the_normalised_integral_of_the_edf():
    f = ss.edf([0.2, 0.6])
    assert f.area() == pytest.approx(0.6)  # over [0, 1]: the mean accuracy
    # Over [0.5, 1]: F = 0.5 on (0.5, 0.6], 1 on (0.6, 1] -> (0.05 + 0.4) / 0.5.
    assert f.area(0.5, 1.0) == pytest.approx(0.9)
    with pytest.raises(ConfigError):
        f.area(0.5, 0.5)


def test_weighted_edf_and_ks_distance():
    f = ss.edf([0.1, 0.2, 0.3], weights=[2, 1, 1])
    assert f(0.15) == 0.5 and f(0.25) == 0.75
    a, b = ss.edf([0.1, 0.2]), ss.edf([0.3, 0.4])
    assert ss.ks_distance(a, b) == 1.0 and ss.ks_distance(a, a) == 0.0
    assert ss.ks_distance(ss.edf([0.1, 0.3]), ss.edf([0.2, 0.4])) == 0.5
    with pytest.raises(ConfigError):
        ss.edf([])


def test_complexity_weights_make_each_bin_weigh_the_same():
    w = ss.complexity_weights([1, 1, 1, 100], edges=[0.5, 10, 1000])
    assert w.tolist() == pytest.approx([1 / 6, 1 / 6, 1 / 6, 1 / 2])
    # Outside the shared edges: no weight.
    assert ss.complexity_weights([1, 5000], edges=[0.5, 10, 1000]).tolist() == [1.0, 0.0]
    assert ss.complexity_weights([3, 3]).tolist() == [0.5, 0.5]


def test_cost_distribution_counts_each_built_network_and_is_seeded():
    rows = ss.cost_distribution(FULL, 8, seed=3, input_shape=SHAPE, build_kwargs=BUILD)
    archs = ss.sample_archs(FULL, 8, seed=3)
    assert [r.sample for r in rows] == list(range(8))
    for row, arch in zip(rows, archs, strict=True):
        model = FULL.build(arch, **BUILD)
        assert row.fingerprint == arch.fingerprint()
        assert row.macs == count_macs(model, SHAPE)
        assert row.num_params == num_params(model)
    again = ss.cost_distribution(FULL, 8, seed=3, input_shape=SHAPE, build_kwargs=BUILD)
    other = ss.cost_distribution(FULL, 8, seed=4, input_shape=SHAPE, build_kwargs=BUILD)
    assert again == rows and other != rows


def test_a_space_of_cheaper_choices_has_stochastically_smaller_macs():
    full = ss.cost_distribution(FULL, 30, seed=0, input_shape=SHAPE, build_kwargs=BUILD)
    cheap = ss.cost_distribution(CHEAP, 30, seed=0, input_shape=SHAPE, build_kwargs=BUILD)
    mf, mc = (np.array([r.macs for r in rows], float) for rows in (full, cheap))
    qs = np.linspace(0.1, 0.9, 9)
    assert np.all(np.quantile(mc, qs) < np.quantile(mf, qs))
    assert ss.ks_distance(ss.edf(mc), ss.edf(mf)) > 0.5


def test_bad_sample_counts_and_build_settings_raise_config_error():
    with pytest.raises(ConfigError, match="samples"):
        ss.cost_distribution(FULL, 0, seed=0, input_shape=SHAPE)
    with pytest.raises(ConfigError, match="cannot build"):
        ss.cost_distribution(FULL, 1, seed=0, input_shape=SHAPE, build_kwargs={"depth": 3})


def _fake_evaluator(arch):
    """Error grows with the resolution; resolution-16 archs with kernel 7 'diverge'."""
    if arch["resolution"] == 16 and arch["stage0.block0.kernel"] == 7:
        raise TrialFailed("loss became NaN")
    return {"val_acc": 0.9 - 0.01 * arch["resolution"], "num_params": 1.0, "macs": 2.0,
            "train_seconds": 0.5}


def test_error_edf_rows_from_an_evaluator():
    rows = ss.error_edf(FULL, 12, _fake_evaluator, seed=1)
    archs = ss.sample_archs(FULL, 12, seed=1)
    assert [r.fingerprint for r in rows] == [a.fingerprint() for a in archs]
    for row, arch in zip(rows, archs, strict=True):
        if row.failed:
            assert math.isnan(row.error) and "NaN" in row.failed
        else:
            assert row.error == pytest.approx(0.1 + 0.01 * arch["resolution"])
    assert any(r.failed for r in rows) and not all(r.failed for r in rows)
    # The trained archs are the first ones of the cost sample of the same seed.
    costs = ss.cost_distribution(FULL, 14, seed=1, input_shape=SHAPE, build_kwargs=BUILD)
    assert [c.fingerprint for c in costs[:12]] == [r.fingerprint for r in rows]


def test_csv_columns_and_rows():
    costs = {"full": ss.cost_distribution(FULL, 3, seed=0, input_shape=SHAPE,
                                          build_kwargs=BUILD),
             "cheap": ss.cost_distribution(CHEAP, 2, seed=0, input_shape=SHAPE,
                                           build_kwargs=BUILD)}
    table = list(csv.DictReader(io.StringIO(ss.rows_csv(costs))))
    assert list(table[0]) == ["space", "sample", "fingerprint", "num_params", "macs"]
    assert [r["space"] for r in table] == ["full"] * 3 + ["cheap"] * 2
    assert int(table[4]["macs"]) == costs["cheap"][1].macs
    errors = {"full": ss.error_edf(FULL, 12, _fake_evaluator, seed=1)}
    table = list(csv.DictReader(io.StringIO(ss.rows_csv(errors))))
    assert list(table[0]) == ["space", "sample", "fingerprint", "num_params", "macs",
                              "val_acc", "error", "train_seconds", "failed"]
    failed = [r for r in table if r["failed"]]
    assert failed and all(r["error"] == "" for r in failed)  # NaN written empty


def test_plots_are_pngs(tmp_path):
    costs = {"cheap": ss.cost_distribution(CHEAP, 4, seed=0, input_shape=SHAPE,
                                           build_kwargs=BUILD)}
    path = ss.write_png(tmp_path / "costs.png", ss.plot_costs_png(costs))
    assert path.read_bytes().startswith(b"\x89PNG")
    edfs = {"a": ss.edf([0.1, 0.3]), "b": ss.edf([math.nan, math.nan])}
    assert ss.plot_edf_png(edfs, title="t").startswith(b"\x89PNG")
    assert [p.name for p in tmp_path.iterdir()] == ["costs.png"]  # no temporary left

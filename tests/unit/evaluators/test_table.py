"""TableEvaluator on the 40-row NAS-Bench-201 fixture: what a search sees, and what it doesn't."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from archsearch.benchmarks import NasBench201Table, simulated_train_seconds
from archsearch.benchmarks.nb201 import SIMULATED_MACS_PER_SECOND
from archsearch.errors import ArchError, ConfigError
from archsearch.evaluators import EVALUATORS, TableEvaluator, TrialFailed
from archsearch.spaces.nasbench201 import NasBench201Space

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "nb201"


@pytest.fixture(scope="module")
def table() -> NasBench201Table:
    return NasBench201Table.load(FIXTURE, expect_rows=None)


@pytest.fixture(scope="module")
def space() -> NasBench201Space:
    return NasBench201Space()


def _cell(space, table, index):
    return space.from_string(table.string_of(index))


def test_registered_as_table():
    assert EVALUATORS.get("table") is TableEvaluator


def test_metrics_hold_validation_but_never_test_accuracy(space, table):
    evaluator = TableEvaluator(space, table)
    metrics = evaluator(_cell(space, table, 1835))
    assert set(metrics) == set(evaluator.metric_names()) == {
        "val_acc", "num_params", "macs", "train_seconds"}
    assert metrics["val_acc"] == pytest.approx(39.76933332316081)  # valid_top1, not test_top1
    assert evaluator.test_accuracy(_cell(space, table, 1835)) == pytest.approx(54.29666666666666)
    assert not any(value == pytest.approx(54.29666666666666) for value in metrics.values())
    assert metrics["num_params"] == 73306 and metrics["macs"] == 7783050


def test_12_epoch_search_reports_the_200_epoch_test_accuracy(space, table):
    evaluator = TableEvaluator(space, table, fidelity=12)
    best = _cell(space, table, 6111)
    assert evaluator(best)["val_acc"] == table.query(6111, fidelity=12)["val_acc"]
    assert evaluator.test_accuracy(best) == pytest.approx(94.37333333333333)
    assert evaluator.test_accuracy(best, fidelity=12) == table.query(6111, fidelity=12)[
        "test_acc"]


def test_simulated_seconds_follow_macs_and_fidelity(space, table):
    full, short = TableEvaluator(space, table), TableEvaluator(space, table, fidelity=12)
    cells = [_cell(space, table, i) for i in (0, 1, 1835, 6111)]
    for arch in cells:
        seconds = full(arch)["train_seconds"]
        assert short(arch)["train_seconds"] == pytest.approx(seconds * 12 / 200)
        assert seconds == pytest.approx(200 * full(arch)["macs"] * 50_000
                                        / SIMULATED_MACS_PER_SECOND)
    per_mac = [full(a)["train_seconds"] / full(a)["macs"] for a in cells]
    assert max(per_mac) == pytest.approx(min(per_mac))  # proportional to MACs
    # Calibration: the average CIFAR-10 cell (55.0 M MACs) takes about 16 s per epoch.
    assert simulated_train_seconds(54.97e6, "cifar10", 1) == pytest.approx(16, rel=0.05)
    # ImageNet16-120 has 3x the images at a quarter of the MACs per image.
    img = TableEvaluator(space, table, dataset="imagenet16", fidelity=12)(cells[1])
    assert img["train_seconds"] == pytest.approx(12 * img["macs"] * 151_700
                                                 / SIMULATED_MACS_PER_SECOND)


def test_a_fixed_cost_per_epoch_replaces_the_macs_model(space, table):
    evaluator = TableEvaluator(space, table, fidelity=12, seconds_per_epoch=2.5)
    assert {evaluator(_cell(space, table, i))["train_seconds"] for i in (0, 6111)} == {30.0}
    for bad in (0, -1.0, float("nan"), "fast"):
        with pytest.raises(ConfigError, match="seconds_per_epoch"):
            TableEvaluator(space, table, seconds_per_epoch=bad)


def test_latency_for_the_chosen_device(space, table):
    evaluator = TableEvaluator(space, table, device="raspi4")
    metrics = evaluator(_cell(space, table, 1))
    assert "latency_ms" in evaluator.metric_names()
    assert metrics["latency_ms"] == table.query(1)["latency_ms"]["raspi4"]
    assert "device='raspi4'" in repr(evaluator)


@pytest.mark.parametrize("kwargs, message", [
    ({"dataset": "cifar1000"}, "unknown dataset 'cifar1000'; did you mean 'cifar100'"),
    ({"fidelity": 50}, "unknown fidelity 50; did you mean 12"),
    ({"device": "pixel_2"}, "unknown latency device 'pixel_2'; did you mean 'pixel2'"),
])
def test_unknown_settings_are_config_errors_with_a_suggestion(space, table, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        TableEvaluator(space, table, **kwargs)


def test_warns_where_validation_is_the_test_accuracy(space, table):
    with pytest.warns(UserWarning, match="no 200-epoch validation accuracy for cifar100"):
        evaluator = TableEvaluator(space, table, dataset="cifar100")
    arch = _cell(space, table, 0)
    assert evaluator(arch)["val_acc"] == evaluator.test_accuracy(arch)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        TableEvaluator(space, table, dataset="cifar100", fidelity=12)
        TableEvaluator(space, table, dataset="cifar10")


def test_cells_missing_from_a_partial_table_fail_the_trial(space, table):
    missing = space.from_string("|none~0|+|none~0|none~1|+|none~0|none~1|skip_connect~2|")
    with pytest.raises(TrialFailed, match="not in the table"):
        TableEvaluator(space, table)(missing)


def test_needs_a_space_with_benchmark_strings(space, table):
    with pytest.raises(ConfigError, match="needs the NAS-Bench-201 space"):
        TableEvaluator(object(), table)
    other = NasBench201Space(ops=("none", "skip_connect"))
    with pytest.raises(ArchError):  # an arch of another space is not a cell of this one
        TableEvaluator(other, table)(space.from_string(table.string_of(1)))

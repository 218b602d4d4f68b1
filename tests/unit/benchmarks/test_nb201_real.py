"""The real NAS-Bench-201 tables: published facts, consistency, and a search against them.

Skipped unless the tables are found: `ARCHSEARCH_NB201_DIR`, else `../shared/data/nb201`
next to the repository root.
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import spearmanr

from archsearch import Budget, search
from archsearch.benchmarks import NB201_ENV_VAR, NB201_FILES, NasBench201Table
from archsearch.evaluators import TableEvaluator
from archsearch.spaces.nasbench201 import NasBench201Space
from archsearch.strategies import STRATEGIES


def _data_dir() -> Path:
    if os.environ.get(NB201_ENV_VAR):
        return Path(os.environ[NB201_ENV_VAR])
    return Path(__file__).resolve().parents[3].parent / "shared" / "data" / "nb201"


DATA = _data_dir()
pytestmark = pytest.mark.skipif(
    not all((DATA / name).is_file() for name in NB201_FILES.values()),
    reason=f"NAS-Bench-201 tables not found in {DATA} (set {NB201_ENV_VAR} or put the CSV "
           "files in ../shared/data/nb201 next to the repository)")
RESNET_LIKE = "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|nor_conv_3x3~2|"


@pytest.fixture(scope="module")
def table() -> NasBench201Table:
    return NasBench201Table.load(DATA)


def test_the_published_facts(table):
    best = table.best("cifar10", 200)
    assert best.index == 6111 and best.value == pytest.approx(94.3733, abs=1e-4)
    skip = table.query(1835)
    assert set(skip["arch_str"].replace("|", " ").replace("+", " ").split()) == {
        "skip_connect~0", "skip_connect~1", "skip_connect~2"}
    assert skip["test_acc"] == pytest.approx(54.30, abs=0.005)
    assert skip["val_acc"] == pytest.approx(39.77, abs=0.005)
    assert table.index_of(RESNET_LIKE) == 12415
    assert table.query(RESNET_LIKE)["test_acc"] == pytest.approx(93.99)


def test_every_cell_once_in_index_order(table):
    assert len(table) == 15_625 and table.is_complete
    assert (table.indices == np.arange(15_625)).all()
    assert len({table.string_of(i) for i in range(15_625)}) == 15_625
    assert len({table.unique_string(i) for i in range(15_625)}) == 6_466


def test_index_and_string_agree_in_all_five_files(table):
    string_column = {"nats": 3}  # the others: index in column 0, string in column 1
    for key, name in NB201_FILES.items():
        with open(DATA / name, newline="") as handle:
            rows = list(csv.reader(handle))[1:]
        assert [r[string_column.get(key, 1)] for r in rows] == [
            table.string_of(i) for i in range(15_625)], name
        if key not in string_column:
            assert [int(r[0]) for r in rows] == list(range(15_625)), name
    assert all(table.index_of(table.string_of(i)) == i for i in range(0, 15_625, 7))


def test_sizes_come_from_the_computed_counts(table):
    # The benchmark's stored `params` differs from the real count for 204 cells.
    with open(DATA / NB201_FILES["cifar10"], newline="") as handle:
        stored = np.array([float(r["params"]) for r in csv.DictReader(handle)]) * 1e6
    assert (np.abs(table.values("num_params") - stored) > 0.5).sum() == 204
    assert np.isnan(table.values("proxy_naswot")).sum() == 341


@pytest.mark.parametrize("dataset", ["cifar10", "cifar100", "imagenet16"])
def test_columns_line_up_across_files_and_fidelities(table, dataset):
    # Misaligned rows would destroy these correlations.
    low = table.values("val_acc", dataset=dataset, fidelity=12)
    high = table.values("test_acc", dataset=dataset, fidelity=200)
    assert spearmanr(low, high)[0] > 0.7
    assert spearmanr(table.values("macs", dataset=dataset), high)[0] > 0.5


def test_a_simulated_time_budget_buys_more_cheap_evaluations(table):
    space = NasBench201Space()
    counts = {}
    for fidelity in (200, 12):
        evaluator = TableEvaluator(space, table, fidelity=fidelity)
        strategy = STRATEGIES.get("random")(space, seed=0)
        result = search(strategy, evaluator, progress=False, dedup_key=space.canonical,
                        budget=Budget(seconds=40_000, time_metric="train_seconds"))
        counts[fidelity] = result.evaluations
        found = result.best.arch
        assert "test_acc" not in result.best.metrics
        assert 80 < evaluator.test_accuracy(found) <= 94.3734
    # 40,000 s buys ~13 average 200-epoch trainings and ~210 of the 12-epoch protocol.
    assert 5 <= counts[200] <= 30 and counts[12] > 8 * counts[200]


def test_naswot_rank_correlates_with_accuracy(table):
    score, acc = table.values("proxy_naswot"), table.values("test_acc")
    defined = ~np.isnan(score)
    rho = spearmanr(score[defined], acc[defined])[0]
    assert 0.5 < rho < 0.95 and not math.isnan(rho)

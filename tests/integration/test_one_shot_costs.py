"""One-shot searches from the CLI: ProxylessNAS, and a latency table as the cost DARTS and
ProxylessNAS penalise (`--latency-table` with `--cost-weight`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from archsearch import cli
from archsearch.hardware import LatencyTable
from archsearch.space import Arch

TINY = ["search", "--epochs", "1", "--channels", "4", "--layers", "3", "--batch-size", "64",
        "--quiet"]

pytestmark = pytest.mark.slow


def _log(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Built for the network the tiny digits search trains: C=4, 3 cells, 1×8×8 input.
    path = tmp_path_factory.mktemp("table") / "darts.json"
    assert cli.main(["latency-table", "--space", "darts", "--build-arg", "channels=4",
                     "--build-arg", "layers=3", "--input-size", "8", "--in-channels", "1",
                     "--samples", "2", "--repeats", "2", "--warmup", "1", "--quiet",
                     "--out", str(path)]) == 0
    return path


@pytest.mark.parametrize("strategy", ["darts", "proxyless"])
def test_latency_table_is_the_penalised_cost(tmp_path: Path, table: Path,
                                             strategy: str) -> None:
    out = tmp_path / strategy
    assert cli.main([*TINY, "--strategy", strategy, "--cost-weight", "1",
                     "--latency-table", str(table), "--out", str(out)]) == 0
    record = _log(out)[0]
    expected_ms = record["expected_cost"]
    assert "expected_macs" in record
    assert json.loads((out / "config.json").read_text())["settings"]["method"] == strategy
    assert (out / "cell_normal.png").exists()  # pictures are drawn at the end
    if strategy == "proxyless":
        assert record["arch_steps"] > 0
    # Σ softmax(α)·LAT over the cells' edges lies between the cheapest and the dearest
    # choice of every edge, all of which are table entries in milliseconds.
    whole_network_ms = LatencyTable.load(table).predict_ms(Arch.load(out / "arch.json"))
    assert 0 < expected_ms < 10 * whole_network_ms


def test_proxyless_refuses_darts_only_flags(tmp_path: Path, capsys) -> None:
    assert cli.main([*TINY, "--strategy", "proxyless", "--order", "second",
                     "--out", str(tmp_path / "a")]) == 2
    assert "--order" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()


def test_latency_table_of_another_network_size_is_refused(tmp_path: Path, table: Path,
                                                          capsys) -> None:
    code = cli.main(["search", "--strategy", "evolution", "--space", "darts", "--trials", "2",
                     "--evaluator", "proxy", "--latency-table", str(table),
                     "--max-latency-ms", "100", "--quiet", "--out", str(tmp_path / "mt")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "latency table" in err
    assert not (tmp_path / "mt").exists()

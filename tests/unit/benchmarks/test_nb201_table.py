"""NasBench201Table and find_nb201_dir on the 40-row fixture (runs without the shared data).

The fixture's rows are verbatim copies of the real tables' rows (indices kept), so the
numbers asserted here are the benchmark's own.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from archsearch.benchmarks import NB201_ENV_VAR, NB201_FILES, NasBench201Table, find_nb201_dir
from archsearch.errors import ArchError, ConfigError

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "nb201"
ALL_SKIP = "|skip_connect~0|+|skip_connect~0|skip_connect~1|+" \
           "|skip_connect~0|skip_connect~1|skip_connect~2|"
RESNET_LIKE = "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|nor_conv_3x3~2|"
C10 = NB201_FILES["cifar10"]


@pytest.fixture(scope="module")
def table() -> NasBench201Table:
    return NasBench201Table.load(FIXTURE, expect_rows=None)


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    """A writable copy of the fixture directory."""
    return Path(shutil.copytree(FIXTURE, tmp_path / "nb201"))


def _edit(path: Path, line: int, edit) -> None:
    """Replace 1-based `line` of `path` by `edit(fields)` (a list of fields, or None to drop)."""
    lines = path.read_text().splitlines()
    fields = edit(lines[line - 1].split(","))
    lines[line - 1:line] = [] if fields is None else [",".join(fields)]
    path.write_text("\n".join(lines) + "\n")


# --- contents ---------------------------------------------------------------------------
def test_the_fixture_holds_the_facts_rows(table):
    assert len(table) == 40 and not table.is_complete
    assert {0, 1, 1835, 6111, 12415} <= set(table.indices.tolist())
    assert table.string_of(1835) == ALL_SKIP and table.index_of(RESNET_LIKE) == 12415
    assert table.query(1835)["test_acc"] == pytest.approx(54.30, abs=0.005)
    assert table.query(1835)["val_acc"] == pytest.approx(39.77, abs=0.005)
    assert table.query(12415)["test_acc"] == pytest.approx(93.99)
    assert table.best("cifar10", 200).index == 6111
    assert table.best("cifar10", 200).value == pytest.approx(94.3733, abs=1e-4)


def test_query_reads_each_column_of_each_file(table):
    row = table.query(0)
    assert row["val_acc"] == pytest.approx(81.98266665690103)  # valid_top1
    assert row["test_acc"] == pytest.approx(85.86333333333334)  # test_top1
    assert row["num_params"] == 129306 and isinstance(row["num_params"], int)  # 0.129306 M
    assert row["macs"] == 15647370  # 15.64737 M
    assert row["proxy_naswot"] == pytest.approx(-776.4428597251838)
    assert len(row["latency_ms"]) == 27 == len(table.devices)
    assert row["latency_ms"]["1080ti_1"] == pytest.approx(10.75437068939209)
    c100 = table.query(0, dataset="cifar100")
    assert c100["test_acc"] == c100["val_acc"] == pytest.approx(52.913333294677734)
    assert c100["num_params"] == 135156  # the 100-way classifier is larger
    img12 = table.query(0, dataset="imagenet16", fidelity=12)
    assert img12["val_acc"] == pytest.approx(18.466666661580405)
    assert img12["test_acc"] == pytest.approx(16.999999966939292)
    assert img12["macs"] == 3919480  # 16x16 inputs
    assert table.query(0, fidelity=12)["val_acc"] == pytest.approx(63.36399998046875)


def test_index_and_string_address_the_same_row(table):
    for index in table.indices.tolist():
        arch = table.string_of(index)
        assert table.index_of(arch) == index
        assert repr(table.query(arch)) == repr(table.query(index))  # NaN != NaN
        assert arch in table and index in table


def test_held_out_validation_exists_except_for_cifar100_and_imagenet16_at_200(table):
    assert table.has_heldout_val("cifar10", 200)
    assert not table.has_heldout_val("cifar100", 200)
    assert not table.has_heldout_val("imagenet16", 200)
    assert all(table.has_heldout_val(d, 12) for d in table.datasets)
    val, test = (table.values(m, dataset="cifar10") for m in ("val_acc", "test_acc"))
    assert (val != test).all()


def test_cells_without_a_path_have_no_naswot_score(table):
    scores = table.values("proxy_naswot")
    assert 0 < np.isnan(scores).sum() < len(table)
    assert not math.isnan(table.best(metric="proxy_naswot").value)


def test_best_by_validation_and_values_are_copies(table):
    val = table.values("val_acc", dataset="cifar100", fidelity=12)
    best = table.best("cifar100", 12, metric="val_acc")
    assert best.value == val.max() and table.query(best.index, dataset="cifar100",
                                                   fidelity=12)["val_acc"] == best.value
    val[:] = 0
    assert table.best("cifar100", 12, metric="val_acc") == best


def test_dataset_aliases_and_string_fidelity(table):
    assert table.query(1, dataset="ImageNet16-120", fidelity="12") == table.query(
        1, dataset="imagenet16", fidelity=12)


@pytest.mark.parametrize("kwargs, message", [
    ({"dataset": "imagnet16"}, "did you mean 'imagenet16'"),
    ({"dataset": "mnist"}, "known: cifar10, cifar100, imagenet16"),
    ({"fidelity": 100}, "the tables hold 200 and 12"),
    ({"fidelity": 10}, "did you mean 12"),
    ({"fidelity": True}, "unknown fidelity"),
])
def test_unknown_dataset_or_fidelity_is_a_config_error(table, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        table.query(0, **kwargs)


@pytest.mark.parametrize("key, message", [
    (5, "index 5 is not in this table"),
    (20000, "0..15624"),
    ("|none~0|+|none~0|none~1|+|none~0|none~1|skip_connect~2|", "not in this table"),
    ("|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|", "not a NAS-Bench-201 arch string"),
    (1.0, "not float"),
])
def test_unknown_cells_are_arch_errors(table, key, message):
    with pytest.raises(ArchError, match=message):
        table.query(key)


def test_latency_values_need_a_known_device(table):
    assert table.values("latency_ms", device="pixel3")[0] == table.query(
        table.indices[0])["latency_ms"]["pixel3"]
    with pytest.raises(ConfigError, match="did you mean 'pixel3'"):
        table.values("latency_ms", device="pixel_3")
    with pytest.raises(ConfigError, match="needs a device"):
        table.values("latency_ms")


def test_the_module_imports_no_torch():
    package = Path(__file__).resolve().parents[3] / "archsearch"
    # Import archsearch.benchmarks without archsearch/__init__.py (which imports torch).
    code = ("import sys, types; pkg = types.ModuleType('archsearch'); "
            f"pkg.__path__ = [{str(package)!r}]; sys.modules['archsearch'] = pkg; "
            "import archsearch.benchmarks; assert 'torch' not in sys.modules, 'torch'")
    subprocess.run([sys.executable, "-c", code], check=True)


# --- loading: the row count -----------------------------------------------------------
def test_the_whole_benchmark_is_expected_by_default():
    with pytest.raises(ConfigError, match=rf"{C10}: 40 rows, expected 15625"):
        NasBench201Table.load(FIXTURE)


def test_a_file_with_a_line_missing_is_a_wrong_row_count(copy):
    _edit(copy / NB201_FILES["latency"], 41, lambda fields: None)
    with pytest.raises(ConfigError, match=rf"{NB201_FILES['latency']}: 39 rows, expected 40"):
        NasBench201Table.load(copy, expect_rows=None)


def test_a_file_cut_mid_line_names_the_line(copy):
    path = copy / NB201_FILES["epoch12"]
    path.write_text(path.read_text().rstrip("\n").rsplit(",", 1)[0])  # last field lost
    with pytest.raises(ConfigError, match=rf"{NB201_FILES['epoch12']}, line 41: 7 fields, "
                                          "expected 8"):
        NasBench201Table.load(copy, expect_rows=None)


# --- loading: malformed contents --------------------------------------------------------
def test_a_missing_column_names_file_line_and_column(copy):
    _edit(copy / C10, 1, lambda f: [x.replace("valid_top1", "valid") for x in f])
    with pytest.raises(ConfigError, match=rf"{C10}, line 1: missing column\(s\) 'valid_top1'"):
        NasBench201Table.load(copy, expect_rows=None)


def test_a_missing_file_is_named(copy):
    (copy / NB201_FILES["counts"]).unlink()
    with pytest.raises(ConfigError, match=rf"{NB201_FILES['counts']}: file not found"):
        NasBench201Table.load(copy, expect_rows=None)


@pytest.mark.parametrize("value, message", [("abc", "'abc' is not a number"),
                                            ("inf", "'inf' is not a finite number"),
                                            ("", "'' is not a number")])
def test_a_bad_number_names_file_line_and_column(copy, value, message):
    def bad_test_top1(fields):
        fields[-3] = value  # test_top1 (the arch strings contain no commas)
        return fields

    _edit(copy / C10, 5, bad_test_top1)
    with pytest.raises(ConfigError, match=rf"{C10}, line 5: column 'test_top1': {message}"):
        NasBench201Table.load(copy, expect_rows=None)


def test_rows_listing_other_cells_than_the_first_file_are_named(copy):
    path = copy / NB201_FILES["nats"]  # no index column: only the strings can disagree
    lines = path.read_text().splitlines()
    lines[3], lines[4] = lines[4], lines[3]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match=rf"{NB201_FILES['nats']}, line 4: column "
                                          "'ArchitectureString'.*same order"):
        NasBench201Table.load(copy, expect_rows=None)


def test_indices_out_of_order_and_bad_strings_are_named(copy):
    _edit(copy / C10, 3, lambda f: ["0", *f[1:]])
    with pytest.raises(ConfigError, match=rf"{C10}, line 3: column 'arch': index 0 out of order"):
        NasBench201Table.load(copy, expect_rows=None)
    shutil.copy(FIXTURE / C10, copy / C10)
    _edit(copy / C10, 2, lambda f: [f[0], f[1].replace("avg_pool_3x3", "max_pool"), *f[2:]])
    with pytest.raises(ConfigError, match=rf"{C10}, line 2: column 'cellstr'.*not a NAS-Bench"):
        NasBench201Table.load(copy, expect_rows=None)


# --- finding the directory ------------------------------------------------------------
def test_find_prefers_the_explicit_path_then_the_environment(tmp_path, monkeypatch, copy):
    other = Path(shutil.copytree(FIXTURE, tmp_path / "other"))
    monkeypatch.chdir(tmp_path)  # no ../shared/data/nb201 here
    env = {NB201_ENV_VAR: str(other)}
    assert find_nb201_dir(copy, env=env) == copy
    assert find_nb201_dir(None, env=env) == other
    with pytest.raises(ConfigError, match="the given directory .*lacks nb201_"):
        find_nb201_dir(tmp_path, env=env)  # a given path must hold the files: no fallback
    with pytest.raises(ConfigError, match=f"{NB201_ENV_VAR} .*lacks"):
        find_nb201_dir(None, env={NB201_ENV_VAR: str(tmp_path / "nowhere")})


def test_find_falls_back_to_shared_data_next_to_the_checkout(tmp_path, monkeypatch):
    shutil.copytree(FIXTURE, tmp_path / "shared" / "data" / "nb201")
    (tmp_path / "main").mkdir()
    monkeypatch.chdir(tmp_path / "main")
    assert find_nb201_dir(env={}) == (tmp_path / "shared" / "data" / "nb201").resolve()


def test_find_says_which_files_are_needed_and_where(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as caught:
        find_nb201_dir(env={})
    message = str(caught.value)
    assert all(name in message for name in NB201_FILES.values())
    assert NB201_ENV_VAR in message and "../shared/data/nb201" in message

"""Property-based tests: every reader of user files fails cleanly on malformed input.

A reader may accept a file or refuse it with an `ArchsearchError` (one line, which the CLI
turns into exit code 2). Any other exception escaping a reader is a bug: a traceback for
the user, or worse, a half-understood file trusted by a later step. Hypothesis generates
wrong, truncated and hostile inputs; the fixed examples pin the cases it finds rarely.
"""

from __future__ import annotations

import io
import json
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from archsearch.cli import main
from archsearch.data import load_dataset
from archsearch.errors import ArchsearchError
from archsearch.space import Arch
from archsearch.spaces.darts import DartsCellSpace

FUZZ = settings(max_examples=30, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])

# JSON values of any shape, a few levels deep.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=12)


def _valid_arch_doc() -> dict:
    return DartsCellSpace().named("darts_v2").to_json()


def _mutations(doc: dict) -> st.SearchStrategy[dict]:
    """The valid doc with one key removed, replaced by junk, or a choice replaced."""
    keys = sorted(doc)
    drop = st.sampled_from(keys).map(lambda k: {x: v for x, v in doc.items() if x != k})
    junk = st.tuples(st.sampled_from(keys), json_values).map(lambda kv: {**doc, kv[0]: kv[1]})
    labels = sorted(doc["choices"])
    choice = st.tuples(st.sampled_from(labels), json_values).map(
        lambda kv: {**doc, "choices": {**doc["choices"], kv[0]: kv[1]}})
    return drop | junk | choice


class _Evil:
    """A pickle that runs code when loaded: no reader may ever execute it."""

    def __reduce__(self):
        return (exec, ("raise SystemExit('pwned: a reader unpickled an untrusted file')",))


def _cli_fails_cleanly(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code = main(argv)
    err = capsys.readouterr().err
    assert code in (0, 2), err
    if code == 2:
        assert err.startswith("archsearch: error: ") and err.count("\n") == 1, err


def _reader_fails_cleanly(read) -> None:
    try:
        read()
    except ArchsearchError as exc:
        assert "\n" not in str(exc)


# --- architecture JSON -------------------------------------------------------------------


@FUZZ
@given(doc=_mutations(_valid_arch_doc()))
def test_arch_json_mutations_are_accepted_or_refused_in_one_line(tmp_path: Path, doc: dict,
                                                                  capsys) -> None:
    path = tmp_path / "arch.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    _cli_fails_cleanly(["profile", str(path), "--channels", "4", "--layers", "3"], capsys)


@FUZZ
@given(raw=st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_arch_file_of_arbitrary_bytes_is_refused(tmp_path: Path, raw: bytes, capsys) -> None:
    path = tmp_path / "arch.json"
    path.write_bytes(raw)
    _cli_fails_cleanly(["profile", str(path)], capsys)


@FUZZ
@given(cut=st.integers(min_value=0, max_value=400))
def test_truncated_arch_file_is_refused(tmp_path: Path, cut: int, capsys) -> None:
    text = json.dumps(_valid_arch_doc())
    cut = min(cut, len(text) - 1)
    path = tmp_path / "arch.json"
    path.write_text(text[:cut], encoding="utf-8")
    assert main(["profile", str(path)]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_arch_from_json_rejects_a_wrong_space_hash() -> None:
    doc = {**_valid_arch_doc(), "space_hash": "sha256:" + "0" * 64}
    with pytest.raises(ArchsearchError):
        DartsCellSpace().validate(Arch.from_json(doc))


# --- datasets ----------------------------------------------------------------------------


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


arrays = st.sampled_from([np.uint8, np.float32, np.int64, np.float64]).flatmap(
    lambda dtype: st.lists(st.integers(0, 9), min_size=0, max_size=4).map(
        lambda shape: np.zeros(shape, dtype=dtype)))


@FUZZ
@given(content=st.dictionaries(st.sampled_from(["x_train", "y_train", "x_test", "y_test",
                                                "x", "y", "other"]), arrays, max_size=5))
def test_npz_with_wrong_arrays_is_refused(tmp_path: Path, content: dict) -> None:
    path = tmp_path / "data.npz"
    path.write_bytes(_npz_bytes(content))
    _reader_fails_cleanly(lambda: load_dataset("npz", path))


@FUZZ
@given(raw=st.binary(max_size=200), cut=st.integers(0, 2000))
def test_npz_of_junk_or_truncated_is_refused(tmp_path: Path, raw: bytes, cut: int) -> None:
    good = _npz_bytes({"x": np.zeros((20, 8, 8), np.uint8), "y": np.arange(20) % 2})
    for i, content in enumerate((raw, good[:cut])):
        path = tmp_path / f"data{i}.npz"
        path.write_bytes(content)
        _reader_fails_cleanly(lambda p=path: load_dataset("npz", p))


def test_npz_holding_pickled_objects_is_never_unpickled(tmp_path: Path) -> None:
    path = tmp_path / "data.npz"
    np.savez(path, x=np.array([_Evil()], dtype=object), y=np.zeros(1))
    with pytest.raises(ArchsearchError):
        load_dataset("npz", path)


def _cifar_folder(root: Path, batch: bytes) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]:
        (folder / name).write_bytes(batch)
    return folder


@FUZZ
@given(raw=st.binary(max_size=300))
def test_cifar_batches_of_junk_are_refused(tmp_path: Path, raw: bytes) -> None:
    folder = _cifar_folder(tmp_path / "c", raw)
    _reader_fails_cleanly(lambda: load_dataset("cifar10", folder))


@pytest.mark.parametrize("payload", [
    _Evil(),
    {b"data": _Evil(), b"labels": [0]},
    {"data": np.zeros((2, 3072), np.uint8), "labels": ["a", "b"]},
    {"data": np.zeros((2, 100), np.uint8), "labels": [0, 1]},
    [1, 2, 3],
])
def test_cifar_batches_with_hostile_or_wrong_pickles_are_refused(tmp_path: Path,
                                                                  payload) -> None:
    folder = _cifar_folder(tmp_path, pickle.dumps(payload, protocol=2))
    with pytest.raises(ArchsearchError):
        load_dataset("cifar10", folder)


@FUZZ
@given(raw=st.binary(max_size=200))
def test_image_folder_with_corrupt_images_is_refused(tmp_path: Path, raw: bytes) -> None:
    root = tmp_path / "imgs"
    for label in ("cat", "dog"):
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(3):
            (root / label / f"{i}.png").write_bytes(raw)
    _reader_fails_cleanly(lambda: load_dataset("folder", root))


# --- tables and run directories ----------------------------------------------------------


FIXTURE_NB201 = Path(__file__).resolve().parents[1] / "fixtures" / "nb201"


@FUZZ
@given(data=st.data())
def test_nb201_tables_with_damaged_rows_are_refused(tmp_path: Path, data) -> None:
    from archsearch.benchmarks import NasBench201Table

    target = tmp_path / "nb201"
    target.mkdir(exist_ok=True)
    for source in FIXTURE_NB201.iterdir():
        (target / source.name).write_bytes(source.read_bytes())
    victim = data.draw(st.sampled_from(sorted(p.name for p in target.iterdir())))
    lines = (target / victim).read_text(encoding="utf-8").splitlines()
    row = data.draw(st.integers(0, len(lines) - 1))
    lines[row] = data.draw(st.text(alphabet=st.characters(blacklist_categories=("Cs",)),
                                   max_size=40))
    (target / victim).write_text("\n".join(lines) + "\n", encoding="utf-8")
    _reader_fails_cleanly(lambda: NasBench201Table.load(target, expect_rows=None))


@FUZZ
@given(config=json_values, journal=st.binary(max_size=200))
def test_resume_from_a_damaged_run_directory_fails_cleanly(tmp_path: Path, config, journal,
                                                           capsys) -> None:
    run = tmp_path / "run"
    run.mkdir(exist_ok=True)
    (run / "config.json").write_text(json.dumps(config), encoding="utf-8")
    (run / "trials.jsonl").write_bytes(journal)
    _cli_fails_cleanly(["search", "--resume", str(run), "--quiet"], capsys)


def test_zip_bomb_style_npz_member_is_refused(tmp_path: Path) -> None:
    # An .npz whose member is not an .npy file at all.
    path = tmp_path / "data.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("x.npy", b"\x93NUMPY\x01\x00" + b"{" * 50)
        archive.writestr("y.npy", b"garbage")
    with pytest.raises(ArchsearchError):
        load_dataset("npz", path)

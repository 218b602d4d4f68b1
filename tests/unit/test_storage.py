"""Run directories and atomic writes (`archsearch.storage`)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from archsearch.errors import ConfigError
from archsearch.storage import (
    JsonlLog,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    prepare_run_dir,
    read_jsonl,
)


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _no_temp_files(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if p.name.endswith(".tmp") or p.name.startswith(".")]


# --- atomic writes ----------------------------------------------------------------------


def test_atomic_write_json_creates_file_without_temp_files(tmp_path: Path) -> None:
    path = atomic_write_json(tmp_path / "doc.json", {"a": 1, "b": [1, 2]})
    assert path == tmp_path / "doc.json"
    assert json.loads(path.read_text(encoding="utf-8")) == {"a": 1, "b": [1, 2]}
    assert _names(tmp_path) == ["doc.json"]


def test_atomic_write_json_replaces_content(tmp_path: Path) -> None:
    atomic_write_json(tmp_path / "doc.json", {"version": 1, "long": "x" * 1000})
    atomic_write_json(tmp_path / "doc.json", {"version": 2})
    assert json.loads((tmp_path / "doc.json").read_text(encoding="utf-8")) == {"version": 2}
    assert _names(tmp_path) == ["doc.json"]


def test_atomic_write_creates_missing_parent(tmp_path: Path) -> None:
    atomic_write_text(tmp_path / "a" / "b" / "note.txt", "hello")
    assert (tmp_path / "a" / "b" / "note.txt").read_text(encoding="utf-8") == "hello"


def test_atomic_write_json_unserialisable_leaves_old_file(tmp_path: Path) -> None:
    atomic_write_json(tmp_path / "doc.json", {"version": 1})
    with pytest.raises(TypeError):
        atomic_write_json(tmp_path / "doc.json", {"bad": object()})
    assert json.loads((tmp_path / "doc.json").read_text(encoding="utf-8")) == {"version": 1}
    assert _no_temp_files(tmp_path)


def test_atomic_write_bytes_writes_through_callback(tmp_path: Path) -> None:
    atomic_write_bytes(tmp_path / "blob.bin", lambda f: f.write(b"\x00\x01\x02"))
    assert (tmp_path / "blob.bin").read_bytes() == b"\x00\x01\x02"
    assert _names(tmp_path) == ["blob.bin"]


def test_atomic_write_bytes_failing_callback_keeps_previous_file(tmp_path: Path) -> None:
    atomic_write_bytes(tmp_path / "blob.bin", lambda f: f.write(b"old content"))

    def crash(f) -> None:
        f.write(b"half of the new")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        atomic_write_bytes(tmp_path / "blob.bin", crash)
    assert (tmp_path / "blob.bin").read_bytes() == b"old content"
    assert _names(tmp_path) == ["blob.bin"]


def test_atomic_write_bytes_failing_callback_creates_nothing(tmp_path: Path) -> None:
    def crash(f) -> None:
        f.write(b"partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write_bytes(tmp_path / "blob.bin", crash)
    assert _names(tmp_path) == []


# --- JSON Lines log -----------------------------------------------------------------------


def test_jsonl_log_appends_and_reads(tmp_path: Path) -> None:
    log = JsonlLog(tmp_path / "log.jsonl")
    assert log.read() == []
    records = [{"epoch": 1, "loss": 0.5}, {"epoch": 2, "loss": 0.25, "nested": {"a": [1, 2]}}]
    for record in records:
        log.append(record)
    assert log.read() == records
    lines = (tmp_path / "log.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2
    assert [json.loads(line) for line in lines] == records


def test_jsonl_log_appends_to_existing_file(tmp_path: Path) -> None:
    JsonlLog(tmp_path / "log.jsonl").append({"epoch": 1})
    JsonlLog(tmp_path / "log.jsonl").append({"epoch": 2})
    assert JsonlLog(tmp_path / "log.jsonl").read() == [{"epoch": 1}, {"epoch": 2}]


def test_jsonl_log_skips_blank_lines(tmp_path: Path) -> None:
    (tmp_path / "log.jsonl").write_text('{"epoch": 1}\n\n{"epoch": 2}\n', encoding="utf-8")
    assert JsonlLog(tmp_path / "log.jsonl").read() == [{"epoch": 1}, {"epoch": 2}]


# --- run directories ----------------------------------------------------------------------


def test_read_jsonl_leaves_out_a_cut_last_line_and_repairs_only_when_asked(
        tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    path.write_text('{"a": 1}\n{"a": 2}\n{"a": 3, "b"', encoding="utf-8")  # killed mid-write
    assert read_jsonl(path) == [{"a": 1}, {"a": 2}]
    assert path.read_text(encoding="utf-8").endswith('"b"')  # a reader changes nothing
    assert JsonlLog(path).read(repair=True) == [{"a": 1}, {"a": 2}]
    assert path.read_text(encoding="utf-8") == '{"a": 1}\n{"a": 2}\n'
    JsonlLog(path).append({"a": 3})
    assert read_jsonl(path)[-1] == {"a": 3}  # the next record starts on its own line


@pytest.mark.parametrize(("text", "match"), [
    ('{"a": 1}\nnot json\n', "line 2 is not valid JSON"),
    ('{"a": 1}\n[1, 2]\n', "line 2 is not a JSON object"),
])
def test_read_jsonl_names_the_corrupt_line(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "log.jsonl"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=f"is corrupt: {match}"):
        read_jsonl(path)
    path.write_bytes(b"\xff\xfe\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        read_jsonl(path)


def test_prepare_run_dir_creates_nested_directory(tmp_path: Path) -> None:
    out = prepare_run_dir(tmp_path / "runs" / "one")
    assert out == tmp_path / "runs" / "one"
    assert out.is_dir()


def test_prepare_run_dir_allows_empty_existing_directory(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    assert prepare_run_dir(tmp_path / "run").is_dir()


def test_prepare_run_dir_refuses_non_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text("{}", encoding="utf-8")
    with pytest.raises(ConfigError, match="--overwrite"):
        prepare_run_dir(tmp_path / "run")
    assert (tmp_path / "run" / "config.json").read_text(encoding="utf-8") == "{}"


def test_prepare_run_dir_overwrite_clears_files(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    for name in ("config.json", "log.jsonl", "model.pt"):
        (run / name).write_text("old", encoding="utf-8")
    assert prepare_run_dir(run, overwrite=True) == run
    assert _names(run) == []


def test_prepare_run_dir_refuses_a_file(tmp_path: Path) -> None:
    (tmp_path / "run").write_text("not a dir", encoding="utf-8")
    with pytest.raises(ConfigError, match="not a directory"):
        prepare_run_dir(tmp_path / "run")
    with pytest.raises(ConfigError, match="not a directory"):
        prepare_run_dir(tmp_path / "run", overwrite=True)
    assert (tmp_path / "run").read_text(encoding="utf-8") == "not a dir"


def test_prepare_run_dir_overwrite_refuses_subfolder(tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "retrain").mkdir(parents=True)
    (run / "retrain" / "metrics.json").write_text("{}", encoding="utf-8")
    with pytest.raises(ConfigError, match="retrain"):
        prepare_run_dir(run, overwrite=True)
    assert (run / "retrain" / "metrics.json").exists()


def test_prepare_run_dir_refusal_deletes_nothing(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    run = tmp_path / "run"
    run.mkdir()
    for name in ("arch.json", "config.json", "log.jsonl"):
        (run / name).write_text("old", encoding="utf-8")
    (run / "retrain").mkdir()
    # Make the directory order deterministic (files before the folder); the real order
    # depends on the file system.
    real_iterdir = Path.iterdir
    monkeypatch.setattr(Path, "iterdir", lambda self: iter(sorted(real_iterdir(self))))
    with pytest.raises(ConfigError, match="retrain"):
        prepare_run_dir(run, overwrite=True)
    assert _names(run) == ["arch.json", "config.json", "log.jsonl", "retrain"]


def test_atomic_writes_get_the_usual_permissions(tmp_path: Path) -> None:
    mask = os.umask(0o022)
    os.umask(mask)
    path = atomic_write_json(tmp_path / "r.json", {"a": 1})
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask

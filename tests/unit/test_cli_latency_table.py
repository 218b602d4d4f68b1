"""`archsearch latency-table`: writes a loadable table, reports the predictor's error, and
refuses bad input with one line and exit code 2 before writing anything."""

from __future__ import annotations

import json

import pytest

from archsearch.cli import main
from archsearch.hardware import LatencyTable

# A five-network space (one width: 5 ops per layer) timed with one round: fast.
TINY = ["--space", "chain", "--space-arg", "layers=1", "--space-arg", "widths=[4]",
        "--input-size", "4", "--warmup", "0", "--repeats", "1"]


def test_writes_the_table_and_reports_the_error(tmp_path, capsys):
    out = tmp_path / "table.json"
    assert main(["latency-table", *TINY, "--samples", "2", "--out", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "from 5 archs of chain" in text and "median |error|" in text and str(out) in text
    table = LatencyTable.load(out)
    assert table.space_args == {"layers": 1, "widths": [4], "num_classes": 10, "in_channels": 1}
    assert table.build_kwargs == {"in_channels": 1, "num_classes": 10}
    assert table.threads == 1 and table.input_shape == (1, 1, 4, 4) and table.calibration is None
    for arch in table.space.enumerate():  # the table covers the whole space
        assert table.predict_ms(arch) > 0


def test_json_summary_with_calibration(tmp_path, capsys):
    out = tmp_path / "t.json"
    args = ["latency-table", *TINY, "--samples", "2", "--calibrate", "2", "--out", str(out),
            "--json", "--classes", "3", "--in-channels", "2", "--clock", "cpu"]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["entries"] == len(LatencyTable.load(out).entries)
    assert summary["clock"] == "cpu" and summary["exact_coverage"] is True
    calibrated = set(summary["calibration"]["archs"])
    checked = {a["fingerprint"] for a in summary["predictor"]["archs"]}
    assert len(calibrated) == len(checked) == 2 and not calibrated & checked
    assert LatencyTable.load(out).build_kwargs == {"num_classes": 3, "in_channels": 2}


@pytest.mark.parametrize("extra, message", [
    (["--space", "nope"], "unknown space"),
    (["--build-arg", "depth=2"], "cannot build networks"),
    (["--space-arg", "layers=0"], "layers"),
    (["--input-size", "0"], "--input-size must be at least 1"),
    (["--threads", "2", "--clock", "cpu"], "--clock cpu"),
    (["--classes", "0"], "--classes must be a positive integer"),
    (["--in-channels", "2", "--build-arg", "in_channels=3"], "contradicts"),
    (["--device", "toaster"], "--device"),
])
def test_bad_input_is_one_line_exit_2_and_no_file(tmp_path, capsys, extra, message):
    out = tmp_path / "t.json"
    assert main(["latency-table", *TINY, "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()


def test_an_existing_file_needs_overwrite(tmp_path, capsys):
    out = tmp_path / "t.json"
    out.write_text("keep")
    assert main(["latency-table", *TINY, "--out", str(out), "--samples", "0"]) == 2
    assert "--overwrite" in capsys.readouterr().err and out.read_text() == "keep"
    assert main(["latency-table", *TINY, "--out", str(tmp_path), "--samples", "0"]) == 2
    assert main(["latency-table", *TINY, "--out", str(out), "--samples", "0", "--overwrite",
                 "--quiet"]) == 0
    assert LatencyTable.load(out).covering == 5

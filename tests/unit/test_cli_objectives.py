"""`archsearch search --objectives METRIC:DIR,...`: a multi-objective search from the command
line (zero-cost proxy on the built-in digits, tiny budgets), its resume, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from archsearch import cli

PROXY = ["search", "--space", "chain", "--space-arg", "layers=2", "--evaluator", "proxy",
         "--quiet"]
NSGA2 = [*PROXY, "--strategy", "nsga2", "--strategy-arg", "population=4",
         "--objectives", "synflow:max,num_params:min"]


def _journal(run: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(x).items() if k not in ("seconds", "elapsed_seconds")}
            for x in (run / "trials.jsonl").read_text().splitlines()]


def test_nsga2_search_writes_the_front_and_resumes(tmp_path, capsys):
    straight, cut = tmp_path / "straight", tmp_path / "cut"
    assert cli.main([*NSGA2, "--trials", "8", "--out", str(straight)]) == 0
    out = capsys.readouterr().out
    assert "Pareto front:" in out and "objectives: synflow:max, num_params:min" in out
    doc = json.loads((straight / "pareto.json").read_text())
    assert [(o["metric"], o["direction"]) for o in doc["objectives"]] == [
        ("synflow", "max"), ("num_params", "min")]
    complete = [(r["metrics"]["synflow"], -r["metrics"]["num_params"])
                for r in _journal(straight) if r["state"] == "complete"]
    for entry in doc["front"]:
        mine = (entry["metrics"]["synflow"], -entry["metrics"]["num_params"])
        assert not any(all(a >= b for a, b in zip(other, mine, strict=True))
                       and other != mine for other in complete)
    assert (straight / "pareto.png").stat().st_size > 0
    settings = json.loads((straight / "config.json").read_text())["settings"]
    assert settings["objectives"] == [["synflow", "max"], ["num_params", "min"]]
    # An interrupted run resumed with a larger budget equals the straight run.
    assert cli.main([*NSGA2, "--trials", "5", "--out", str(cut)]) == 0
    assert cli.main(["search", "--resume", str(cut), "--trials", "8", "--quiet"]) == 0
    assert _journal(cut) == _journal(straight)
    assert (cut / "pareto.json").read_text() == (straight / "pareto.json").read_text()


def test_random_search_takes_several_objectives_under_constraints(tmp_path):
    out = tmp_path / "run"
    assert cli.main([*PROXY, "--strategy", "random", "--objectives",
                     "snip:max,macs:min", "--proxy", "snip", "--max-params", "20000",
                     "--trials", "3", "--out", str(out)]) == 0
    front = json.loads((out / "pareto.json").read_text())["front"]
    assert front and all({"snip", "macs", "num_params"} <= set(e["metrics"]) for e in front)


BAD = {
    "direction": (["--strategy", "nsga2", "--objectives", "synflow:up"],
                  "--objectives expects METRIC:max or METRIC:min"),
    "form": (["--strategy", "nsga2", "--objectives", "synflow,num_params:min"],
             "got 'synflow'"),
    "single-objective-strategy": (["--strategy", "evolution", "--objectives",
                                   "synflow:max,num_params:min"], "optimises one score"),
    "unknown-metric": (["--strategy", "nsga2", "--objectives", "synflow:max,accuracy:max"],
                       "--objectives accuracy"),
    "both-forms": (["--strategy", "nsga2", "--objectives", "synflow:max,num_params:min",
                    "--minimize"], "not both"),
    "reward": (["--strategy", "nsga2", "--objectives", "synflow:max,num_params:min",
                "--reward-cost", "macs", "--reward-target", "1e5"], "--reward-cost"),
    "repeated": (["--strategy", "nsga2", "--objectives", "synflow:max,synflow:min"],
                 "repeat a metric"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_objectives_are_one_line_exit_2_and_no_run_dir(tmp_path, capsys, case):
    extra, message = BAD[case]
    out = tmp_path / "run"
    assert cli.main([*PROXY, *extra, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert message in err
    assert not out.exists()

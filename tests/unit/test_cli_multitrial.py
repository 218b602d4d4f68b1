"""`archsearch search --strategy ...` (multi-trial), `--resume`, and `archsearch list`,
called in-process on the built-in digits with tiny budgets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from archsearch import cli
from archsearch.space import Arch
from archsearch.spaces import SPACES

PROXY = ["search", "--space", "chain", "--space-arg", "layers=2", "--evaluator", "proxy",
         "--quiet"]


def _journal(run: Path) -> list[dict]:
    lines = (run / "trials.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(x).items() if k not in ("seconds", "elapsed_seconds")}
            for x in lines]


def _error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_list_spaces_json_has_defaults_and_exact_sizes(capsys):
    assert cli.main(["list", "spaces", "--json"]) == 0
    spaces = json.loads(capsys.readouterr().out)
    assert set(spaces) == set(SPACES.names())
    assert spaces["darts"]["size"] == 1_037_664_180 ** 2  # normal × reduce cell
    assert spaces["darts"]["defaults"]["nodes"] == 4
    assert spaces["nasnet"]["size"] == 320_000_000_000  # (2·2·5·5·2)^5
    assert spaces["chain"]["size"] == (5 * 3) ** 4


def test_list_strategies(capsys):
    assert cli.main(["list", "strategies", "--json"]) == 0
    strategies = json.loads(capsys.readouterr().out)
    assert {"grid", "random", "evolution", "rl", "bo", "darts"} <= set(strategies)
    assert strategies["darts"]["kind"] == "one-shot"
    assert strategies["evolution"]["kind"] == "multi-trial"
    assert strategies["evolution"]["defaults"]["population"] == 20
    assert cli.main(["list", "strategies"]) == 0
    assert "evolution" in capsys.readouterr().out


def test_train_evaluator_search_writes_a_run_that_train_accepts(tmp_path, capsys):
    out = tmp_path / "run"
    code = cli.main(["search", "--strategy", "evolution", "--space", "chain", "--space-arg",
                     "layers=2", "--strategy-arg", "population=2", "--strategy-arg",
                     "sample_size=1", "--trials", "3", "--epochs", "1", "--out", str(out),
                     "--quiet"])
    assert code == 0
    assert {"config.json", "trials.jsonl", "strategy.json", "best_arch.json",
            "result.json"} <= {p.name for p in out.iterdir()}
    records = _journal(out)
    assert sum(r["state"] != "cached" for r in records) == 3
    best = json.loads((out / "result.json").read_text())["best"]
    assert best["metrics"]["val_acc"] == max(r["metrics"]["val_acc"] for r in records
                                             if r["state"] == "complete")
    arch = Arch.load(out / "best_arch.json")
    assert arch.space == "chain" and dict(arch) == best["arch"]
    assert "best: trial" in capsys.readouterr().out
    retrain = tmp_path / "retrain"
    capsys.readouterr()
    assert cli.main(["train", str(out), "--channels", "8", "--out", str(retrain)]) == 2
    assert "--channels applies to DARTS cells" in _error(capsys) and not retrain.exists()
    assert cli.main(["train", str(out), "--epochs", "1", "--out", str(retrain), "--quiet"]) == 0
    assert 0.0 <= json.loads((retrain / "metrics.json").read_text())["test_accuracy"] <= 1.0


@pytest.mark.parametrize("strategy", ["random", "grid", "evolution", "rl", "bo"])
def test_resume_with_a_larger_budget_equals_one_run(tmp_path, strategy):
    straight, cut = tmp_path / "straight", tmp_path / "cut"
    args = [*PROXY, "--strategy", strategy]
    assert cli.main([*args, "--trials", "6", "--out", str(straight)]) == 0
    assert cli.main([*args, "--trials", "3", "--out", str(cut)]) == 0
    assert cli.main(["search", "--resume", str(cut), "--trials", "6", "--quiet"]) == 0
    assert _journal(cut) == _journal(straight)


def test_proxy_objective_and_minimize(tmp_path):
    out = tmp_path / "run"
    assert cli.main([*PROXY, "--strategy", "random", "--proxy", "snip", "--objective",
                     "num_params", "--minimize", "--trials", "4", "--out", str(out)]) == 0
    records = [r for r in _journal(out) if r["state"] == "complete"]
    best = json.loads((out / "result.json").read_text())["best"]
    assert best["metrics"]["num_params"] == min(r["metrics"]["num_params"] for r in records)
    assert best["score"] == -best["metrics"]["num_params"]


BAD = {
    "unknown-strategy": (["--strategy", "evolutoin"], "did you mean 'evolution'"),
    "unknown-space": (["--strategy", "random", "--space", "chian"], "did you mean 'chain'"),
    "strategy-arg-key": (["--strategy", "evolution", "--strategy-arg", "populaton=3"],
                         "no option 'populaton'"),
    "strategy-arg-value": (["--strategy", "evolution", "--strategy-arg", "population=1"],
                           "population"),
    "strategy-arg-form": (["--strategy", "random", "--strategy-arg", "seed"], "KEY=VALUE"),
    "space-arg": (["--strategy", "random", "--space", "chain", "--space-arg", "depth=2"],
                  "no option 'depth'"),
    "trials": (["--strategy", "random", "--trials", "0"], "--trials"),
    "objective": (["--strategy", "random", "--objective", "accuracy"], "--objective"),
    "retrain": (["--strategy", "random", "--retrain"], "--retrain"),
    "darts-space": (["--space", "chain"], "darts"),
    "max-macs": (["--strategy", "random", "--max-macs", "-1"], "--max-macs must be positive"),
    "reward-target": (["--strategy", "random", "--reward-cost", "macs"], "positive target"),
    "grid-too-large": (["--strategy", "grid"], "1,076,746,950,455,072,400"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_one_line_exit_2_and_no_run_dir(tmp_path, capsys, case):
    extra, message = BAD[case]
    out = tmp_path / "run"
    assert cli.main(["search", *extra, "--out", str(out), "--quiet"]) == 2
    assert message in _error(capsys)
    assert not out.exists()


def test_resume_errors(tmp_path, capsys):
    assert cli.main(["search", "--resume", str(tmp_path / "nowhere")]) == 2
    assert "no such run directory" in _error(capsys)
    (tmp_path / "darts").mkdir()
    (tmp_path / "darts" / "config.json").write_text('{"settings": {"order": "first"}}')
    assert cli.main(["search", "--resume", str(tmp_path / "darts")]) == 2
    assert "no readable config.json" in _error(capsys)  # no "command": not a run config


def test_constraints_reject_archs_before_training(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main([*PROXY, "--strategy", "random", "--max-params", "3000", "--trials", "4",
                     "--out", str(out)]) == 0
    records = _journal(out)
    assert sum(r["state"] == "complete" for r in records) == 4
    assert all(r["metrics"]["num_params"] <= 3000 for r in records if r["state"] == "complete")
    assert any(r["state"] == "infeasible" for r in records)
    assert "rejected by the constraints" in capsys.readouterr().out


def test_mnasnet_reward_from_the_command_line(tmp_path):
    out = tmp_path / "run"
    assert cli.main([*PROXY, "--strategy", "random", "--proxy", "snip", "--reward-cost",
                     "num_params", "--reward-target", "5000", "--trials", "3",
                     "--out", str(out)]) == 0
    for r in _journal(out):
        m = r["metrics"]
        assert r["score"] == pytest.approx(m["snip"] * (m["num_params"] / 5000) ** -0.07)

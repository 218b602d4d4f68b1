"""`archsearch plot` / `plot_run` and `archsearch show` on run directories written by hand
(the JSON files only, no training): the right pictures, the right best arch and counts,
runs still in progress, and one-line errors for what is no run or is malformed."""

from __future__ import annotations

import json
import sys
import types
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from archsearch.cli import main
from archsearch.plots import plot_run
from archsearch.spaces.darts import DartsCellSpace
from archsearch.spaces.nasbench201 import NasBench201Space

OPS = ["none", "max_pool_3x3", "skip_connect", "sep_conv_3x3"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
NB201_CELLS = ["|nor_conv_3x3~0|+|none~0|avg_pool_3x3~1|+|skip_connect~0|none~1|none~2|",
               "|nor_conv_1x1~0|+|nor_conv_3x3~0|skip_connect~1|+|none~0|nor_conv_3x3~1|"
               "avg_pool_3x3~2|",
               "|avg_pool_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|nor_conv_1x1~2|"]


def _write(path: Path, doc) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc) + "\n")


def _jsonl(path: Path, records) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def darts_run(path: Path, *, finished: bool = True, retrain: bool = False):
    """A 3-epoch DARTS search of 2-node cells over 4 ops; returns its derived arch."""
    space = DartsCellSpace(nodes=2, ops=OPS)
    rng = np.random.default_rng(0)
    settings = {"dataset": "digits", "seed": 0, "nodes": 2, "ops": OPS, "order": "first",
                "epochs": 3, "channels": 8, "layers": 5, "batch_size": 64, "cost_weight": 0.0}
    _write(path / "config.json", {"command": "search", "settings": settings})
    records, arch = [], None
    for epoch in (1, 2, 3):
        alphas = {c: rng.normal(size=(5, 4)).tolist() for c in ("normal", "reduce")}
        arch = space.derive(alphas)
        records.append({"epoch": epoch, "train_accuracy": 0.5 + epoch / 10,
                        "val_accuracy": 0.4 + epoch / 10, "seconds": 2.5, "alphas": alphas,
                        "genotype": space.describe(arch)})
    _jsonl(path / "log.jsonl", records)
    if finished:
        _write(path / "arch.json", arch.to_json(genotype=space.describe(arch)))
    if retrain:
        _write(path / "retrain" / "config.json", {"command": "train", "settings": {}})
        _write(path / "retrain" / "metrics.json",
               {"test_accuracy": 0.9712, "num_params": 12345, "epochs": 30})
    return arch


def multitrial_run(path: Path, *, finished: bool = True) -> None:
    """An evolution run on NAS-Bench-201: 3 complete trials (the best is trial 4), one
    failed, one infeasible, one repeat."""
    space = NasBench201Space()
    archs = [dict(space.from_string(s)) for s in NB201_CELLS]
    settings = {"dataset": "digits", "seed": 0, "space": "nb201", "space_args": {},
                "strategy": "evolution", "strategy_args": {"population": 10},
                "evaluator": "train", "objective": "val_acc", "direction": "max",
                "trials": 20, "time_limit": None, "reward_cost": None}
    _write(path / "config.json", {"command": "search", "settings": settings})

    def record(n, state, arch, acc=None, error=None):
        metrics = {} if acc is None else {"val_acc": acc, "num_params": 5000 + n}
        return {"trial": n, "state": state, "arch": arch, "metrics": metrics, "score": acc,
                "error": error, "seconds": 1.0, "elapsed_seconds": 1.5 * (n + 1)}

    records = [record(0, "complete", archs[0], 0.61), record(1, "failed", archs[1],
                                                             error="nan loss"),
               record(2, "infeasible", archs[1], error="num_params 9e9 > 1e6"),
               record(3, "cached", archs[0], 0.61), record(4, "complete", archs[2], 0.83),
               record(5, "complete", archs[1], 0.72)]
    _jsonl(path / "trials.jsonl", records)
    best = space.arch(archs[2])
    doc = best.to_json(description=space.describe(best))
    doc.update({"trial": 4, "metrics": records[4]["metrics"]})
    _write(path / "best_arch.json", doc)
    if finished:
        _write(path / "result.json", {"stopped": "trial budget used", "records": 6,
                                      "evaluations": 4, "failed": 1, "elapsed_seconds": 9.25,
                                      "best": {"trial": 4}})


def train_run(path: Path, *, arch_in: str) -> None:
    """A finished 2-epoch training of darts_v2; its arch in config.json or only in model.pt."""
    import torch

    arch = DartsCellSpace().named("darts_v2")
    config = {"command": "train", "settings": {
        "dataset": "digits", "epochs": 2, "lr": 0.05, "channels": 16, "layers": 6, "seed": 1}}
    if arch_in == "config":
        config["arch"] = arch.to_json()
    _write(path / "config.json", config)
    _jsonl(path / "log.jsonl", [{"epoch": 1}, {"epoch": 2}])
    metrics = {"test_accuracy": 0.975, "num_params": 54321, "epochs": 2, "seconds": 12.5}
    _write(path / "metrics.json", metrics)
    if arch_in == "model":
        torch.save({"state_dict": {}, "arch": arch.to_json(), "config": {}, "metrics": metrics},
                   path / "model.pt")


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err


# --- plot -----------------------------------------------------------------------------------
def test_plot_run_draws_alphas_and_both_cells_of_a_darts_search(tmp_path):
    darts_run(tmp_path)
    paths = plot_run(tmp_path)
    assert [p.name for p in paths] == ["alphas.png", "alphas_epochs.png", "cell_normal.png",
                                       "cell_normal.svg", "cell_reduce.png", "cell_reduce.svg"]
    for path in paths:
        assert path.parent == tmp_path
        if path.suffix == ".png":
            assert path.read_bytes().startswith(PNG_MAGIC)
        else:
            assert ET.parse(path).getroot().tag.endswith("svg")


def test_plot_run_of_a_multitrial_run_draws_its_curve_and_best_cell(tmp_path):
    multitrial_run(tmp_path)
    paths = plot_run(tmp_path, formats=["svg"])
    assert [p.name for p in paths] == ["search_curve.svg", "cell.svg"]
    texts = [t.text or "" for t in ET.parse(tmp_path / "cell.svg").getroot().iter(
        "{http://www.w3.org/2000/svg}text")]
    # the best trial (4): avg_pool_3x3, skip_connect, nor_conv_1x1 and three 'none' edges
    assert sorted(t for t in texts if "_" in t) == ["avg_pool_3x3", "nor_conv_1x1",
                                                     "skip_connect"]


def test_an_unfinished_darts_search_has_the_cell_of_its_last_alphas(tmp_path):
    from archsearch.plots import _alpha_history, _derived
    from archsearch.plots._rundir import open_run

    arch = darts_run(tmp_path, finished=False)  # the cell derived from the last epoch's α
    assert _derived(_alpha_history(open_run(tmp_path))) == arch


def test_the_pareto_front_is_drawn_by_archsearch_pareto_when_there_is_one(tmp_path,
                                                                           monkeypatch):
    calls = []
    fake = types.ModuleType("archsearch.pareto")
    fake.plot_front = lambda run_dir: calls.append(run_dir) or [run_dir / "pareto.png"]
    monkeypatch.setitem(sys.modules, "archsearch.pareto", fake)
    multitrial_run(tmp_path)
    (tmp_path / "best_arch.json").unlink()
    assert [p.name for p in plot_run(tmp_path, ["svg"])] == ["search_curve.svg"]
    assert calls == []  # no pareto.json: nothing to draw
    _write(tmp_path / "pareto.json", {"front": []})
    assert [p.name for p in plot_run(tmp_path, ["svg"])][-1] == "pareto.png"
    assert calls == [tmp_path]


def test_cli_plot_prints_the_files_it_wrote(tmp_path, capsys):
    multitrial_run(tmp_path)
    assert main(["plot", str(tmp_path), "--format", "svg"]) == 0
    out = capsys.readouterr().out.split()
    assert out == [str(tmp_path / "search_curve.svg"), str(tmp_path / "cell.svg")]


@pytest.mark.parametrize("args", [["plot", "{tmp}"], ["plot", "{tmp}/missing"],
                                  ["plot", "{run}", "--format", "jpg"]])
def test_cli_plot_of_no_run_is_a_one_line_error(tmp_path, capsys, args):
    multitrial_run(tmp_path / "run")
    argv = [a.format(tmp=tmp_path / "empty", run=tmp_path / "run") for a in args]
    (tmp_path / "empty").mkdir()
    assert main(argv) == 2
    _one_line_error(capsys)


# --- show -----------------------------------------------------------------------------------
def test_show_multitrial_names_the_best_trial_and_counts_every_state(tmp_path, capsys):
    multitrial_run(tmp_path)
    assert main(["show", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "(multi-trial search, finished (trial budget used))" in out
    assert "strategy:  evolution (population=10), evaluator train, maximise val_acc" in out
    assert ("4 trials evaluated (budget 20 trials): 3 complete, 1 failed, 1 infeasible, "
            "1 repeats, 9.2 s") in out
    assert "best:      from trial 4" in out
    assert NB201_CELLS[2] in out
    assert "node 3 = skip_connect(node 0) + nor_conv_1x1(node 2)" in out
    assert "metrics:   val_acc 0.83, num_params 5,004" in out
    assert "trials.jsonl" in out and "result.json" in out


def test_show_json_of_a_run_in_progress(tmp_path, capsys):
    multitrial_run(tmp_path, finished=False)
    with open(tmp_path / "trials.jsonl", "a") as f:
        f.write('{"trial": 6, "state": "compl')  # a record being written
    assert main(["show", str(tmp_path), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["kind"] == "multitrial"
    assert summary["status"].startswith("in progress or interrupted")
    assert summary["budget"] == {"evaluated": 4, "trials": 20, "time_limit_seconds": None,
                                 "complete": 3, "failed": 1, "infeasible": 1, "repeats": 1,
                                 "elapsed_seconds": 9.0}
    assert summary["best"]["trial"] == 4
    assert summary["best"]["choices"] == dict(NasBench201Space().from_string(NB201_CELLS[2]))
    files = {f["path"]: f["bytes"] for f in summary["files"]}
    assert files["trials.jsonl"] == (tmp_path / "trials.jsonl").stat().st_size
    assert "result.json" not in files


def test_show_darts_search_prints_the_cells_node_by_node_and_the_retrained_accuracy(
        tmp_path, capsys):
    arch = darts_run(tmp_path, retrain=True)
    assert main(["show", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    genotype = DartsCellSpace(nodes=2, ops=OPS).to_genotype(arch)
    names = {0: "c_{k-2}", 1: "c_{k-1}", 2: "node 0"}
    for title, pairs in (("normal cell:", genotype.normal), ("reduction cell:",
                                                             genotype.reduce)):
        block = out.split(title)[1]
        for k in (0, 1):
            (op_a, a), (op_b, b) = pairs[2 * k:2 * k + 2]
            assert f"node {k} = {op_a}({names[a]}) + {op_b}({names[b]})" in block
        assert "c_{k} = concat(node 0, node 1)" in block
    assert "(DARTS search, finished)" in out
    assert "DARTS, first order, 3 epochs" in out and "3 of 3 epochs, 7.5 s" in out
    assert "retrain_test_accuracy 0.9712" in out and "supernet_val_accuracy 0.7" in out
    assert "retrain/metrics.json" in out


def test_show_unfinished_darts_search_shows_the_last_logged_genotype(tmp_path, capsys):
    arch = darts_run(tmp_path, finished=False)
    assert main(["show", str(tmp_path), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["status"].startswith("in progress")
    assert summary["best"]["text"] == DartsCellSpace(nodes=2, ops=OPS).describe(arch)


@pytest.mark.parametrize("arch_in", ["config", "model"])
def test_show_train_run_renders_its_arch(tmp_path, capsys, arch_in):
    train_run(tmp_path, arch_in=arch_in)
    assert main(["show", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "(training run, finished)" in out and "space:     darts" in out
    assert "node 0 = sep_conv_3x3(c_{k-2}) + sep_conv_3x3(c_{k-1})" in out
    assert "test_accuracy 0.975" in out and "num_params 54,321" in out
    assert "2 of 2 epochs, 12.5 s" in out


def test_show_picks_the_best_by_the_objective_direction_and_reports_the_front(tmp_path,
                                                                              capsys):
    multitrial_run(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["settings"].update({"objective": "num_params", "direction": "min",
                               "objectives": [["num_params", "min"], ["val_acc", "max"]]})
    _write(tmp_path / "config.json", config)
    records = [json.loads(x) for x in (tmp_path / "trials.jsonl").read_text().splitlines()]
    for r in records:  # several objectives: the journal holds score vectors
        r["score"] = None if not r["metrics"] else [-r["metrics"]["num_params"],
                                                     r["metrics"]["val_acc"]]
    _jsonl(tmp_path / "trials.jsonl", records)
    _write(tmp_path / "pareto.json", {
        "format": "archsearch.pareto/1",
        "objectives": [{"metric": "num_params", "direction": "min"},
                       {"metric": "val_acc", "direction": "max"}],
        "front": [{"trial": 0}, {"trial": 4}]})
    assert main(["show", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "objectives num_params:min, val_acc:max" in out
    assert "best:      from trial 0" in out  # fewest parameters: 5000
    assert "pareto:    2 trials on the front of num_params:min, val_acc:max" in out


@pytest.mark.parametrize("damage", ["config", "journal", "shape", "arch"])
def test_show_of_malformed_files_is_a_one_line_error(tmp_path, capsys, damage):
    multitrial_run(tmp_path)
    if damage == "config":
        (tmp_path / "config.json").write_text("{not json")
    elif damage == "journal":
        lines = (tmp_path / "trials.jsonl").read_text().splitlines()
        lines[2] = "[1, 2"
        (tmp_path / "trials.jsonl").write_text("\n".join(lines) + "\n")
    elif damage == "shape":
        _write(tmp_path / "config.json", {"command": "search", "settings": {
            "strategy": "evolution", "space": "nb201", "trials": "many"}})
        (tmp_path / "result.json").write_text('{"elapsed_seconds": "soon"}')
        _jsonl(tmp_path / "trials.jsonl", [{"state": "complete", "score": 1.0, "arch": 7}])
    else:
        _write(tmp_path / "best_arch.json", {"format": "nope"})
    assert main(["show", str(tmp_path)]) == 2
    _one_line_error(capsys)


def test_show_of_a_directory_without_a_run_is_a_one_line_error(tmp_path, capsys):
    assert main(["show", str(tmp_path)]) == 2
    assert "is not a run directory" in _one_line_error(capsys)

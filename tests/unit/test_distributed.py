"""What runs under torchrun and what is refused there (the collectives themselves are tested
with two gloo processes in tests/integration/test_distributed_one_shot.py)."""

from __future__ import annotations

import pytest
import torch

from archsearch import cli
from archsearch.distributed import (
    DistributedContext,
    check_one_shot_run,
    check_single_process,
)
from archsearch.errors import ConfigError

TWO_RANKS = DistributedContext(rank=0, world_size=2)


def _one_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("method", ["darts", "proxyless"])
def test_one_shot_searches_run_under_torchrun(method):
    check_one_shot_run(TWO_RANKS, {"method": method, "retrain": None}, resume=False)


@pytest.mark.parametrize(("settings", "resume", "match"), [
    ({"method": "darts", "retrain": None}, True, "--resume"),
    ({"method": "darts", "retrain": {"epochs": 1}}, False, "--retrain"),
    ({"method": "random", "retrain": None}, False, "--workers"),
])
def test_what_one_process_must_do_is_refused_under_torchrun(settings, resume, match):
    with pytest.raises(ConfigError, match=match):
        check_one_shot_run(TWO_RANKS, settings, resume=resume)
    check_one_shot_run(DistributedContext(), settings, resume=resume)  # one process: fine


def test_single_process_work_is_refused_when_torchrun_starts_several(monkeypatch):
    check_single_process("this", "do that")  # no WORLD_SIZE: one process
    monkeypatch.setenv("WORLD_SIZE", "1")
    check_single_process("this", "do that")
    monkeypatch.setenv("WORLD_SIZE", "3")
    with pytest.raises(ConfigError, match=r"this does not run under torchrun \(3 processes\); "
                                          "do that"):
        check_single_process("this", "do that")
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ConfigError, match="WORLD_SIZE must be an integer"):
        check_single_process("this", "do that")


@pytest.mark.parametrize(("argv", "match"), [
    (["search", "--strategy", "random", "--space", "chain", "--trials", "1"], "--workers"),
    (["train", "darts_v2", "--epochs", "1"], "retrain in one process"),
])
def test_cli_multi_trial_search_and_train_under_torchrun_are_one_line_errors(
        monkeypatch, tmp_path, capsys, argv, match):
    """Each rank would repeat the whole run and write the same files."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    out = tmp_path / "run"
    assert cli.main([*argv, "--out", str(out), "--quiet"]) == 2
    assert match in _one_line(capsys)
    assert not out.exists()


def test_inactive_context_is_a_no_op():
    ctx = DistributedContext()
    t = torch.tensor([1.0, 2.0], requires_grad=True)
    (same,) = ctx.mean([t])
    assert same is t  # the autograd graph passes straight through
    assert ctx.sum_floats(1.5, 2) == (1.5, 2.0)
    assert ctx.shard((t,))[0] is t

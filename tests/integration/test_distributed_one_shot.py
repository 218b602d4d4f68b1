"""Data-parallel one-shot search (DARTS first and second order, ProxylessNAS): two gloo
processes on CPU against one process with the whole batch."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

from archsearch import runs
from archsearch.data import load_dataset
from archsearch.distributed import DistributedContext
from archsearch.errors import ConfigError
from archsearch.spaces.darts import DartsCellSpace
from archsearch.strategies import DARTS, ProxylessNAS
from archsearch.supernet import BilevelOptimizer, DartsSupernet
from archsearch.supernet.proxyless import default_cost_tables

pytestmark = pytest.mark.slow

WORLD = 2
HVPS = ("finite-difference", "exact")
TOYS = [("first", "finite-difference"), ("second", "finite-difference"), ("second", "exact")]
SEARCH = {"epochs": 1, "channels": 4, "layers": 3, "batch_size": 32, "seed": 0}
RUN = {"method": "darts", "dataset": "digits", "data_dir": None, "seed": 0, "device": "cpu",
       "nodes": 4, "ops": list(DartsCellSpace().ops), "order": "first",
       "hvp": "finite-difference", "epochs": 1, "channels": 4, "layers": 3, "batch_size": 256,
       "retrain": None}


def _digits():
    return load_dataset("digits", limit=512)


def _search(distributed: DistributedContext | None = None):
    data = _digits()
    strategy = DARTS(DartsCellSpace(), distributed=distributed, **SEARCH)
    return strategy.search(data.x_train, data.y_train, num_classes=10, progress=False)


class _Mixture(nn.Module):
    """A supernet without batch norm: softmax(α)-weighted linear and ReLU paths."""

    def __init__(self) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(1)
        self.linear = nn.Linear(6, 3)
        with torch.no_grad():
            self.linear.weight.copy_(torch.randn(3, 6, generator=gen))
            self.linear.bias.copy_(torch.randn(3, generator=gen))
        self.alpha = nn.Parameter(torch.zeros(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mix = F.softmax(self.alpha, dim=0)
        return mix[0] * self.linear(x) + mix[1] * self.linear(x).relu()


def _loss(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    return F.cross_entropy(model(batch[0]), batch[1])


def _toy_alphas(ctx: DistributedContext | None = None, order: str = "first",
                hvp: str = "finite-difference") -> torch.Tensor:
    """Eight bilevel steps (SGD with momentum on w, Adam on α) on global batches of 16."""
    model = _Mixture()
    opt = BilevelOptimizer(
        model, ["alpha"], train_loss=_loss, val_loss=_loss,
        weight_optimizer=torch.optim.SGD(model.linear.parameters(), lr=0.1, momentum=0.9),
        arch_optimizer=torch.optim.Adam([model.alpha], lr=0.05), grad_clip=1.0,
        order=order, hvp=hvp, average=ctx.mean if ctx is not None else None)
    gen = torch.Generator().manual_seed(2)
    for _ in range(8):
        batch = (torch.randn(16, 6, generator=gen), torch.randint(0, 3, (16,), generator=gen))
        val = (torch.randn(16, 6, generator=gen), torch.randint(0, 3, (16,), generator=gen))
        if ctx is not None:
            batch, val = ctx.shard(batch), ctx.shard(val)
        opt.step(batch, val)
    return model.alpha.detach().clone()


def _batches(steps: int, rows: int, ctx: DistributedContext | None):
    """`steps` (train, val) pairs of global batches of digits in float64, sharded."""
    data = _digits()
    x, y = data.x_train[:2 * steps * rows].double(), data.y_train[:2 * steps * rows]
    for i in range(steps):
        pair = []
        for j in (2 * i, 2 * i + 1):
            batch = (x[j * rows:(j + 1) * rows], y[j * rows:(j + 1) * rows])
            pair.append(ctx.shard(batch) if ctx is not None else batch)
        yield pair


def _fixed_statistics(net: nn.Module) -> nn.Module:
    """The net in float64 and eval mode, its batch norms normalising with fixed statistics
    (mean 0, variance 1) instead of each batch's: the search supernets keep no running
    statistics, so in eval mode too they would use the batch's."""
    net = net.double().eval()
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.track_running_stats = True
            m.running_mean = torch.zeros(m.num_features, dtype=torch.float64)
            m.running_var = torch.ones(m.num_features, dtype=torch.float64)
            m.num_batches_tracked = torch.tensor(0)
    return net


def _supernet_second_order(hvp: str, ctx: DistributedContext | None = None, *,
                           average: bool = True) -> dict:
    """Two second-order steps of the DARTS supernet in float64 and eval mode.

    With fixed statistics (`_fixed_statistics`) a row's loss does not depend on the other
    rows of its batch: two ranks with half a batch each must then compute what one process
    computes with the whole batch, up to rounding.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = _fixed_statistics(DartsSupernet(DartsCellSpace(), channels=4, layers=3,
                                              num_classes=10, in_channels=1))
    with torch.no_grad():  # larger α than the 1e-3 init: the mixture is far from uniform
        for p in net.arch_parameters():
            p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(3)))
    opt = BilevelOptimizer(
        net, net.arch_parameter_names(), train_loss=_loss, val_loss=_loss, order="second",
        hvp=hvp, weight_optimizer=torch.optim.SGD(net.weight_parameters(), lr=0.1,
                                                  momentum=0.9, weight_decay=3e-4),
        arch_optimizer=torch.optim.SGD(net.arch_parameters(), lr=1.0),
        average=ctx.mean if ctx is not None and average else None)
    for train, val in _batches(2, 16, ctx):
        opt.step(train, val)
    return {"alphas": torch.cat([p.detach().flatten() for p in net.arch_parameters()]),
            "weights": torch.cat([p.detach().flatten() for p in net.weight_parameters()])}


def _proxyless_steps(ctx: DistributedContext | None = None) -> dict:
    """Three ProxylessNAS steps (architecture, then weights) in float64 and eval mode."""
    strategy = ProxylessNAS(DartsCellSpace(), channels=4, layers=3, batch_size=16, seed=0,
                            cost_weight=0.5, distributed=ctx)
    net = _fixed_statistics(strategy.build_supernet(num_classes=10, in_channels=1))
    opt = strategy.build_optimizer(net, default_cost_tables(net, 8))
    for train, val in _batches(3, 16, ctx):
        opt.arch_step(val)
        opt.weight_step(train)
    return {"alphas": torch.cat([p.detach().flatten() for p in net.arch_parameters()]),
            "weights": torch.cat([p.detach().flatten() for p in net.weight_parameters()])}


def _proxyless_search(ctx: DistributedContext | None = None):
    data = _digits()
    strategy = ProxylessNAS(DartsCellSpace(), distributed=ctx, **SEARCH)
    return strategy.search(data.x_train, data.y_train, num_classes=10, progress=False)


def _worker(rank: int, port: int, tmp: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(WORLD), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    ctx = DistributedContext.from_env("cpu")
    try:
        toys = {f"{order}/{hvp}": _toy_alphas(ctx, order, hvp) for order, hvp in TOYS}
        result = _search(ctx)
        arch = runs.run_search(RUN, Path(tmp) / "run", progress=False, log=lambda _: None)
        proxyless = _proxyless_search(ctx)
        proxyless_arch = runs.run_search({**RUN, "method": "proxyless"},
                                         Path(tmp) / "proxyless", progress=False,
                                         log=lambda _: None)
        torch.save({"alphas": result.alphas, "cell": dict(result.arch),
                    "history": result.history, "run_cell": dict(arch), "toys": toys,
                    "second": {hvp: _supernet_second_order(hvp, ctx) for hvp in HVPS},
                    "proxyless_steps": _proxyless_steps(ctx),
                    "proxyless": {"alphas": proxyless.alphas, "cell": dict(proxyless.arch),
                                  "history": proxyless.history,
                                  "run_cell": dict(proxyless_arch)}},
                   Path(tmp) / f"rank{rank}.pt")
    finally:
        ctx.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(_free_port(), str(tmp)), nprocs=WORLD, join=True)
    return tmp, [torch.load(tmp / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]


def test_ranks_hold_identical_alphas_and_cells(ranks):
    _, (first, second) = ranks
    assert first["alphas"] == second["alphas"]  # bitwise: all ranks apply the averaged step
    assert first["cell"] == second["cell"]
    assert first["run_cell"] == second["run_cell"]
    # the logged figures are all-reduced, so both ranks log the global batch's numbers
    assert first["history"][0]["train_loss"] == second["history"][0]["train_loss"]
    assert first["history"][0]["train_accuracy"] == second["history"][0]["train_accuracy"]


@pytest.mark.parametrize(("order", "hvp"), TOYS)
def test_without_batch_norm_two_ranks_equal_one_process_with_the_combined_batch(ranks, order,
                                                                                hvp):
    _, (first, second) = ranks
    key = f"{order}/{hvp}"
    single = _toy_alphas(None, order, hvp)
    assert single.abs().max() > 0.1  # α moved
    assert torch.equal(first["toys"][key], second["toys"][key])
    # only the order of float32 sums differs: mean of two 8-row means vs one 16-row mean
    torch.testing.assert_close(first["toys"][key], single, rtol=0, atol=1e-5)


def test_second_order_orders_differ_on_the_toy(ranks):
    """The three gradients are not the same computation (else the test above proves little)."""
    _, (first, _) = ranks
    toys = first["toys"]
    assert (toys["first/finite-difference"] - toys["second/finite-difference"]).abs().max() > 1e-4


@pytest.mark.parametrize("hvp", HVPS)
def test_second_order_supernet_two_ranks_equal_one_process(ranks, hvp):
    """The averaged virtual step and HVP direction: the whole second-order step (α and w)
    of two ranks equals one process's on the combined batch, in float64."""
    _, (first, second) = ranks
    single = _supernet_second_order(hvp)
    for key in ("alphas", "weights"):
        assert torch.equal(first["second"][hvp][key], second["second"][hvp][key])
        torch.testing.assert_close(first["second"][hvp][key], single[key], rtol=0, atol=1e-10)


def test_second_order_supernet_steps_use_the_other_ranks_data(ranks):
    """Without averaging, a rank's half batch gives another step: the tolerance above is
    far below the difference this makes."""
    _, (first, _) = ranks
    own_rows = _supernet_second_order("finite-difference", DistributedContext(0, WORLD),
                                      average=False)
    assert (first["second"]["finite-difference"]["alphas"] - own_rows["alphas"]).abs().max() \
        > 1e-6


def test_proxyless_steps_two_ranks_equal_one_process(ranks):
    _, (first, second) = ranks
    single = _proxyless_steps()
    for key in ("alphas", "weights"):
        assert torch.equal(first["proxyless_steps"][key], second["proxyless_steps"][key])
        torch.testing.assert_close(first["proxyless_steps"][key], single[key], rtol=0,
                                   atol=1e-10)


def test_proxyless_ranks_hold_identical_alphas_and_cells(ranks):
    tmp, (first, second) = ranks
    a, b = first["proxyless"], second["proxyless"]
    assert a["alphas"] == b["alphas"] and a["cell"] == b["cell"]
    assert a["run_cell"] == b["run_cell"]
    assert a["history"][0]["train_loss"] == b["history"][0]["train_loss"]
    single = _proxyless_search()
    # the sampled paths are the same in both runs (same seed, same α): the search is the
    # same up to batch-norm statistics
    assert abs(a["history"][0]["train_loss"] - single.history[0]["train_loss"]) < 0.1
    assert len((tmp / "proxyless" / "log.jsonl").read_text(encoding="utf-8").splitlines()) == 1


def test_supernet_two_ranks_track_one_process_with_the_combined_batch(ranks):
    torch.set_num_threads(1)
    _, (first, _) = ranks
    single = _search()
    for cell in ("normal", "reduce"):
        ddp = torch.tensor(first["alphas"][cell]).flatten()
        one = torch.tensor(single.alphas[cell]).flatten()
        # Not equal: the supernet's batch norm normalises each rank's 16 rows with their
        # own statistics, and Adam's normalised steps (8 of them, lr 3e-4) turn small
        # gradient differences into full-size steps wherever a gradient is near zero.
        # Measured: cosine 0.88 (normal) and 0.93 (reduce); unrelated α give about 0.
        assert one.abs().max() > 1e-3
        assert F.cosine_similarity(ddp, one, dim=0) > 0.75
    assert abs(first["history"][0]["train_loss"] - single.history[0]["train_loss"]) < 0.1


def test_only_rank_zero_writes_the_run_directory(ranks):
    tmp, _ = ranks
    run = tmp / "run"
    names = {p.name for p in run.iterdir()}
    assert {"config.json", "log.jsonl", "checkpoint.pt", "supernet.pt", "arch.json"} <= names
    # one writer: one log record per epoch, not one per rank
    assert len((run / "log.jsonl").read_text(encoding="utf-8").splitlines()) == 1
    assert sorted(p.name for p in tmp.iterdir()) == ["proxyless", "rank0.pt", "rank1.pt", "run"]
    assert {"config.json", "log.jsonl", "supernet.pt", "arch.json"} <= \
        {p.name for p in (tmp / "proxyless").iterdir()}


def test_uneven_batches_are_refused():
    ctx = DistributedContext(rank=0, world_size=2)
    with pytest.raises(ConfigError, match="split evenly"):
        DARTS(DartsCellSpace(), batch_size=33, distributed=ctx)
    with pytest.raises(ConfigError, match="split evenly"):
        ProxylessNAS(DartsCellSpace(), batch_size=33, distributed=ctx)


def test_shard_gives_each_rank_its_contiguous_slice():
    batch = (torch.arange(8), torch.arange(8) * 10)
    parts = [DistributedContext(rank=r, world_size=2).shard(batch) for r in range(2)]
    assert torch.equal(torch.cat([parts[0][0], parts[1][0]]), batch[0])
    assert parts[1][1].tolist() == [40, 50, 60, 70]

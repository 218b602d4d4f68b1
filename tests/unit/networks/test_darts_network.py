"""Discrete DARTS networks: published parameter counts, auxiliary head, drop-path."""

from __future__ import annotations

import pytest
import torch

from archsearch.hardware import num_params
from archsearch.networks import DartsNetwork, drop_path
from archsearch.spaces.darts import NAMED_CELLS

NO_AUX = ("aux_head",)


@pytest.mark.parametrize("cell,total,no_aux", [
    ("darts_v2", 3_825_768, 3_349_342),
    ("darts_v1", 3_645_840, 3_169_414),
])
def test_cifar_network_matches_published_parameter_counts(cell, total, no_aux):
    net = DartsNetwork(NAMED_CELLS[cell], channels=36, layers=20, num_classes=10, auxiliary=True)
    assert num_params(net) == total
    assert num_params(net, exclude_prefixes=NO_AUX) == no_aux


@pytest.mark.parametrize("cell,total,no_aux", [
    ("darts_v2", 5_979_528, 4_718_752),
    ("darts_v1", 5_771_208, 4_510_432),
])
def test_imagenet_network_matches_published_parameter_counts(cell, total, no_aux):
    net = DartsNetwork(NAMED_CELLS[cell], channels=48, layers=14, num_classes=1000,
                       auxiliary=True, imagenet=True)
    assert num_params(net) == total
    assert num_params(net, exclude_prefixes=NO_AUX) == no_aux


def test_reduction_cells_at_one_and_two_thirds():
    net = DartsNetwork(NAMED_CELLS["darts_v2"], channels=8, layers=8)
    reducing = [i for i, cell in enumerate(net.cells) if cell.ops[0].__class__.__name__
                == "MaxPool2d" and cell.preprocess1.body[0].out_channels != 8]
    assert reducing == [2, 5]


def test_auxiliary_logits_only_in_training():
    net = DartsNetwork(NAMED_CELLS["darts_v2"], channels=4, layers=6, auxiliary=True)
    x = torch.randn(2, 3, 32, 32)
    logits, aux = net.train().forward_with_aux(x)
    assert logits.shape == aux.shape == (2, 10)
    assert net.eval().forward_with_aux(x)[1] is None
    assert net(x).shape == (2, 10)


def test_small_images_and_grayscale_work_with_the_auxiliary_head():
    net = DartsNetwork(NAMED_CELLS["darts_v1"], channels=4, layers=3, in_channels=1,
                       num_classes=3, auxiliary=True)
    logits, aux = net.train().forward_with_aux(torch.randn(2, 1, 8, 8))
    assert logits.shape == aux.shape == (2, 3)


def test_imagenet_network_runs_at_224():
    net = DartsNetwork(NAMED_CELLS["darts_v2"], channels=8, layers=3, num_classes=5,
                       imagenet=True).eval()
    assert net(torch.randn(1, 3, 224, 224)).shape == (1, 5)


def test_drop_path_zeroes_whole_samples_and_preserves_the_mean():
    torch.manual_seed(0)
    x = torch.ones(4000, 2, 3, 3)
    y = drop_path(x, 0.3)
    per_sample = y.flatten(1)
    dropped = (per_sample == 0).all(1)
    assert torch.allclose(per_sample[~dropped], torch.full_like(per_sample[~dropped], 1 / 0.7))
    assert dropped.float().mean().item() == pytest.approx(0.3, abs=0.03)
    assert y.mean().item() == pytest.approx(1.0, abs=0.05)


def test_drop_path_is_off_in_eval_and_skips_identity_ops():
    net = DartsNetwork(NAMED_CELLS["darts_v2"], channels=4, layers=3, drop_path_prob=0.9).eval()
    x = torch.randn(2, 3, 16, 16)
    assert torch.equal(net(x), net(x))


@pytest.mark.parametrize("kwargs", [{"channels": 7}, {"layers": 2}, {"num_classes": 1}])
def test_nonsensical_sizes_are_config_errors(kwargs):
    from archsearch.errors import ConfigError

    with pytest.raises(ConfigError):
        DartsNetwork(NAMED_CELLS["darts_v2"], **kwargs)

"""Parameter and MAC counts (conv + linear multiply-accumulates at inference, one input)."""

from __future__ import annotations

from torch import nn

from archsearch.hardware import count_macs, num_params
from archsearch.networks import DartsNetwork
from archsearch.spaces.darts import NAMED_CELLS


def test_macs_of_a_small_network_by_hand():
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=True),   # 8·8·8 outputs × 3·3·3 = 13,824
        nn.BatchNorm2d(8), nn.ReLU(),               # not counted
        nn.Conv2d(8, 8, 3, padding=1, groups=8),    # 512 outputs × 1·3·3 = 4,608
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(8, 10),                           # 80
    )
    assert count_macs(net, (3, 8, 8)) == 13_824 + 4_608 + 80
    assert count_macs(net.double(), (3, 8, 8)) == 13_824 + 4_608 + 80  # input in its dtype
    assert num_params(net) == 3 * 8 * 9 + 8 + 16 + 8 * 9 + 8 + 8 * 10 + 10


def test_count_restores_training_mode_and_accepts_batched_shape():
    net = nn.Sequential(nn.Conv2d(1, 2, 1), nn.Flatten(), nn.Linear(2 * 4 * 4, 3)).train()
    assert count_macs(net, (1, 1, 4, 4)) == 32 + 96
    assert net.training


def test_darts_imagenet_macs_are_in_the_range_common_counters_give():
    net = DartsNetwork(NAMED_CELLS["darts_v2"], channels=48, layers=14, num_classes=1000,
                       auxiliary=True, imagenet=True)
    macs = count_macs(net, (3, 224, 224))
    assert 520e6 < macs < 550e6  # the paper's 574M counts more than conv + linear
    assert macs == 529_911_552


def test_auxiliary_head_costs_no_inference_macs():
    kwargs = {"channels": 8, "layers": 6, "num_classes": 10}
    with_aux = DartsNetwork(NAMED_CELLS["darts_v2"], auxiliary=True, **kwargs)
    without = DartsNetwork(NAMED_CELLS["darts_v2"], **kwargs)
    assert count_macs(with_aux, (3, 32, 32)) == count_macs(without, (3, 32, 32))
    assert num_params(with_aux) > num_params(without)


"""The mobilenet network: MobileNetV2's final 1×1 conv, and the resolution applied in forward."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from archsearch.errors import ConfigError
from archsearch.hardware import ArchCost, count_macs, num_params
from archsearch.spaces.mobilenet import LAST_CHANNELS, MobileNetSpace

torch.set_num_threads(1)
SPACE = MobileNetSpace()
# One stage of one block: small enough to count parameters and MACs by hand.
ONE = MobileNetSpace(channels=[8], strides=[1], depths=[1], kernels=[3], expands=[3],
                     width_mults=[1.0, 1.25], resolutions=[8, 16], stem_channels=8)


def _arch(space, **changes):
    """The first-choice arch of `space` with `changes` (labels with '.' written as '__')."""
    choices = {label: dim.choices[0] for label, dim in space.dims.items()}
    choices.update({k.replace("__", "."): v for k, v in changes.items()})
    return space.arch(choices)


def _head_convs(model):
    return [m for m in model.head.modules() if isinstance(m, torch.nn.Conv2d)]


def test_param_count_of_a_one_block_network_by_hand():
    # stem 3×3 conv 1→8 + BN(8); MBConv 8→8, e=3 (hidden 24): expand 8·24 + BN(24),
    # depthwise 24·3·3 + BN(24), project 24·8 + BN(8); head 1×1 8→32 + BN(32); linear 32·10+10.
    stem = 1 * 8 * 9 + 2 * 8
    block = 8 * 24 + 2 * 24 + 24 * 9 + 2 * 24 + 24 * 8 + 2 * 8
    head = 8 * 32 + 2 * 32
    assert stem + block + head + 330 == 1450
    arch = _arch(ONE)
    assert num_params(ONE.build(arch, last_channels=32)) == 1450
    # Without the head conv the classifier reads the last stage's 8 channels.
    assert num_params(ONE.build(arch, last_channels=0)) == stem + block + 8 * 10 + 10


def test_macs_of_a_one_block_network_by_hand_at_two_resolutions():
    # At 8×8 (stride 1 throughout): stem 64·8·9, expand 64·24·8, depthwise 64·24·9,
    # project 64·8·24, head 64·32·8, linear 32·10.
    conv = 64 * 8 * 9 + 64 * 24 * 8 + 64 * 24 * 9 + 64 * 8 * 24 + 64 * 32 * 8
    small, large = _arch(ONE), _arch(ONE, resolution=16)
    assert count_macs(ONE.build(small, last_channels=32), (1, 8, 8)) == conv + 320
    # The network upsamples the 8×8 input to 16×16 itself: 4× the conv MACs.
    assert count_macs(ONE.build(large, last_channels=32), (1, 8, 8)) == 4 * conv + 320


def test_conv_macs_scale_as_the_square_of_the_resolution():
    base = _arch(SPACE, resolution=8)
    classifier = SPACE.head_channels(base) * SPACE.num_classes  # linear MACs: unscaled
    conv8 = count_macs(SPACE.build(base), (1, 8, 8)) - classifier
    for side in (12, 16):
        arch = _arch(SPACE, resolution=side)
        conv = count_macs(SPACE.build(arch), (1, 8, 8)) - classifier
        # Exact here: strides 1, 2, 2 halve 8/12/16 without remainders.
        assert conv / conv8 == pytest.approx((side / 8) ** 2, rel=1e-12)


def test_macs_do_not_depend_on_the_size_the_data_comes_in():
    arch = _arch(SPACE, resolution=12)
    model = SPACE.build(arch)
    at_native = count_macs(model, (1, 8, 8))
    assert count_macs(model, (1, 32, 32)) == at_native
    assert count_macs(model, SPACE.input_shape(arch)) == at_native


def test_arch_cost_reports_resolution_dependent_macs_at_the_native_input():
    cost = ArchCost(SPACE, (1, 8, 8), build_kwargs={"last_channels": 64})
    low, high = cost(_arch(SPACE, resolution=8)), cost(_arch(SPACE, resolution=16))
    assert high["macs"] > 3 * low["macs"]
    assert high["num_params"] == low["num_params"]  # resolution changes no weight


def test_forward_resizes_the_input_to_the_chosen_resolution():
    arch = _arch(SPACE, resolution=16)
    torch.manual_seed(0)
    model = SPACE.build(arch, last_channels=32).eval()
    x = torch.randn(2, 1, 8, 8)
    up = F.interpolate(x, size=(16, 16), mode="bilinear", align_corners=False)
    with torch.no_grad():
        assert torch.allclose(model(x), model(up), atol=1e-6)
        # A larger input is shrunk (antialiased) and still gives logits.
        assert model(torch.randn(2, 1, 40, 40)).shape == (2, 10)


def test_head_width_follows_the_multiplier_only_upwards():
    assert LAST_CHANNELS == 1280
    wide = _arch(SPACE, width_mult=1.25)
    narrow = _arch(SPACE, width_mult=0.75)
    assert SPACE.head_channels(wide) == 1600 and SPACE.head_channels(narrow) == 1280
    assert SPACE.head_channels(wide, 128) == 160 and SPACE.head_channels(narrow, 128) == 128
    (conv,) = _head_convs(SPACE.build(wide, last_channels=128))
    assert conv.out_channels == 160 and conv.kernel_size == (1, 1)
    assert SPACE.build(wide, last_channels=128).classifier.in_features == 160
    assert _head_convs(SPACE.build(wide, last_channels=0)) == []


@pytest.mark.parametrize("bad", [-1, 1.5, True, "64"])
def test_bad_last_channels_raise_config_error(bad):
    with pytest.raises(ConfigError, match="last_channels"):
        SPACE.build(_arch(SPACE), last_channels=bad)

"""Registries: unique names, helpful errors for typos."""

from __future__ import annotations

import pytest

from archsearch.ops import OPS
from archsearch.registry import Registry, UnknownNameError
from archsearch.strategies import STRATEGIES


def test_register_get_and_list():
    reg: Registry[int] = Registry("thing")
    reg.add("one", 1)

    @reg.register("two")
    def two() -> int:
        return 2

    assert reg.get("one") == 1 and reg.get("two") is two
    assert reg.names() == ["one", "two"] and "two" in reg and len(reg) == 2


def test_registering_a_name_twice_is_an_error():
    reg: Registry[int] = Registry("thing")
    reg.add("x", 1)
    with pytest.raises(ValueError, match="already registered"):
        reg.add("x", 2)


def test_unknown_name_suggests_the_closest_and_lists_all():
    with pytest.raises(UnknownNameError) as info:
        STRATEGIES.get("dartz")
    assert "did you mean 'darts'" in str(info.value)
    assert "known: " in str(info.value) and "darts" in str(info.value).split("known: ")[1]


def test_the_darts_op_set_is_registered_in_order():
    assert OPS.names()[:8] == ["none", "max_pool_3x3", "avg_pool_3x3", "skip_connect",
                               "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5"]

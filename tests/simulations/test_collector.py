"""The garbage collector during a fleet run: rare collections in the run, everything as it was after."""

from __future__ import annotations

import gc
import weakref

import pytest

from simulations import run_fleet
from simulations._collector import _YOUNGEST_THRESHOLD, few_collections
from simulations._scenario import parse_scenario
from tests.simulations.test_fleet import PROFILES, _scenario


class _Node:
    """An object that can be part of a reference cycle."""

    other: _Node | None = None


def test_building_runs_without_the_collector_and_the_run_with_rare_collections() -> None:
    before = gc.get_threshold()
    with few_collections() as built:
        assert not gc.isenabled()
        built()
        assert gc.isenabled()
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == (max(before[0], _YOUNGEST_THRESHOLD), *before[1:])
    assert gc.isenabled()
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == before


def test_a_cycle_made_in_the_run_is_still_freed() -> None:
    with few_collections() as built:
        built()
        node = _Node()
        node.other = node
        freed = weakref.ref(node)
        del node
        gc.collect()
        assert freed() is None


def _fail_while_building() -> None:
    with few_collections() as built:
        built()
        assert not gc.isenabled()
        msg = "a fault while building"
        raise RuntimeError(msg)


def test_a_collector_turned_off_stays_off_and_an_error_restores_it() -> None:
    gc.disable()
    try:
        with pytest.raises(RuntimeError, match="a fault while building"):
            _fail_while_building()
        assert not gc.isenabled()
        assert gc.get_freeze_count() == 0
    finally:
        gc.enable()


def test_a_fleet_run_collects_rarely_and_restores_the_collector() -> None:
    before = gc.get_threshold()
    during: list[tuple[int, int]] = []
    run_fleet(
        parse_scenario(_scenario()),
        PROFILES,
        lambda _: None,
        policy="auto",
        tick=lambda _: during.append((gc.get_threshold()[0], gc.get_freeze_count())),
    )
    assert during
    assert all(threshold >= _YOUNGEST_THRESHOLD and frozen > 0 for threshold, frozen in during)
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0

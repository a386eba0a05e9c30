"""The garbage collector during a fleet run: rare collections in the run, everything as it was after.

The test suite freezes what survives each test (tests/conftest.py), so a
process where nothing is frozen yet is checked in a child process.
"""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import textwrap
import weakref

import pytest

from simulations import run_fleet
from simulations._collector import _YOUNGEST_THRESHOLD, few_collections
from simulations._scenario import parse_scenario
from tests.simulations.test_fleet import PROFILES, _scenario


class _Node:
    """An object that can be part of a reference cycle."""

    other: _Node | None = None


def test_in_a_process_that_froze_nothing_the_fleet_is_frozen_while_it_runs_and_thawed_after() -> None:
    child = textwrap.dedent(
        """
        import gc, json
        from simulations._collector import few_collections

        seen = {"before": [gc.isenabled(), gc.get_threshold(), gc.get_freeze_count()]}
        with few_collections() as built:
            seen["building"] = [gc.isenabled()]
            fleet = [object() for _ in range(1000)]
            built()
            seen["running"] = [gc.isenabled(), gc.get_threshold(), gc.get_freeze_count()]
        seen["after"] = [gc.isenabled(), gc.get_threshold(), gc.get_freeze_count()]
        print(json.dumps(seen))
        """
    )
    done = subprocess.run(  # noqa: S603 - our own interpreter and script
        [sys.executable, "-c", child], capture_output=True, text=True, check=True, timeout=60
    )
    seen = json.loads(done.stdout)
    enabled, thresholds, frozen = seen["before"]
    assert frozen == 0
    assert seen["building"] == [False]
    running_enabled, running_thresholds, running_frozen = seen["running"]
    assert running_enabled
    assert running_thresholds == [max(thresholds[0], _YOUNGEST_THRESHOLD), *thresholds[1:]]
    assert running_frozen > 1000  # the fleet, and everything else there was
    assert seen["after"] == [enabled, thresholds, 0]


def test_what_someone_else_froze_stays_frozen() -> None:
    gc.freeze()  # as tests/conftest.py does after every test
    frozen = gc.get_freeze_count()
    before = gc.get_threshold()
    with few_collections() as built:
        made = [[] for _ in range(1000)]  # tracked objects: a freeze now would count them
        built()
        # The fleet's objects are not frozen with them. (Frozen objects that another test's threads free
        # meanwhile lower the count: a freeze here would raise it by what was made since.)
        assert gc.get_freeze_count() <= frozen
        assert gc.get_threshold()[0] == max(before[0], _YOUNGEST_THRESHOLD)
    assert gc.get_freeze_count() <= frozen
    assert gc.get_threshold() == before
    del made


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
    before = gc.get_threshold()
    gc.disable()
    try:
        with pytest.raises(RuntimeError, match="a fault while building"):
            _fail_while_building()
        assert not gc.isenabled()
        assert gc.get_threshold() == before
    finally:
        gc.enable()


def test_a_fleet_run_collects_rarely_and_restores_the_collector() -> None:
    before = gc.get_threshold()
    during: list[int] = []
    run_fleet(
        parse_scenario(_scenario()),
        PROFILES,
        lambda _: None,
        policy="auto",
        tick=lambda _: during.append(gc.get_threshold()[0]),
    )
    assert during
    assert all(threshold >= _YOUNGEST_THRESHOLD for threshold in during)
    assert gc.get_threshold() == before

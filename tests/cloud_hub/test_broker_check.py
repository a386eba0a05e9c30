"""``edgecut broker-check`` against real brokers: mosquitto passes, the embedded one says what it lacks."""

from __future__ import annotations

import importlib.util
import json
import shutil
from typing import TYPE_CHECKING

import pytest

from cloud_hub import LocalBroker, free_port
from cloud_hub._broker_check import largest_passing
from edgecut._cli import main
from edgecut._exit import ExitCode
from protocol import PACKET_OVERHEAD_BYTES

if TYPE_CHECKING:
    from collections.abc import Iterator

needs_mosquitto = pytest.mark.skipif(shutil.which("mosquitto") is None, reason="mosquitto is not installed")
needs_iotcore = pytest.mark.skipif(importlib.util.find_spec("iotcore") is None, reason="iotcore is not installed")

NEEDED = ("mqtt5", "shared_subscriptions", "response_topic", "retained", "last_will", "largest_message")
OPTIONAL = ("persistent_session", "packet_limit", "share_groups")
SIXTEEN_MIB = 16 * 1024 * 1024


def _check(capsys: pytest.CaptureFixture[str], url: str, *options: str) -> tuple[int, dict[str, object]]:
    code = main(["broker-check", url, "--json", *options])
    return code, json.loads(capsys.readouterr().out)


def _by_name(report: dict[str, object]) -> dict[str, dict[str, object]]:
    checks = report["checks"]
    assert isinstance(checks, list)
    return {check["name"]: check for check in checks}


@pytest.fixture
def mosquitto() -> Iterator[LocalBroker]:
    with LocalBroker(kind="mosquitto") as broker:
        yield broker


@needs_mosquitto
def test_mosquitto_passes_every_check(capsys: pytest.CaptureFixture[str], mosquitto: LocalBroker) -> None:
    code, report = _check(capsys, mosquitto.url)
    checks = _by_name(report)
    assert code == ExitCode.OK
    assert report["ok"] is True
    assert list(checks) == [*NEEDED, *OPTIONAL]
    assert {name: check["outcome"] for name, check in checks.items()} == dict.fromkeys(checks, "pass")
    assert [checks[name]["required"] for name in checks] == [True] * len(NEEDED) + [False] * len(OPTIONAL)
    shared = checks["shared_subscriptions"]["data"]
    assert shared["lost"] == shared["repeated"] == 0
    assert sum(shared["split"]) == 20
    assert min(shared["split"]) > 0
    assert checks["largest_message"]["data"]["largest_bytes"] == SIXTEEN_MIB  # LocalBroker's limit is above it
    assert str(report["prefix"]).startswith("edgecut-check/")


@needs_mosquitto
def test_the_text_report_names_each_check_and_its_figure(
    capsys: pytest.CaptureFixture[str], mosquitto: LocalBroker
) -> None:
    assert main(["broker-check", mosquitto.url, "--requests", "6"]) == ExitCode.OK
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split() == ["check", "needed", "result", "figure"]
    rows = {line.split()[0]: line.split()[1:3] for line in lines[2:-1]}
    assert rows == {name: ["yes", "pass"] for name in NEEDED} | {name: ["no", "pass"] for name in OPTIONAL}
    assert "3/3 of 6 requests, 0 lost" in "\n".join(lines)  # mosquitto takes turns
    assert lines[-1] == "every check edgecut needs passed"


@needs_mosquitto
def test_a_broker_with_a_smaller_packet_limit_fails_the_size_check_and_says_where_it_lies(
    capsys: pytest.CaptureFixture[str],
) -> None:
    limit = 100_000 + PACKET_OVERHEAD_BYTES  # mosquitto's max_packet_size, topic and headers included
    with LocalBroker(kind="mosquitto", max_message_bytes=100_000) as broker:
        code, report = _check(capsys, broker.url, "--min-message", "200K")
    size = _by_name(report)["largest_message"]
    assert code == ExitCode.FAILED
    assert report["ok"] is False
    assert size["outcome"] == "fail"
    largest, failed = size["data"]["largest_bytes"], size["data"]["smallest_failed_bytes"]
    assert limit - 1024 < largest < limit  # the topic and headers take the rest
    assert largest < failed <= largest + 1024
    assert size["data"]["probes"] <= 16
    others = {name: check["outcome"] for name, check in _by_name(report).items() if name != "largest_message"}
    assert set(others.values()) == {"pass"}


@needs_iotcore
def test_the_embedded_broker_passes_what_edgecut_needs_and_reports_what_it_lacks(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with LocalBroker(kind="iotcore") as broker:
        code, report = _check(capsys, broker.url)
    checks = _by_name(report)
    assert code == ExitCode.OK  # what fails, edgecut copes without
    assert {name: checks[name]["outcome"] for name in NEEDED} == dict.fromkeys(NEEDED, "pass")
    assert checks["persistent_session"]["outcome"] == "pass"
    # rumqttd sends messages past a client's Maximum Packet Size (docs/broker.md) ...
    assert checks["packet_limit"]["outcome"] == "fail"
    assert "delivered to" in str(checks["packet_limit"]["figure"])
    # ... and shares one group name's messages across every filter under it, losing what does not match.
    assert checks["share_groups"]["outcome"] == "fail"
    data = checks["share_groups"]["data"]
    assert data["requests"] + data["pings"] < 2 * data["sent_each"]


def test_an_unreachable_broker_exits_5(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["broker-check", f"mqtt://127.0.0.1:{free_port()}", "--timeout", "2"]) == ExitCode.TRANSPORT
    assert "cannot reach the broker" in capsys.readouterr().err


def test_a_needed_size_outside_the_search_is_a_bad_setting(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["broker-check", f"mqtt://127.0.0.1:{free_port()}", "--min-message", "32M"])
    assert code == ExitCode.CONFIG
    assert "must lie between" in capsys.readouterr().err


def test_help_explains_every_check(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["broker-check", "--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for words in ("MQTT 5", "shared subscription", "CorrelationData", "retained", "last will", "--min-message"):
        assert words in text


@pytest.mark.parametrize("threshold", [1024, 1025, 5000, 1_000_000, SIXTEEN_MIB - 1])
async def test_the_size_search_finds_a_limit_within_its_resolution(threshold: int) -> None:
    tried: list[int] = []

    async def passes(size: int) -> bool:
        tried.append(size)
        return size <= threshold

    search = await largest_passing(passes, low=1024, high=SIXTEEN_MIB, max_probes=16, resolution=1024)
    assert search.largest is not None
    assert search.smallest_failed is not None
    assert search.largest <= threshold < search.smallest_failed
    assert search.smallest_failed - search.largest <= 1024
    assert search.probes == len(tried) <= 16


async def test_the_size_search_stops_at_either_end() -> None:
    async def always(_size: int) -> bool:
        return True

    async def never(_size: int) -> bool:
        return False

    found = await largest_passing(always, low=1024, high=4096, max_probes=8, resolution=1)
    assert (found.largest, found.smallest_failed, found.probes) == (4096, None, 1)
    found = await largest_passing(never, low=1024, high=4096, max_probes=8, resolution=1)
    assert (found.largest, found.smallest_failed, found.probes) == (None, 1024, 2)
    bounded = await largest_passing(
        lambda size: always(size) if size < 2000 else never(size), low=1024, high=4096, max_probes=3, resolution=1
    )
    assert bounded.probes == 3

"""Link presets, links from figures and trace files, and the ``edgecut sim link`` command."""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from edgecut._cli import main
from edgecut._exit import ExitCode
from protocol.errors import ConfigError
from simulations import PRESET_NAMES, PROFILES, TRACES, fixed_link, preset, scale_up, trace_link

if TYPE_CHECKING:
    from pathlib import Path


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_every_preset_builds_and_says_where_its_figures_come_from(name: str) -> None:
    spec = preset(name)
    assert spec.name == name
    assert spec.source
    for direction in (spec.up, spec.down):
        assert direction.trace is not None or direction.rate_bit_s is not None
        assert direction.rate_at(1.0) > 0


def test_trace_presets_name_their_trace_and_assumed_figures_say_so() -> None:
    assert "norway_bus_1.tsv" in preset("3g-bus").source
    assert "assumption" in preset("3g-bus").source  # its delay
    assert "RTT samples" in preset("lte-drive").source
    assert "assumption" in preset("wifi").source


def test_an_unknown_preset_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="no link preset 'dialup'; presets: 3g-bus"):
        preset("dialup")


def test_fixed_links_and_the_uplink_scale() -> None:
    spec = fixed_link(rate_bit_s=5e6, delay_s=0.04)
    assert (spec.name, spec.up.rate_bit_s, spec.down.delay_s) == ("5mbit-40ms", 5e6, 0.04)
    slower = scale_up(spec, 0.2)
    assert (slower.up.rate_bit_s, slower.down.rate_bit_s) == (1e6, 5e6)
    traced = scale_up(preset("3g-bus"), 0.5)
    assert traced.up.rate_at(10) == pytest.approx(preset("3g-bus").up.rate_at(10) / 2)
    with pytest.raises(ValueError, match="must be > 0"):
        scale_up(spec, 0)


def test_trace_links_read_each_format(tmp_path: Path) -> None:
    assert trace_link(TRACES / "norway_car_2.tsv").up.trace is not None
    gophers = trace_link(TRACES / "5gophers_driving_1.csv", column="Sprint_throughput_mbps", delay_s=0.02)
    assert (gophers.up.delay_s, gophers.name) == (0.02, "5gophers_driving_1")
    mahimahi = tmp_path / "12mbit.trace"
    mahimahi.write_text("".join(f"{ms}\n" for ms in range(1, 101)))
    trace = trace_link(mahimahi).up.trace
    assert trace is not None
    assert trace.mean_bit_s == pytest.approx(12e6)
    empty = tmp_path / "empty.tsv"
    empty.write_text("\n")
    with pytest.raises(ConfigError, match="cannot read a trace"):
        trace_link(empty)


def test_sim_link_lists_its_presets(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "link", "--list", "--json"]) == ExitCode.OK
    rows = json.loads(capsys.readouterr().out)
    assert [row["name"] for row in rows] == list(PRESET_NAMES)


def test_sim_devices_lists_the_device_profiles(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "devices", "--json"]) == ExitCode.OK
    rows = json.loads(capsys.readouterr().out)
    assert [(row["name"], row["factor"]) for row in rows] == [(p.name, p.factor) for p in PROFILES.values()]
    assert main(["sim", "devices"]) == ExitCode.OK
    assert "rpi4" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["--preset", "dialup"], "no link preset"),
        (["--rate", "5mbps"], "40mbit"),
        (["--rate", "5mbit", "--delay", "soon"], "soon"),
        (["--upstream", "http://x"], "mqtt://"),
    ],
)
def test_sim_link_refuses_bad_figures(capsys: pytest.CaptureFixture[str], argv: list[str], fragment: str) -> None:
    assert main(["sim", "link", *argv]) == ExitCode.CONFIG
    assert fragment in capsys.readouterr().err


def test_sim_link_prints_the_tc_commands_for_fixed_figures(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["sim", "link", "--rate", "5mbit", "--delay", "80ms", "--rtt", "--jitter", "5ms", "--tc", "eth0"]
    assert main(argv) == ExitCode.OK
    assert capsys.readouterr().out.splitlines()[-1] == "tc qdisc replace dev eth0 root netem delay 40ms 5ms rate 5mbit"
    assert main(["sim", "link", "--preset", "3g-bus", "--tc", "eth0"]) == ExitCode.CONFIG
    assert "netem has no trace playback" in capsys.readouterr().err


def test_sim_link_relays_until_sigterm() -> None:
    with socket.create_server(("127.0.0.1", 0)) as upstream:
        port = upstream.getsockname()[1]
        command = [sys.executable, "-m", "edgecut", "sim", "link", "--upstream", f"mqtt://u:pw@127.0.0.1:{port}?qos=0"]
        env = {key: value for key, value in os.environ.items() if key != "PYTHONUNBUFFERED"}
        with subprocess.Popen(  # noqa: S603
            [*command, "--rate", "10mbit", "--delay", "5ms", "--json"], stdout=subprocess.PIPE, env=env
        ) as link:
            try:
                assert link.stdout is not None
                ready, _, _ = select.select([link.stdout], [], [], 30)
                assert ready
                announced = json.loads(link.stdout.readline())
                assert announced["link"] == "10mbit-5ms"
                assert announced["url"].startswith("mqtt://u:pw@127.0.0.1:")
                assert announced["url"].endswith("?qos=0")
                proxy_port = int(announced["url"].split(":")[-1].split("?")[0])
                with socket.create_connection(("127.0.0.1", proxy_port), timeout=10) as client:
                    client.sendall(b"hello")
                    accepted, _ = upstream.accept()
                    with accepted:
                        assert accepted.recv(5) == b"hello"
                link.send_signal(signal.SIGTERM)
                assert link.wait(30) == ExitCode.OK
            finally:
                link.kill()

"""``edgecut agent serve`` through the real entry point: config errors, --check, and a real process under curl."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from cloud_hub import free_port
from edge_agent import EDGE_ONLY, ServiceConfig
from edgecut._cli import build_parser, main
from edgecut._cli_service import KEYS
from edgecut._exit import ExitCode

if TYPE_CHECKING:
    from collections.abc import Iterator

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "docs" / "examples" / "kserve-infer.sh"
SAMPLE = ROOT / "deploy" / "sample.png"


def test_every_config_key_is_a_flag_named_as_the_config_names_it() -> None:
    parser = build_parser()
    serve = parser._subparsers._group_actions[0].choices["agent-serve"]  # type: ignore[union-attr]
    actions = {action.dest: action for action in serve._actions}
    sources = ServiceConfig.sources()
    assert set(KEYS) == set(sources)
    for key, (flag, variable) in sources.items():
        assert actions[key].option_strings == [flag]
        assert f"env {variable}" in str(actions[key].help)


def test_a_bad_config_exits_config_naming_line_and_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "agent.toml"
    config.write_text('listen = "nowhere"\n\n[[models]]\nmodel = "tiny"\ncut = 3\n')
    assert main(["agent", "serve", "--config", str(config)]) == ExitCode.CONFIG
    err = capsys.readouterr().err
    assert "line 1: listen: the address must be HOST:PORT" in err
    assert "line 5: models[0].cut: must be a non-empty string, not 3" in err


def test_check_prints_the_config_with_flags_and_variables_applied(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "agent.toml"
    config.write_text('prefix = "file"\n[[models]]\nmodel = "tiny"\n')
    monkeypatch.setenv("EDGECUT_PREFIX", "env")
    monkeypatch.setenv("EDGECUT_WATCH_QUEUE", "3")
    assert main(["agent", "serve", "--config", str(config), "--watch-queue", "5", "--check"]) == ExitCode.OK
    printed = json.loads(capsys.readouterr().out)
    assert (printed["prefix"], printed["watch_queue"], printed["models"][0]["name"]) == ("env", 5, "tiny")


def test_the_one_shot_agent_command_still_takes_files(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["agent", "--help"])
    assert "edgecut agent serve --help" in capsys.readouterr().out.replace("\n", " ")


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.settimeout(60)
    try:
        yield sock
    finally:
        sock.close()


def _wait_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with urllib.request.urlopen(f"{url}/v2/health/ready", timeout=5) as answer:  # noqa: S310 - our own URL
                if answer.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.1)
    pytest.fail(f"the service did not get ready: {process.poll()}")


def test_a_service_process_notifies_systemd_answers_curl_and_stops_on_sigterm(notify_socket: socket.socket) -> None:
    port = free_port("127.0.0.1")
    url = f"http://127.0.0.1:{port}"
    env = os.environ | {"NOTIFY_SOCKET": notify_socket.getsockname(), "EDGECUT_LISTEN": f"127.0.0.1:{port}"}
    command = [sys.executable, "-m", "edgecut", "agent", "serve", "--model", "tiny", "--broker", "mqtt://127.0.0.1:9"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=ROOT) as process:  # noqa: S603
        try:
            assert notify_socket.recv(4096).startswith(b"STATUS=")
            assert notify_socket.recv(4096) == b"READY=1\nSTATUS=serving tiny"
            _wait_ready(url, process)
            if shutil.which("curl") is not None:  # the docs' example client, as a user runs it
                example = subprocess.run(  # noqa: S603
                    ["/bin/sh", str(EXAMPLE), "tiny", str(SAMPLE), url], capture_output=True, timeout=60, check=True
                )
                ready, metadata, answer = example.stdout.decode().splitlines()
                assert json.loads(ready) == {"ready": True}
                assert "stem.out" in json.loads(metadata)["parameters"]["cuts"]
                assert json.loads(answer)["parameters"]["cut"] == EDGE_ONLY
            process.send_signal(signal.SIGTERM)
            assert notify_socket.recv(4096) == b"STOPPING=1"
            _, err = process.communicate(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
    assert process.returncode == ExitCode.OK, err.decode()
    assert f"agent serving tiny on http://127.0.0.1:{port}" in err.decode()

"""``edgecut broker | hub | agent | demo`` through the real entry point, against a real broker."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import numpy as np
import pytest
from PIL import Image

from cloud_hub import free_port, resolve_kind
from edge_agent import RADIOS
from edge_agent._files import top_k
from edgecut._cli import main
from edgecut._demo import TOLERANCE, DemoReport, DemoRow, format_report
from edgecut._demo_report import AutoRun, EmulatedRow
from edgecut._exit import ExitCode
from protocol import Topics, decode_reply
from protocol.mqtt import ACKS_AT_ONCE
from tests._support import TINY_TAIL, tiny_logits, tiny_model, tiny_request, watching

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator
    from pathlib import Path

    from cloud_hub import Hub

MODEL = "tiny"
INNER_CUT = "stem.out"
REPORT_KEYS = {
    "input",
    "cut",
    "codec",
    "tensor_codecs",
    "top5",
    "timings_ms",
    "bytes_sent",
    "bytes_received",
    "hub",
    "request_id",
    "fallback",
    "predicted_ms",
    "predicted_j",
    "reason",
}
TIMING_KEYS = {"edge_ms", "encode_ms", "network_ms", "hub_queue_ms", "hub_compute_ms", "decode_ms", "fallback_ms"}


def _write_inputs(directory: Path) -> tuple[Path, np.ndarray, Path, np.ndarray]:
    rng = np.random.default_rng(7)
    array = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    npy = directory / "sample.npy"
    np.save(npy, array)
    picture = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    png = directory / "picture.png"
    Image.fromarray(picture).save(png)  # lossless at the input size: the agent sees exactly these pixels
    return npy, array, png, picture


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


async def _run_in_thread(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run the CLI off the event loop, so in-process hubs on this loop keep serving."""
    code = await asyncio.wait_for(asyncio.to_thread(main, list(argv)), 60)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# --- help -------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["models"],
        ["models", "list"],
        ["models", "build"],
        ["models", "cuts"],
        ["models", "split"],
        ["models", "accuracy"],
        ["models", "info"],
        ["broker"],
        ["acl"],
        ["hub"],
        ["agent"],
        ["demo"],
        ["sim"],
        ["sim", "link"],
        ["sim", "run"],
    ],
    ids=lambda argv: " ".join(argv) or "edgecut",
)
def test_every_command_has_help(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main([*argv, "--help"])
    assert caught.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: edgecut {' '.join(argv)}".rstrip())


def test_top_level_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for command in ("models", "broker", "acl", "hub", "agent", "demo", "sim"):
        assert command in out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["--version"])
    assert caught.value.code == 0
    assert capsys.readouterr().out.startswith("edgecut ")


@pytest.mark.parametrize(
    "argv", [[], ["agent"], ["hub", "--workers", "many"], ["hub", "--max-queue-bytes", "lots"], ["nonsense"]]
)
def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == ExitCode.USAGE
    assert "usage: edgecut" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [
        (["broker", "--port", "99999"], "argument --port: '99999' is not a port: 0 to 65535"),
        (["sim", "link", "--rate", "5mbit", "--port", "-1"], "argument --port: '-1' is not a port"),
        (["sim", "link", "--rate", "5mbit", "--loss", "2"], "argument --loss: '2' is not a probability"),
        (["agent", "--model", "tiny", "--timeout", "-1", "x.png"], "argument --timeout: '-1' is not above 0"),
        (["agent", "--model", "tiny", "--timeout", "nan", "x.png"], "argument --timeout: 'nan' is not a number"),
        (["agent", "--model", "tiny", "--device-watts", "-3", "x.png"], "argument --device-watts: '-3' is negative"),
        (["agent", "--model", "tiny", "--repeat", "0", "x.png"], "argument --repeat: '0' is less than 1"),
        (["models", "build", "tiny", "--out", "o", "--seed", "-1"], "argument --seed: '-1' is negative"),
        (["demo", "--requests", "0"], "argument --requests: '0' is less than 1"),
        (["broker-check", "--requests", "-3"], "argument --requests: '-3' is less than 1"),
        (["broker-check", "--timeout", "0"], "argument --timeout: '0' is not above 0"),
        (["models", "fetch", "m", "--offer-timeout", "-1"], "argument --offer-timeout: '-1' is not above 0"),
        (["models", "publish", "d", "--models", "m", "--canary", "abc"], "argument --canary: 'abc' is not a share"),
        (["models", "publish", "d", "--models", "m", "--canary", "150%"], "argument --canary: '150%' is not a share"),
        (["sim", "run", "steady", "--max-hubs", "0"], "argument --max-hubs: '0' is less than 1"),
        (["models", "cuts", "tiny", "--input-shape", "bad"], "argument --input-shape: input shape 'bad' is not NAME="),
        (["agent", "--model", "tiny", "--input-shape", "x=2y", "x.png"], "input shape 'x=2y' is not NAME="),
    ],
)
def test_values_out_of_range_are_usage_errors_naming_the_flag(
    capsys: pytest.CaptureFixture[str], argv: list[str], complaint: str
) -> None:
    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == ExitCode.USAGE
    assert complaint in capsys.readouterr().err


def test_a_path_no_layer_turned_into_an_error_exits_config_naming_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    existing = tmp_path / "a-file"
    existing.write_text("")
    code, _, err = _run(capsys, "models", "build", "tiny", "--out", str(existing))
    assert code == ExitCode.CONFIG
    assert err.startswith("edgecut: error: ")
    assert str(existing) in err
    assert "Traceback" not in err


# --- agent ------------------------------------------------------------------


@pytest.mark.broker
@pytest.mark.parametrize("cut", ["input", INNER_CUT])
async def test_agent_json_reports_match_local_inference(
    *,
    broker_url: str,
    prefix: str,
    start_hub: Callable[..., Awaitable[Hub]],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    cut: str,
) -> None:
    await start_hub()
    npy, array, png, picture = _write_inputs(tmp_path)
    argv = ["agent", str(npy), str(png), "--broker", broker_url, "--prefix", prefix, "--model", MODEL]
    loads_in_time = ["--timeout", "30"]  # the hub loads the tail on the first request
    code, out, _ = await _run_in_thread(
        capsys, *argv, *loads_in_time, "--cut", cut, "--json", "--agent-id", "cli-agent"
    )
    assert code == ExitCode.OK
    reports = json.loads(out)
    assert [report["input"] for report in reports] == [str(npy), str(png)]
    for report, image in zip(reports, [array, picture], strict=True):
        assert set(report) == REPORT_KEYS
        assert report["cut"] == cut
        assert report["hub"] == "hub0"
        assert report["fallback"] is None
        assert report["bytes_sent"] > 0
        assert isinstance(report["request_id"], str)
        assert set(report["timings_ms"]) >= TIMING_KEYS
        assert report["timings_ms"]["total_ms"] > 0
        assert report["timings_ms"]["fallback_ms"] == 0
        assert len(report["top5"]) == 5
        expected = top_k(tiny_logits(image))
        assert [row["class"] for row in report["top5"]] == [c for c, _ in expected]
        got = [row["probability"] for row in report["top5"]]
        np.testing.assert_allclose(got, [p for _, p in expected], atol=1e-4)
        assert sum(got) <= 1.0 + 1e-9


@pytest.mark.broker
async def test_agent_text_output_names_the_hub_and_the_timings(
    broker_url: str,
    prefix: str,
    start_hub: Callable[..., Awaitable[Hub]],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    await start_hub(hub_id="text-hub")
    npy, *_ = _write_inputs(tmp_path)
    argv = ["agent", str(npy), "--broker", broker_url, "--prefix", prefix, "--model", MODEL, "--cut", INNER_CUT]
    code, out, _ = await _run_in_thread(capsys, *argv, "--timeout", "30")  # the tail loads in time
    assert code == ExitCode.OK
    assert f"{npy}: cut {INNER_CUT}" in out
    assert "hub text-hub" in out
    assert "top-5" in out
    assert "total" in out


@pytest.mark.broker
async def test_agent_with_auto_says_why_and_keeps_its_head_times(
    broker_url: str,
    prefix: str,
    start_hub: Callable[..., Awaitable[Hub]],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    await start_hub()
    npy, *_ = _write_inputs(tmp_path)
    state = tmp_path / "state"
    argv = ["agent", str(npy), "--broker", broker_url, "--prefix", prefix, "--model", MODEL, "--repeat", "5"]
    code, out, _ = await _run_in_thread(capsys, *argv, "--state-dir", str(state), "--json")
    assert code == ExitCode.OK
    reports = json.loads(out)
    assert len(reports) == 5
    assert reports[0]["reason"].startswith("learning the link and the hub")
    assert reports[0]["predicted_ms"] is None
    assert all(report["predicted_ms"] > 0 for report in reports[1:])
    (saved,) = state.glob("planner-*.json")
    assert set(json.loads(saved.read_text())["heads"]) >= {"input", "pool", "output"}
    code, out, _ = await _run_in_thread(capsys, *argv, "--state-dir", str(state))
    assert code == ExitCode.OK
    assert f"{npy}: cut " in out
    assert "predicted" in out


@pytest.mark.broker
async def test_agent_with_the_energy_objective_reports_predicted_joules(
    broker_url: str,
    prefix: str,
    start_hub: Callable[..., Awaitable[Hub]],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    await start_hub()
    npy, *_ = _write_inputs(tmp_path)
    argv = ["agent", str(npy), "--broker", broker_url, "--prefix", prefix, "--model", MODEL, "--repeat", "4"]
    energy = [
        "--objective",
        "energy",
        "--device-watts",
        "3",
        "--radio",
        "lte",
        "--no-state",
        "--json",
        "--timeout",
        "30",
    ]
    code, out, _ = await _run_in_thread(capsys, *argv, *energy)
    assert code == ExitCode.OK
    reports = json.loads(out)
    # The first request is predicted only if the hub's retained status arrived before it.
    assert reports[0]["predicted_j"] is None or reports[0]["predicted_j"] > 0
    assert all(report["predicted_j"] > 0 for report in reports[1:])
    assert any("least predicted device energy" in report["reason"] for report in reports[1:])


def test_the_radio_choices_are_the_bundled_radios(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["agent", "--help"])
    assert "{wifi,lte,3g}" in capsys.readouterr().out
    assert set(RADIOS) == {"wifi", "lte", "3g"}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--objective", "bytes"], "--objective bytes needs --budget-ms"),
        (["--objective", "energy"], "--objective energy needs --device-watts"),
    ],
)
def test_agent_options_are_checked_before_anything_runs(
    capsys: pytest.CaptureFixture[str], options: list[str], message: str
) -> None:
    code = main(["agent", "x.npy", "--broker", "mqtt://127.0.0.1:1", *options])
    assert code == ExitCode.CONFIG
    assert message in capsys.readouterr().err


@pytest.mark.broker
async def test_agent_without_a_hub_falls_back_and_says_so(
    broker_url: str, prefix: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    npy, array, *_ = _write_inputs(tmp_path)
    argv = ["agent", str(npy), "--broker", broker_url, "--prefix", prefix, "--model", MODEL, "--cut", INNER_CUT]
    code, out, _ = await _run_in_thread(capsys, *argv, "--timeout", "0.3", "--json")
    assert code == ExitCode.OK
    (report,) = json.loads(out)
    assert report["hub"] is None
    assert "no reply within the deadline" in report["fallback"]
    assert report["timings_ms"]["fallback_ms"] > 0
    assert report["top5"][0]["class"] == int(tiny_logits(array).argmax())


@pytest.mark.broker
async def test_agent_timeout_without_fallback_exits_timeout(
    broker_url: str, prefix: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    npy, *_ = _write_inputs(tmp_path)
    argv = ["agent", str(npy), "--broker", broker_url, "--prefix", prefix, "--model", MODEL, "--cut", "input"]
    code, out, err = await _run_in_thread(capsys, *argv, "--timeout", "0.3", "--no-fallback", "--json")
    assert code == ExitCode.TIMEOUT
    assert out == ""
    assert err.startswith("edgecut: error:")
    assert "no reply within the deadline, and fallback is off" in err


@pytest.mark.broker
async def test_agent_refused_by_the_hub_exits_hub(
    broker_url: str,
    prefix: str,
    start_hub: Callable[..., Awaitable[Hub]],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    await start_hub(models_dir=tmp_path, use_zoo=False, hub_id="picky")  # knows no model at all
    npy, *_ = _write_inputs(tmp_path)
    argv = ["agent", str(npy), "--broker", broker_url, "--prefix", prefix, "--model", MODEL, "--cut", "input"]
    code, out, err = await _run_in_thread(capsys, *argv, "--json")
    assert code == ExitCode.HUB
    assert out == ""
    assert err.startswith("edgecut: error: picky: unknown_model:")


def test_agent_unknown_model_exits_model(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    npy, *_ = _write_inputs(tmp_path)
    broker = f"mqtt://127.0.0.1:{free_port()}"  # never contacted: the model is opened first
    code, out, err = _run(capsys, "agent", str(npy), "--model", "no-such-model", "--broker", broker)
    assert code == ExitCode.MODEL
    assert out == ""
    assert err.startswith("edgecut: error:")
    assert "no-such-model" in err


def test_agent_unknown_cut_exits_model(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    npy, *_ = _write_inputs(tmp_path)
    broker = f"mqtt://127.0.0.1:{free_port()}"
    code, _, err = _run(capsys, "agent", str(npy), "--model", MODEL, "--cut", "no.such.cut", "--broker", broker)
    assert code == ExitCode.MODEL
    assert "no.such.cut" in err


@pytest.mark.parametrize("broker", ["http://127.0.0.1:1883", "mqtt://127.0.0.1:1883?qos=2", "mqtt://:1883"])
def test_agent_bad_broker_url_exits_config(capsys: pytest.CaptureFixture[str], tmp_path: Path, broker: str) -> None:
    npy, *_ = _write_inputs(tmp_path)
    code, out, err = _run(capsys, "agent", str(npy), "--model", MODEL, "--broker", broker)
    assert code == ExitCode.CONFIG
    assert out == ""
    assert "broker URL" in err


def test_agent_unreachable_broker_exits_transport_after_the_connect_timeout(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    npy, *_ = _write_inputs(tmp_path)
    broker = f"mqtt://127.0.0.1:{free_port()}"  # nothing listens there
    argv = ["agent", str(npy), "--model", MODEL, "--cut", "input", "--broker", broker]
    code, out, err = _run(capsys, *argv, "--connect-timeout", "0.5")
    assert code == ExitCode.TRANSPORT
    assert out == ""
    assert "no connection to the broker" in err
    assert "within 0.5 s" in err
    assert "Connection refused" in err


@pytest.mark.broker
def test_agent_unreadable_input_file_exits_config_after_connecting(
    broker_url: str, prefix: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not an input")
    argv = ["agent", str(text), "--model", MODEL, "--cut", "input", "--broker", broker_url, "--prefix", prefix]
    code, out, err = _run(capsys, *argv)
    assert code == ExitCode.CONFIG
    assert out == ""
    assert "notes.txt" in err
    assert ".npy" in err


# --- hub --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "size"), [("128M", 128 * 1024**2), ("1G", 1024**3), ("500K", 500 * 1024), ("1.5MiB", 1572864), ("77", 77)]
)
def test_sizes_take_binary_units(text: str, size: int) -> None:
    from edgecut._cli_runtime import parse_size  # noqa: PLC0415

    assert parse_size(text) == size


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (["--broker", "tcp://127.0.0.1:1883"], "mqtt://"),
        (["--workers", "0"], "workers must be at least 1"),
        (["--max-queue", "0"], "max_queue must be at least 1"),
        (["--connect-timeout", "0"], "connect_timeout must be more than 0 seconds"),
        (["--max-batch", "0"], "max_batch must be at least 1"),
        (["--max-batch-size", "0"], "max_batch_size must be at least 1"),
        (["--max-batch-delay-ms", "-1"], "max_batch_delay_ms must be from 0 to 10000"),
        (["--max-queue-bytes", "0"], "max_queue_bytes must be at least 1"),
        (["--max-sessions", "0"], "max_sessions must be at least 1"),
        (["--max-sessions", "1", "--preload", "tiny:input", "--preload", "tiny:output"], "more than max_sessions (1)"),
        (["--hub-id", "a/b"], "'a/b'"),
        (["--group", "g+"], "'g+'"),
        (["--no-zoo"], "nothing to serve"),
        (["--models", "/no/such/dir"], "does not exist"),
        (["--http", "8000"], "HOST:PORT"),
        (["--max-message-bytes", "0"], "max_message_bytes must be at least 1"),
        (["--providers", "gpu"], "no execution provider is called 'gpu'"),
    ],
)
def test_hub_bad_settings_exit_config(capsys: pytest.CaptureFixture[str], extra: list[str], fragment: str) -> None:
    code, _, err = _run(capsys, "hub", *extra)
    assert code == ExitCode.CONFIG
    assert err.startswith("edgecut: error:")
    assert fragment in err


@pytest.mark.parametrize(
    ("variable", "value", "fragment"),
    [
        ("EDGECUT_MAX_BATCH_SIZE", "0", "max_batch_size must be at least 1"),
        ("EDGECUT_MAX_BATCH_DELAY_MS", "2e4", "10000"),
    ],
)
def test_hub_batching_options_read_their_env_variables(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, variable: str, value: str, fragment: str
) -> None:
    monkeypatch.setenv(variable, value)
    code, _, err = _run(capsys, "hub")
    assert code == ExitCode.CONFIG
    assert fragment in err


async def _stderr_through(process: asyncio.subprocess.Process, fragment: str) -> list[str]:
    """The lines ``process`` writes to stderr up to the first holding ``fragment`` (all of them if it exits)."""
    assert process.stderr is not None
    lines: list[str] = []
    while line := (await process.stderr.readline()).decode():
        lines.append(line.rstrip("\n"))
        if fragment in line:
            break
    return lines


@pytest.mark.broker
async def test_hub_says_it_serves_once_its_preloads_are_loaded_and_a_request_then_runs_at_once(
    broker_url: str, prefix: str
) -> None:
    topics = Topics(prefix)
    command = ["-m", "edgecut", "hub", "--broker", broker_url, "--prefix", prefix, "--hub-id", "hub-cli"]
    command += ["--preload", TINY_TAIL, "--http", "127.0.0.1:0", "-v"]
    async with watching(broker_url, topics.all_responses()) as watcher:
        process = await asyncio.create_subprocess_exec(
            sys.executable, *command, stderr=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL
        )
        try:
            lines = await asyncio.wait_for(_stderr_through(process, "(Ctrl+C to stop)"), 60)
            request = tiny_request(deadline_ms=1000.0)  # sent the moment the line is read: no time to load
            await watcher.send(topics.request(request.agent_id), request)
            reply = decode_reply((await watcher.next(30)).payload)
        finally:
            if process.returncode is None:
                process.send_signal(signal.SIGINT)
            await asyncio.wait_for(process.communicate(), 30)
    assert any("preloaded tiny at cut" in line for line in lines[:-1])  # loaded before the line, not after
    assert reply.ok, reply.error
    assert reply.request_id == request.request_id
    assert lines[0] == f"hub hub-cli loading {TINY_TAIL} before it serves"
    serving = lines[-1]
    assert serving.startswith(f"hub hub-cli serving on {broker_url} with providers ")
    assert "metrics and health on http://127.0.0.1:" in serving
    assert "http://127.0.0.1:0 " not in serving  # the port it picked, not the one asked for


# --- broker -----------------------------------------------------------------


@contextlib.contextmanager
def _broker_process(*extra: str) -> Iterator[subprocess.Popen[bytes]]:
    """``edgecut broker`` as a child process; killed at the end if still running, its pipes closed."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONUNBUFFERED"}
    command = [sys.executable, "-m", "edgecut", "broker", *extra]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env) as process:  # noqa: S603
        try:
            yield process
        finally:
            process.kill()


def _broker_json(port: int) -> dict[str, object]:
    """What ``edgecut broker --json`` prints for the broker this machine has (auto)."""
    kind = resolve_kind("auto")
    url = f"mqtt://127.0.0.1:{port}" + ("?qos=0" if kind == "iotcore" and not ACKS_AT_ONCE else "")
    return {"url": url, "kind": kind, "port": port}


def _announcement(process: subprocess.Popen[bytes]) -> bytes:
    """What the command prints once it serves, its signal handlers in place; read without waiting for exit."""
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], 30)
    assert ready, "the command announced nothing within 30 s"
    return os.read(process.stdout.fileno(), 65536)


def _stop(process: subprocess.Popen[bytes], signum: int = signal.SIGINT) -> tuple[int, bytes]:
    process.send_signal(signum)
    out, _ = process.communicate(timeout=15)
    return process.returncode, out


def _accepts_connections(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def _wait_until(port: int, *, listening: bool) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if _accepts_connections(port) == listening:
            return
        time.sleep(0.05)
    pytest.fail(f"port {port} still {'refuses' if listening else 'accepts'} connections after 15 s")


@pytest.mark.broker
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_broker_command_prints_its_url_then_stops_on_a_signal(signum: int) -> None:
    with _broker_process("--port", "0") as process:
        line = _announcement(process).decode()
        assert line.startswith(f"{resolve_kind('auto')} broker at mqtt://127.0.0.1:")
        port = urlsplit(line.split()[3]).port
        assert port is not None
        assert _accepts_connections(port)
        code, _ = _stop(process, signum)
    assert code == ExitCode.OK
    assert not _accepts_connections(port)  # the broker stopped with the command, not after it


@pytest.mark.broker
def test_broker_command_killed_with_sigkill_takes_its_broker_along() -> None:
    port = free_port()
    with _broker_process("--port", str(port)) as process:
        _announcement(process)
        assert _accepts_connections(port)
        process.kill()
        process.wait(15)
        _wait_until(port, listening=False)  # nothing orphaned keeps serving the port


@pytest.mark.broker
def test_broker_command_json_url_is_readable_while_it_runs() -> None:
    port = free_port()
    with _broker_process("--port", str(port), "--json") as process:
        early = _announcement(process)  # flushed: a script reading the pipe gets it at once
        code, rest = _stop(process)
    assert json.loads(early) == _broker_json(port)
    assert (code, rest) == (ExitCode.OK, b"")


@pytest.mark.parametrize(
    "command",
    [
        ["broker", "--kind", "mosquitto"],
        ["broker", "--kind", "iotcore"],
        ["sim", "link", "--upstream", "mqtt://127.0.0.1:1"],
    ],
    ids=["broker-mosquitto", "broker-embedded", "sim-link"],
)
def test_a_taken_port_exits_config(capsys: pytest.CaptureFixture[str], command: list[str]) -> None:
    if "mosquitto" in command and shutil.which("mosquitto") is None:
        pytest.skip("mosquitto is not installed")
    if "iotcore" in command and importlib.util.find_spec("iotcore") is None:
        pytest.skip("iotcore is not installed")
    with socket.socket() as taken:  # a local port: a setting to change, not a broker that cannot be reached
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, out, err = _run(capsys, *command, "--port", str(port))
    assert code == ExitCode.CONFIG
    assert err.startswith("edgecut: error: ")
    assert f"127.0.0.1:{port}" in err
    assert "already in use" in err.lower()
    assert out == ""


# --- demo -------------------------------------------------------------------


@pytest.mark.broker
def test_demo_against_a_given_broker(broker_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["demo", "--model", MODEL, "--requests", "2", "--emulated-requests", "1", "--json", "--broker", broker_url]
    code, out, err = _run(capsys, *argv)
    assert code == ExitCode.OK
    report: dict[str, Any] = json.loads(out)
    assert report["ok"] is True
    assert (report["model"], report["broker"], report["requests"]) == (MODEL, broker_url, 2)
    assert report["emulated_requests"] == 1
    assert report["tolerance"] == TOLERANCE
    cuts = [row["cut"] for row in report["rows"]]
    assert cuts == tiny_model().spread_cuts()
    assert len(cuts) == 5
    assert (cuts[0], cuts[-1]) == ("output", "input")
    for row in report["rows"]:
        assert row["max_abs_diff"] <= 1e-4
        assert row["fallbacks"] == 0
        assert row["total_ms"] > 0
    sent = {row["cut"]: row["bytes_sent"] for row in report["rows"]}
    assert sent["output"] == 0
    assert all(sent[cut] > 0 for cut in cuts[1:])
    assert "(its own process)" in err
    conditions = [(row["device"], row["link"]) for row in report["emulated"]]
    assert conditions == [("rpi4", "wifi"), ("rpi4", "3g-bus")]
    for condition in report["emulated"]:
        assert list(condition["total_ms"]) == [*cuts, "input@jpeg"]  # cloud-only also as a camera sends it
        assert condition["fastest"] in condition["total_ms"]
        assert condition["max_abs_diff"] <= 1e-4
        assert condition["auto"]["learning"] > 0
        assert condition["auto"]["label"].split("@")[0] in [cut.id for cut in tiny_model().cuts]
        assert condition["auto_ratio"] == pytest.approx(
            condition["auto"]["total_ms"] / condition["total_ms"][condition["fastest"]]
        )


@pytest.mark.broker
def test_demo_text_table(broker_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["demo", "--model", MODEL, "--requests", "1", "--cut", INNER_CUT, "--emulated-requests", "0"]
    code, out, _ = _run(capsys, *argv, "--broker", broker_url)
    assert code == ExitCode.OK
    lines = out.splitlines()
    assert lines[0] == f"{MODEL} over {broker_url}, median of 1 requests per cut"
    assert lines[2].startswith(INNER_CUT)
    assert lines[-1] == f"all cuts match the full model (tolerance {TOLERANCE:g})"


def _row(cut: str, diff: float, fallbacks: int = 0) -> DemoRow:
    return DemoRow(
        cut=cut,
        bytes_sent=1234,
        edge_ms=1.0,
        transfer_ms=2.0,
        hub_ms=3.0,
        total_ms=6.0,
        max_abs_diff=diff,
        fallbacks=fallbacks,
    )


def test_demo_report_flags_rows_beyond_tolerance_and_fallbacks() -> None:
    rows = [_row("good", 0.0), _row("far", 1e-3), _row("fell", 0.0, fallbacks=1)]
    report = DemoReport(model="m", broker="mqtt://b:1", requests=3, rows=rows)
    assert [row.ok for row in rows] == [True, False, False]
    assert not report.ok
    assert report.to_json()["ok"] is False
    text = format_report(report).splitlines()
    assert text[2].startswith("good")
    assert "<--" not in text[2]
    assert text[3].endswith("<-- beyond tolerance")
    assert text[4].endswith("<-- fell back")
    assert text[-1].startswith("SOME CUTS DO NOT MATCH")
    assert "1,234" in text[2]


def test_demo_report_marks_the_fastest_cut_of_each_condition() -> None:
    slow_link = EmulatedRow(device="rpi4", factor=5.4, link="3g", total_ms={"a": 90.0, "b": 400.0}, max_abs_diff=0.0)
    fast_link = EmulatedRow(device="rpi4", factor=5.4, link="wifi", total_ms={"a": 90.0, "b": 50.0}, max_abs_diff=0.0)
    report = DemoReport(
        model="m",
        broker="mqtt://b:1",
        requests=1,
        rows=[_row("a", 0.0), _row("b", 0.0)],
        emulated=[slow_link, fast_link],
        emulated_requests=5,
    )
    text = format_report(report).splitlines()
    assert "(total ms, median of 5 taken in turns; * the fastest fixed choice)" in format_report(report)
    table = text[text.index(next(line for line in text if line.startswith("the same cuts"))) + 2 :]
    assert table[0].split() == ["a", "90*", "90"]
    assert table[1].split() == ["b", "400", "50*"]
    assert report.to_json()["emulated"][1]["fastest"] == "b"  # type: ignore[index]
    far = EmulatedRow(device="d", factor=2, link="l", total_ms={"a": 1.0, "b": 2.0}, max_abs_diff=1.0)
    assert not DemoReport(model="m", broker="b", requests=1, rows=[_row("a", 0.0)], emulated=[far]).ok


def test_demo_report_shows_what_auto_chose_against_the_fastest_fixed_choice() -> None:
    auto = AutoRun(label="input@jpeg", total_ms=55.0, learning=12)
    wifi = EmulatedRow(
        device="rpi4", factor=5.4, link="wifi", total_ms={"a": 90.0, "input@jpeg": 50.0}, max_abs_diff=0.0, auto=auto
    )
    report = DemoReport(model="m", broker="mqtt://b:1", requests=1, rows=[_row("a", 0.0)], emulated=[wifi])
    text = format_report(report).splitlines()
    assert next(line for line in text if line.startswith("input@jpeg")).split() == ["input@jpeg", "50*"]
    assert next(line for line in text if line.startswith("auto ")).split() == ["auto", "55"]
    assert "rpi4 on wifi: input@jpeg, 1.10x the fastest" in format_report(report)
    assert text[-1].endswith("the JPEG is lossy and not compared")
    assert report.to_json()["emulated"][0]["auto_ratio"] == pytest.approx(1.1)  # type: ignore[index]


def test_demo_report_all_good() -> None:
    report = DemoReport(model="m", broker="mqtt://b:1", requests=1, rows=[_row("a", TOLERANCE)])
    assert report.ok
    assert format_report(report).splitlines()[-1] == f"all cuts match the full model (tolerance {TOLERANCE:g})"

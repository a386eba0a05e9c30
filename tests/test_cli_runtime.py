"""``edgecut broker | hub | agent | demo`` through the real entry point, against a real broker."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import numpy as np
import pytest
from PIL import Image

from cloud_hub import free_port, resolve_kind
from edge_agent._files import top_k
from edgecut._cli import main
from edgecut._demo import TOLERANCE, DemoReport, DemoRow, format_report, pick_cuts
from edgecut._exit import ExitCode
from tests._support import tiny_logits, tiny_model

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator

    from cloud_hub import Hub

MODEL = "tiny"
INNER_CUT = "stem.out"
REPORT_KEYS = {"input", "cut", "top5", "timings_ms", "bytes_sent", "hub", "request_id", "fallback"}
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
        ["broker"],
        ["acl"],
        ["hub"],
        ["agent"],
        ["demo"],
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
    for command in ("models", "broker", "acl", "hub", "agent", "demo"):
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
    code, out, _ = await _run_in_thread(capsys, *argv, "--cut", cut, "--json", "--agent-id", "cli-agent")
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
    code, out, _ = await _run_in_thread(capsys, *argv)
    assert code == ExitCode.OK
    assert f"{npy}: cut {INNER_CUT}" in out
    assert "hub text-hub" in out
    assert "top-5" in out
    assert "total" in out


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
    from edgecut._cli_runtime import _size  # noqa: PLC0415

    assert _size(text) == size


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (["--broker", "tcp://127.0.0.1:1883"], "mqtt://"),
        (["--workers", "0"], "workers must be at least 1"),
        (["--max-queue", "0"], "max_queue must be at least 1"),
        (["--connect-timeout", "0"], "connect_timeout must be more than 0 seconds"),
        (["--max-batch", "0"], "max_batch must be at least 1"),
        (["--max-queue-bytes", "0"], "max_queue_bytes must be at least 1"),
        (["--hub-id", "a/b"], "'a/b'"),
        (["--group", "g+"], "'g+'"),
        (["--no-zoo"], "nothing to serve"),
        (["--models", "/no/such/dir"], "does not exist"),
    ],
)
def test_hub_bad_settings_exit_config(capsys: pytest.CaptureFixture[str], extra: list[str], fragment: str) -> None:
    code, _, err = _run(capsys, "hub", *extra)
    assert code == ExitCode.CONFIG
    assert err.startswith("edgecut: error:")
    assert fragment in err


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
    url = f"mqtt://127.0.0.1:{port}" + ("?qos=0" if kind == "iotcore" else "")
    return {"url": url, "kind": kind, "port": port}


def _first_output(process: subprocess.Popen[bytes], seconds: float) -> bytes:
    """What the process has written to stdout within ``seconds``, without waiting for it to exit."""
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], seconds)
    return os.read(process.stdout.fileno(), 65536) if ready else b""


def _wait_serving(process: subprocess.Popen[bytes]) -> None:
    """Wait until the command sits in its event loop (an epoll fd exists), where a signal means "stop"."""
    fds = Path(f"/proc/{process.pid}/fd")
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and process.poll() is None:
        with contextlib.suppress(OSError):
            if any(str(fd.readlink()) == "anon_inode:[eventpoll]" for fd in fds.iterdir()):
                return
        time.sleep(0.02)
    pytest.fail("the broker command never reached its event loop")


def _stop(process: subprocess.Popen[bytes], signum: int = signal.SIGINT) -> tuple[int, bytes]:
    _wait_serving(process)
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


needs_proc = pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")


@pytest.mark.broker
@needs_proc
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_broker_command_prints_its_url_then_stops_on_a_signal(signum: int) -> None:
    with _broker_process("--port", "0") as process:
        line = _first_output(process, 15).decode()
        assert line.startswith(f"{resolve_kind('auto')} broker at mqtt://127.0.0.1:")
        port = urlsplit(line.split()[3]).port
        assert port is not None
        _wait_until(port, listening=True)
        code, _ = _stop(process, signum)
    assert code == ExitCode.OK
    assert not _accepts_connections(port)  # the broker stopped with the command, not after it


@pytest.mark.broker
@needs_proc
def test_broker_command_killed_with_sigkill_takes_its_broker_along() -> None:
    port = free_port()
    with _broker_process("--port", str(port)) as process:
        _wait_until(port, listening=True)
        _wait_serving(process)
        process.kill()
        process.wait(15)
        _wait_until(port, listening=False)  # nothing orphaned keeps serving the port


@pytest.mark.broker
@needs_proc
def test_broker_command_json_url() -> None:
    port = free_port()
    with _broker_process("--port", str(port), "--json") as process:
        _wait_until(port, listening=True)
        code, out = _stop(process)
    assert code == ExitCode.OK
    assert json.loads(out) == _broker_json(port)


@pytest.mark.broker
@needs_proc
def test_broker_command_json_url_is_readable_while_it_runs() -> None:
    port = free_port()
    with _broker_process("--port", str(port), "--json") as process:
        _wait_until(port, listening=True)
        _wait_serving(process)  # past the print: anything flushed is in the pipe by now
        early = _first_output(process, 0.5)
        _stop(process)
    assert json.loads(early) == _broker_json(port)


# --- demo -------------------------------------------------------------------


@pytest.mark.broker
def test_demo_against_a_given_broker(broker_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "demo", "--model", MODEL, "--requests", "2", "--json", "--broker", broker_url)
    assert code == ExitCode.OK
    report: dict[str, Any] = json.loads(out)
    assert report["ok"] is True
    assert (report["model"], report["broker"], report["requests"]) == (MODEL, broker_url, 2)
    assert report["tolerance"] == TOLERANCE
    cuts = [row["cut"] for row in report["rows"]]
    assert cuts == pick_cuts(tiny_model())
    assert len(cuts) == 5
    assert (cuts[0], cuts[-1]) == ("output", "input")
    for row in report["rows"]:
        assert row["max_abs_diff"] <= 1e-4
        assert row["fallbacks"] == 0
        assert row["total_ms"] > 0
    sent = {row["cut"]: row["bytes_sent"] for row in report["rows"]}
    assert sent["output"] == 0
    assert all(sent[cut] > 0 for cut in cuts[1:])
    assert "demo: hub and agent connected" in err


@pytest.mark.broker
def test_demo_text_table(broker_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "demo", "--model", MODEL, "--requests", "1", "--cut", INNER_CUT, "--broker", broker_url)
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


def test_demo_report_all_good() -> None:
    report = DemoReport(model="m", broker="mqtt://b:1", requests=1, rows=[_row("a", TOLERANCE)])
    assert report.ok
    assert format_report(report).splitlines()[-1] == f"all cuts match the full model (tolerance {TOLERANCE:g})"

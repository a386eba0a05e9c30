"""``edgecut agent serve``: the agent as a long-running device service (docs/device.md)."""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from edgecut._cli_runtime import setup_logging
from edgecut._exit import ExitCode
from edgecut._output import print_json

if TYPE_CHECKING:
    import argparse

COMMAND = "agent-serve"
"""The parser's name: ``edgecut agent serve ...`` is read as ``edgecut agent-serve ...``."""

KEYS = {
    "broker": "broker URL mqtt://[user:pass@]host:port or mqtts://... (default mqtt://127.0.0.1:1883)",
    "prefix": "topic prefix (default edgecut)",
    "agent_id": "this device's id; each model's agent is AGENT_ID-NAME on the broker (default random)",
    "state_dir": "where the planner keeps this device's head times across restarts (default: nowhere)",
    "listen": "HOST:PORT of the local API: KServe v2, /metrics, health (default 127.0.0.1:8080; port 0: a free one)",
    "max_body_bytes": "largest request body the API takes, in bytes (default 16777216); larger is answered 413",
    "watch_dir": "a directory watched for new image files; each gets its result beside it as FILE.json",
    "watch_model": "the model watched files go to (default: the first)",
    "watch_rate_hz": "most watched files taken per second (default 2)",
    "watch_queue": "watched files waiting at most; more are skipped, their result says so (default 8)",
    "camera": "frames from a camera (0), a video file or a stream URL, through OpenCV (edgecut[camera])",
    "camera_model": "the model camera frames go to (default: the first)",
    "camera_rate_hz": "most camera frames taken per second, the newest each time (default 2)",
    "camera_results": "a JSON Lines file each frame's answer is appended to (default: none)",
}
"""Each top-level config key's flag help (its variable and file key are named beside it)."""


def argv_with_serve(argv: list[str]) -> list[str]:
    """``argv`` with ``agent serve`` as this command's name (``agent FILE...`` stays the one-shot command)."""
    return [COMMAND, *argv[2:]] if argv[:2] == ["agent", "serve"] else argv


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``edgecut agent serve`` to the ``edgecut`` parser."""
    parser = commands.add_parser(
        COMMAND,
        prog="edgecut agent serve",
        help="(edgecut agent serve) run the agent as a device service: several models, a local KServe v2 HTTP API",
        description=(
            "Serve the models of a TOML config file (docs/device.md) until SIGINT/SIGTERM: over a local HTTP API"
            " (KServe v2: POST /v2/models/NAME/infer with JSON tensors or an image body), and from a watched"
            " directory or a camera. Starts without a broker (requests run on the device) and joins it when it appears."
            " Every top-level key of the file is also a flag and an EDGECUT_* variable: a flag beats a variable,"
            " which beats the file. Under systemd (Type=notify) it reports READY=1, WATCHDOG=1 and STOPPING=1."
            " Exit 4 for a bad config (every problem named with its line and field, or its variable or flag),"
            " 3 for an unknown model or cut."
        ),
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=os.environ.get("EDGECUT_CONFIG"),
        metavar="FILE",
        help="the TOML config file (deploy/agent.toml is an example); env EDGECUT_CONFIG",
    )
    for key, text in KEYS.items():  # as ServiceConfig.sources() names them (tests/test_cli_service.py)
        parser.add_argument(
            f"--{key.replace('_', '-')}", dest=key, metavar="VALUE", help=f"{text}; env EDGECUT_{key.upper()}"
        )
    parser.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="MODEL",
        help="serve this zoo name, .onnx file or split directory with default settings, instead of the file's"
        " [[models]] (repeatable)",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="check the config (it reads no model), print it as JSON with defaults filled in, and exit",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log connections, requests' fallbacks, files")
    parser.set_defaults(handler=_serve)


def _serve(args: argparse.Namespace) -> ExitCode:
    from edge_agent import ServiceConfig, load_service_config, run_service  # noqa: PLC0415 - keeps --help light

    flags = {key: getattr(args, key) for key in ServiceConfig.sources() if getattr(args, key) is not None}
    config = load_service_config(args.config, environ=os.environ, flags=flags, models=args.model)
    if args.check:
        print_json(dataclasses.asdict(config))
        return ExitCode.OK
    setup_logging(args.verbose)
    names = ", ".join(model.name for model in config.models)
    print(  # noqa: T201
        f"agent serving {names} on http://{config.listen}, broker {config.broker} (Ctrl+C to stop)",
        file=sys.stderr,
        flush=True,
    )
    run_service(config)
    return ExitCode.OK

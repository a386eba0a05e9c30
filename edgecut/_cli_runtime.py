"""``edgecut broker | hub | agent | demo``: the runtime commands."""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from edgecut._exit import ExitCode
from edgecut._output import print_json
from edgecut._wait import signalled
from protocol import codec_names
from protocol.errors import ConfigError

if TYPE_CHECKING:
    from cloud_hub import LocalBroker
    from edge_agent import InferenceResult

_BROKER_HELP = "broker URL mqtt://[user:pass@]host:port[?qos=0|1] or mqtts://...; env EDGECUT_BROKER"


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the runtime subcommands to the ``edgecut`` parser."""
    _register_broker(commands)
    _register_acl(commands)
    _register_hub(commands)
    _register_agent(commands)
    _register_demo(commands)


_SIZE_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}


def _size(text: str) -> int:
    """``128M`` (binary units K, M, G; a trailing ``B``/``iB`` allowed) as bytes."""
    number = text.strip().upper().removesuffix("B").removesuffix("I")
    unit = number[-1:] if number[-1:] in _SIZE_UNITS else ""
    try:
        value = float(number.removesuffix(unit)) * _SIZE_UNITS[unit]
    except ValueError:
        msg = f"{text!r} is not a size such as 128M, 1G or 500000"
        raise argparse.ArgumentTypeError(msg) from None
    return int(value)


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(f"EDGECUT_{name}", default)


def _default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "edgecut"


def _setup_logging(verbose: bool) -> None:  # noqa: FBT001
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


# --- broker -----------------------------------------------------------------


def _register_broker(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "broker",
        help="run a local MQTT 5 broker (mosquitto if installed, else the embedded one)",
        description=(
            "Run an MQTT 5 broker on loopback until Ctrl+C or SIGTERM. Prints the URL agents and hubs use."
            " The broker process never outlives this command."
        ),
    )
    parser.add_argument("--port", type=int, default=1883, help="TCP port (default 1883; 0 picks a free one)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--kind", choices=["auto", "mosquitto", "iotcore"], default="auto", help="which broker")
    parser.add_argument("--json", action="store_true", help="print the URL as JSON")
    parser.set_defaults(handler=_broker)


def _broker(args: argparse.Namespace) -> ExitCode:
    from cloud_hub import LocalBroker  # noqa: PLC0415

    with LocalBroker(kind=args.kind, port=args.port, host=args.host) as broker:
        asyncio.run(_announce_until_signalled(broker, as_json=args.json))
    return ExitCode.OK


async def _announce_until_signalled(broker: LocalBroker, *, as_json: bool) -> None:
    async with signalled() as stop:
        if as_json:
            print_json({"url": broker.url, "kind": broker.kind, "port": broker.port})
        else:
            print(f"{broker.kind} broker at {broker.url} (Ctrl+C to stop)", flush=True)  # noqa: T201
        await stop.wait()


# --- acl --------------------------------------------------------------------


def _register_acl(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "acl",
        help="print a mosquitto ACL that lets each agent publish only as itself",
        description=(
            "Print a mosquitto acl_file for a deployment: every client may publish only its own requests and"
            " status and read only its own replies; the named hubs read all requests and write all replies."
            " User names are agent and hub ids (docs/security.md)."
        ),
    )
    parser.add_argument(
        "--prefix", default=_env("PREFIX", "edgecut"), help="topic prefix (default edgecut); env EDGECUT_PREFIX"
    )
    parser.add_argument(
        "--hub", action="append", default=[], metavar="USER", help="a hub's user name (= hub id); repeatable"
    )
    parser.set_defaults(handler=_acl)


def _acl(args: argparse.Namespace) -> ExitCode:
    from cloud_hub import mosquitto_acl  # noqa: PLC0415

    if not args.hub:
        msg = "name at least one hub (--hub USER): without one, nothing may answer the agents"
        raise ConfigError(msg)
    try:
        print(mosquitto_acl(args.prefix, args.hub), end="")  # noqa: T201
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    return ExitCode.OK


# --- hub --------------------------------------------------------------------


def _register_hub(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "hub",
        help="serve model tails to agents over MQTT",
        description=(
            "Serve tails of split models. Runs until SIGINT/SIGTERM: the first finishes accepted requests"
            " (exit 0), a second stops at once (exit 130 for SIGINT; SIGTERM terminates)."
        ),
    )
    parser.add_argument("--broker", default=_env("BROKER", "mqtt://127.0.0.1:1883"), help=_BROKER_HELP)
    parser.add_argument(
        "--models", type=Path, default=_env("MODELS"), help="directory of splits / .onnx models; env EDGECUT_MODELS"
    )
    parser.add_argument("--no-zoo", action="store_true", help="do not serve the built-in zoo models")
    parser.add_argument(
        "--group", default=_env("GROUP", "edgecut-hubs"), help="shared-subscription group; env EDGECUT_GROUP"
    )
    parser.add_argument(
        "--hub-id", default=_env("HUB_ID"), help="this hub's id (default hub-<host>-<pid>); env EDGECUT_HUB_ID"
    )
    parser.add_argument("--prefix", default=_env("PREFIX", "edgecut"), help="topic prefix; env EDGECUT_PREFIX")
    parser.add_argument("--workers", type=int, default=1, help="requests computed at once")
    parser.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads per run")
    parser.add_argument("--max-queue", type=int, default=64, help="queued requests before 'overloaded' replies")
    parser.add_argument(
        "--max-queue-bytes",
        type=_size,
        default="128M",
        metavar="SIZE",
        help="queued request bytes before 'overloaded' replies, e.g. 128M (default), 1G, 500K",
    )
    parser.add_argument(
        "--max-queue-per-agent",
        type=int,
        default=16,
        help="queued requests of one agent before its requests get 'overloaded' (default 16)",
    )
    parser.add_argument(
        "--max-batch",
        type=int,
        default=32,
        help="largest batch one request may carry (default 32); not --max-batch-size",
    )
    parser.add_argument(
        "--max-batch-size",
        type=int,
        default=_env("MAX_BATCH_SIZE", "8"),
        help="dynamic batching: most rows (batch axis) the hub runs at once of queued requests for one tail"
        " (default 8; 1: no batching); env EDGECUT_MAX_BATCH_SIZE",
    )
    parser.add_argument(
        "--max-batch-delay-ms",
        type=float,
        default=_env("MAX_BATCH_DELAY_MS", "0"),
        help="how long a batch with room waits for more requests (default 0: take what is queued, never wait);"
        " env EDGECUT_MAX_BATCH_DELAY_MS",
    )
    parser.add_argument(
        "--max-message-bytes",
        type=_size,
        default=_env("MAX_MESSAGE_BYTES", "16M"),
        metavar="SIZE",
        help="largest request taken and reply sent, e.g. 16M (default); the broker's packet limit must be larger"
        " by 64K (docs/deploy.md); env EDGECUT_MAX_MESSAGE_BYTES",
    )
    parser.add_argument(
        "--preload-only",
        action="store_true",
        help="serve only the --preload tails (and other cuts of those models' chains); refuse loads 'load_refused'",
    )
    parser.add_argument(
        "--loads-per-agent-minute",
        type=float,
        default=20.0,
        help="new tails one agent's requests may load per minute before 'load_refused' (default 20)",
    )
    parser.add_argument(
        "--loads-per-minute", type=float, default=60.0, help="the same for all agents together (default 60)"
    )
    parser.add_argument(
        "--pings-per-agent-s", type=float, default=10.0, help="pings of one agent answered per second (default 10)"
    )
    parser.add_argument(
        "--connect-timeout", type=float, default=10.0, help="seconds to reach the broker at start-up (default 10)"
    )
    parser.add_argument(
        "--status-interval", type=float, default=5.0, help="seconds between load reports on the status topic"
    )
    parser.add_argument(
        "--preload",
        action="append",
        default=[],
        metavar="MODEL:CUT",
        help="load this tail before going online (repeatable), e.g. resnet18:layer3.1.out",
    )
    parser.add_argument(
        "--grace", type=float, default=10.0, help="seconds a shutdown waits for accepted requests (default 10)"
    )
    parser.add_argument(
        "--http",
        default=_env("HTTP"),
        metavar="HOST:PORT",
        help="serve /metrics (Prometheus), /health/live and /health/ready on HOST:PORT, e.g. 0.0.0.0:8000"
        " (off by default; port 0 picks a free one, logged with -v; needs edgecut[metrics]); env EDGECUT_HTTP",
    )
    parser.add_argument(
        "--providers",
        default=_env("PROVIDERS", "auto"),
        metavar="LIST",
        help="ONNX Runtime execution providers for the tails, in order, e.g. cuda,cpu (tensorrt, cuda, migraphx,"
        " directml, coreml, openvino, cpu); 'auto' (default): the best the installed onnxruntime has, TensorRT"
        " and CoreML only when named; one it lacks stops the hub (exit 8); env EDGECUT_PROVIDERS",
    )
    parser.add_argument(
        "--no-delivery",
        action="store_true",
        help="do not offer the segments and split directories under --models to agents (edgecut models fetch)",
    )
    parser.add_argument(
        "--block-size",
        type=_size,
        default=None,
        metavar="SIZE",
        help="bytes per delivered block (default 128K, or less to fit --max-message-bytes)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log each connection and model load")
    parser.set_defaults(handler=_hub)


def _hub(args: argparse.Namespace) -> ExitCode:
    from cloud_hub import HubConfig, run_hub  # noqa: PLC0415

    _setup_logging(args.verbose)
    options = {"hub_id": args.hub_id} if args.hub_id else {}
    config = HubConfig(
        broker=args.broker,
        models_dir=args.models,
        use_zoo=not args.no_zoo,
        group=args.group,
        prefix=args.prefix,
        workers=args.workers,
        threads=args.threads,
        max_queue=args.max_queue,
        max_queue_bytes=args.max_queue_bytes,
        max_queue_per_agent=args.max_queue_per_agent,
        max_batch=args.max_batch,
        max_message_bytes=args.max_message_bytes,
        max_batch_size=args.max_batch_size,
        max_batch_delay_ms=args.max_batch_delay_ms,
        load_on_demand=not args.preload_only,
        loads_per_agent_minute=args.loads_per_agent_minute,
        loads_per_minute=args.loads_per_minute,
        pings_per_agent_s=args.pings_per_agent_s,
        connect_timeout=args.connect_timeout,
        status_interval=args.status_interval,
        grace=args.grace,
        preload=tuple(args.preload),
        http=args.http,
        deliver_models=not args.no_delivery,
        block_size=args.block_size,
        providers=tuple(part for part in args.providers.split(",") if part.strip()),
        **options,
    )
    from models import resolve_providers, short_names  # noqa: PLC0415 - keeps onnxruntime out of `edgecut --help`

    providers = ",".join(short_names(resolve_providers(config.providers)))  # a missing one stops it here, first
    http = f", metrics and health on http://{config.http}" if config.http else ""
    print(  # noqa: T201
        f"hub {config.hub_id} serving on {config.broker} with providers {providers}{http} (Ctrl+C to stop)",
        file=sys.stderr,
        flush=True,
    )
    run_hub(config)
    return ExitCode.OK


# --- agent ------------------------------------------------------------------


def _register_agent(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "agent",
        help="run split inference on image or .npy files (edgecut agent serve: as a device service)",
        description="Run the model's head here, its tail on a hub; print top-5 and the timing breakdown."
        " To run the agent as a long-running device service instead, see `edgecut agent serve --help`"
        " (an input file named serve: give it as ./serve).",
    )
    parser.add_argument("inputs", nargs="+", type=Path, metavar="INPUT", help="PNG/JPEG image or .npy array")
    parser.add_argument("--broker", default=_env("BROKER", "mqtt://127.0.0.1:1883"), help=_BROKER_HELP)
    parser.add_argument(
        "--model", default=_env("MODEL", "resnet18"), help="zoo name, .onnx file or split dir; env EDGECUT_MODEL"
    )
    parser.add_argument(
        "--cut",
        default="auto",
        help="'auto' (default: the planner chooses each request's cut, docs/planner.md) or a cut id "
        "(edgecut models cuts MODEL)",
    )
    parser.add_argument(
        "--objective",
        choices=["latency", "bytes", "edge", "energy", "latency+energy"],
        default="latency",
        help="with --cut auto: lowest latency (default); fewest bytes sent / least device compute within "
        "--budget-ms; least device energy (within --budget-ms if given); or ms + --ms-per-joule x joules. "
        "The energy objectives need --device-watts",
    )
    parser.add_argument("--budget-ms", type=float, help="the latency budget of --objective bytes or edge (or energy)")
    parser.add_argument(
        "--device-watts",
        type=float,
        metavar="W",
        help="power this device draws above idle while running the model (measure it); with it, results "
        "carry the predicted joules (docs/planner.md)",
    )
    parser.add_argument(
        "--radio", choices=["wifi", "lte", "3g"], default="wifi", help="the radio's power model (default wifi)"
    )
    parser.add_argument(
        "--ms-per-joule",
        type=float,
        default=100.0,
        help="what a joule is worth in ms, for --objective latency+energy (default 100)",
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=Path(_env("STATE_DIR") or _default_state_dir()),
        help="where --cut auto keeps this device's head times across runs (default $EDGECUT_STATE_DIR, "
        "else $XDG_STATE_HOME/edgecut or ~/.local/state/edgecut)",
    )
    parser.add_argument("--no-state", action="store_true", help="keep no head times across runs")
    parser.add_argument(
        "--fetch",
        action="store_true",
        help="get --model from a hub that offers it (edgecut models fetch) into STATE_DIR/models, unless there",
    )
    parser.add_argument(
        "--codec",
        action="append",
        choices=codec_names(),
        metavar="CODEC",
        help="how requests encode tensors (default raw; lossy: fp16, int8, int8-channel, jpeg; lossless: png, "
        "zstd, lz4; X+zstd, X+lz4; docs/protocol.md 3.2.1); repeat it to let --cut auto choose among them",
    )
    parser.add_argument(
        "--input-shape",
        action="append",
        default=[],
        metavar="NAME=D1xD2x...",
        help="for a model with dynamic sizes: the shape of an input as it will be sent, e.g. "
        "images=1x3x640x640 (repeatable; what cut bytes are counted and the warm-up runs at)",
    )
    parser.add_argument(
        "--repeat", type=int, default=1, metavar="N", help="run each input N times (watch the planner learn)"
    )
    parser.add_argument(
        "--agent-id", default=_env("AGENT_ID"), help="this agent's id (default random); env EDGECUT_AGENT_ID"
    )
    parser.add_argument("--prefix", default=_env("PREFIX", "edgecut"), help="topic prefix; env EDGECUT_PREFIX")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for a reply (default 5)")
    parser.add_argument(
        "--connect-timeout", type=float, default=10.0, help="seconds to reach the broker at start (default 10)"
    )
    parser.add_argument("--no-fallback", action="store_true", help="fail instead of running the tail here")
    parser.add_argument(
        "--http",
        default=_env("HTTP"),
        metavar="HOST:PORT",
        help="while it runs, serve /metrics (Prometheus), /health/live and /health/ready on HOST:PORT"
        " (off by default; port 0 picks a free one, logged with -v; needs edgecut[metrics]); env EDGECUT_HTTP",
    )
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    parser.add_argument("-v", "--verbose", action="store_true", help="log connections and fallbacks")
    parser.set_defaults(handler=_agent)


def _agent(args: argparse.Namespace) -> ExitCode:
    from edge_agent import RADIOS, EnergyModel, SyncEdgeAgent, Timeouts, load_input  # noqa: PLC0415
    from models import parse_input_shape  # noqa: PLC0415

    _setup_logging(args.verbose)
    if args.objective in {"bytes", "edge"} and args.budget_ms is None:
        msg = f"--objective {args.objective} needs --budget-ms"
        raise ConfigError(msg)
    if args.objective in {"energy", "latency+energy"} and args.device_watts is None:
        msg = f"--objective {args.objective} needs --device-watts"
        raise ConfigError(msg)
    if args.repeat < 1:
        msg = f"--repeat must be at least 1, not {args.repeat}"
        raise ConfigError(msg)
    reports = []
    model = args.model
    if args.fetch:
        from edge_agent import fetch_model  # noqa: PLC0415

        model = asyncio.run(
            fetch_model(
                args.broker, args.model, cache=args.state_dir / "models", prefix=args.prefix, agent_id=args.agent_id
            )
        )
    with SyncEdgeAgent(
        args.broker,
        model=model,
        cut=args.cut,
        agent_id=args.agent_id,
        prefix=args.prefix,
        timeouts=Timeouts(connect=args.connect_timeout, request=args.timeout),
        fallback=not args.no_fallback,
        objective=args.objective,
        budget_ms=args.budget_ms,
        energy=None
        if args.device_watts is None
        else EnergyModel(args.device_watts, RADIOS[args.radio], ms_per_joule=args.ms_per_joule),
        state_dir=None if args.no_state else args.state_dir,
        codec=args.codec or ["raw"],
        input_shapes=dict(parse_input_shape(text) for text in args.input_shape) or None,
        http=args.http,
    ) as agent:
        spec = agent.inputs[0]
        for path in args.inputs:
            array = load_input(path, spec)
            for _ in range(args.repeat):
                result = agent.infer(array)
                reports.append(_result_json(path, result))
                if not args.json:
                    print(_format_result(path, result))  # noqa: T201
    if args.json:
        print_json(reports)
    return ExitCode.OK


def _result_json(path: Path, result: InferenceResult) -> dict[str, object]:
    from dataclasses import asdict  # noqa: PLC0415

    from edge_agent import top_k  # noqa: PLC0415

    logits = next(iter(result.outputs.values()))
    return {
        "input": str(path),
        "cut": result.cut_id,
        "codec": result.codec,
        "tensor_codecs": result.tensor_codecs,
        "top5": [{"class": c, "probability": p} for c, p in top_k(logits)],
        "timings_ms": asdict(result.timings),
        "bytes_sent": result.bytes_sent,
        "hub": result.hub_id,
        "request_id": result.request_id,
        "fallback": result.fallback,
        "predicted_ms": None if math.isnan(result.predicted_ms) else result.predicted_ms,
        "predicted_j": None if math.isnan(result.predicted_j) else result.predicted_j,
        "reason": result.reason,
    }


def _format_result(path: Path, result: InferenceResult) -> str:
    report = _result_json(path, result)
    t = result.timings
    top = "  ".join(f"{c['class']}:{c['probability']:.3f}" for c in report["top5"])  # type: ignore[attr-defined]
    from models import EDGE_ONLY  # noqa: PLC0415 - keeps onnxruntime out of `edgecut --help`

    if result.cut_id == EDGE_ONLY:
        where = "all on this device"
    elif result.fallback:
        where = f"fell back to the local tail ({result.fallback})"
    else:
        where = f"hub {result.hub_id}"
    predicted = "" if math.isnan(result.predicted_ms) else f", predicted {result.predicted_ms:.1f} ms"
    if not math.isnan(result.predicted_j):
        predicted += f" and {result.predicted_j:.3g} J"
    return (
        f"{path}: cut {result.cut_id} ({result.reason}{predicted}), {result.bytes_sent:,} bytes sent"
        f"{'' if result.codec == 'raw' else ' as ' + result.codec}, {where}\n"
        f"  top-5 {top}\n"
        f"  ms: edge {t.edge_ms:.1f}  encode {t.encode_ms:.1f}  network {t.network_ms:.1f}  "
        f"hub queue {t.hub_queue_ms:.1f}  hub {t.hub_compute_ms:.1f}  decode {t.decode_ms:.1f}  "
        f"local tail {t.fallback_ms:.1f}  total {t.total_ms:.1f}"
    )


# --- demo -------------------------------------------------------------------


def _register_demo(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "demo",
        help="broker + hub + agent: one model at several cuts, checked against the full model",
        description=(
            "Start a local broker (unless --broker) and a hub process, run requests at edge-only, cloud-only "
            "and three cuts between, then the same cuts as a Raspberry-Pi-class device over emulated Wi-Fi "
            "and 3G links, with cloud-only also sending a JPEG and cut=auto choosing among them all; print the "
            "tables, and exit 1 if any result sent raw differs from the full model."
        ),
    )
    parser.add_argument("--broker", default=None, help="use this broker instead of starting one")
    parser.add_argument("--model", default="resnet18", help="zoo name or .onnx file (default resnet18)")
    parser.add_argument("--requests", type=int, default=8, help="measured requests per cut (default 8)")
    parser.add_argument("--cut", action="append", dest="cuts", help="a cut to run (repeatable)")
    parser.add_argument(
        "--emulated-requests",
        type=int,
        default=3,
        help="measured requests per cut, and auto's, per emulated condition (0: none; default 3)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(handler=_demo)


def _demo(args: argparse.Namespace) -> ExitCode:
    from edgecut._demo import format_report, run_demo  # noqa: PLC0415

    _setup_logging(verbose=False)
    report = asyncio.run(
        run_demo(
            broker=args.broker,
            model=args.model,
            requests=args.requests,
            cuts=args.cuts,
            emulated_requests=args.emulated_requests,
        )
    )
    if args.json:
        print_json(report.to_json())
    else:
        print(format_report(report))  # noqa: T201
    return ExitCode.OK if report.ok else ExitCode.FAILED

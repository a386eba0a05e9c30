"""``edgecut broker | hub | agent | demo``: the runtime commands."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from edgecut._cli_values import at_least_one, count, port
from edgecut._demo_report import EMULATED_REQUESTS
from edgecut._exit import ExitCode
from edgecut._output import print_json
from edgecut._wait import signalled
from protocol.errors import ConfigError

if TYPE_CHECKING:
    from cloud_hub import Hub, LocalBroker

BROKER_HELP = "broker URL mqtt://[user:pass@]host:port[?qos=0|1] or mqtts://...; env EDGECUT_BROKER"


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the runtime subcommands to the ``edgecut`` parser."""
    _register_broker(commands)
    _register_acl(commands)
    _register_hub(commands)
    _register_demo(commands)


_SIZE_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}


def parse_size(text: str) -> int:
    """``128M`` (binary units K, M, G; a trailing ``B``/``iB`` allowed) as bytes."""
    number = text.strip().upper().removesuffix("B").removesuffix("I")
    unit = number[-1:] if number[-1:] in _SIZE_UNITS else ""
    try:
        value = float(number.removesuffix(unit)) * _SIZE_UNITS[unit]
    except ValueError:
        msg = f"{text!r} is not a size such as 128M, 1G or 500000"
        raise argparse.ArgumentTypeError(msg) from None
    return int(value)


def env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(f"EDGECUT_{name}", default)


def default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "edgecut"


def setup_logging(verbose: bool) -> None:  # noqa: FBT001
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
    parser.add_argument("--port", type=port, default=1883, help="TCP port (default 1883; 0 picks a free one)")
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
        "--prefix", default=env("PREFIX", "edgecut"), help="topic prefix (default edgecut); env EDGECUT_PREFIX"
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
    parser.add_argument("--broker", default=env("BROKER", "mqtt://127.0.0.1:1883"), help=BROKER_HELP)
    parser.add_argument(
        "--models", type=Path, default=env("MODELS"), help="directory of splits / .onnx models; env EDGECUT_MODELS"
    )
    parser.add_argument("--no-zoo", action="store_true", help="do not serve the built-in zoo models")
    parser.add_argument(
        "--group", default=env("GROUP", "edgecut-hubs"), help="shared-subscription group; env EDGECUT_GROUP"
    )
    parser.add_argument(
        "--hub-id", default=env("HUB_ID"), help="this hub's id (default hub-<host>-<pid>); env EDGECUT_HUB_ID"
    )
    parser.add_argument("--prefix", default=env("PREFIX", "edgecut"), help="topic prefix; env EDGECUT_PREFIX")
    parser.add_argument("--workers", type=int, default=1, help="requests computed at once")
    parser.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads per run")
    parser.add_argument("--max-queue", type=int, default=64, help="queued requests before 'overloaded' replies")
    parser.add_argument(
        "--max-sessions",
        type=int,
        default=8,
        help="tails kept loaded, the least recently used unloaded first (default 8); at least the --preload count",
    )
    parser.add_argument(
        "--max-queue-bytes",
        type=parse_size,
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
        default=env("MAX_BATCH_SIZE", "8"),
        help="dynamic batching: most rows (batch axis) the hub runs at once of queued requests for one tail"
        " (default 8; 1: no batching); env EDGECUT_MAX_BATCH_SIZE",
    )
    parser.add_argument(
        "--max-batch-delay-ms",
        type=float,
        default=env("MAX_BATCH_DELAY_MS", "0"),
        help="how long a batch with room waits for more requests (default 0: take what is queued, never wait);"
        " env EDGECUT_MAX_BATCH_DELAY_MS",
    )
    parser.add_argument(
        "--max-message-bytes",
        type=parse_size,
        default=env("MAX_MESSAGE_BYTES", "16M"),
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
        default=env("HTTP"),
        metavar="HOST:PORT",
        help="serve /metrics (Prometheus), /health/live and /health/ready on HOST:PORT, e.g. 0.0.0.0:8000"
        " (off by default; port 0 picks a free one, logged with -v; needs edgecut[metrics]); env EDGECUT_HTTP",
    )
    parser.add_argument(
        "--providers",
        default=env("PROVIDERS", "auto"),
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
        type=parse_size,
        default=None,
        metavar="SIZE",
        help="bytes per delivered block (default 128K, or less to fit --max-message-bytes)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log each connection and model load")
    parser.set_defaults(handler=_hub)


def _hub(args: argparse.Namespace) -> ExitCode:
    from cloud_hub import HubConfig, run_hub  # noqa: PLC0415

    setup_logging(args.verbose)
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
        max_sessions=args.max_sessions,
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
    from models import resolve_providers  # noqa: PLC0415 - keeps onnxruntime out of `edgecut --help`

    resolve_providers(config.providers)  # a missing one stops it here, first
    if config.preload:
        _say(f"hub {config.hub_id} loading {', '.join(config.preload)} before it serves")
    run_hub(config, on_ready=_announce_serving)
    return ExitCode.OK


def _announce_serving(hub: Hub) -> None:
    """The line a script waits for: the hub takes requests now, its preloaded tails loaded.

    It names the providers the preloaded tails' sessions got (ONNX Runtime
    may have fallen back from one asked for), else those sessions will ask for.
    """
    from models import short_names  # noqa: PLC0415 - keeps onnxruntime out of `edgecut --help`

    got = [name for _, providers in hub.store.loaded_providers().values() for name in providers]
    providers = ",".join(short_names(dict.fromkeys(got) or hub.store.providers))
    address = hub.http.address if hub.http is not None else None
    http = f", metrics and health on http://{address[0]}:{address[1]}" if address is not None else ""
    _say(f"hub {hub.config.hub_id} serving on {hub.config.broker} with providers {providers}{http} (Ctrl+C to stop)")


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)  # noqa: T201


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
    parser.add_argument("--requests", type=at_least_one, default=8, help="measured requests per cut (default 8)")
    parser.add_argument("--cut", action="append", dest="cuts", help="a cut to run (repeatable)")
    parser.add_argument(
        "--emulated-requests",
        type=count,
        default=EMULATED_REQUESTS,
        help=f"measured requests per cut, and auto's, per emulated condition (0: none; default {EMULATED_REQUESTS})",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(handler=_demo)


def _demo(args: argparse.Namespace) -> ExitCode:
    from edgecut._demo import format_report, run_demo  # noqa: PLC0415

    setup_logging(verbose=False)
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

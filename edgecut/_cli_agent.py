"""``edgecut agent``: split inference on image or ``.npy`` files, one request after another."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path
from typing import TYPE_CHECKING

from edgecut._cli_runtime import BROKER_HELP, default_state_dir, env, setup_logging
from edgecut._cli_values import at_least_one, input_shape, non_negative, positive
from edgecut._exit import ExitCode
from edgecut._output import print_json
from protocol import codec_names
from protocol.errors import ConfigError

if TYPE_CHECKING:
    import argparse

    from edge_agent import InferenceResult


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``agent``."""
    _register_agent(commands)


def _register_agent(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "agent",
        help="run split inference on image or .npy files (edgecut agent serve: as a device service)",
        description="Run the model's head here, its tail on a hub; print top-5 and the timing breakdown."
        " To run the agent as a long-running device service instead, see `edgecut agent serve --help`"
        " (an input file named serve: give it as ./serve).",
    )
    parser.add_argument("inputs", nargs="+", type=Path, metavar="INPUT", help="PNG/JPEG image or .npy array")
    parser.add_argument("--broker", default=env("BROKER", "mqtt://127.0.0.1:1883"), help=BROKER_HELP)
    parser.add_argument(
        "--model", default=env("MODEL", "resnet18"), help="zoo name, .onnx file or split dir; env EDGECUT_MODEL"
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
    parser.add_argument(
        "--budget-ms", type=positive, help="the latency budget of --objective bytes or edge (or energy)"
    )
    parser.add_argument(
        "--device-watts",
        type=non_negative,
        metavar="W",
        help="power this device draws above idle while running the model (measure it); with it, results "
        "carry the predicted joules (docs/planner.md)",
    )
    parser.add_argument(
        "--radio", choices=["wifi", "lte", "3g"], default="wifi", help="the radio's power model (default wifi)"
    )
    parser.add_argument(
        "--ms-per-joule",
        type=non_negative,
        default=100.0,
        help="what a joule is worth in ms, for --objective latency+energy (default 100)",
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=Path(env("STATE_DIR") or default_state_dir()),
        help="where --cut auto keeps this device's head times across runs, so that the next run skips the warm-up "
        "(default $EDGECUT_STATE_DIR, else $XDG_STATE_HOME/edgecut or ~/.local/state/edgecut)",
    )
    parser.add_argument("--no-state", action="store_true", help="keep no head times across runs: warm up every run")
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
        type=input_shape,
        default=[],
        metavar="NAME=D1xD2x...",
        help="for a model with dynamic sizes: the shape of an input as it will be sent, e.g. "
        "images=1x3x640x640 (repeatable; what cut bytes are counted and the warm-up runs at)",
    )
    parser.add_argument(
        "--repeat", type=at_least_one, default=1, metavar="N", help="run each input N times (watch the planner learn)"
    )
    parser.add_argument(
        "--agent-id", default=env("AGENT_ID"), help="this agent's id (default random); env EDGECUT_AGENT_ID"
    )
    parser.add_argument("--prefix", default=env("PREFIX", "edgecut"), help="topic prefix; env EDGECUT_PREFIX")
    parser.add_argument("--timeout", type=positive, default=5.0, help="seconds to wait for a reply (default 5)")
    parser.add_argument(
        "--connect-timeout", type=positive, default=10.0, help="seconds to reach the broker at start (default 10)"
    )
    parser.add_argument("--no-fallback", action="store_true", help="fail instead of running the tail here")
    parser.add_argument(
        "--http",
        default=env("HTTP"),
        metavar="HOST:PORT",
        help="while it runs, serve /metrics (Prometheus), /health/live and /health/ready on HOST:PORT"
        " (off by default; port 0 picks a free one, logged with -v; needs edgecut[metrics]); env EDGECUT_HTTP",
    )
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    parser.add_argument("-v", "--verbose", action="store_true", help="log connections and fallbacks")
    parser.set_defaults(handler=_agent)


def _agent(args: argparse.Namespace) -> ExitCode:
    from edge_agent import RADIOS, EnergyModel, SyncEdgeAgent, Timeouts, load_input  # noqa: PLC0415

    setup_logging(args.verbose)
    if args.objective in {"bytes", "edge"} and args.budget_ms is None:
        msg = f"--objective {args.objective} needs --budget-ms"
        raise ConfigError(msg)
    if args.objective in {"energy", "latency+energy"} and args.device_watts is None:
        msg = f"--objective {args.objective} needs --device-watts"
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
        input_shapes=dict(args.input_shape) or None,
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
        "bytes_received": result.bytes_received,
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

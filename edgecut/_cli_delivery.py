"""``edgecut models fetch``, ``serve`` and ``publish``: model delivery over MQTT (docs/protocol.md, section 9).

``fetch`` gets a model's segments or split directory from a node that
offers it into the agent's cache, showing progress on stderr; ``serve`` is
such a node on its own, without a hub; ``publish`` puts a version under a
node's models directory (to a share of the agents first, with ``--canary``).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from edgecut._cli_runtime import BROKER_HELP, default_state_dir, env, parse_size, setup_logging
from edgecut._cli_text import human, leaf
from edgecut._cli_values import positive
from edgecut._exit import ExitCode
from edgecut._output import print_json
from edgecut._wait import signalled
from protocol.errors import ConfigError

if TYPE_CHECKING:
    from cloud_hub import ModelDelivery
    from edge_agent import FetchProgress


def add_delivery(actions: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``fetch`` and ``serve`` to the ``models`` subcommands."""
    fetch = leaf(actions, "fetch", _fetch, "fetch a model from a hub or registry that offers it, into the cache")
    fetch.add_argument("name", metavar="NAME", help="the model's name, as offered")
    fetch.add_argument("--broker", default=env("BROKER", "mqtt://127.0.0.1:1883"), help=BROKER_HELP)
    fetch.add_argument("--version", help="the version wanted (default: the newest offered)")
    fetch.add_argument(
        "--cache",
        type=Path,
        default=Path(env("STATE_DIR") or default_state_dir()) / "models",
        help="the cache directory (default $EDGECUT_STATE_DIR/models, else ~/.local/state/edgecut/models)",
    )
    fetch.add_argument("--cache-size", type=parse_size, default="2G", help="the cache's bound, e.g. 500M (default 2G)")
    fetch.add_argument(
        "--agent-id", default=env("AGENT_ID"), help="this agent's id (default random); env EDGECUT_AGENT_ID"
    )
    fetch.add_argument("--prefix", default=env("PREFIX", "edgecut"), help="topic prefix; env EDGECUT_PREFIX")
    fetch.add_argument("--offer-timeout", type=positive, default=10.0, help="seconds to wait for an offer (default 10)")
    fetch.add_argument(
        "--json", action="store_true", help="print a JSON object: the directory, version, bytes, seconds"
    )
    fetch.add_argument("-v", "--verbose", action="store_true", help="log progress details")

    serve = leaf(actions, "serve", _serve, "offer the segments and split directories under a directory to agents")
    serve.add_argument("--models", type=Path, required=True, metavar="DIR", help="searched recursively")
    serve.add_argument("--broker", default=env("BROKER", "mqtt://127.0.0.1:1883"), help=BROKER_HELP)
    serve.add_argument("--node-id", help="this registry's id (default models-<host>-<pid>)")
    serve.add_argument("--prefix", default=env("PREFIX", "edgecut"), help="topic prefix; env EDGECUT_PREFIX")
    serve.add_argument("--block-size", type=parse_size, default="128K", help="bytes per block (1K to 1M; default 128K)")
    serve.add_argument("--json", action="store_true", help="print one JSON line with the offers once online")
    serve.add_argument("-v", "--verbose", action="store_true", help="log every model offered")

    publish = leaf(
        actions, "publish", _publish, "put a version under a node's models directory: the agents that follow it switch"
    )
    publish.add_argument("source", type=Path, metavar="DIR", help="a segments or split directory (models split)")
    publish.add_argument("--models", type=Path, required=True, metavar="DIR", help="the node's models directory")
    publish.add_argument(
        "--canary",
        type=_share,
        metavar="SHARE",
        help="a staged roll-out: the share of agents that take it, e.g. 10%% or 0.1; 100%% (the default) for all",
    )
    publish.add_argument("--json", action="store_true", help="print a JSON object: model, version, path, canary")


def _fetch(args: argparse.Namespace) -> ExitCode:
    from edge_agent import FetchSettings, ModelCache, fetch_model  # noqa: PLC0415 - keeps `edgecut --help` light
    from protocol import check_delivery_name  # noqa: PLC0415

    setup_logging(args.verbose)
    try:
        for value, what in ((args.name, "NAME"), (args.version, "--version")):
            if value is not None:
                check_delivery_name(value, what)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    started = time.perf_counter()
    shown = _Progress()
    cache = ModelCache(args.cache, args.cache_size)
    path = asyncio.run(
        fetch_model(
            args.broker,
            args.name,
            cache=cache,
            version=args.version,
            prefix=args.prefix,
            agent_id=args.agent_id,
            settings=FetchSettings(offer_s=args.offer_timeout),
            on_progress=shown.show,
        )
    )
    shown.end()
    elapsed = time.perf_counter() - started
    if args.json:
        print_json(
            {
                "model": args.name,
                "version": path.name,
                "path": str(path),
                "bytes": offered.size if (offered := cache.offered(args.name, path.name)) else None,
                "fetched_bytes": shown.fetched,
                "seconds": round(elapsed, 3),
            }
        )
    else:
        print(path)  # noqa: T201 - the command's output
    return ExitCode.OK


def _share(text: str) -> float | None:
    """``10%`` or ``0.1`` as a share of agents; ``100%`` (or 1) is every agent: ``None``."""
    try:
        share = float(text.removesuffix("%")) / (100 if text.endswith("%") else 1)
    except ValueError:
        share = math.nan
    if not 0 < share <= 1:  # NaN fails it too
        msg = f"{text!r} is not a share of agents: above 0, at most 100% (or 1), such as 10% or 0.1"
        raise argparse.ArgumentTypeError(msg)
    return None if share == 1 else share


def _publish(args: argparse.Namespace) -> ExitCode:
    from cloud_hub import publish_version  # noqa: PLC0415 - keeps `edgecut --help` light

    model, version, path = publish_version(args.source, args.models, canary=args.canary)
    if args.json:
        print_json({"model": model, "version": version, "path": str(path), "canary": args.canary})
    else:
        share = f"{args.canary:.0%} of the agents" if args.canary is not None else "every agent"
        print(f"published {model} {version} to {share}: {path}")  # noqa: T201 - the command's output
    return ExitCode.OK


class _Progress:
    """Progress on stderr, at most a few times a second."""

    def __init__(self) -> None:
        self.fetched = 0
        self._shown_at = 0.0
        self._line = False

    def show(self, progress: FetchProgress) -> None:
        self.fetched = progress.received_bytes - progress.resumed_bytes
        now = time.monotonic()
        if now - self._shown_at < 0.2 and progress.received_bytes < progress.total_bytes:  # noqa: PLR2004
            return
        self._shown_at = now
        share = progress.received_bytes / progress.total_bytes if progress.total_bytes else 1.0
        print(  # noqa: T201 - progress goes to stderr
            f"\r{progress.model} {progress.version} from {progress.node_id}: "
            f"{human(progress.received_bytes)} of {human(progress.total_bytes)} ({share:.0%})",
            end="",
            file=sys.stderr,
            flush=True,
        )
        self._line = True

    def end(self) -> None:
        if self._line:
            print(file=sys.stderr)  # noqa: T201


def _serve(args: argparse.Namespace) -> ExitCode:
    from cloud_hub import ModelDelivery, default_hub_id  # noqa: PLC0415 - keeps `edgecut --help` light

    setup_logging(args.verbose)
    if not args.models.is_dir():
        msg = f"models directory {args.models} does not exist (or is no directory)"
        raise ConfigError(msg)
    delivery = ModelDelivery(
        args.broker,
        node_id=args.node_id or default_hub_id().replace("hub-", "models-", 1),
        models_dir=args.models,
        prefix=args.prefix,
        block_size=args.block_size,
    )
    asyncio.run(_serve_forever(delivery, as_json=args.json))
    return ExitCode.OK


async def _serve_forever(delivery: ModelDelivery, *, as_json: bool) -> None:
    """Offer the models until SIGINT or SIGTERM, also where the shell that started it ignores SIGINT (``cmd &``)."""
    async with delivery, signalled() as stop:
        await delivery.connection.wait_connected(10.0)
        offers = {model: [v.version for v in offer.versions] for model, offer in delivery.catalog.offers.items()}
        if as_json:
            print_json({"node": delivery.node_id, "offers": offers}, indent=None)
        else:
            print(f"{delivery.node_id} offering {offers or 'nothing'} (Ctrl+C to stop)", file=sys.stderr)  # noqa: T201
        await stop.wait()

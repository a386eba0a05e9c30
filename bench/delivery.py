"""Model delivery over an emulated link: how close does a fetch come to the link's own arithmetic?

A model's segments directory (``edgecut models split MODEL --cuts auto``) is
offered by a :class:`cloud_hub.ModelDelivery` node on a local mosquitto; an
agent fetches it into an empty cache through ``simulations.LinkProxy``
shaped to ``--rate-mbit`` each way with ``--delay-ms`` one way. The figure
is the fetch's elapsed time (connect, offer, every block, every file's
sha256 check, the move into the cache) against the version's bytes divided
by the rate. Target: within 1.2x.

    python bench/delivery.py [--model mobilenet_v2] [--rate-mbit 5] [--delay-ms 20] [--block-kib 128] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

from cloud_hub import LocalBroker, ModelDelivery
from edge_agent import FetchProgress, ModelCache, fetch_model
from models import partition
from simulations import DirectionSpec, LinkProxy, LinkSpec

TARGET = 1.2


def build_segments(model_name: str, out: Path) -> Path:
    """The model's segments directory at its candidate cuts, as ``edgecut models split --cuts auto`` writes it."""
    model_id, model = partition.load_model(model_name)
    cuts = partition.candidate_cuts(partition.enumerate_cuts(model))
    partition.save_segments(partition.split_segments(model, cuts, model_id=model_id), out)
    return out


async def measure(args: argparse.Namespace, models_dir: Path, cache_dir: Path) -> dict[str, object]:
    """Fetch the model once through the shaped link; the figures."""
    direction = DirectionSpec(rate_bit_s=args.rate_mbit * 1e6, delay_s=args.delay_ms / 1000)
    link = LinkSpec(name="bench", up=direction, down=direction)
    with LocalBroker(kind="mosquitto") as broker:
        host, port = broker.url.removeprefix("mqtt://").split(":")
        node = ModelDelivery(
            broker.url, node_id="bench-node", models_dir=models_dir, prefix="bench", block_size=args.block_kib * 1024
        )
        async with node, LinkProxy(link, upstream=(host, int(port.split("?")[0]))) as proxy:
            await node.connection.wait_connected(10)
            (offer,) = node.catalog.offers.values()
            total = offer.versions[0].size
            blocks = 0

            def count(_: FetchProgress) -> None:
                nonlocal blocks
                blocks += 1

            started = time.perf_counter()
            path = await fetch_model(
                proxy.url_for(broker.url), offer.model, cache=ModelCache(cache_dir), prefix="bench", on_progress=count
            )
            elapsed = time.perf_counter() - started
    ideal = total * 8 / (args.rate_mbit * 1e6)
    return {
        "model": args.model,
        "bytes": total,
        "blocks": blocks,
        "block_kib": args.block_kib,
        "rate_mbit": args.rate_mbit,
        "delay_ms": args.delay_ms,
        "elapsed_s": round(elapsed, 2),
        "bytes_over_bandwidth_s": round(ideal, 2),
        "ratio": round(elapsed / ideal, 3),
        "target": TARGET,
        "path": str(path),
    }


def main() -> int:
    """Run the benchmark; exit 1 when the ratio misses the target."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="mobilenet_v2", help="zoo model (default mobilenet_v2; resnet18: ~45 MB)")
    parser.add_argument("--rate-mbit", type=float, default=5.0, help="link rate each way, Mbit/s (default 5)")
    parser.add_argument("--delay-ms", type=float, default=20.0, help="one-way delay, ms (default 20)")
    parser.add_argument("--block-kib", type=int, default=128, help="block size, KiB (default 128)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="edgecut-delivery-") as scratch:
        models_dir = Path(scratch) / "models"
        build_segments(args.model, models_dir / args.model)
        result = asyncio.run(measure(args, models_dir, Path(scratch) / "cache"))
    command = "python bench/delivery.py " + " ".join(sys.argv[1:])
    if args.json:
        print(json.dumps({"command": command, **result}, indent=2))
    else:
        print(
            f"{command}\n{result['model']}: {result['bytes']:,} bytes in {result['blocks']} blocks of "
            f"{args.block_kib} KiB over {args.rate_mbit:g} Mbit/s, {args.delay_ms:g} ms one way: "
            f"{result['elapsed_s']} s, bytes/bandwidth {result['bytes_over_bandwidth_s']} s, "
            f"ratio {result['ratio']} (target <= {TARGET})"
        )
    return 0 if float(str(result["ratio"])) <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())

"""What auto costs where the device is best, and what a request's neighbour costs it: paired slots, one agent.

One agent (``--model``, default mobilenet_v2) runs as an emulated device
(``--device``, default a Pi 4: stretched sessions) behind an emulated link
(``--link``), against a hub in its own process, where running everything on
the device is the best choice. Each slot first sends cloud-only's JPEG, then
fixed edge-only and auto back to back, in alternating order, so both
policies come right after the JPEG request equally often. Printed: the
mean of each policy (the cut auto ran), and the mean by position in the
slot whatever the policy: what running right after the JPEG request costs
(``bench/planner.py`` orders its slots so that every policy pays it alike).

    python bench/neighbours.py [--model mobilenet_v2] [--device rpi4] [--link lte-drive] [--slots 30] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections import Counter, defaultdict
from typing import Any
from urllib.parse import urlsplit

from planner import DEVICES, IMAGE_SHAPE, LINKS, PREFIX, hub_process, link_spec  # bench/planner.py

from cloud_hub import LocalBroker, wait_online
from edge_agent import CLOUD_ONLY, EDGE_ONLY, EdgeAgent, Timeouts
from models import camera_images
from simulations import LinkProxy, stretched_sessions

AUTO = "auto"
WARM_UP = 10


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """The slots' requests: total ms by policy and by position after the JPEG request, and auto's cuts."""
    by_policy: dict[str, list[float]] = defaultdict(list)
    by_position: dict[int, list[float]] = defaultdict(list)
    auto_cuts: Counter[str] = Counter()
    with LocalBroker() as broker, hub_process(broker.url, [args.model]) as hub:
        await wait_online(broker.url, PREFIX, [hub.hub_id], 300)
        upstream = urlsplit(broker.url)
        async with LinkProxy(link_spec(args.link), upstream=(upstream.hostname or "", upstream.port or 0)) as proxy:
            agent = EdgeAgent(
                broker.url.replace(f":{upstream.port}", f":{proxy.port}"),
                model=args.model,
                prefix=PREFIX,
                threads=1,
                session_factory=stretched_sessions(DEVICES[args.device]),
                timeouts=Timeouts(request=30.0, retry=None),
                codec=["raw", "jpeg", "int8+zstd"],
            )
            image = next(camera_images(1, IMAGE_SHAPE, seed=0))
            async with agent:
                for _ in range(WARM_UP):  # auto learns the link and the hub, and settles
                    await agent.infer(image)
                started = time.perf_counter()
                for index in range(args.slots):
                    await asyncio.sleep(max(0.0, started + index * args.period - time.perf_counter()))
                    await agent.infer(image, cut=CLOUD_ONLY, codec="jpeg")
                    order = (EDGE_ONLY, AUTO) if index % 2 else (AUTO, EDGE_ONLY)
                    for position, policy in enumerate(order, start=1):
                        result = await agent.infer(image, cut=None if policy == AUTO else policy)
                        by_policy[policy].append(result.timings.total_ms)
                        by_position[position].append(result.timings.total_ms)
                        if policy == AUTO:
                            auto_cuts[result.cut_id] += 1
    return {
        "mean_ms": {policy: statistics.mean(values) for policy, values in by_policy.items()},
        "mean_ms_by_position": {position: statistics.mean(values) for position, values in by_position.items()},
        "auto_cuts": dict(auto_cuts),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="mobilenet_v2", help="zoo model (default mobilenet_v2)")
    parser.add_argument("--device", choices=list(DEVICES), default="rpi4", help="emulated device (default rpi4)")
    parser.add_argument("--link", choices=LINKS, default="lte-drive", help="emulated link (default lte-drive)")
    parser.add_argument("--slots", type=int, default=30, help="slots (default 30)")
    parser.add_argument("--period", type=float, default=0.6, help="seconds between slots (default 0.6)")
    parser.add_argument("--json", type=argparse.FileType("w"), help="also write the figures as JSON here")
    args = parser.parse_args()
    print(
        f"$ python bench/neighbours.py --model {args.model} --device {args.device} --link {args.link}"
        f" --slots {args.slots} --period {args.period:g}"
    )
    report = asyncio.run(run(args))
    means, positions = report["mean_ms"], report["mean_ms_by_position"]
    cuts = ", ".join(f"{cut} {count}" for cut, count in report["auto_cuts"].items())
    ratio = means[AUTO] / means[EDGE_ONLY]
    print(f"edge-only {means[EDGE_ONLY]:.1f} ms, auto {means[AUTO]:.1f} ms ({cuts}): {ratio:.3f}x")
    print(
        f"right after the JPEG request {positions[1]:.1f} ms, one later {positions[2]:.1f} ms:"
        f" {positions[1] / positions[2]:.3f}x"
    )
    if args.json:
        json.dump(report, args.json, indent=2)


if __name__ == "__main__":
    main()

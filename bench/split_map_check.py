"""Real runs at a few cells of ``bench/split_map.py``'s latency map: its best fixed choice and auto, measured.

Each cell runs for real: an agent whose sessions are stretched to the cell's
slowdown (``simulations.stretched_sessions``), behind an emulated link of the
cell's rate and round trip (``simulations.LinkProxy``), against a hub in its
own process (one ONNX Runtime thread). The map's best fixed choice warms up,
auto makes ``AUTO_LEARNING`` requests to learn, then the two agents take turns,
``MEASURED`` requests each, more where those take under ``MEASURED_S``: a
stretched device multiplies the host's drift (its CPU time per run moved by
a third within a minute on a shared host), and in turns both meet the same.
Printed: predicted against measured medians, and auto against the fixed
choice as measured: by medians, and by means (what a stream of requests
pays, and what the planner predicts). On a host whose runs of the same work
fall in two clusters (40 and 60 ms, from one request to the next), the
median of each agent's requests sits in one cluster or the other by a few
requests' luck: two agents running the same fused session differed by
1.14x in medians over 110 turns.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cloud_hub import HubProcess, LocalBroker, wait_online
from edge_agent import EdgeAgent, Timeouts
from protocol.mqtt import BrokerURL
from simulations import LinkProxy, fixed_link, stretched_sessions

if TYPE_CHECKING:
    from collections.abc import Callable

    import numpy as np

    from edge_agent import ModelHalves

PREFIX = "bench-split-map"
MEASURED, AUTO_LEARNING, WARM_UP = 21, 12, 2
MEASURED_S, MOST_MEASURED = 10.0, 1000
"""Turns go on past ``MEASURED`` until this long (at most ``MOST_MEASURED`` each): a cell of 12 ms requests
measured in 21 turns (half a second) moved 0.71-1.35x between runs on a shared host, auto on the device as the
fixed agent."""
MAX_SLOWDOWN, MIN_RATE = 10, 2  # cells whose requests take seconds are left to the arithmetic


def pick_cells(cells: dict[tuple[float, float], Any], count: int) -> list[tuple[float, float]]:
    """``count`` cells, a different best choice first where the map has several, quick ones only."""
    quick = [key for key in cells if key[0] <= MAX_SLOWDOWN and key[1] >= MIN_RATE]
    picked: list[tuple[float, float]] = []
    for key in quick:  # one cell per best choice...
        if cells[key].best not in {cells[other].best for other in picked}:
            picked.append(key)
    picked += [key for key in quick[:: max(1, len(quick) // count)] if key not in picked]  # ...then spread out
    return picked[:count]


def check_cells(
    model: str,
    *,
    codecs: list[str],
    cells: dict[tuple[float, float], Any],
    rtt_ms: float,
    count: int,
    sample: Callable[[ModelHalves], dict[str, np.ndarray]],
) -> list[dict[str, Any]]:
    """Run ``count`` cells of the latency map for real and print predicted against measured."""
    options = ["--threads", "1"]
    if Path(model).is_file():
        options += ["--models", str(Path(model).parent)]
    return asyncio.run(
        _check(model, codecs=codecs, cells=cells, rtt_ms=rtt_ms, count=count, sample=sample, hub_options=options)
    )


async def _check(
    model: str,
    *,
    codecs: list[str],
    cells: dict[tuple[float, float], Any],
    rtt_ms: float,
    count: int,
    sample: Callable[[ModelHalves], dict[str, np.ndarray]],
    hub_options: list[str],
) -> list[dict[str, Any]]:
    rows = []
    print(
        f"\nreal runs (in turns, {MEASURED} requests each or more for {MEASURED_S:g} s, medians; "
        f"auto after {AUTO_LEARNING} to learn):\n"
        f"{'cell':>18} {'best fixed choice':<26} {'predicted':>9} {'measured':>9} {'ratio':>6} "
        f"{'auto':>9} {'auto/fixed':>10} {'by means':>8}  auto used"
    )
    with LocalBroker() as broker:
        await asyncio.to_thread(broker.start)
        hub_id = f"map-hub-{uuid.uuid4().hex[:6]}"
        with HubProcess(broker.url, prefix=PREFIX, hub_id=hub_id, options=hub_options, quiet=True):
            await wait_online(broker.url, PREFIX, [hub_id], 120.0)
            for slowdown, rate in pick_cells(cells, count):
                outcome = cells[(slowdown, rate)]
                row = await _cell(
                    broker.url,
                    model=model,
                    codecs=codecs,
                    slowdown=slowdown,
                    rate=rate,
                    rtt_ms=rtt_ms,
                    outcome=outcome,
                    sample=sample,
                )
                rows.append(row)
                print(
                    f"{f'x{slowdown:g}, {rate:g} Mbit/s':>18} {outcome.best:<26} {outcome.best_value:>9.1f} "
                    f"{row['fixed_ms']:>9.1f} {row['fixed_ms'] / outcome.best_value:>6.2f} {row['auto_ms']:>9.1f} "
                    f"{row['auto_ms'] / row['fixed_ms']:>10.2f} {row['auto_mean_ms'] / row['fixed_mean_ms']:>8.2f}"
                    f"  {row['auto_used']} ({row['turns']} turns)"
                )
    return rows


async def _cell(
    broker: str,
    *,
    model: str,
    codecs: list[str],
    slowdown: float,
    rate: float,
    rtt_ms: float,
    outcome: Any,  # noqa: ANN401 - split_map.Outcome
    sample: Callable[[ModelHalves], dict[str, np.ndarray]],
) -> dict[str, Any]:
    url = BrokerURL.parse(broker)
    cut, _, codec = outcome.best.partition("@")
    link = fixed_link(rate_bit_s=rate * 1e6, delay_s=rtt_ms / 2000)
    async with LinkProxy(link, upstream=(url.host, url.port)) as proxy:
        through = f"mqtt://127.0.0.1:{proxy.port}?qos={url.qos}"
        options: dict[str, Any] = {
            "model": model,
            "prefix": PREFIX,
            "threads": 1,
            "timeouts": Timeouts(request=60.0),
            "session_factory": stretched_sessions(slowdown),
        }
        async with (
            EdgeAgent(through, cut=cut, codec=codec or "raw", **options) as fixed,
            EdgeAgent(through, codec=codecs, **options) as auto,
        ):
            feeds = sample(fixed.model)
            for _ in range(WARM_UP):
                await fixed.infer(feeds)
            for _ in range(AUTO_LEARNING):
                await auto.infer(feeds)
            fixed_ms, results = [], []
            until = time.monotonic() + MEASURED_S
            while len(results) < MEASURED or (time.monotonic() < until and len(results) < MOST_MEASURED):
                fixed_ms.append((await fixed.infer(feeds)).timings.total_ms)  # in turns: the host's drift on both
                results.append(await auto.infer(feeds))
    auto_ms = [r.timings.total_ms for r in results]
    used = statistics.mode(r.cut_id if r.codec == "raw" else f"{r.cut_id}@{r.codec}" for r in results)
    return {
        "slowdown": slowdown,
        "rate_mbit_s": rate,
        "best": outcome.best,
        "predicted_ms": outcome.best_value,
        "fixed_ms": statistics.median(fixed_ms),
        "auto_ms": statistics.median(auto_ms),
        "fixed_mean_ms": statistics.fmean(fixed_ms),
        "auto_mean_ms": statistics.fmean(auto_ms),
        "auto_used": used,
        "turns": len(results),
    }

"""Soak: many requests from several agents through two hub replicas while hubs die, stall and the broker restarts.

Fallback is off unless ``--fallback``, so every request must be answered by a
hub. The harness runs a real broker (mosquitto when installed), two ``edgecut
hub`` processes and several in-process agents sending at a steady rate, and
repeats a cycle of faults until every request is settled. ``--faults all``
(the default):

- a hub is killed with SIGKILL, and restarted 3 s later;
- the broker is stopped and restarted 2 s later (on the same port);
- the other hub is stopped with SIGSTOP for 3 s, then continued.

``--faults broker``: only the broker, stopped for 1 s every 5 s. With
``--fallback`` every fallback is needless then (a hub is always back within
the deadline), and the report counts them.

It counts requests sent, answered (and checked against the model run
locally), failed (by error), hung (no outcome 10 s past the deadline),
answered twice (an agent returned two results: impossible by construction,
counted anyway) and run twice (an observer on every reply topic saw two
different successful replies for one request: the tail ran on two replicas).

    python bench/soak.py [--requests 1200] [--agents 4] [--rate 4] [--deadline 5] [--broker auto|mosquitto|iotcore]
                         [--faults all|broker] [--fallback] [--max-seconds 600] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import dataclasses
import json
import logging
import os
import sys
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cloud_hub import HubProcess, LocalBroker, wait_online
from edge_agent import EDGE_ONLY, EdgeAgent, HubError, InvalidReplyError, ModelHalves, RequestTimeoutError, Timeouts
from protocol import Topics, decode_reply
from protocol.mqtt import Connection

if TYPE_CHECKING:
    from protocol.mqtt import Incoming

MODEL, CUT = "tiny", "stem.out"
HUBS = ("hub-a", "hub-b")
LOGS = f"/tmp/edgecut-soak-{os.getpid()}"  # noqa: S108 - the agents' and hubs' logs, for a person to read


@dataclasses.dataclass
class Tally:
    """What happened to the requests."""

    sent: int = 0
    answered: int = 0
    fell_back: int = 0
    wrong: int = 0
    hung: int = 0
    failed: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    by_hub: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    results: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    faults: list[str] = dataclasses.field(default_factory=list)


def fault_cycle(kind: str, broker: LocalBroker, hubs: dict[str, HubProcess]) -> list[tuple[float, str, object]]:
    """The faults of one cycle: (seconds before it, what, action)."""
    if kind == "broker":
        return [(4, "stop the broker", broker.stop), (1, "start the broker", broker.start)]
    return [
        (4, "SIGKILL hub-a", hubs["hub-a"].kill),
        (3, "restart hub-a", hubs["hub-a"].start),
        (6, "stop the broker", broker.stop),
        (2, "start the broker", broker.start),
        (6, "SIGSTOP hub-b", hubs["hub-b"].pause),
        (3, "SIGCONT hub-b", hubs["hub-b"].resume),
    ]


async def faults(cycle: list[tuple[float, str, object]], tally: Tally, stop: asyncio.Event) -> None:
    """Repeat the fault cycle until ``stop``; every step bounded in time."""
    started = time.monotonic()

    async def step(delay: float, what: str, action: object) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)
            return False
        tally.faults.append(f"{time.monotonic() - started:6.1f} s  {what}")
        await asyncio.to_thread(action)  # type: ignore[arg-type]
        return True

    while not stop.is_set():
        for delay, what, action in cycle:
            if not await step(delay, what, action):
                return


class Observer:
    """Counts the distinct successful replies to each request id, on every reply topic."""

    def __init__(self) -> None:
        self.replies: dict[str, set[bytes]] = collections.defaultdict(set)

    def __call__(self, incoming: Incoming) -> None:
        with contextlib.suppress(Exception):
            if decode_reply(incoming.payload).ok:
                self.replies[(incoming.correlation or b"").decode()].add(incoming.payload)

    def run_twice(self) -> int:
        return sum(len(payloads) > 1 for payloads in self.replies.values())


async def agent_loop(agent: EdgeAgent, count: int, rate: float, deadline: float, tally: Tally) -> None:
    rng = np.random.default_rng(abs(hash(agent.agent_id)) % 2**32)
    full = ModelHalves.open(MODEL, threads=1).halves(EDGE_ONLY).head
    assert full is not None  # noqa: S101 - the zoo model has a head at 'output'
    for _ in range(count):
        await asyncio.sleep(rng.exponential(1 / rate))
        image = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
        tally.sent += 1
        try:
            result = await asyncio.wait_for(agent.infer(image), deadline + 10)
        except TimeoutError:
            tally.hung += 1
            continue
        except (HubError, InvalidReplyError, RequestTimeoutError) as exc:
            tally.failed[f"{type(exc).__name__}: {getattr(exc, 'code', '')}".rstrip(": ")] += 1
            logging.getLogger("edgecut.soak").error("%s failed: %s", agent.agent_id, exc)  # noqa: TRY400 - expected
            continue
        tally.answered += 1
        if result.fallback is not None:
            tally.fell_back += 1
            logging.getLogger("edgecut.soak").warning("%s fell back: %s", agent.agent_id, result.fallback)
        tally.results[result.request_id or ""] += 1
        tally.by_hub[result.hub_id or "?"] += 1
        expected = full.run({"image": image[np.newaxis]})["logits"]
        tally.wrong += not np.allclose(result.outputs["logits"], expected, atol=1e-4)


async def soak(args: argparse.Namespace) -> tuple[Tally, Observer, float]:
    prefix = f"soak/{uuid.uuid4().hex[:8]}"
    topics = Topics(prefix)
    tally, observer = Tally(), Observer()
    options = ["--threads", "1", "--preload", f"{MODEL}:{CUT}", "--status-interval", "1", "-v"]
    with LocalBroker(kind=args.broker) as broker, contextlib.ExitStack() as running:
        hubs = {
            hub_id: running.enter_context(
                HubProcess(broker.url, prefix=prefix, hub_id=hub_id, options=options, log=Path(LOGS) / f"{hub_id}.log")
            )
            for hub_id in HUBS
        }
        replies = [(topics.all_responses(), 1)]
        watch = Connection(broker.url, client_id="observer", subscriptions=replies, on_message=observer)
        timeouts = Timeouts(request=args.deadline, retry=2.0)
        agents = [
            EdgeAgent(
                broker.url, model=MODEL, cut=CUT, prefix=prefix, fallback=args.fallback, threads=1, timeouts=timeouts
            )
            for _ in range(args.agents)
        ]
        async with watch, contextlib.AsyncExitStack() as stack:
            await watch.wait_connected(10)
            for agent in agents:
                await stack.enter_async_context(agent)
            await wait_online(broker.url, prefix, HUBS, 120)
            stop = asyncio.Event()
            fault_task = asyncio.create_task(faults(fault_cycle(args.faults, broker, hubs), tally, stop))
            started = time.monotonic()
            per_agent = -(-args.requests // args.agents)
            loops = [agent_loop(agent, per_agent, args.rate, args.deadline, tally) for agent in agents]
            await asyncio.wait_for(asyncio.gather(*loops), args.max_seconds)
            elapsed = time.monotonic() - started
            stop.set()
            await fault_task
            await asyncio.sleep(3)  # late replies, for the observer
    return tally, observer, elapsed


def report(tally: Tally, observer: Observer, elapsed: float, args: argparse.Namespace) -> dict[str, object]:
    lost = tally.sent - tally.answered
    restarts = sum(line.endswith("start the broker") for line in tally.faults)
    return {
        "command": "python bench/soak.py " + " ".join(sys.argv[1:]),
        "requests": tally.sent,
        "agents": args.agents,
        "broker": args.broker,
        "seconds": round(elapsed, 1),
        "answered": tally.answered,
        "fell_back": tally.fell_back,
        "broker_restarts": restarts,
        "wrong": tally.wrong,
        "lost": lost,
        "failed": dict(tally.failed),
        "hung": tally.hung,
        "answered_twice": sum(count > 1 for count in tally.results.values()),
        "run_twice": observer.run_twice(),
        "by_hub": dict(tally.by_hub),
        "faults": len(tally.faults),
        "fault_log": tally.faults,
        "logs": LOGS,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1200, help="requests in all (default 1200)")
    parser.add_argument("--agents", type=int, default=4, help="agents (default 4)")
    parser.add_argument("--rate", type=float, default=4.0, help="requests per second per agent (default 4)")
    parser.add_argument("--deadline", type=float, default=5.0, help="request deadline in seconds (default 5)")
    parser.add_argument("--max-seconds", type=float, default=600, help="give up after this long (default 600)")
    parser.add_argument("--broker", choices=["auto", "mosquitto", "iotcore"], default="auto", help="local broker kind")
    parser.add_argument(
        "--faults", choices=["all", "broker"], default="all", help="the fault cycle: all (default), or broker restarts"
    )
    parser.add_argument("--fallback", action="store_true", help="let agents run the tail when no hub answers in time")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args()
    os.makedirs(LOGS, exist_ok=True)  # noqa: PTH103
    logging.basicConfig(
        filename=f"{LOGS}/agents.log", level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    logging.getLogger("mqtt").setLevel(logging.CRITICAL)  # aiomqtt reports every broker restart
    tally, observer, elapsed = asyncio.run(soak(args))
    result = report(tally, observer, elapsed, args)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"$ {result['command']}")
    for key in ("requests", "agents", "broker", "seconds", "answered", "wrong", "lost", "failed", "hung"):
        print(f"{key:<16} {result[key]}")
    print(f"{'fell back':<16} {result['fell_back']}")
    print(f"{'broker restarts':<16} {result['broker_restarts']}")
    print(f"{'answered twice':<16} {result['answered_twice']}")
    print(f"{'run twice':<16} {result['run_twice']}")
    print(f"{'by hub':<16} {result['by_hub']}")
    print(f"{'logs':<16} {result['logs']}")
    print(f"{'faults':<16} {result['faults']}:")
    for line in tally.faults:
        print(f"    {line}")


if __name__ == "__main__":
    main()

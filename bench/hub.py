"""Hub throughput: requests/s and p50/p99 of cloud-only agents against plain ONNX Runtime's batched ceiling.

One model (resnet18 from the zoo; the hub runs the whole model, cut
``input``), one number of ONNX Runtime threads (``--threads``, default all
CPUs), three things measured:

1. **Plain ONNX Runtime**, in a child process of its own, with the hub's
   session settings (``models.Session``, the same threads, spinning off):
   images/s at batches 1, 2, 4, 8 and 16, each run back to back; the best
   batch is the ceiling.
2. **Two hubs** (``edgecut hub --preload resnet18:input`` child processes on
   a local mosquitto with TCP_NODELAY): dynamic batching off
   (``--max-batch-size 1``) and on (the defaults, ``--max-batch-size 8``,
   ``--max-batch-delay-ms 0``). Closed-loop cloud-only agents (1, 4, 8, 16),
   each its own MQTT 5 connection in this process, send one image, wait for
   the reply and send the next. The rate is taken over a window in which
   every agent is already running (after a 1 s warm-up); p50/p99 are of the
   requests answered in it.
3. For each agent count, plain ONNX Runtime at its best batch, measured **in
   turn** with the two hubs' windows (the order rotating each round), so that
   the machine's busier and quieter moments fall on all three alike; the
   ratio is the hub's rate over that.

Each hub row also says where the time went, from the replies' own timings:
the mean batch size requests ran in; ``busy``, the fraction of the window the
hub's tail ran (its runs' compute times over the window); the tail
milliseconds per request (a run's time shared by its requests; compare plain
ONNX Runtime's ms per image); and the CPU the hub, the broker, the agents
and the machine's other processes used (in cores, from /proc). Roughly
``ratio = busy x (ORT's ms per image / the hub's tail ms per request)``: the
first factor is what the hub's work between runs costs, the second what
sharing the machine costs its tail.

    python bench/hub.py [--quick] [--threads N] [--agents 1,4,8,16] [--seconds 4] [--rounds 2] [--json]

The default takes about three minutes; ``--quick`` (1, 8 and 16 agents, one
round of 2 s windows) about one.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import numpy as np

from cloud_hub import HubProcess, LocalBroker, wait_online
from models import Session, partition, sha256_hex
from protocol import InferenceRequest, Topics, decode_reply, encode_request
from protocol.mqtt import Connection

if TYPE_CHECKING:
    from protocol.mqtt import Incoming

MODEL, CUT = "resnet18", "input"
ORT_BATCHES = (1, 2, 4, 8, 16)
MODES = {"off": ["--max-batch-size", "1"], "on": []}
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
WARM_UP_S = 1.0
"""Each window starts this long after its agents: every agent has sent and been answered."""


@dataclass
class Answer:
    """One request's round trip and what its reply said."""

    sent: float
    answered: float
    batch_size: int
    compute_ms: float


# --- plain ONNX Runtime -------------------------------------------------------


def ort_child(threads: int) -> None:
    """Plain ORT in this (child) process: for each ``BATCH SECONDS`` line read, run and print one JSON row."""
    _, model = partition.load_model(MODEL)
    tail = partition.split(model, CUT, model_id=MODEL).tail
    if tail is None:
        msg = f"{MODEL} has a tail at {CUT!r}"
        raise SystemExit(msg)
    session = Session(tail.SerializeToString(), threads=threads, release_memory=True)
    rng = np.random.default_rng(0)
    feeds = {batch: {"image": rng.integers(0, 256, (batch, 224, 224, 3), dtype=np.uint8)} for batch in ORT_BATCHES}
    for batch in ORT_BATCHES:
        session.run(feeds[batch])
    print("{}", flush=True)
    for line in sys.stdin:
        batch, seconds = int(line.split()[0]), float(line.split()[1])
        session.run(feeds[batch])
        runs, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            session.run(feeds[batch])
            runs += 1
        elapsed = time.perf_counter() - started
        row = {"batch": batch, "images_s": runs * batch / elapsed, "ms_per_run": elapsed / runs * 1000}
        print(json.dumps(row), flush=True)


class PlainOrt:
    """Plain ORT in a child process, measured on request: it has the machine to itself (the hubs are idle then)."""

    def __init__(self, threads: int) -> None:
        command = [sys.executable, __file__, "--ort-child", "--threads", str(threads)]
        self._process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # noqa: S603
        self.pid = self._process.pid
        self._read()  # loaded and warmed up

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self._process.__exit__(None, None, None)  # closes stdin, which ends it, and waits

    def measure(self, batch: int, seconds: float) -> dict[str, float]:
        """Images/s and ms per run at ``batch``, run back to back for ``seconds``."""
        if self._process.stdin is None:  # asked for
            msg = "the child has no stdin"
            raise RuntimeError(msg)
        self._process.stdin.write(f"{batch} {seconds}\n")
        self._process.stdin.flush()
        return self._read()

    def _read(self) -> dict[str, float]:
        if self._process.stdout is None:  # asked for
            msg = "the child has no stdout"
            raise RuntimeError(msg)
        row: dict[str, float] = json.loads(self._process.stdout.readline())
        return row


# --- the hub and its agents ---------------------------------------------------


class Agent:
    """A closed-loop cloud-only agent: one image out, its reply back, the next out."""

    def __init__(self, url: str, topics: Topics, name: str, sha: str, image: np.ndarray) -> None:
        self._topics, self._name, self._sha, self._image = topics, name, sha, image
        self._reply: asyncio.Future[Incoming] | None = None
        self.answers: list[Answer] = []
        self.connection = Connection(
            url, client_id=name, subscriptions=[(topics.response(name), 1)], on_message=self._on_reply
        )

    def _on_reply(self, incoming: Incoming) -> None:
        if self._reply is not None and not self._reply.done():
            self._reply.set_result(incoming)

    async def run(self, stop: asyncio.Event) -> None:
        """Send requests one after the other until ``stop``."""
        while not stop.is_set():
            request = InferenceRequest(
                request_id=uuid.uuid4().hex,
                agent_id=self._name,
                model_id=MODEL,
                model_sha256=self._sha,
                cut_id=CUT,
                tensors={"image": self._image},
                sent_at=time.time(),
                deadline_ms=60_000.0,
            )
            self._reply = asyncio.get_running_loop().create_future()
            sent = time.perf_counter()
            await self.connection.publish(self._topics.request(self._name), encode_request(request), qos=1, timeout=60)
            reply = decode_reply((await asyncio.wait_for(self._reply, 60)).payload)
            if reply.error is not None:
                msg = f"{self._name}: {reply.error.code}: {reply.error.message}"
                raise RuntimeError(msg)
            self.answers.append(Answer(sent, time.perf_counter(), reply.batch_size or 1, reply.compute_ms))


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def broker_pid(port: int) -> int | None:
    """The mosquitto process listening on ``port``, found by its configuration."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            config = Path(argv[2].decode()) if argv[0].endswith(b"mosquitto") and len(argv) > 2 else None  # noqa: PLR2004 - mosquitto -c CONF
            if config is not None and f"listener {port} " in config.read_text():
                return int(entry.name)
    return None


def machine_busy_s() -> float:
    """CPU seconds all processes of the machine have used (every core's busy time, from /proc/stat)."""
    ticks = [int(field) for field in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = ticks[3] + ticks[4]  # idle, iowait
    return (sum(ticks[:8]) - idle) / CLOCK_TICKS


@dataclass
class Tally:
    """What one (agents, batching) cell gathered over its windows."""

    seconds: float = 0.0
    answers: list[Answer] = field(default_factory=list)
    cpu_s: collections.Counter[str] = field(default_factory=collections.Counter)


@dataclass(frozen=True)
class Setup:
    """What every window shares: the broker, the window's length and the model's hash."""

    url: str
    seconds: float
    sha: str


async def window(setup: Setup, prefix: str, count: int, pids: dict[str, int], tally: Tally) -> None:
    """``count`` agents against one hub; what is answered in a window in which all of them run goes to ``tally``."""
    topics = Topics(prefix)
    rng = np.random.default_rng(count)
    agents = [
        Agent(setup.url, topics, f"agent{i:02d}", setup.sha, rng.integers(0, 256, (1, 224, 224, 3), dtype=np.uint8))
        for i in range(count)
    ]
    stop = asyncio.Event()
    async with contextlib.AsyncExitStack() as stack:
        for agent in agents:
            await stack.enter_async_context(agent.connection)
            await agent.connection.wait_connected(10)
        running = [asyncio.create_task(agent.run(stop)) for agent in agents]
        await asyncio.sleep(WARM_UP_S)  # every agent has sent and been answered
        before = {name: cpu_s(pid) for name, pid in pids.items()}
        machine, start = machine_busy_s(), time.perf_counter()
        await asyncio.sleep(setup.seconds)
        end = time.perf_counter()
        used = {name: cpu_s(pid) - before[name] for name, pid in pids.items()}
        used["other"] = machine_busy_s() - machine - sum(used.values())
        stop.set()
        await asyncio.gather(*running)
    tally.seconds += end - start
    tally.cpu_s.update(used)
    tally.answers += [a for agent in agents for a in agent.answers if start <= a.answered <= end]


def summary(count: int, mode: str, tally: Tally, ort_images_s: float) -> dict[str, Any]:
    """One table row: the rate, its ratio to plain ORT measured in the same turns, latencies, where time went."""
    answers = tally.answers
    latencies = sorted((a.answered - a.sent) * 1000 for a in answers)
    busy_ms = sum(a.compute_ms / a.batch_size for a in answers)  # a run of n one-image requests: counted once
    rate = len(answers) / tally.seconds
    return {
        "mode": mode,
        "agents": count,
        "requests": len(answers),
        "requests_s": rate,
        "ort_images_s": ort_images_s,
        "ratio": rate / ort_images_s,
        "p50_ms": _percentile(latencies, 50),
        "p99_ms": _percentile(latencies, 99),
        "mean_batch": statistics.fmean(a.batch_size for a in answers) if answers else 0.0,
        "busy": busy_ms / 1000 / tally.seconds,
        "tail_ms_per_request": busy_ms / len(answers) if answers else 0.0,
        "cpu_cores": {name: used / tally.seconds for name, used in tally.cpu_s.items()},
    }


def _percentile(sorted_values: list[float], percent: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, round(percent / 100 * (len(sorted_values) - 1)))
    return sorted_values[index]


def _rotated(items: list[str], turn: int) -> list[str]:
    shift = turn % len(items)
    return items[shift:] + items[:shift]


async def run(threads: int, agents: list[int], seconds: float, rounds: int) -> tuple[list[Any], int, list[Any]]:
    """Plain ORT's sweep of batches, then each agent count in turns: plain ORT at its best batch, each hub."""
    sha = sha256_hex(partition.load_model(MODEL)[1].SerializeToString())
    rows: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        broker = stack.enter_context(LocalBroker(kind="mosquitto"))
        setup = Setup(url=broker.url, seconds=seconds, sha=sha)
        hubs = {}
        for mode, options in MODES.items():
            command = ["--threads", str(threads), "--preload", f"{MODEL}:{CUT}", "--max-queue", "256", *options]
            prefix = f"bench/{mode}"
            hub = stack.enter_context(HubProcess(setup.url, prefix=prefix, hub_id=mode, options=command, quiet=True))
            hubs[mode] = (prefix, hub)
        ort = stack.enter_context(PlainOrt(threads))
        await wait_online(setup.url, "bench/off", ["off"], 300)
        await wait_online(setup.url, "bench/on", ["on"], 300)
        sweep = [ort.measure(batch, seconds / 2) for batch in ORT_BATCHES]
        best = int(max(sweep, key=lambda row: row["images_s"])["batch"])
        pids = {"broker": broker_pid(broker.port) or 0, "agents": os.getpid()}
        for count in agents:
            tallies = {mode: Tally() for mode in MODES}
            ort_rates = []
            for turn in range(rounds):
                for kind in _rotated(["ort", *MODES], turn):
                    if kind == "ort":
                        ort_rates.append(ort.measure(best, seconds / 2)["images_s"])
                        continue
                    prefix, hub = hubs[kind]
                    await window(setup, prefix, count, {"hub": hub.pid or 0, **pids}, tallies[kind])
            for mode, tally in tallies.items():
                rows.append(summary(count, mode, tally, statistics.fmean(ort_rates)))
                print(_hub_line(rows[-1]), file=sys.stderr, flush=True)
    return sweep, best, rows


# --- the report ---------------------------------------------------------------


def _hub_line(row: dict[str, Any]) -> str:
    cpu = row["cpu_cores"]
    return (
        f"{row['agents']:>6} {row['mode']:<8} {row['requests_s']:>7.1f} {row['ort_images_s']:>7.1f}"
        f" {row['ratio']:>6.2f} {row['p50_ms']:>7.1f} {row['p99_ms']:>7.1f} {row['p99_ms'] / row['p50_ms']:>7.2f}"
        f" {row['mean_batch']:>6.2f} {row['busy']:>5.2f} {row['tail_ms_per_request']:>8.1f}"
        f" {cpu.get('hub', 0):>5.2f} {cpu.get('broker', 0):>6.2f} {cpu.get('agents', 0):>6.2f}"
        f" {cpu.get('other', 0):>6.2f}"
    )


def report(command: str, threads: int, sweep: list[dict[str, float]], best: int, rows: list[dict[str, Any]]) -> None:
    """Print the command, plain ORT's sweep and the hub's rows with their ratios to ORT."""
    print(f"$ {command}")
    print(f"\n{MODEL} at cut {CUT!r}, {threads} ONNX Runtime thread(s), {os.cpu_count()} CPUs")
    print(f"plain ONNX Runtime:  {'batch':>5} {'images/s':>9} {'ms/run':>8} {'ms/image':>9}")
    for row in sweep:
        mark = "  <- best: measured again in turn with each hub row" if row["batch"] == best else ""
        per_image = row["ms_per_run"] / row["batch"]
        print(f"{'':<20} {row['batch']:>5} {row['images_s']:>9.1f} {row['ms_per_run']:>8.1f} {per_image:>9.2f}{mark}")
    print(
        f"\n{'agents':>6} {'batching':<8} {'req/s':>7} {'ORT/s':>7} {'ratio':>6} {'p50 ms':>7} {'p99 ms':>7}"
        f" {'p99/p50':>7} {'batch':>6} {'busy':>5} {'tail ms':>8} {'hub':>5} {'broker':>6} {'agents':>6} {'other':>6}"
    )
    for row in rows:
        print(_hub_line(row))
    print(
        f"\nORT/s: plain ORT's images/s at batch {best}, measured in turn with the hubs' windows; ratio: req/s over"
        " it. batch: mean batch size requests ran in. busy: fraction of the window the hub's tail ran. tail ms:"
        " the hub's tail time per request (a run's time shared by its requests). hub, broker, agents: CPU cores"
        " each used in the window; other: cores the machine's other processes used meanwhile."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1, 8 and 16 agents, one turn of 2 s windows")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="ORT threads (default: all CPUs)")
    parser.add_argument("--agents", default=None, help="agent counts, comma-separated (default 1,4,8,16)")
    parser.add_argument("--seconds", type=float, default=None, help="each hub window (default 4; quick 2)")
    parser.add_argument("--rounds", type=int, default=None, help="turns per agent count (default 2; quick 1)")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    parser.add_argument("--ort-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.ort_child:
        ort_child(args.threads)
        return
    seconds = args.seconds or (2.0 if args.quick else 4.0)
    rounds = args.rounds or (1 if args.quick else 2)
    agents = [int(n) for n in (args.agents or ("1,8,16" if args.quick else "1,4,8,16")).split(",")]
    sweep, best, rows = asyncio.run(run(args.threads, agents, seconds, rounds))
    command = ("python bench/hub.py " + " ".join(sys.argv[1:])).rstrip()
    if args.json:
        print(json.dumps({"command": command, "threads": args.threads, "ort": sweep, "hub": rows}, indent=2))
        return
    report(command, args.threads, sweep, best, rows)


if __name__ == "__main__":
    main()

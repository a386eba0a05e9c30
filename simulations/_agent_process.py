"""An emulated agent in a process of its own: the child program and the parent's handle on it.

Emulate mode runs each agent as ``python -m simulations._agent_process``, so
agents share no event loop and no interpreter lock, as devices share nothing.
The two sides speak JSON lines:

1. the parent writes the agent's :class:`AgentConfig` to the child's stdin;
2. the child connects (through its link's proxy), warms up and writes
   ``{"ready": true}``;
3. the parent writes ``{"go": T}``, ``T`` the run's start on the system-wide
   monotonic clock, once every agent is ready;
4. the child makes requests, writing each finished one as
   ``{"record": {...}}`` (a :class:`~simulations.RequestRecord`,
   ``start_s`` counted from ``T``), until its stdin closes; requests still in
   flight then are not recorded, as in fleet mode.

Arrivals are fleet mode's (:func:`~simulations._arrivals.arrivals`), and
inputs draw from the same named streams. A child
runs in its own session (Ctrl+C reaches the parent, which stops it) and logs
to a file the parent names; when a child fails, the error carries that log's
last lines.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import math
import sys
import time
import zlib
from typing import TYPE_CHECKING

from protocol.errors import EdgecutError
from protocol.lifecycle import cancel_and_wait
from simulations._arrivals import RateCurve, arrivals
from simulations._report import LOST, RequestRecord
from simulations._scenario import policy_cut

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from pathlib import Path

    from edge_agent import EdgeAgent, InferenceResult

_STOP_S = 10.0
"""How long a child may take to stop once its stdin closes, before it is killed."""
_LOG_TAIL_LINES = 20
_LOST_AFTER_DEADLINES = 2
_LOST_SLACK_S = 5.0
"""A request in flight this long after its deadline (twice it, plus this) when the run ends counts as lost."""


class EmulationError(EdgecutError):
    """An emulated agent did not start, or died during the run."""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class AgentConfig:
    """Everything a child needs to be one agent of a scenario.

    Attributes:
        run: The run's name in the records (the policy, or ``"scenario"``).
        name: The agent's name and id (``<group>-<index>``).
        group: Its group's name.
        policy: ``edge``, ``cloud``, ``auto`` or a cut id.
        model: A zoo model name.
        device_factor: How many times this host's time it takes to compute (its sessions are stretched so).
        url: The broker URL it connects to (its link's proxy).
        prefix: The topic prefix of the run.
        seed: The scenario's seed.
        arrival: ``poisson`` or ``closed``.
        rate_hz: The rate curve's ``(t_s, rate_hz)`` points, with ``poisson``
            (:class:`~simulations._arrivals.RateCurve`).
        think_s: Seconds between an answer and the next request, with ``closed``.
        start_s: When it starts making requests, from the run's start.
        stop_s: When it stops.
        deadline_s: The request deadline.
    """

    run: str
    name: str
    group: str
    policy: str
    model: str
    device_factor: float
    url: str
    prefix: str
    seed: int
    arrival: str
    rate_hz: tuple[tuple[float, float], ...]
    think_s: float
    start_s: float
    stop_s: float
    deadline_s: float


class AgentProcess:
    """The parent's handle on one agent child: start it, let it go, stop it, collect its records.

    Args:
        config: The agent.
        record: Receives each finished request, on the parent's event loop.
        log: The child's log file (its stderr).
    """

    def __init__(self, config: AgentConfig, record: Callable[[RequestRecord], None], *, log: Path) -> None:
        self.config = config
        self._record = record
        self._log = log
        self._process: asyncio.subprocess.Process | None = None
        self._reading: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    async def start(self, timeout_s: float) -> None:
        """Start the child and wait until it is connected and warmed up.

        Raises:
            EmulationError: It exited or was not ready within ``timeout_s``.
        """
        with self._log.open("wb") as log:  # the child keeps its own handle
            self._process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "simulations._agent_process",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
                start_new_session=True,
            )
        self._send({"config": dataclasses.asdict(self.config)})
        self._reading = asyncio.create_task(self._read(self._process.stdout))
        ready = asyncio.create_task(self._ready.wait())
        await asyncio.wait({ready, self._reading}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        ready.cancel()
        if not self._ready.is_set():
            exited = self._reading.done()
            await self.stop()
            self._fail("exited before it was ready" if exited else f"was not ready within {timeout_s:g} s")

    def go(self, started: float) -> None:
        """Start making requests; ``started`` is the run's start on the monotonic clock."""
        self._send({"go": started})

    async def stop(self) -> None:
        """Close the child's stdin, wait for it to finish (killing it after 10 s) and for its last records."""
        process = self._process
        if process is None:
            return
        if process.stdin is not None and not process.stdin.is_closing():
            process.stdin.close()
        try:
            await asyncio.wait_for(process.wait(), _STOP_S)
        except TimeoutError:
            process.kill()
            await process.wait()
        if self._reading is not None:
            await self._reading

    def check(self) -> None:
        """Raise if the child failed.

        Raises:
            EmulationError: It exited with an error.
        """
        process = self._process
        if process is not None and process.returncode not in {None, 0}:
            self._fail(f"exited with status {process.returncode}")

    def _send(self, message: dict[str, object]) -> None:
        if self._process is not None and self._process.stdin is not None and not self._process.stdin.is_closing():
            self._process.stdin.write(json.dumps(message).encode() + b"\n")

    async def _read(self, stdout: asyncio.StreamReader | None) -> None:
        while stdout is not None and (line := await stdout.readline()):
            message = json.loads(line)
            if "ready" in message:
                self._ready.set()
            elif "record" in message:
                self._record(RequestRecord(**message["record"]))

    def _fail(self, what: str) -> None:
        msg = f"emulated agent {self.config.name} {what}; {log_tail(self._log)}"
        raise EmulationError(msg)


def log_tail(log: Path) -> str:
    """``its log (PATH) ends:`` and the last 20 lines of ``log``, indented, for an error message."""
    try:
        lines = log.read_text(encoding="utf-8", errors="replace").splitlines()[-_LOG_TAIL_LINES:]
    except OSError as exc:
        return f"its log ({log}) cannot be read: {exc.strerror or exc}"
    tail = "\n".join(f"    {line}" for line in lines) or "    (nothing)"
    return f"its log ({log}) ends:\n{tail}"


# --- the child ------------------------------------------------------------------------------


async def _child() -> None:
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    config = AgentConfig(**json.loads(await stdin.readline())["config"])
    async with _agent(config) as agent:
        _write({"ready": True})
        go = await stdin.readline()
        if not go:
            return
        started = float(json.loads(go)["go"])
        requests = asyncio.create_task(_requests(agent, config, started))
        await stdin.read()  # until the parent closes it
        requests.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await requests


def _agent(config: AgentConfig) -> EdgeAgent:
    from edge_agent import AUTO, EdgeAgent, Timeouts  # noqa: PLC0415 - the child's own imports
    from simulations._devices import stretched_sessions  # noqa: PLC0415

    factor = config.device_factor
    return EdgeAgent(
        config.url,
        model=config.model,
        cut=policy_cut(config.policy) or AUTO,
        agent_id=config.name,
        prefix=config.prefix,
        threads=1,
        session_factory=stretched_sessions(factor) if factor > 1 else None,
        timeouts=Timeouts(request=config.deadline_s, retry=None),
        state_dir=None,
    )


async def _requests(agent: EdgeAgent, config: AgentConfig, started: float) -> None:
    """Make requests as the config's arrivals say, recording each as it finishes."""
    import numpy as np  # noqa: PLC0415

    spec = agent.model.inputs[0]
    shape = tuple(dim if isinstance(dim, int) else 1 for dim in spec.shape[1:])
    rng = np.random.default_rng(zlib.crc32(f"{config.seed}/{config.name}/inputs".encode()))
    inputs = rng.integers(0, 256, shape).astype(spec.dtype)
    pending: dict[asyncio.Task[None], float] = {}  # each request in flight, and when it began

    async def one() -> None:
        at = time.monotonic()
        try:
            result = await agent.infer(inputs)
        except Exception as exc:  # noqa: BLE001 - every failure is a row of the CSV, never a lost request
            _write({"record": dataclasses.asdict(_failed(config, at - started, f"{type(exc).__name__}: {exc}"))})
        else:
            _write({"record": dataclasses.asdict(_record(config, at - started, result))})

    try:
        await asyncio.sleep(max(0.0, started + config.start_s - time.monotonic()))
        if config.arrival == "closed":
            while time.monotonic() - started < config.stop_s:
                await one()
                await asyncio.sleep(config.think_s)
        else:
            curve = RateCurve(tuple((t_s, rate_hz) for t_s, rate_hz in config.rate_hz))
            for at_s in arrivals(config.seed, config.name, curve, start_s=config.start_s, stop_s=config.stop_s):
                await asyncio.sleep(max(0.0, started + at_s - time.monotonic()))
                task = asyncio.create_task(one())
                pending[task] = time.monotonic()
                task.add_done_callback(pending.pop)
        await asyncio.gather(*pending)  # the group has left: its last requests finish
    finally:
        _report_lost(config, started, pending.values())
        await asyncio.gather(*(cancel_and_wait(task) for task in list(pending)))


def _report_lost(config: AgentConfig, started: float, began: Iterable[float]) -> None:
    """Record the requests still in flight long past their deadline as lost (the others end with the run)."""
    now = time.monotonic()
    patience_s = _LOST_AFTER_DEADLINES * config.deadline_s + _LOST_SLACK_S
    for at in began:
        if now - at > patience_s:
            reason = f"{LOST}: neither an answer nor a fallback {now - at:.1f} s after it began"
            _write({"record": dataclasses.asdict(_failed(config, at - started, reason, total_s=now - at))})


def _record(config: AgentConfig, start_s: float, result: InferenceResult) -> RequestRecord:
    return RequestRecord.of(
        result, run=config.run, group=config.group, agent=config.name, policy=config.policy, start_s=start_s
    )


def _failed(config: AgentConfig, start_s: float, error: str, *, total_s: float | None = None) -> RequestRecord:
    total_ms = math.nan if total_s is None else total_s * 1000
    return RequestRecord(
        run=config.run,
        group=config.group,
        agent=config.name,
        policy=config.policy,
        start_s=start_s,
        cut="",
        total_ms=total_ms,
        error=error,
    )


def _write(message: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("mqtt").setLevel(logging.CRITICAL)  # aiomqtt reports every broker restart
    asyncio.run(_child())

"""``edgecut sim``: an emulated network link (``link``), device profiles (``devices``), fleet scenarios (``run``)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import signal
from pathlib import Path
from typing import TYPE_CHECKING

from edgecut._cli_values import at_least_one, port, positive, probability
from edgecut._exit import ExitCode
from edgecut._output import print_json
from edgecut._wait import signalled
from protocol.errors import ConfigError

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Iterator
    from types import FrameType

    from rich.progress import TaskID

    from protocol.mqtt import BrokerURL
    from simulations import CapacityPoint, LinkSpec, Progress, Scenario


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``sim`` and its subcommands to the ``edgecut`` parser."""
    sim = commands.add_parser(
        "sim",
        help="emulated links, and scenarios of whole fleets",
        description="Emulate what a deployment's network does to agents, or simulate a whole fleet.",
    )
    actions = sim.add_subparsers(dest="action", metavar="ACTION", required=True)
    link = actions.add_parser(
        "link",
        help="relay agents to a broker through an emulated network link",
        description=(
            "Listen on 127.0.0.1 and relay each connection to the broker through an emulated link: rate, one-way"
            " delay, jitter and loss per direction, fixed or from a measured trace. Agents use the URL it prints."
            " Runs until Ctrl+C or SIGTERM."
        ),
    )
    link.add_argument("--upstream", default="mqtt://127.0.0.1:1883", help="the broker's URL (default 127.0.0.1:1883)")
    shape = link.add_mutually_exclusive_group()
    shape.add_argument("--preset", help="a named link (--list shows them)")
    shape.add_argument("--rate", help="fixed rate as tc writes it: 500kbit, 5mbit, 1gbit")
    shape.add_argument(
        "--trace", type=Path, help="rate from a trace: cooked seconds<TAB>Mbit/s, 5Gophers CSV, Mahimahi"
    )
    link.add_argument("--column", help="throughput column of a 5Gophers CSV (default throughput_mbps)")
    link.add_argument("--delay", default="0ms", help="one-way delay, e.g. 40ms (with --rate or --trace)")
    link.add_argument("--jitter", default="0ms", help="jitter (standard deviation), e.g. 5ms")
    link.add_argument(
        "--loss", type=probability, default=0.0, help="segment loss probability, costing a 200 ms RTO each"
    )
    link.add_argument("--rtt", action="store_true", help="--delay is a round trip: each way gets half")
    link.add_argument("--up-scale", type=positive, default=1.0, help="scale the uplink (agent to broker) rate")
    link.add_argument("--port", type=port, default=0, help="port to listen on (default: a free one)")
    link.add_argument("--seed", type=int, default=0, help="seed of jitter and loss draws")
    link.add_argument("--list", action="store_true", help="list the presets and where their figures come from")
    link.add_argument(
        "--tc",
        metavar="INTERFACE",
        help="print the equivalent 'tc netem' commands for INTERFACE (kernels with netem) instead of relaying",
    )
    link.add_argument("--json", action="store_true", help="print JSON")
    link.set_defaults(handler=_link)
    devices = actions.add_parser(
        "devices",
        help="list the device profiles a scenario's group can name",
        description=(
            "List the device profiles a scenario's group (device = ...) and the demo's conditions name: how many"
            " times slower than this host each device computes, and where that factor comes from."
        ),
    )
    devices.add_argument("--json", action="store_true", help="print JSON")
    devices.set_defaults(handler=_devices)
    _register_run(actions)


def _register_run(actions: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = actions.add_parser(
        "run",
        help="run a scenario: agents, links, hubs and faults, on simulated time or on real processes",
        description=(
            "Run a scenario file (or a bundled scenario by name, --list shows them). Fleet mode (the default): every"
            " agent, link and hub replica on simulated time, the agents running the real planner, compute times"
            " measured on this host. Emulate mode: the scenario's broker, hub processes and one process per agent"
            " behind emulated links, in wall-clock time. Writes requests.csv, summary.json, profiles.json, run.json"
            " (and in emulate mode observed-profiles.json), PNG plots and report.html to --out and prints the"
            " summary. Ctrl+C (SIGINT, in the background too) or SIGTERM stops the run and writes the same files for"
            " what has run (exit 130)."
        ),
    )
    run.add_argument("scenario", nargs="?", metavar="SCENARIO", help="a scenario .toml file or a bundled name")
    run.add_argument(
        "--mode",
        choices=["fleet", "emulate"],
        default="fleet",
        help="fleet: simulated time (default); emulate: a real broker, hub processes and agent processes behind "
        "emulated links, in wall-clock time (tens of agents)",
    )
    run.add_argument("--out", type=Path, help="output directory (default sim-out/<scenario>)")
    run.add_argument(
        "--max-agents",
        type=at_least_one,
        help="emulate mode: the most agents a scenario may have, each a process of its own (default 32)",
    )
    run.add_argument("--seed", type=int, help="override the scenario's seed")
    run.add_argument(
        "--profiles",
        type=Path,
        help="model profiles to use instead of measuring: an earlier run's profiles.json, an emulated run's "
        "observed-profiles.json, or `edgecut models profile --out`",
    )
    run.add_argument("--no-report", action="store_true", help="skip the PNG plots and report.html")
    run.add_argument(
        "--find-hubs",
        action="store_true",
        help="instead of one run: the fewest hub replicas that keep the fleet's p95 within --p95-ms, per policy",
    )
    run.add_argument("--p95-ms", type=positive, help="the p95 target of --find-hubs")
    run.add_argument(
        "--max-hubs", type=at_least_one, default=64, help="the most replicas --find-hubs tries (default 64)"
    )
    run.add_argument("--list", action="store_true", help="list the bundled scenarios")
    run.add_argument("--json", action="store_true", help="print the summary as JSON")
    run.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> ExitCode:
    import sys  # noqa: PLC0415

    from simulations.scenarios import bundled, find  # noqa: PLC0415 - keeps `edgecut --help` light

    if args.list:
        rows = [{"name": name, "description": text} for name, text in bundled().items()]
        if args.json:
            print_json(rows)
        else:
            for row in rows:
                print(f"{row['name']:<16} {row['description']}")  # noqa: T201
        return ExitCode.OK
    if args.scenario is None:
        msg = "give a SCENARIO file or bundled name (--list shows them)"
        raise ConfigError(msg)
    _needs("rich", "the progress bars need rich")
    if args.mode == "fleet" or args.find_hubs:
        _needs("simpy", "fleet mode needs simpy")
    if not args.no_report:
        _needs("matplotlib", "the plots and report.html need matplotlib", hint=", or pass --no-report")
    from simulations import MAX_EMULATED_AGENTS, load_scenario, run_answer, run_scenario, table  # noqa: PLC0415

    path = find(args.scenario)
    scenario = load_scenario(path)
    if args.seed is not None:
        scenario = dataclasses.replace(scenario, seed=args.seed)
    out = args.out or Path("sim-out") / path.stem

    if args.find_hubs:
        if args.mode != "fleet":
            msg = "--find-hubs runs the scenario many times: fleet mode only"
            raise ConfigError(msg)
        return _find_hubs(args, scenario, out)
    try:
        with _signals_interrupt(), _progress_bars(args.mode, shown=not args.json) as progress:
            summaries = run_scenario(
                scenario,
                out,
                source=path,
                profiles_file=args.profiles,
                progress=progress,
                report=not args.no_report,
                mode=args.mode,
                max_agents=MAX_EMULATED_AGENTS if args.max_agents is None else args.max_agents,
            )
    except KeyboardInterrupt:
        sys.stderr.write(f"interrupted: what has run so far is in {out} (summary.json, requests.csv, ...)\n")
        return ExitCode.INTERRUPTED
    if args.json:
        print_json([summary.to_json() for summary in summaries])
    else:
        clock = "simulated s" if args.mode == "fleet" else "s of wall-clock time"
        length = f"{scenario.duration_s:g} {clock}"
        if scenario.requests is not None:
            length = f"{scenario.requests} requests or {length}"
        runs = f"{length} per run, seed {scenario.seed}, {args.mode} mode"
        print(f"{scenario.name}: {scenario.agents} agents, {runs}")  # noqa: T201
        print(table(summaries))  # noqa: T201
        print(run_answer(summaries))  # noqa: T201 - the report's first line
        emulated = ", observed-profiles.json, logs/" if args.mode == "emulate" else ""
        pictures = "" if args.no_report else ", report.html and its pictures"
        print(f"wrote {out}/requests.csv, summary.json, profiles.json{emulated}, run.json{pictures}")  # noqa: T201
    return ExitCode.OK


def _needs(module: str, why: str, *, hint: str = "") -> None:
    """Refuse to start without ``module``, which the ``sim`` extra brings (``why``: who needs it).

    Raises:
        ConfigError: It is not installed.
    """
    import importlib.util  # noqa: PLC0415

    if importlib.util.find_spec(module) is None:
        msg = f"{why}: pip install 'edgecut[sim]'{hint}"
        raise ConfigError(msg)


@contextlib.contextmanager
def _signals_interrupt() -> Iterator[None]:
    """SIGINT and SIGTERM stop a run: the hubs and agents it started stopped, what it has so far written.

    Both handlers are installed here, not left to Python's default: a run
    started in the background from a script inherits SIGINT ignored, and
    Python then installs no handler of its own. The previous handlers come
    back on the way out.
    """

    def interrupt(signum: int, frame: FrameType | None) -> None:  # noqa: ARG001 - signal's handler signature
        raise KeyboardInterrupt

    previous = {signum: signal.signal(signum, interrupt) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextlib.contextmanager
def _progress_bars(mode: str, *, shown: bool) -> Iterator[Callable[[Progress], None]]:
    """A progress bar per run on stderr (rich), while the runs go; nothing when not ``shown``."""
    from rich.console import Console  # noqa: PLC0415 - keeps `edgecut --help` light
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn  # noqa: PLC0415
    from rich.progress import Progress as Bars  # noqa: PLC0415

    clock = "simulated s" if mode == "fleet" else "s"
    bars = Bars(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(clock + ", {task.fields[requests]} requests"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        disable=not shown,
        transient=False,
    )
    tasks: dict[str, tuple[TaskID, int]] = {}  # each run's bar, and the requests before it

    def show(step: Progress) -> None:
        if step.run not in tasks:
            tasks[step.run] = bars.add_task(step.run, total=step.duration_s, requests=0), step.requests
        task, before = tasks[step.run]
        bars.update(task, completed=step.simulated_s, requests=step.requests - before)

    with bars:
        yield show


def _find_hubs(args: argparse.Namespace, scenario: Scenario, out: Path) -> ExitCode:
    import sys  # noqa: PLC0415

    from simulations import (  # noqa: PLC0415
        SearchInterrupted,
        capacity_answer,
        find_hubs,
        save_profiles,
        scenario_profiles,
        write_capacity,
    )

    if args.p95_ms is None or args.p95_ms <= 0:
        msg = "--find-hubs needs a positive --p95-ms target"
        raise ConfigError(msg)
    profiles = scenario_profiles(scenario, args.profiles)

    def progress(point: CapacityPoint) -> None:
        if not args.json:
            line = (
                f"  {point.policy}: {point.replicas} replicas: p95 {point.p95_ms:.1f} ms, mean {point.mean_ms:.1f} ms"
            )
            print(line, file=sys.stderr, flush=True)  # noqa: T201

    try:
        with _signals_interrupt():
            results = find_hubs(scenario, profiles, args.p95_ms, max_replicas=args.max_hubs, progress=progress)
    except SearchInterrupted as stop:  # what was found so far is written all the same
        results = stop.results
    report = write_capacity(out, scenario, results, args.p95_ms, report=not args.no_report)
    save_profiles(profiles, out / "profiles.json")
    if args.json:
        print_json(report)
    else:
        print(capacity_answer(results, args.p95_ms, scenario.agents))  # noqa: T201
        print(f"wrote {out}/capacity.json" + ("" if args.no_report else ", capacity.png, capacity.html"))  # noqa: T201
    if not all(r.complete for r in results):
        sys.stderr.write(f"interrupted: what was found so far is in {out}\n")
        return ExitCode.INTERRUPTED
    return ExitCode.OK if all(r.replicas for r in results) else ExitCode.FAILED


def _link(args: argparse.Namespace) -> ExitCode:
    from protocol.mqtt import BrokerURL  # noqa: PLC0415 - keeps `edgecut --help` light

    if args.list:
        _list_presets(as_json=args.json)
        return ExitCode.OK
    upstream = BrokerURL.parse(args.upstream)
    spec = _spec(args)
    if args.tc:
        _print_tc(spec, args.tc, as_json=args.json)
        return ExitCode.OK
    try:
        asyncio.run(_serve(spec, upstream, args))
    except OSError as exc:
        msg = f"cannot listen on 127.0.0.1:{args.port}: {exc.strerror or exc}"
        raise ConfigError(msg) from exc
    return ExitCode.OK


def _spec(args: argparse.Namespace) -> LinkSpec:
    from simulations import fixed_link, parse_duration_ms, parse_rate, preset, scale_up, trace_link  # noqa: PLC0415

    try:
        delay_s = parse_duration_ms(args.delay) / 1000 / (2 if args.rtt else 1)
        jitter_s = parse_duration_ms(args.jitter) / 1000
        if args.preset:
            spec = preset(args.preset)
        elif args.trace:
            spec = trace_link(args.trace, delay_s=delay_s, jitter_s=jitter_s, column=args.column)
        else:
            rate = parse_rate(args.rate) if args.rate else None
            spec = fixed_link(rate_bit_s=rate, delay_s=delay_s, jitter_s=jitter_s, loss=args.loss)
        return scale_up(spec, args.up_scale) if args.up_scale != 1.0 else spec
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc


async def _serve(spec: LinkSpec, upstream: BrokerURL, args: argparse.Namespace) -> None:
    from simulations import LinkProxy  # noqa: PLC0415

    async with (
        LinkProxy(spec, upstream=(upstream.host, upstream.port), port=args.port, seed=args.seed) as proxy,
        signalled() as stop,
    ):
        url = proxy.url_for(args.upstream)
        if args.json:
            print_json({"url": url, "link": spec.name, "source": spec.source}, indent=None)
        else:
            print(f"link {spec.name} at {url} (Ctrl+C to stop)\n  {spec.source}", flush=True)  # noqa: T201
        await stop.wait()


def _print_tc(spec: LinkSpec, interface: str, *, as_json: bool) -> None:
    """Netem shapes one interface's egress: the uplink's figures, on the agent's interface."""
    from simulations import tc_commands  # noqa: PLC0415

    up = spec.up
    if up.trace is not None or up.rate_bit_s is None:
        msg = "tc commands need a fixed rate (--rate): netem has no trace playback (Mahimahi does)"
        raise ConfigError(msg)
    try:
        commands = tc_commands(interface=interface, rate_bit_s=up.rate_bit_s, delay_s=up.delay_s, jitter_s=up.jitter_s)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    if as_json:
        print_json({"commands": commands}, indent=None)
        return
    print(f"# the uplink of {spec.name}, on the agent's {interface} (as root; the broker's side likewise)")  # noqa: T201
    for command in commands:
        print(command)  # noqa: T201


def _list_presets(*, as_json: bool) -> None:
    from simulations import PRESET_NAMES, preset  # noqa: PLC0415

    rows = [{"name": name, "source": preset(name).source} for name in PRESET_NAMES]
    if as_json:
        print_json(rows)
        return
    for row in rows:
        print(f"{row['name']:<16} {row['source']}")  # noqa: T201


def _devices(args: argparse.Namespace) -> ExitCode:
    from simulations import PROFILES  # noqa: PLC0415

    rows = [{"name": p.name, "factor": p.factor, "source": p.source} for p in PROFILES.values()]
    if args.json:
        print_json(rows)
        return ExitCode.OK
    for row in rows:
        print(f"{row['name']:<16} {row['factor']:>5.1f}x  {row['source']}")  # noqa: T201
    return ExitCode.OK

"""Scenarios: a TOML file read into frozen dataclasses, the whole file checked before anything runs.

A scenario names hub replicas, groups of agents (how many, which model, on
which device and link, how requests arrive, which cut policy) and timed
faults. Every problem in a file is reported at once, each with its field
path (``groups[1].link: no link preset named 'lte'``); unknown keys are
refused, so a misspelt key never falls back to a default silently; a
problem names the file's line too when the key is written there as
``key = value`` under its table's header. The dataclass fields are the
schema: their types, defaults and metadata (:mod:`edge_agent.schema`)
say how each value is read, and one walker reads them all; what spans
tables (group names, replica indices, the broker) is checked after it.
Example::

    name = "bandwidth drop"
    seed = 1
    duration_s = 60                              # requests = 5000: end each run after that many, if sooner
    policies = ["edge", "cloud", "auto"]   # the whole scenario once per policy

    [broker]
    kind = "auto"                                # embedded | mosquitto | auto | external (with url)

    [hub]
    replicas = 1
    workers = 1

    [[groups]]
    name = "cameras"
    count = 4
    model = "resnet18"
    device = "rpi4"
    link = { rate = "20mbit", delay = "20ms" }   # or a preset name: "3g-bus", or a trace:
    # link = { trace = "my-drive.csv", column = "throughput_mbps", delay = "30ms" }  (path from this file)
    arrival = "poisson"                          # or "closed" (think_s between requests)
    rate_hz = 2.0

    [[faults]]
    at_s = 20
    kind = "bandwidth"                           # bandwidth | outage | hub-down | hub-stall | broker-restart
    group = "cameras"
    rate = "2mbit"
    for_s = 20
"""

from __future__ import annotations

import dataclasses
import functools
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from edge_agent.schema import NOT_READ, Reader, Setting, build, read_toml, setting, with_lines
from models import CLOUD_ONLY, EDGE_ONLY
from protocol.errors import ConfigError, EdgecutError
from protocol.mqtt import BrokerURL
from simulations._arrivals import RateCurve
from simulations._devices import PROFILES
from simulations._link import LinkSpec  # noqa: TC001 - the schema reads the annotations at run time
from simulations._presets import PRESET_NAMES, fixed_link, preset, trace_link
from simulations._tc import parse_duration_ms, parse_rate

if TYPE_CHECKING:
    from collections.abc import Mapping

    from simulations._calibrate import ModelProfile

Arrival = Literal["poisson", "closed"]
FaultKind = Literal["bandwidth", "outage", "hub-down", "hub-stall", "broker-restart"]
REPLICA_FAULTS = ("hub-down", "hub-stall")
"""Faults that act on one hub replica (``replica`` names it)."""
_LINK_FAULTS = ("bandwidth", "outage")
BrokerKind = Literal["auto", "embedded", "mosquitto", "external"]
POLICIES = ("edge", "cloud", "auto")
"""Cut policies by name; any other policy is a cut id of the group's model."""
_POLICY_CUTS = {"edge": EDGE_ONLY, "cloud": CLOUD_ONLY}
_NEED_GROUPS = "at least one [[groups]] table is needed"
_NEED_AT = "a time from the start (>= 0) is needed"
_DURATION_S = 60.0
_MODEL = "resnet18"


def policy_cut(policy: str) -> str | None:
    """The cut a policy fixes (``edge``: edge-only, ``cloud``: cloud-only, a cut id: itself); ``None`` for auto."""
    return None if policy == "auto" else _POLICY_CUTS.get(policy, policy)


# --- what single values must be -------------------------------------------------------------


def _policy(reader: Reader, raw: object, path: str) -> Any:  # noqa: ANN401 - the reader's protocol
    if isinstance(raw, str) and raw.strip():
        return raw
    reader.problem(path, f"must be {', '.join(POLICIES)} or a cut id")
    return NOT_READ


def _device(device: str) -> str | None:
    return None if device in PROFILES else f"no device profile named {device!r}; known: {', '.join(PROFILES)}"


def _model(model: str) -> str | None:
    """A zoo model's name, or an ONNX file or split directory that exists (from the working directory)."""
    if Path(model).exists():
        return None
    if Path(model).suffix == ".onnx":
        return f"no such file: {model}"
    names = _zoo_names()
    if names is None or model in names:
        return None  # without onnx there is no zoo to check against (a profiles file may still have the model)
    return f"no zoo model named {model!r} and no such file; the zoo: {', '.join(names)}"


def _zoo_names() -> tuple[str, ...] | None:
    """The zoo's model names, or ``None`` without ``onnx`` installed (the zoo needs it)."""
    try:
        from models.zoo import MODEL_NAMES  # noqa: PLC0415 - imports onnx
    except ImportError:
        return None
    return MODEL_NAMES


@functools.cache
def _candidate_cuts(model: str) -> tuple[str, ...] | None:
    """The ids of ``model``'s candidate cuts (building it, without running it); ``None`` when it cannot be built."""
    try:
        from models import partition  # noqa: PLC0415 - imports onnx
    except ImportError:
        return None
    try:
        _, built = partition.load_model(model)
    except EdgecutError:
        return None  # said so by the model's own check
    return tuple(cut.id for cut in partition.candidate_cuts(partition.enumerate_cuts(built)))


def _not_negative(value: float) -> str | None:
    return "must not be negative" if value < 0 else None


def _broker_url(url: str) -> str | None:
    try:
        BrokerURL.parse(url)
    except ConfigError as exc:
        return str(exc)
    return None


def _duration(reader: Reader, raw: object, path: str) -> Any:  # noqa: ANN401 - the reader's protocol
    """Seconds, from a string such as ``'40ms'`` or a number written bare (``delay = 40``: milliseconds)."""
    if isinstance(raw, str | int | float) and not isinstance(raw, bool):
        try:
            return parse_duration_ms(str(raw)) / 1000
        except ValueError as exc:
            reader.problem(path, str(exc))
            return NOT_READ
    reader.problem(path, f"must be a string such as '40ms', not {raw!r}")
    return NOT_READ


def _loss(loss: float) -> str | None:
    return None if 0 <= loss < 1 else f"must be a fraction from 0 to below 1, not {loss!r}"


def _rate(reader: Reader, raw: object, path: str) -> Any:  # noqa: ANN401 - the reader's protocol
    try:
        return parse_rate(str(raw))
    except ValueError as exc:
        reader.problem(path, f"a rate such as '2mbit' is needed ({exc})")
        return NOT_READ


def _rate_curve(reader: Reader, raw: object, path: str) -> Any:  # noqa: ANN401 - the reader's protocol
    """A rate in requests/s, or a curve of ``[t_s, rate_hz]`` points (linear between them, held after the last)."""
    if _is_number(raw):
        if raw > 0:  # type: ignore[operator]  # a number, checked
            return RateCurve.constant(float(raw))  # type: ignore[arg-type]
        reader.problem(path, f"must be positive, not {raw!r}")
        return NOT_READ
    if not isinstance(raw, list) or not raw:
        reader.problem(path, f"must be a rate in requests/s or a list of [t_s, rate_hz] points, not {raw!r}")
        return NOT_READ
    points: list[tuple[float, float]] = []
    for index, point in enumerate(raw):
        where = f"{path}[{index}]"
        if not (isinstance(point, list) and len(point) == 2 and all(_is_number(v) for v in point)):  # noqa: PLR2004
            reader.problem(where, f"must be a point [t_s, rate_hz], not {point!r}")
        elif point[0] < 0 or point[1] < 0:
            reader.problem(where, f"a time and a rate must not be negative, not {point!r}")
        elif points and point[0] < points[-1][0]:
            reader.problem(where, f"comes before the point ahead of it ({points[-1][0]:g} s): times must not go back")
        else:
            points.append((float(point[0]), float(point[1])))
    if len(points) < len(raw):
        return NOT_READ
    if not any(rate > 0 for _, rate in points):
        reader.problem(path, "the rate is zero throughout: no request would ever be made")
        return NOT_READ
    return RateCurve(tuple(points))


def _is_number(raw: object) -> bool:
    return isinstance(raw, int | float) and not isinstance(raw, bool) and math.isfinite(raw)


def _no_groups(groups: list[Any]) -> str | None:
    return None if groups else _NEED_GROUPS


# --- the tables ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class BrokerSpec:
    """The broker emulate mode runs (fleet mode models a broker that adds nothing but its restarts).

    Attributes:
        kind: ``embedded`` (the broker from PyPI), ``mosquitto``, ``auto``
            (mosquitto when installed, else embedded) or ``external`` (one
            already running at ``url``, which a scenario cannot restart).
            Left out: ``external`` with a ``url``, else ``auto``.
        url: The external broker's URL, with ``kind = "external"``.
    """

    kind: BrokerKind = dataclasses.field(
        default="auto", metadata=setting(default_from=lambda table: "external" if "url" in table else "auto")
    )
    url: str | None = dataclasses.field(default=None, metadata=setting(check=_broker_url))


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class HubSpec:
    """The hub replicas every agent shares.

    Attributes:
        replicas: How many hubs share the requests.
        workers: Requests each hub runs at once.
        max_queue: Requests a hub holds (waiting or running) before it answers ``overloaded``.
        status_interval_s: How often a hub reports its queue wait.
        speedup: How many times faster than this host the hubs run a tail
            (a GPU hub: 4 and more): fleet mode divides the profile's tail
            times by it. Emulate mode runs real hubs on this host: 1 only.
        start_s: Fleet mode: how long a replica back from ``hub-down`` takes
            before it answers (a process starting, loading its tails,
            connecting). Emulate mode's hubs take what they take: on the
            development machine 3.1-3.5 s (bench/sim_agreement.py prints it).
        preload: Every hub holds every candidate tail from its start (emulate
            mode preloads them); ``false``: a hub loads a model (its chain
            through every candidate cut) on the first use of any of its
            tails, and requests wait for it until 250 ms before their
            deadline, then are answered ``loading``.
        load_s: Fleet mode, without ``preload``: how long a hub takes to load
            a model. Emulate mode's hubs take what they take
            (bench/sim_agreement.py prints it).
        max_batch_size: Dynamic batching, as the hub's ``max_batch_size``: a
            worker runs up to this many queued requests for one tail at once
            (1: none). The hub's default.
    """

    replicas: int = dataclasses.field(default=1, metadata=setting(positive=True))
    workers: int = dataclasses.field(default=1, metadata=setting(positive=True))
    max_queue: int = dataclasses.field(default=64, metadata=setting(positive=True))
    status_interval_s: float = dataclasses.field(default=2.0, metadata=setting(positive=True))
    speedup: float = dataclasses.field(default=1.0, metadata=setting(positive=True))
    start_s: float = dataclasses.field(default=0.0, metadata=setting(check=_not_negative))
    preload: bool = True
    load_s: float = dataclasses.field(default=0.0, metadata=setting(check=_not_negative))
    max_batch_size: int = dataclasses.field(default=8, metadata=setting(positive=True))  # HubConfig's default


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class _LinkTable:
    """A link written as a table: a fixed rate, or a trace file's (a path from the scenario's directory)."""

    rate_bit_s: float | None = dataclasses.field(default=None, metadata=setting(key="rate", read=_rate))
    trace: str | None = None
    column: str | None = None
    delay_s: float = dataclasses.field(default=0.0, metadata=setting(key="delay", read=_duration))
    jitter_s: float = dataclasses.field(default=0.0, metadata=setting(key="jitter", read=_duration))
    loss: float = dataclasses.field(default=0.0, metadata=setting(check=_loss))


def _link(reader: Reader, raw: object, path: str) -> Any:  # noqa: ANN401 - the reader's protocol
    """A link preset's name, or a table of a fixed rate or a trace."""
    if isinstance(raw, str):
        if raw not in PRESET_NAMES:
            reader.problem(path, f"no link preset named {raw!r}; known: {', '.join(PRESET_NAMES)}")
            return NOT_READ
        return preset(raw)
    values = reader.table(
        _LinkTable, raw, path, expected="a preset name or a table {rate | trace, delay, jitter, loss}"
    )
    if values is None:
        return NOT_READ
    if "trace" in values and ("rate_bit_s" in values or "loss" in values):
        reader.problem(path, "a trace sets the rate: give trace or rate (and loss), not both")
    table: _LinkTable = build(_LinkTable, values)  # a value with a problem takes its default here
    link = None if table.trace is None else _trace_link(reader, table, table.trace, f"{path}.trace")
    if reader.has_problem(path):
        return NOT_READ
    if link is None:
        link = fixed_link(rate_bit_s=table.rate_bit_s, delay_s=table.delay_s, jitter_s=table.jitter_s, loss=table.loss)
    return link


def _trace_link(reader: Reader, table: _LinkTable, name: str, path: str) -> LinkSpec | None:
    """The link following the trace file ``name`` (a relative path from the scenario's directory)."""
    trace = Path(name)
    if not trace.is_absolute() and reader.directory is not None:
        trace = reader.directory / trace
    try:
        return trace_link(trace, delay_s=table.delay_s, jitter_s=table.jitter_s, column=table.column)
    except ConfigError as exc:
        reader.problem(path, str(exc))
        return None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class GroupSpec:
    """Agents alike: the same model, device, link, arrivals and policy.

    Attributes:
        name: The group's name (agents are ``<name>-<index>``).
        count: How many agents.
        model: A zoo model name.
        device: A device profile (``edgecut sim devices``: host, rpi4, rpi3, ...).
        device_factor: How many times this host's time the device takes to
            compute, instead of the device profile's figure (a board 8x
            slower: ``8.0``); see :attr:`factor`.
        link: The link each agent has to the broker (one per agent).
        arrival: ``poisson`` (requests at ``rate_hz`` whatever came back) or
            ``closed`` (the next request ``think_s`` after the last answer).
        rate_hz: Requests per second per agent, with ``poisson``: one rate
            (``rate_hz = 2.0``) or a curve of ``[t_s, rate_hz]`` points,
            linear between them and held after the last (two points at one
            time make a step).
        think_s: Seconds between an answer and the next request, with ``closed``.
        start_s: When the group's agents join the run and start making requests.
        stop_s: When they leave, making no more requests (``None``: at the run's end).
        policy: ``edge``, ``cloud``, ``auto`` or a cut id.
        deadline_s: How long an agent waits for the hub before its local fallback.
    """

    name: str
    count: int = dataclasses.field(default=1, metadata=setting(positive=True))
    model: str = dataclasses.field(default=_MODEL, metadata=setting(check=_model))
    device: str = dataclasses.field(default="rpi4", metadata=setting(check=_device))
    device_factor: float | None = dataclasses.field(default=None, metadata=setting(positive=True))
    link: LinkSpec = dataclasses.field(metadata=setting(read=_link))
    arrival: Arrival = "poisson"
    rate_hz: RateCurve = dataclasses.field(default=RateCurve.constant(1.0), metadata=setting(read=_rate_curve))
    think_s: float = dataclasses.field(default=0.0, metadata=setting(check=_not_negative))
    start_s: float = dataclasses.field(default=0.0, metadata=setting(check=_not_negative))
    stop_s: float | None = dataclasses.field(default=None, metadata=setting(positive=True))
    policy: str = dataclasses.field(default="auto", metadata=setting(read=_policy))
    deadline_s: float = dataclasses.field(default=5.0, metadata=setting(positive=True))

    @property
    def factor(self) -> float:
        """How many times this host's time the group's devices take to compute."""
        return PROFILES[self.device].factor if self.device_factor is None else self.device_factor


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class FaultSpec:
    """Something that happens at a time.

    Attributes:
        at_s: When, from the start.
        kind: ``bandwidth`` (a group's links change rate both ways), ``outage``
            (a group's links carry nothing), ``hub-down`` (a replica stops,
            losing what it holds, and comes back after ``for_s``), ``hub-stall``
            (a replica hangs, holding what it has, until ``for_s`` has passed:
            SIGSTOP, then SIGCONT) or ``broker-restart`` (the broker stops, losing what it holds, and
            starts again on the same port after ``for_s``).
        for_s: How long it lasts (``None``: to the end).
        group: The group, for link faults.
        rate_bit_s: The new rate, for ``bandwidth`` (written ``rate = "2mbit"``).
        replica: The replica's index, for ``hub-down`` and ``hub-stall``.
    """

    at_s: float = dataclasses.field(
        metadata=setting(missing=_NEED_AT, check=lambda at_s: _NEED_AT if at_s < 0 else None)
    )
    kind: FaultKind
    for_s: float | None = dataclasses.field(default=None, metadata=setting(positive=True))
    group: str | None = None
    rate_bit_s: float | None = dataclasses.field(default=None, metadata=setting(key="rate", read=_rate))
    replica: int | None = None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Scenario:
    """A whole scenario, checked.

    Attributes:
        name: What it is called in reports.
        description: What it shows, in a sentence.
        seed: The one seed every random stream derives from, by name.
        duration_s: Seconds of requests (simulated in fleet mode, wall-clock in emulate mode).
        requests: When set, each run ends once this many requests have
            finished, or at ``duration_s``, whichever comes first.
        policies: When set, the scenario runs once per policy, every group
            using it; else each group's own policy, in one run.
        broker: The broker, in emulate mode.
        hub: The hub replicas.
        groups: The agents.
        faults: What happens when (in the order of ``at_s``).
    """

    name: str
    description: str = ""
    seed: int = 0
    duration_s: float = dataclasses.field(default=_DURATION_S, metadata=setting(positive=True))
    requests: int | None = dataclasses.field(default=None, metadata=setting(positive=True))
    policies: tuple[str, ...] = dataclasses.field(
        default=(), metadata=setting(expected="a list of policy names", items=Setting(read=_policy))
    )
    broker: BrokerSpec = dataclasses.field(default=BrokerSpec(), metadata=setting(expected="a [broker] table"))
    hub: HubSpec = dataclasses.field(default=HubSpec(), metadata=setting(expected="a [hub] table"))
    groups: tuple[GroupSpec, ...] = dataclasses.field(
        metadata=setting(missing=_NEED_GROUPS, expected="[[groups]] tables", check=_no_groups)
    )
    faults: tuple[FaultSpec, ...] = dataclasses.field(default=(), metadata=setting(expected="[[faults]] tables"))

    @property
    def agents(self) -> int:
        """How many agents in all."""
        return sum(group.count for group in self.groups)

    def stop_s(self, group: GroupSpec) -> float:
        """When ``group``'s agents make their last request: when it leaves, or at the run's end."""
        return self.duration_s if group.stop_s is None else group.stop_s

    @property
    def models(self) -> tuple[str, ...]:
        """The models the groups use, each once."""
        return tuple(dict.fromkeys(group.model for group in self.groups))


def check_policy(scenario: Scenario, profiles: Mapping[str, ModelProfile], policy: str | None = None) -> None:
    """Refuse a run in which a group's policy (``policy``, else its own) names no candidate cut of its model.

    Raises:
        ConfigError: One does.
    """
    for group in scenario.groups:
        chosen = policy or group.policy
        cut_id = policy_cut(chosen)
        known = [cut.id for cut in profiles[group.model].cuts]
        if cut_id is not None and cut_id not in known:
            msg = (
                f"group {group.name!r}: policy {chosen!r} is not auto, edge, cloud or a candidate cut of "
                f"{group.model} ({', '.join(known)})"
            )
            raise ConfigError(msg)


def load_scenario(path: Path) -> Scenario:
    """Read and check a scenario file: every problem at once, each with its field path.

    Raises:
        ConfigError: The file cannot be read, is not TOML, or is not a valid scenario.
    """
    data, text = read_toml(path, "scenario")
    return parse_scenario(data, source=str(path), text=text, directory=path.parent)


def parse_scenario(
    data: dict[str, Any], *, source: str = "scenario", text: str = "", directory: Path | None = None
) -> Scenario:
    """Check a scenario given as the dict TOML gives (see :func:`load_scenario`).

    Args:
        data: The parsed TOML.
        source: The file's name, for messages.
        text: The file's text, to name the line of each problem.
        directory: Where relative trace paths start (default: the working directory).
    """
    reader = Reader(directory)
    values = reader.table(Scenario, data) or {}
    _check_across(reader, values)
    if reader.problems:
        named = with_lines(reader.problems, text)
        msg = f"{source}: {len(named)} problem(s):\n" + "\n".join(f"  {p}" for p in named)
        raise ConfigError(msg)
    scenario: Scenario = build(Scenario, values)
    return dataclasses.replace(scenario, faults=tuple(sorted(scenario.faults, key=lambda fault: fault.at_s)))


def _check_across(reader: Reader, scenario: Mapping[str, Any]) -> None:
    """What spans fields and tables: the broker's kind and URL, group names, what each fault names."""
    broker = scenario.get("broker", {})
    if "kind" in broker and (broker["kind"] == "external") != ("url" in broker) and not reader.has_problem("broker"):
        reader.problem("broker.url", "is needed with kind = 'external', and only then")
    tables = [item for item in scenario.get("groups", ()) if isinstance(item, dict)]
    names = [group["name"] for group in tables if "name" in group]
    for duplicate in sorted({name for name in names if names.count(name) > 1}):
        reader.problem("groups", f"the name {duplicate!r} is used twice")
    if not reader.has_problem("duration_s"):
        _check_times(reader, scenario, scenario.get("duration_s", _DURATION_S))
    _check_cuts(reader, scenario)
    replicas = scenario.get("hub", {}).get("replicas", HubSpec().replicas)
    for index, fault in enumerate(scenario.get("faults", ())):
        if not isinstance(fault, dict):
            continue  # not a table: said so
        where, kind = f"faults[{index}]", fault.get("kind")
        if kind in _LINK_FAULTS and fault.get("group") not in names:
            group = fault.get("group")
            reader.problem(
                f"{where}.group", f"needs the name of a group ({', '.join(sorted(set(names)))}), not {group!r}"
            )
        if kind == "bandwidth" and "rate_bit_s" not in fault and not reader.has_problem(f"{where}.rate"):
            reader.problem(f"{where}.rate", "a rate such as '2mbit' is needed")
        replica = fault.get("replica")
        named = replica is not None and 0 <= replica < replicas
        if kind in REPLICA_FAULTS and not named and not reader.has_problem(f"{where}.replica"):
            reader.problem(f"{where}.replica", f"needs a replica index from 0 to {replicas} - 1, not {replica!r}")
        if kind == "broker-restart" and broker.get("kind") == "external":
            reader.problem(f"{where}.kind", "an external broker cannot be restarted by a scenario")


def _check_times(reader: Reader, scenario: Mapping[str, Any], duration_s: float) -> None:
    """Refuse what would come at or after the run's end, so never: a fault, a group joining or leaving, a rate."""
    ends = f"the run ends at {duration_s:g} s"
    for index, fault in enumerate(scenario.get("faults", ())):
        if isinstance(fault, dict) and fault.get("at_s", 0.0) >= duration_s:
            reader.problem(f"faults[{index}].at_s", f"{ends}: the fault would never happen")
    for index, group in enumerate(scenario.get("groups", ())):
        if not isinstance(group, dict):
            continue  # not a table: said so
        where, start_s, stop_s = f"groups[{index}]", group.get("start_s", 0.0), group.get("stop_s")
        if start_s >= duration_s:
            reader.problem(f"{where}.start_s", f"{ends}: the group would never join")
        if stop_s is not None and stop_s > duration_s:
            reader.problem(f"{where}.stop_s", f"{ends}: leave it out to stay until the end")
        if stop_s is not None and stop_s <= start_s:
            reader.problem(f"{where}.stop_s", f"must come after start_s ({start_s:g} s)")
        curve = group.get("rate_hz")
        if curve is not None and curve.points[-1][0] > duration_s:
            reader.problem(f"{where}.rate_hz", f"{ends}: a point at {curve.points[-1][0]:g} s is never reached")


def _check_cuts(reader: Reader, scenario: Mapping[str, Any]) -> None:
    """Refuse a policy naming a cut that is no candidate of a model it is used with (before anything is measured)."""
    models: dict[int, str] = {
        index: group.get("model", _MODEL)
        for index, group in enumerate(scenario.get("groups", ()))
        if isinstance(group, dict) and not reader.has_problem(f"groups[{index}].model")
    }
    for index, policy in enumerate(scenario.get("policies", ())):
        for model in dict.fromkeys(models.values()):
            _check_cut(reader, f"policies[{index}]", policy, model)
    for index, model in models.items():
        _check_cut(reader, f"groups[{index}].policy", scenario["groups"][index].get("policy"), model)


def _check_cut(reader: Reader, path: str, policy: object, model: str) -> None:
    cut_id = policy_cut(policy) if isinstance(policy, str) else None
    if cut_id is None or cut_id in (EDGE_ONLY, CLOUD_ONLY):
        return
    known = _candidate_cuts(model)
    if known is not None and cut_id not in known and not reader.has_problem(path):
        reader.problem(
            path, f"policy {policy!r} is not {', '.join(POLICIES)} or a candidate cut of {model} ({', '.join(known)})"
        )

"""Scenarios: a TOML file read into frozen dataclasses, the whole file checked before anything runs.

A scenario names hub replicas, groups of agents (how many, which model, on
which device and link, how requests arrive, which cut policy) and timed
faults. Every problem in a file is reported at once, each with its field
path (``groups[1].link: no link preset named 'lte'``); unknown keys are
refused, so a misspelt key never falls back to a default silently; a
problem names the file's line too when the key is written there as
``key = value`` under its table's header. Defaults
live on the dataclass fields only. Example::

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
import math
import re
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

from models import CLOUD_ONLY, EDGE_ONLY
from protocol.errors import ConfigError
from protocol.mqtt import BrokerURL
from simulations._devices import PROFILES
from simulations._presets import PRESET_NAMES, fixed_link, preset, trace_link
from simulations._tc import parse_duration_ms, parse_rate

if TYPE_CHECKING:
    from collections.abc import Mapping

    from simulations._calibrate import ModelProfile
    from simulations._link import LinkSpec

Arrival = Literal["poisson", "closed"]
FaultKind = Literal["bandwidth", "outage", "hub-down", "hub-stall", "broker-restart"]
REPLICA_FAULTS = ("hub-down", "hub-stall")
"""Faults that act on one hub replica (``replica`` names it)."""
BrokerKind = Literal["auto", "embedded", "mosquitto", "external"]
POLICIES = ("edge", "cloud", "auto")
"""Cut policies by name; any other policy is a cut id of the group's model."""
_POLICY_CUTS = {"edge": EDGE_ONLY, "cloud": CLOUD_ONLY}


def policy_cut(policy: str) -> str | None:
    """The cut a policy fixes (``edge``: edge-only, ``cloud``: cloud-only, a cut id: itself); ``None`` for auto."""
    return None if policy == "auto" else _POLICY_CUTS.get(policy, policy)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class BrokerSpec:
    """The broker emulate mode runs (fleet mode models a broker that adds nothing but its restarts).

    Attributes:
        kind: ``embedded`` (the broker from PyPI), ``mosquitto``, ``auto``
            (mosquitto when installed, else embedded) or ``external`` (one
            already running at ``url``, which a scenario cannot restart).
        url: The external broker's URL, with ``kind = "external"``.
    """

    kind: BrokerKind = "auto"
    url: str | None = None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class HubSpec:
    """The hub replicas every agent shares.

    Attributes:
        replicas: How many hubs share the requests.
        workers: Requests each hub runs at once.
        max_queue: Requests a hub holds waiting before it answers ``overloaded``.
        status_interval_s: How often a hub reports its queue wait.
    """

    replicas: int = 1
    workers: int = 1
    max_queue: int = 64
    status_interval_s: float = 2.0


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class GroupSpec:
    """Agents alike: the same model, device, link, arrivals and policy.

    Attributes:
        name: The group's name (agents are ``<name>-<index>``).
        count: How many agents.
        model: A zoo model name.
        device: A device profile (``edgecut sim link --list``: host, rpi4, rpi3, ...).
        link: The link each agent has to the broker (one per agent).
        arrival: ``poisson`` (requests at ``rate_hz`` whatever came back) or
            ``closed`` (the next request ``think_s`` after the last answer).
        rate_hz: Requests per second per agent, with ``poisson``.
        think_s: Seconds between an answer and the next request, with ``closed``.
        policy: ``edge``, ``cloud``, ``auto`` or a cut id.
        deadline_s: How long an agent waits for the hub before its local fallback.
    """

    name: str
    count: int = 1
    model: str = "resnet18"
    device: str = "rpi4"
    link: LinkSpec
    arrival: Arrival = "poisson"
    rate_hz: float = 1.0
    think_s: float = 0.0
    policy: str = "auto"
    deadline_s: float = 5.0


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
        rate_bit_s: The new rate, for ``bandwidth``.
        replica: The replica's index, for ``hub-down`` and ``hub-stall``.
    """

    at_s: float
    kind: FaultKind
    for_s: float | None = None
    group: str | None = None
    rate_bit_s: float | None = None
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
        faults: What happens when.
    """

    name: str
    description: str = ""
    seed: int = 0
    duration_s: float = 60.0
    requests: int | None = None
    policies: tuple[str, ...] = ()
    broker: BrokerSpec = BrokerSpec()
    hub: HubSpec = HubSpec()
    groups: tuple[GroupSpec, ...]
    faults: tuple[FaultSpec, ...] = ()

    @property
    def agents(self) -> int:
        """How many agents in all."""
        return sum(group.count for group in self.groups)

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
    try:
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text)
    except OSError as exc:
        msg = f"cannot read scenario {path}: {exc.strerror or exc}"
        raise ConfigError(msg) from exc
    except tomllib.TOMLDecodeError as exc:
        msg = f"{path}: not TOML: {exc}"
        raise ConfigError(msg) from exc
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
    reader = _Reader(source, directory)
    scenario = reader.scenario(data)
    if reader.problems:
        lines = _key_lines(text)
        named = [_with_line(problem, lines) for problem in reader.problems]
        msg = f"{source}: {len(named)} problem(s):\n" + "\n".join(f"  {p}" for p in named)
        raise ConfigError(msg)
    assert scenario is not None  # noqa: S101 - no problems means a scenario was built
    return scenario


class _Reader:
    """Builds the dataclasses from plain TOML values, noting every problem instead of stopping at the first."""

    def __init__(self, source: str, directory: Path | None) -> None:
        self.source = source
        self.directory = directory
        self.problems: list[str] = []

    def problem(self, where: str, message: str) -> None:
        self.problems.append(f"{where}: {message}")

    def scenario(self, data: dict[str, Any]) -> Scenario | None:
        top = {"name", "description", "seed", "duration_s", "requests", "policies", "broker", "hub", "groups", "faults"}
        self._known(data, "", top)
        name = self._str(data, "name", "", required=True) or "scenario"
        description = self._str(data, "description", "") or ""
        seed = self._number(data, "seed", "", default=0, integer=True)
        duration = self._number(data, "duration_s", "", default=60.0, positive=True)
        requests = self._number(data, "requests", "", default=1, integer=True, positive=True)
        broker = self._broker(data.get("broker", {}))
        hub = self._hub(data.get("hub", {}))
        raw_groups = data.get("groups")
        if not isinstance(raw_groups, list) or not raw_groups:
            self.problem("groups", "at least one [[groups]] table is needed")
            raw_groups = []
        groups = [self._group(item, f"groups[{index}]") for index, item in enumerate(raw_groups)]
        names = [
            str(item["name"]) for item in raw_groups if isinstance(item, dict) and isinstance(item.get("name"), str)
        ]
        for duplicate in sorted({n for n in names if names.count(n) > 1}):
            self.problem("groups", f"the name {duplicate!r} is used twice")
        policies = data.get("policies", [])
        if not isinstance(policies, list) or not all(isinstance(p, str) for p in policies):
            self.problem("policies", "must be a list of policy names")
            policies = []
        for index, policy in enumerate(policies):
            self._policy_ok(policy, f"policies[{index}]")
        raw_faults = data.get("faults", [])
        if not isinstance(raw_faults, list):
            self.problem("faults", "must be [[faults]] tables")
            raw_faults = []
        faults = [self._fault(item, f"faults[{index}]", set(names), hub) for index, item in enumerate(raw_faults)]
        external = broker is not None and broker.kind == "external"
        for index, fault in enumerate(faults):
            if external and fault is not None and fault.kind == "broker-restart":
                self.problem(f"faults[{index}].kind", "an external broker cannot be restarted by a scenario")
        if self.problems or hub is None or broker is None:
            return None
        return Scenario(
            name=name,
            description=description,
            seed=int(seed),
            duration_s=float(duration),
            requests=int(requests) if "requests" in data else None,
            policies=tuple(policies),
            broker=broker,
            hub=hub,
            groups=tuple(group for group in groups if group is not None),
            faults=tuple(sorted((f for f in faults if f is not None), key=lambda fault: fault.at_s)),
        )

    def _broker(self, data: object) -> BrokerSpec | None:
        if not isinstance(data, dict):
            self.problem("broker", "must be a [broker] table")
            return None
        self._known(data, "broker.", {"kind", "url"})
        url = self._str(data, "url", "broker.")
        kind = self._str(data, "kind", "broker.") or ("external" if url else BrokerSpec().kind)
        if kind not in get_args(BrokerKind):
            self.problem("broker.kind", f"must be one of {', '.join(get_args(BrokerKind))}, not {kind!r}")
            return None
        if (kind == "external") != (url is not None):
            self.problem("broker.url", "is needed with kind = 'external', and only then")
            return None
        if url is not None:
            try:
                BrokerURL.parse(url)
            except ConfigError as exc:
                self.problem("broker.url", str(exc))
                return None
        return BrokerSpec(kind=kind, url=url)  # type: ignore[arg-type]  # checked above

    def _hub(self, data: object) -> HubSpec | None:
        if not isinstance(data, dict):
            self.problem("hub", "must be a [hub] table")
            return None
        self._known(data, "hub.", {"replicas", "workers", "max_queue", "status_interval_s"})
        defaults = HubSpec()
        return HubSpec(
            replicas=int(
                self._number(data, "replicas", "hub.", default=defaults.replicas, integer=True, positive=True)
            ),
            workers=int(self._number(data, "workers", "hub.", default=defaults.workers, integer=True, positive=True)),
            max_queue=int(
                self._number(data, "max_queue", "hub.", default=defaults.max_queue, integer=True, positive=True)
            ),
            status_interval_s=float(
                self._number(data, "status_interval_s", "hub.", default=defaults.status_interval_s, positive=True)
            ),
        )

    def _group(self, data: object, where: str) -> GroupSpec | None:
        if not isinstance(data, dict):
            self.problem(where, "must be a table")
            return None
        keys = {"name", "count", "model", "device", "link", "arrival", "rate_hz", "think_s", "policy", "deadline_s"}
        self._known(data, f"{where}.", keys)
        name = self._str(data, "name", f"{where}.", required=True)
        defaults = {field.name: field.default for field in dataclasses.fields(GroupSpec)}
        model = self._str(data, "model", f"{where}.") or str(defaults["model"])
        device = self._str(data, "device", f"{where}.") or str(defaults["device"])
        if device not in PROFILES:
            self.problem(f"{where}.device", f"no device profile named {device!r}; known: {', '.join(PROFILES)}")
        arrival = self._str(data, "arrival", f"{where}.") or str(defaults["arrival"])
        if arrival not in get_args(Arrival):
            self.problem(f"{where}.arrival", f"must be one of {', '.join(get_args(Arrival))}, not {arrival!r}")
        policy = self._str(data, "policy", f"{where}.") or str(defaults["policy"])
        self._policy_ok(policy, f"{where}.policy")
        link = self._link(data.get("link"), f"{where}.link")
        count = self._number(data, "count", f"{where}.", default=1, integer=True, positive=True)
        rate = self._number(data, "rate_hz", f"{where}.", default=1.0, positive=True)
        think = self._number(data, "think_s", f"{where}.", default=0.0)
        deadline = self._number(data, "deadline_s", f"{where}.", default=5.0, positive=True)
        if think < 0:
            self.problem(f"{where}.think_s", "must not be negative")
        if name is None or link is None:
            return None
        return GroupSpec(
            name=name,
            count=int(count),
            model=model,
            device=device,
            link=link,
            arrival=arrival,  # type: ignore[arg-type]  # checked above
            rate_hz=float(rate),
            think_s=float(think),
            policy=policy,
            deadline_s=float(deadline),
        )

    def _link(self, value: object, where: str) -> LinkSpec | None:
        if isinstance(value, str):
            if value not in PRESET_NAMES:
                self.problem(where, f"no link preset named {value!r}; known: {', '.join(PRESET_NAMES)}")
                return None
            return preset(value)
        if not isinstance(value, dict):
            self.problem(where, "must be a preset name or a table {rate | trace, delay, jitter, loss}")
            return None
        self._known(value, f"{where}.", {"rate", "trace", "column", "delay", "jitter", "loss"})
        if "trace" in value and ("rate" in value or "loss" in value):
            self.problem(where, "a trace sets the rate: give trace or rate (and loss), not both")
            return None
        try:
            return self._link_table(value)
        except (ConfigError, ValueError, TypeError, AttributeError) as exc:
            self.problem(where, str(exc))
            return None

    def _link_table(self, value: dict[str, Any]) -> LinkSpec:
        """A link from its table: a fixed rate, or a trace file's (a relative path from the scenario's directory)."""
        delay_s = parse_duration_ms(str(value.get("delay", "0ms"))) / 1000
        jitter_s = parse_duration_ms(str(value.get("jitter", "0ms"))) / 1000
        if "trace" not in value:
            rate = parse_rate(value["rate"]) if "rate" in value else None
            return fixed_link(rate_bit_s=rate, delay_s=delay_s, jitter_s=jitter_s, loss=float(value.get("loss", 0.0)))
        path = Path(str(value["trace"]))
        if not path.is_absolute() and self.directory is not None:
            path = self.directory / path
        column = None if value.get("column") is None else str(value["column"])
        return trace_link(path, delay_s=delay_s, jitter_s=jitter_s, column=column)

    def _fault(self, data: object, where: str, groups: set[str], hub: HubSpec | None) -> FaultSpec | None:
        if not isinstance(data, dict):
            self.problem(where, "must be a table")
            return None
        self._known(data, f"{where}.", {"at_s", "kind", "for_s", "group", "rate", "replica"})
        at_s = self._number(data, "at_s", f"{where}.", default=math.nan)
        if math.isnan(at_s) or at_s < 0:
            self.problem(f"{where}.at_s", "a time from the start (>= 0) is needed")
        kind = self._str(data, "kind", f"{where}.", required=True)
        if kind is not None and kind not in get_args(FaultKind):
            self.problem(f"{where}.kind", f"must be one of {', '.join(get_args(FaultKind))}, not {kind!r}")
        for_s = data.get("for_s")
        if for_s is not None and (not isinstance(for_s, int | float) or isinstance(for_s, bool) or for_s <= 0):
            self.problem(f"{where}.for_s", "must be a positive number of seconds")
        group, rate, replica = data.get("group"), None, data.get("replica")
        if kind in {"bandwidth", "outage"} and group not in groups:
            self.problem(f"{where}.group", f"needs the name of a group ({', '.join(sorted(groups))}), not {group!r}")
        if kind == "bandwidth":
            try:
                rate = parse_rate(str(data["rate"]))
            except (KeyError, ValueError) as exc:
                self.problem(f"{where}.rate", f"a rate such as '2mbit' is needed ({exc})")
        if kind in REPLICA_FAULTS and (
            not isinstance(replica, int) or hub is None or not 0 <= replica < hub.replicas or isinstance(replica, bool)
        ):
            count = hub.replicas if hub else "?"
            self.problem(f"{where}.replica", f"needs a replica index from 0 to {count} - 1, not {replica!r}")
        if self.problems:
            return None
        return FaultSpec(
            at_s=float(at_s),
            kind=kind,  # type: ignore[arg-type]  # checked above
            for_s=None if for_s is None else float(for_s),
            group=group,
            rate_bit_s=rate,
            replica=replica,
        )

    def _policy_ok(self, policy: str, where: str) -> None:
        if not policy.strip():
            self.problem(where, f"must be {', '.join(POLICIES)} or a cut id")

    def _known(self, data: dict[str, Any], prefix: str, keys: set[str]) -> None:
        for key in data:
            if key not in keys:
                self.problem(f"{prefix}{key}", f"unknown key; known: {', '.join(sorted(keys))}")

    def _str(self, data: dict[str, Any], key: str, prefix: str, *, required: bool = False) -> str | None:
        value = data.get(key)
        if value is None:
            if required:
                self.problem(f"{prefix}{key}", "is required")
            return None
        if not isinstance(value, str) or not value:
            self.problem(f"{prefix}{key}", f"must be a non-empty string, not {value!r}")
            return None
        return value

    def _number(
        self,
        data: dict[str, Any],
        key: str,
        prefix: str,
        *,
        default: float,
        integer: bool = False,
        positive: bool = False,
    ) -> float:
        value = data.get(key, default)
        kinds = int if integer else int | float
        if not isinstance(value, kinds) or isinstance(value, bool) or (isinstance(value, float) and math.isinf(value)):
            self.problem(f"{prefix}{key}", f"must be {'an integer' if integer else 'a number'}, not {value!r}")
            return default
        if positive and value <= 0:
            self.problem(f"{prefix}{key}", f"must be positive, not {value!r}")
            return default
        return float(value)


_HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.-]+)\s*\]\]?")
_KEY = re.compile(r"^\s*([A-Za-z0-9_-]+)\s*=")
_PATH = re.compile(r"^([A-Za-z0-9_.\[\]-]+): ")


def _key_lines(text: str) -> dict[str, int]:
    """The line of each ``key = value`` in ``text``, by field path (``groups[1].link``), and of each table header."""
    lines: dict[str, int] = {}
    counts: dict[str, int] = {}
    table = ""
    for number, line in enumerate(text.splitlines(), start=1):
        if header := _HEADER.match(line):
            name = header[2]
            if header[1] == "[[":
                index = counts[name] = counts.get(name, -1) + 1
                table = f"{name}[{index}]"
            else:
                table = name
            lines.setdefault(table, number)
        elif key := _KEY.match(line):
            lines.setdefault(f"{table}.{key[1]}" if table else key[1], number)
    return lines


def _with_line(problem: str, lines: dict[str, int]) -> str:
    """``problem`` prefixed with the line of its field (or of the nearest enclosing table) when known."""
    match = _PATH.match(problem)
    path = match[1] if match else ""
    while path:
        if path in lines:
            return f"line {lines[path]}: {problem}"
        path = path.rpartition(".")[0]
    return problem

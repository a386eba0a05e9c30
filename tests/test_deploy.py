"""The deployment files validate, and every edgecut option and EDGECUT_* variable they name is one the CLI has.

No Docker daemon, compose plugin, cluster or EMQX runs here, so this is what
can be checked offline (docs/deploy.md says what was not run):

- ``deploy/compose.yaml`` against the Compose Specification's JSON schema
  (vendored: tests/data/README.md), and what the schema cannot see: the two
  EMQX nodes name each other, the hubs share a group across them,
  Prometheus scrapes each hub's --http port, the broker's packet limit has
  room for the hubs' largest message, mounted files exist;
- ``deploy/k8s/*.yaml`` with kubernetes-validate's strict schemas (offline;
  they ship in the package), and that the probes, Service, HPA and
  prometheus-adapter rule point at what the hub serves;
- the image's entry point (ENTRYPOINT and CMD, read from each Dockerfile)
  run as a command with ``--help``, and every invocation the files make
  (compose services, Deployment containers) checked against that command's
  ``--help``: its ``--options`` exist, its EDGECUT_* variables are ones the
  command reads, and the hub's whole configuration builds.

Each check is also fed a broken copy, so that it is seen to fail.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import functools
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any
from unittest import mock

import jsonschema
import kubernetes_validate
import pytest
import yaml

import models
from cloud_hub._metrics import HubMetrics, HubState
from edgecut._cli import build_parser, main
from edgecut._cli_runtime import parse_size
from edgecut._exit import ExitCode

if TYPE_CHECKING:
    from cloud_hub import HubConfig

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE = DEPLOY / "compose.yaml"
SCHEMA = ROOT / "tests" / "data" / "compose-spec.json"
DOCKERFILES = ("Dockerfile", "Dockerfile.cuda")
K8S_VERSION = "1.31"
"""The Kubernetes API the manifests are checked against (autoscaling/v2 and the rest are stable there)."""
IMAGE = "edgecut:latest"
PACKET_ENVELOPE = 64 * 1024
"""What a broker's packet limit needs beyond the hubs' --max-message-bytes (docs/broker.md)."""

# --- reading the files --------------------------------------------------------


def _yaml(path: Path) -> Any:  # noqa: ANN401 - YAML
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _manifests() -> list[tuple[str, dict[str, Any]]]:
    """Every document of every top-level manifest in deploy/k8s, with where it came from."""
    found = []
    for path in sorted(K8S.glob("*.yaml")):
        for i, doc in enumerate(yaml.safe_load_all(path.read_text(encoding="utf-8"))):
            if doc is not None:
                found.append((f"{path.relative_to(ROOT)}[{i}]", doc))
    return found


def dockerfile_exec(text: str, instruction: str) -> list[str]:
    """The exec-form (JSON array) arguments of the last ``instruction`` (the final stage's) in a Dockerfile."""
    lines = re.findall(rf"^{instruction}\s+(.+)$", text, flags=re.MULTILINE)
    assert lines, f"no {instruction}"
    value = json.loads(lines[-1])
    assert isinstance(value, list), f"{instruction} is not in exec form (a JSON array)"
    assert all(isinstance(arg, str) for arg in value)
    return value


@dataclasses.dataclass(frozen=True)
class Invocation:
    """One way the files run the image: the arguments after its entry point, and its environment."""

    where: str
    argv: tuple[str, ...]
    env: dict[str, str]


def _env_list(entries: list[dict[str, Any]] | dict[str, Any] | None) -> dict[str, str]:
    if entries is None:
        return {}
    if isinstance(entries, dict):  # compose's map form
        return {key: str(value) for key, value in entries.items()}
    return {entry["name"]: str(entry.get("value", "")) for entry in entries}  # a Kubernetes container's env


def compose_invocations(compose: dict[str, Any], cmd: list[str]) -> list[Invocation]:
    """The services that run the edgecut image: their command (else the image's CMD) and environment."""
    runs = []
    for name, service in compose["services"].items():
        if service.get("image") != IMAGE:
            continue
        assert "entrypoint" not in service, f"{name} replaces the image's entry point"
        runs.append(
            Invocation(f"compose {name}", tuple(service.get("command", cmd)), _env_list(service.get("environment")))
        )
    return runs


def k8s_invocations(manifests: list[tuple[str, dict[str, Any]]], cmd: list[str]) -> list[Invocation]:
    """The Deployment containers that run the edgecut image: their args (else CMD) and environment, ConfigMaps in."""
    config_maps = {doc["metadata"]["name"]: doc.get("data", {}) for _, doc in manifests if doc["kind"] == "ConfigMap"}
    runs = []
    for where, doc in manifests:
        if doc["kind"] != "Deployment":
            continue
        for container in doc["spec"]["template"]["spec"]["containers"]:
            if container["image"] != IMAGE:
                continue
            assert "command" not in container, f"{where} replaces the image's entry point"
            env: dict[str, str] = {}
            for source in container.get("envFrom", []):
                name = source["configMapRef"]["name"]
                assert name in config_maps, f"{where}: no ConfigMap {name} in deploy/k8s"
                env |= config_maps[name]
            env |= _env_list(container.get("env"))
            runs.append(Invocation(f"{where} {container['name']}", tuple(container.get("args", cmd)), env))
    return runs


def _cmd() -> list[str]:
    return dockerfile_exec((ROOT / "Dockerfile").read_text(encoding="utf-8"), "CMD")


# --- the CLI as the image runs it ---------------------------------------------


@functools.cache
def help_text(command: str) -> str:
    """``edgecut COMMAND --help`` as the image's entry point prints it (``python -m edgecut`` is the same main)."""
    result = subprocess.run(  # noqa: S603 - our own CLI
        [sys.executable, "-m", "edgecut", command, "--help"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "1000", "PYTHONPATH": str(ROOT)},
        timeout=60,
    )
    return result.stdout


def env_vars_read(command: str) -> set[str]:
    """The EDGECUT_* variables ``edgecut COMMAND`` reads, as its ``--help`` names them."""
    return set(re.findall(r"\bEDGECUT_[A-Z0-9_]*[A-Z0-9]", help_text(command)))


def invocation_problems(run: Invocation) -> list[str]:
    """What is wrong with ``run``: an option or variable its command lacks, or arguments that do not parse."""
    subcommands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    if not run.argv or run.argv[0] not in subcommands.choices:
        return [f"{run.where}: {run.argv[:1]} is no edgecut command"]
    command = run.argv[0]
    text = help_text(command)
    problems = [
        f"{run.where}: edgecut {command} has no option {option}"
        for option in dict.fromkeys(arg.split("=", 1)[0] for arg in run.argv if arg.startswith("--"))
        if not re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text)
    ]
    problems += [
        f"{run.where}: edgecut {command} does not read {name}"
        for name in run.env
        if name.startswith("EDGECUT_") and name not in env_vars_read(command)
    ]
    with mock.patch.dict(os.environ, run.env), mock.patch("sys.stderr"):
        try:
            build_parser().parse_args(list(run.argv))
        except SystemExit:
            problems.append(f"{run.where}: edgecut {' '.join(run.argv)} does not parse")
    return problems


def _all_invocations() -> list[Invocation]:
    cmd = _cmd()
    runs = [Invocation(f"{name} CMD", tuple(_dockerfile_cmd(name)), {}) for name in DOCKERFILES]
    return runs + compose_invocations(_yaml(COMPOSE), cmd) + k8s_invocations(_manifests(), cmd)


def _dockerfile_cmd(name: str) -> list[str]:
    return dockerfile_exec((ROOT / name).read_text(encoding="utf-8"), "CMD")


# --- the image's entry point ----------------------------------------------------


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_the_image_entry_point_is_the_edgecut_command_and_its_cmd_runs(dockerfile: str) -> None:
    text = (ROOT / dockerfile).read_text(encoding="utf-8")
    assert dockerfile_exec(text, "ENTRYPOINT") == ["edgecut"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
    assert scripts["edgecut"] == "edgecut._cli:main"  # what `python -m edgecut` runs too
    cmd = dockerfile_exec(text, "CMD")
    result = subprocess.run(  # noqa: S603 - our own CLI, as the container would run it
        [sys.executable, "-m", "edgecut", *cmd, "--help"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: edgecut {cmd[0]}")


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_the_dockerfile_copies_every_package_it_installs(dockerfile: str) -> None:
    text = (ROOT / dockerfile).read_text(encoding="utf-8")
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]["packages"]
    copied = set(re.findall(r"^COPY (\S+) \1$", text, flags=re.MULTILINE))
    assert {package.split(".")[0] for package in packages} <= copied
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    assert not copied.intersection(ignored)
    assert "README.md" not in ignored  # pyproject's readme: the install needs it


def test_every_invocation_uses_options_and_variables_the_cli_has() -> None:
    runs = _all_invocations()
    assert {run.where.split()[0] for run in runs} >= {"Dockerfile", "compose", "deploy/k8s/hub-deployment.yaml[0]"}
    assert [problem for run in runs for problem in invocation_problems(run)] == []


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (lambda argv, env: ([*argv, "--wokers", "2"], env), "has no option --wokers"),
        (lambda argv, env: ([*argv, "--work", "2"], env), "has no option --work"),  # argparse would take it
        (lambda argv, env: (argv, {**env, "EDGECUT_GROPU": "g"}), "does not read EDGECUT_GROPU"),
        (lambda argv, env: (argv, {**env, "EDGECUT_MODEL": "resnet18"}), "does not read EDGECUT_MODEL"),  # the agent's
        (lambda argv, env: ([*argv, "--workers", "two"], env), "does not parse"),
        (lambda argv, env: (["serve", *argv[1:]], env), "is no edgecut command"),
    ],
)
def test_a_bad_option_or_variable_is_caught(change: Any, fragment: str) -> None:  # noqa: ANN401 - a lambda
    compose = _yaml(COMPOSE)
    hub = compose["services"]["hub-1"]
    hub["command"], hub["environment"] = change(list(hub["command"]), dict(hub["environment"]))
    problems = [problem for run in compose_invocations(compose, _cmd()) for problem in invocation_problems(run)]
    assert problems
    assert all(problem.startswith("compose hub-1: ") for problem in problems)
    assert any(fragment in problem for problem in problems)


def test_a_bad_cmd_in_the_dockerfile_is_caught() -> None:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8").replace('"--http"', '"--htpp"')
    run = Invocation("Dockerfile CMD", tuple(dockerfile_exec(text, "CMD")), {})
    assert invocation_problems(run) == [
        "Dockerfile CMD: edgecut hub has no option --htpp",
        "Dockerfile CMD: edgecut hub --htpp 0.0.0.0:8000 does not parse",
    ]


ENV_SAMPLES = {
    "hub": {
        "EDGECUT_BROKER": "mqtt://elsewhere:1884",
        "EDGECUT_MODELS": "/srv/models",
        "EDGECUT_GROUP": "other-hubs",
        "EDGECUT_HUB_ID": "hub-x",
        "EDGECUT_PREFIX": "px",
        "EDGECUT_HTTP": "0.0.0.0:9000",
        "EDGECUT_PROVIDERS": "cpu",
        "EDGECUT_MAX_MESSAGE_BYTES": "1M",
        "EDGECUT_MAX_BATCH_SIZE": "4",
        "EDGECUT_MAX_BATCH_DELAY_MS": "2",
    },
    "agent": {
        "EDGECUT_BROKER": "mqtt://elsewhere:1884",
        "EDGECUT_MODEL": "mobilenet_v2",
        "EDGECUT_STATE_DIR": "/srv/state",
        "EDGECUT_AGENT_ID": "agent-x",
        "EDGECUT_PREFIX": "px",
        "EDGECUT_HTTP": "0.0.0.0:9100",
    },
}


@pytest.mark.parametrize("command", sorted(ENV_SAMPLES))
def test_every_variable_the_help_names_is_read(command: str) -> None:
    """The help is what invocation_problems trusts: each variable it names changes what the command parses."""
    assert env_vars_read(command) == set(ENV_SAMPLES[command])
    argv = [command] + (["in.png"] if command == "agent" else [])
    with mock.patch.dict(os.environ, {}, clear=False):
        for name in ENV_SAMPLES[command]:
            os.environ.pop(name, None)
        baseline = vars(build_parser().parse_args(argv))
        for name, value in ENV_SAMPLES[command].items():
            with mock.patch.dict(os.environ, {name: value}):
                assert vars(build_parser().parse_args(argv)) != baseline, f"{name} changes nothing"


def test_each_hub_the_files_start_builds_its_whole_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    """Through the CLI up to the broker connection: run_hub gets a HubConfig that passed every check."""
    started: list[HubConfig] = []
    monkeypatch.setattr("cloud_hub.run_hub", lambda config, **_: started.append(config))
    gpu_build = ("TensorrtExecutionProvider", "CUDAExecutionProvider", models.CPU_PROVIDER)
    resolve = functools.partial(models.resolve_providers, available=gpu_build)  # Dockerfile.cuda asks for cuda
    monkeypatch.setattr("models.resolve_providers", resolve)
    hubs = [run for run in _all_invocations() if run.argv[0] == "hub"]
    assert len(hubs) == len(DOCKERFILES) + 3  # two compose hubs, one Deployment
    for run in hubs:
        with mock.patch.dict(os.environ, run.env):
            assert main(list(run.argv)) == ExitCode.OK, run.where
    assert [config.http for config in started] == ["0.0.0.0:8000"] * len(hubs)
    assert len({config.group for config in started}) == 1


# --- compose ------------------------------------------------------------------


def compose_schema_errors(compose: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA.read_text(encoding="utf-8")))
    return [f"{'.'.join(map(str, error.absolute_path))}: {error.message}" for error in validator.iter_errors(compose)]


def test_the_compose_file_follows_the_compose_spec() -> None:
    assert compose_schema_errors(_yaml(COMPOSE)) == []


@pytest.mark.parametrize(
    ("path", "value", "fragment"),
    [
        (("services", "hub-1", "restart"), ["always"], "restart"),
        (("services", "emqx1", "helthcheck"), {"test": ["CMD", "true"]}, "helthcheck"),
        (("services", "agent", "depends_on"), "hub-1", "depends_on"),
        (("services", "prometheus", "ports"), {"9090": 9090}, "ports"),
    ],
)
def test_the_schema_check_catches_a_broken_compose_file(path: tuple[str, ...], value: object, fragment: str) -> None:
    compose = copy.deepcopy(_yaml(COMPOSE))
    parent = functools.reduce(lambda node, key: node[key], path[:-1], compose)
    parent[path[-1]] = value
    errors = compose_schema_errors(compose)
    assert errors
    assert any(fragment in error for error in errors)


def _emqx_env(service: dict[str, Any]) -> dict[str, str]:
    return _env_list(service["environment"])


def test_the_compose_file_clusters_two_emqx_5_8_nodes() -> None:
    services = _yaml(COMPOSE)["services"]
    nodes = {name: service for name, service in services.items() if service.get("image", "").startswith("emqx/")}
    assert len(nodes) == 2
    names = set()
    for service in nodes.values():
        assert re.fullmatch(r"emqx/emqx:5\.8\.\d+", service["image"])  # 5.9 on: single node in the open edition
        env = _emqx_env(service)
        host = env["EMQX_NODE_NAME"].split("@", 1)[1]
        assert "." in host  # EMQX runs with long names: a host with a dot
        assert host == service["hostname"]
        assert host in service["networks"]["edgecut"]["aliases"]
        assert env["EMQX_CLUSTER__DISCOVERY_STRATEGY"] == "static"
        names.add(env["EMQX_NODE_NAME"])
    seeds = {_emqx_env(service)["EMQX_CLUSTER__STATIC__SEEDS"] for service in nodes.values()}
    assert len(seeds) == 1
    assert set(seeds.pop().strip("[]").split(",")) == names
    assert len({_emqx_env(service)["EMQX_NODE__COOKIE"] for service in nodes.values()}) == 1


def test_the_compose_hubs_share_one_group_across_both_broker_nodes() -> None:
    compose = _yaml(COMPOSE)
    services = compose["services"]
    hubs = [run for run in compose_invocations(compose, _cmd()) if run.argv[0] == "hub"]
    assert len(hubs) == 2
    assert len({run.env["EDGECUT_GROUP"] for run in hubs}) == 1
    assert len({run.env["EDGECUT_HUB_ID"] for run in hubs}) == 2
    brokers = {run.env["EDGECUT_BROKER"].removeprefix("mqtt://").split(":")[0] for run in hubs}
    assert brokers == {name for name, service in services.items() if service.get("image", "").startswith("emqx/")}


def test_prometheus_scrapes_each_compose_hub_on_its_http_port() -> None:
    compose = _yaml(COMPOSE)
    services = compose["services"]
    mount = next(v for v in services["prometheus"]["volumes"] if v.endswith(":/etc/prometheus/prometheus.yml:ro"))
    config = _yaml(DEPLOY / mount.split(":", 1)[0])
    job = next(job for job in config["scrape_configs"] if job["job_name"] == "edgecut-hub")
    assert job["metrics_path"] == "/metrics"
    targets = {target for group in job["static_configs"] for target in group["targets"]}
    hubs = [run for run in compose_invocations(compose, _cmd()) if run.argv[0] == "hub"]
    ports = {run.argv[run.argv.index("--http") + 1].rsplit(":", 1)[1] for run in hubs}
    assert targets == {f"{run.where.split()[1]}:{port}" for run in hubs for port in ports}


def _emqx_bytes(text: str) -> int:
    number, unit = re.fullmatch(r"(\d+)(KB|MB|GB)?", text).groups()  # type: ignore[union-attr]
    return int(number) * {None: 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3}[unit]


def test_the_broker_packet_limit_has_room_for_the_hubs_largest_message() -> None:
    compose = _yaml(COMPOSE)
    limits = {
        _emqx_bytes(_emqx_env(s)["EMQX_MQTT__MAX_PACKET_SIZE"])
        for s in compose["services"].values()
        if "emqx" in s["image"]
    }
    for run in compose_invocations(compose, _cmd()):
        if run.argv[0] == "hub":
            largest = parse_size(run.argv[run.argv.index("--max-message-bytes") + 1])
            assert min(limits) >= largest + PACKET_ENVELOPE, run.where


def test_what_the_compose_file_mounts_and_builds_exists() -> None:
    compose = _yaml(COMPOSE)
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            assert (DEPLOY / volume.split(":", 1)[0]).is_file(), f"{name}: {volume}"
        if "build" in service:
            context = DEPLOY / service["build"]["context"]
            assert (context / service["build"].get("dockerfile", "Dockerfile")).is_file(), name


# --- Kubernetes -----------------------------------------------------------------


def k8s_errors(doc: dict[str, Any]) -> list[str]:
    try:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [f"{'.'.join(map(str, exc.path))}: {exc.message}"]
    return []


def test_the_manifests_validate_offline_in_strict_mode() -> None:
    manifests = _manifests()
    kinds = sorted(doc["kind"] for _, doc in manifests)
    assert kinds == ["ConfigMap", "Deployment", "HorizontalPodAutoscaler", "Service"]
    assert {where: k8s_errors(doc) for where, doc in manifests} == {where: [] for where, _ in manifests}


@pytest.mark.parametrize(
    ("kind", "change", "fragment"),
    [
        (
            "Deployment",
            lambda d: d["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"].update(paht="/"),
            "paht",
        ),
        ("Deployment", lambda d: d["spec"].update(replicas="two"), "replicas"),
        ("HorizontalPodAutoscaler", lambda d: d["spec"].pop("scaleTargetRef"), "scaleTargetRef"),
        ("Service", lambda d: d["spec"]["ports"][0].update(port="http"), "port"),
    ],
)
def test_the_manifest_check_catches_a_broken_manifest(kind: str, change: Any, fragment: str) -> None:  # noqa: ANN401
    doc = copy.deepcopy(next(doc for _, doc in _manifests() if doc["kind"] == kind))
    change(doc)
    errors = k8s_errors(doc)
    assert errors
    assert fragment in errors[0]


def _by_kind(kind: str) -> dict[str, Any]:
    return next(doc for _, doc in _manifests() if doc["kind"] == kind)


def test_the_probes_and_service_point_at_the_hubs_http_endpoints() -> None:
    deployment, service = _by_kind("Deployment"), _by_kind("Service")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    (run,) = k8s_invocations(_manifests(), _cmd())
    http_port = int(run.env["EDGECUT_HTTP"].rsplit(":", 1)[1])
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
    for probe in ("readinessProbe", "livenessProbe"):
        assert ports[container[probe]["httpGet"]["port"]] == http_port
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"][0]["targetPort"] in ports
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert int(annotations["prometheus.io/port"]) == http_port
    # The hub drains for --grace before it stops: the pod must be given longer.
    grace = float(run.argv[run.argv.index("--grace") + 1])
    assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > grace


def test_the_autoscaler_scales_the_hubs_on_a_metric_the_hub_exports_through_the_adapter_rule() -> None:
    hpa, deployment = _by_kind("HorizontalPodAutoscaler"), _by_kind("Deployment")
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    (metric,) = hpa["spec"]["metrics"]
    name = metric["pods"]["metric"]["name"]
    rules = _yaml(K8S / "prometheus-adapter" / "values.yaml")["rules"]["custom"]
    rule = next(rule for rule in rules if rule["name"]["as"] == name)
    series = re.match(r"[a-z_]+", rule["seriesQuery"]).group()  # type: ignore[union-attr]
    state = HubState(
        queue_depth=0, queue_bytes=0, tails_loaded=0, tails_loading=0, connected={}, replies_sent=0,
        pings_answered=0, pings_dropped=0, repeats=0,
    )  # fmt: skip
    exported = HubMetrics(lambda: state).exposition().decode()
    assert re.search(rf"^# TYPE {series} gauge$", exported, flags=re.MULTILINE)
    assert re.fullmatch(rule["name"]["matches"], series)

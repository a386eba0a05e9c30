"""Every package's ``__all__`` is sorted, unique and complete; packages meet through it alone; agents import no onnx."""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from types import ModuleType

PACKAGES = [
    "protocol",
    "protocol.http",
    "protocol.mqtt",
    "models",
    "models.partition",
    "models.prelude",
    "models.zoo",
    "simulations",
    "edge_agent",
    "edge_agent.schema",
    "cloud_hub",
    "edgecut",
]


def ruff_sort_key(name: str) -> tuple[int, list[str | int]]:
    """RUF022's isort-style order: SCREAMING_CASE, then CamelCase, then the rest; natural within each."""
    if len(name) > 1 and name.isupper():
        group = 0
    elif name[0].isupper():
        group = 1
    else:
        group = 2
    natural: list[str | int] = [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name) if part]
    return group, natural


def _module(name: str) -> ModuleType:
    return importlib.import_module(name)


def test_sort_key_agrees_with_ruff() -> None:
    # The order `ruff check --select RUF022 --fix` gives these names (ruff 0.17.5).
    by_ruff = ["AB_C", "X1", "Ab", "T", "b", "free_port", "item9", "item10", "sha256_hex"]
    shuffled = ["b", "T", "item10", "AB_C", "Ab", "item9", "X1", "sha256_hex", "free_port"]
    assert sorted(shuffled, key=ruff_sort_key) == by_ruff


@pytest.mark.parametrize("package", PACKAGES)
def test_all_is_sorted_and_unique(package: str) -> None:
    exported = list(_module(package).__all__)
    assert exported == sorted(exported, key=ruff_sort_key)
    assert len(set(exported)) == len(exported)


@pytest.mark.parametrize("package", PACKAGES)
def test_every_exported_name_exists(package: str) -> None:
    module = _module(package)
    missing = [name for name in module.__all__ if not hasattr(module, name)]
    assert missing == []


@pytest.mark.parametrize("package", ["models", "edge_agent", "cloud_hub", "simulations"])
def test_public_classes_and_functions_of_the_package_are_exported(package: str) -> None:
    """A class or function a package defines in a private module and uses in its API is in ``__all__``."""
    module = _module(package)
    for name in dir(module):
        value = getattr(module, name)
        if name.startswith("_") or not (inspect.isclass(value) or inspect.isfunction(value)):
            continue
        if value.__module__.startswith(f"{package}."):
            assert name in module.__all__, f"{package}.{name} is imported into the package but not exported"


@pytest.mark.parametrize("package", ["edge_agent", "cloud_hub"])
def test_star_import_gives_exactly_all(package: str) -> None:
    namespace: dict[str, object] = {}
    exec(f"from {package} import *", namespace)  # noqa: S102 - a fixed import statement
    namespace.pop("__builtins__")
    assert sorted(namespace) == sorted(_module(package).__all__)


ROOT = Path(__file__).resolve().parents[1]
TOP_LEVEL = ("protocol", "models", "edge_agent", "cloud_hub", "edgecut", "simulations")


def _private_imports(source: str, package: str) -> list[str]:
    """What ``source`` (a module of ``package``) imports from another package's private modules or names."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        else:
            continue
        for module in modules:
            top, *rest = module.split(".")
            if top in TOP_LEVEL and top != package and any(part.startswith("_") for part in rest):
                found.append(module)
    return found


def test_the_private_import_check_sees_one() -> None:
    source = "from edge_agent._files import load_input\nimport models._runtime\nfrom protocol import _checks\n"
    assert _private_imports(source, "edgecut") == [
        "edge_agent._files",
        "edge_agent._files.load_input",
        "models._runtime",
        "protocol._checks",
    ]
    assert _private_imports("from edge_agent._core import AgentCore\n", "edge_agent") == []


@pytest.mark.parametrize("package", TOP_LEVEL)
def test_no_package_imports_another_packages_private_modules(package: str) -> None:
    """Packages meet through each other's ``__init__``: a private name wanted outside is exported or moved."""
    found = {
        str(path.relative_to(ROOT)): imports
        for path in sorted((ROOT / package).rglob("*.py"))
        if (imports := _private_imports(path.read_text(encoding="utf-8"), package))
    }
    assert found == {}


HEAVY = ("onnx", "onnx.helper", "PIL", "iotcore")


def _imported_after(statement: str, probes: tuple[str, ...] = HEAVY) -> list[str]:
    """Which of ``probes`` a fresh interpreter has imported after running ``statement``."""
    code = f"import sys; {statement}; print(','.join(m for m in {probes!r} if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)  # noqa: S603
    return [name for name in result.stdout.strip().split(",") if name]


def test_importing_the_runtime_packages_does_not_import_onnx() -> None:
    assert _imported_after("import edge_agent, protocol, models, cloud_hub") == []


@pytest.mark.parametrize(
    ("package", "never"),
    [
        ("cloud_hub", ("edge_agent", "edgecut")),
        ("edge_agent", ("cloud_hub", "edgecut", "onnx")),
        ("protocol", ("aiomqtt", "asyncio", "onnxruntime", "onnx", "edge_agent", "cloud_hub", "models")),
        ("protocol.mqtt", ("edge_agent", "cloud_hub", "models", "onnxruntime")),
        ("protocol.http", ("edge_agent", "cloud_hub", "models", "onnxruntime", "aiomqtt", "prometheus_client")),
        ("models", ("onnx", "edge_agent", "cloud_hub", "aiomqtt")),
    ],
)
def test_agent_and_hub_meet_only_on_the_wire(package: str, never: tuple[str, ...]) -> None:
    """Neither side imports the other; the protocol and the models know no side."""
    assert _imported_after(f"import {package}", never) == []


def test_the_sim_extra_is_imported_only_when_used() -> None:
    """``import simulations`` (links, ``edgecut sim link``) works without SimPy, matplotlib and rich."""
    assert _imported_after("import simulations", ("simpy", "matplotlib", "rich")) == []
    assert _imported_after("import simulations._fleet", ("simpy",)) == ["simpy"]


def test_the_import_probe_sees_what_a_package_does_import() -> None:
    assert _imported_after("import cloud_hub", ("protocol.mqtt", "aiomqtt", "models")) == [
        "protocol.mqtt",
        "aiomqtt",
        "models",
    ]


def test_building_the_cli_parser_does_not_import_onnx() -> None:
    assert _imported_after("import edgecut._cli as cli; cli.build_parser()") == []


def test_partition_is_where_onnx_comes_in() -> None:
    """The counter-check: the probe does see onnx when a module really imports it."""
    assert "onnx" in _imported_after("import models.partition")

"""The bundled scenarios: ``edgecut sim run NAME`` runs ``NAME.toml`` from here."""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path

from protocol.errors import ConfigError

__all__ = ["bundled", "find"]


def _directory() -> Path:
    return Path(str(resources.files("simulations.scenarios")))


def bundled() -> dict[str, str]:
    """Every bundled scenario's name and description, sorted by name."""
    found = {}
    for path in sorted(_directory().glob("*.toml")):
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        found[path.stem] = str(data.get("description", ""))
    return found


def find(name_or_path: str) -> Path:
    """A scenario file: ``name_or_path`` if it is a file, else the bundled scenario of that name.

    Raises:
        ConfigError: Neither.
    """
    path = Path(name_or_path)
    if path.is_file():
        return path
    candidate = _directory() / f"{name_or_path}.toml"
    if candidate.is_file():
        return candidate
    msg = f"no scenario file {name_or_path!r} and no bundled scenario of that name; bundled: {', '.join(bundled())}"
    raise ConfigError(msg)

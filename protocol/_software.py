"""The software version a node announces in its status."""

from __future__ import annotations

import importlib.metadata


def _installed_version() -> str:
    try:
        return importlib.metadata.version("edgecut")
    except importlib.metadata.PackageNotFoundError:  # running from a source tree that is not installed
        return ""


SOFTWARE_VERSION = _installed_version()
"""The installed edgecut's version (empty from a source tree that is not installed): a status's ``version``."""

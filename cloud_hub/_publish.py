"""Publishing a version under a node's models directory, whole, optionally as a canary (``edgecut models publish``).

A version is a segments or split directory. It goes in under
``NAME-VERSION`` by a copy beside the models directory and one rename, so a
node scanning the directory never offers it half-written. A staged roll-out is the version's
``rollout.json`` (``{"canary": 0.1}``): the share of agents that take it
(docs/protocol.md, section 9.2); publishing the version again without a
share removes the file, and every agent takes it.
"""

from __future__ import annotations

import json
import shutil
import uuid
from typing import TYPE_CHECKING

from models import MANIFEST_FILE, SEGMENTS_FILE, Manifest, SegmentsManifest
from protocol import check_canary, check_delivery_name, version_of
from protocol.errors import ConfigError, ModelError

if TYPE_CHECKING:
    from pathlib import Path

ROLLOUT_FILE = "rollout.json"
"""A version directory's staged roll-out: ``{"canary": SHARE}``, read at every scan; not delivered."""


def read_canary(directory: Path) -> float | None:
    """The canary share in ``directory``'s ``rollout.json``, or ``None`` without one.

    Raises:
        ModelError: The file is not ``{"canary": SHARE}`` with 0 < SHARE < 1.
        OSError: It cannot be read.
    """
    path = directory / ROLLOUT_FILE
    if not path.is_file():
        return None
    try:
        return check_canary(json.loads(path.read_text())["canary"], f"{path}: canary")
    except (ValueError, KeyError, TypeError) as exc:
        msg = f'{path} must be {{"canary": SHARE}} with SHARE above 0 and below 1: {exc}'
        raise ModelError(msg) from exc


def publish_version(source: Path, models_dir: Path, *, canary: float | None = None) -> tuple[str, str, Path]:
    """Put the model directory ``source`` under ``models_dir`` as a version a node offers; blocks (copies).

    A version already there is not copied again: only its roll-out changes.

    Args:
        source: A segments or split directory.
        models_dir: The node's models directory (``--models``).
        canary: The share of agents that take it (above 0, below 1); ``None``: every agent.

    Returns:
        The model's name, the version, and its directory under ``models_dir``.

    Raises:
        ModelError: ``source`` is not a segments or split directory.
        ConfigError: ``models_dir`` is not a directory, or ``canary`` is out of range.
    """
    if canary is not None:
        try:
            check_canary(canary, "canary")
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
    if not models_dir.is_dir():
        msg = f"{models_dir} is not a directory"
        raise ConfigError(msg)
    model, sha256 = _identity(source)
    version = version_of(sha256)
    target = models_dir / f"{model}-{version}"
    if not target.is_dir():
        # Beside the models directory, not in it: a scan there would find the manifest before the files.
        staging = models_dir.parent / f".{models_dir.name}.publishing-{uuid.uuid4().hex[:8]}"
        try:
            shutil.copytree(source, staging / target.name)
            (staging / target.name).rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    _write_rollout(target, canary)
    return model, version, target


def _identity(source: Path) -> tuple[str, str]:
    if (source / SEGMENTS_FILE).is_file():
        chain = SegmentsManifest.load(source)
        model, sha256 = chain.model_id, chain.model_sha256
    elif (source / MANIFEST_FILE).is_file():
        manifest = Manifest.load(source)
        model, sha256 = manifest.model_id, manifest.model_sha256
    else:
        msg = f"{source} is neither a segments directory ({SEGMENTS_FILE}) nor a split one ({MANIFEST_FILE})"
        raise ModelError(msg)
    try:
        check_delivery_name(model, "the model's name")
    except ValueError as exc:
        raise ModelError(str(exc)) from exc
    return model, sha256


def _write_rollout(directory: Path, canary: float | None) -> None:
    path = directory / ROLLOUT_FILE
    if canary is None:
        path.unlink(missing_ok=True)
        return
    partial = directory / f".{ROLLOUT_FILE}.{uuid.uuid4().hex[:8]}"
    partial.write_text(json.dumps({"canary": canary}) + "\n")
    partial.replace(path)

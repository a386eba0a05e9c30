"""What the commands print for scripts: JSON on stdout, flushed (scripts read it from a pipe)."""

from __future__ import annotations

import json


def print_json(data: object, *, indent: int | None = 2) -> None:
    """Print ``data`` as JSON (``indent=None``: on one line, as a readiness line is); paths as strings."""
    print(json.dumps(data, indent=indent, default=str), flush=True)  # noqa: T201 - the commands' output

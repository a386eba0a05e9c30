"""Find a model by zoo name or file path."""

from __future__ import annotations

from pathlib import Path

import onnx

from protocol.errors import ModelError


def load_model(name_or_path: str | Path) -> tuple[str, onnx.ModelProto]:
    """Load an ONNX file, or build a zoo model (seed 0); return its id and the model.

    An existing file, or any name ending in ``.onnx``, is loaded: its id is the
    file's stem. Anything else is a zoo model name: its id is the name.

    Raises:
        ModelError: The file is missing or not an ONNX model, or the name is
            neither a file nor a zoo model.
    """
    path = Path(name_or_path)
    if path.suffix == ".onnx" or path.is_file():
        return path.stem, _load_file(path)
    from models import zoo  # noqa: PLC0415 - only names that are not files need it

    name = str(name_or_path)
    if name not in zoo.MODEL_NAMES:
        known = ", ".join(zoo.MODEL_NAMES)
        msg = f"unknown model {name!r}: no such file, and the zoo has {known}"
        raise ModelError(msg)
    return name, zoo.build(name, seed=0)


def _load_file(path: Path) -> onnx.ModelProto:
    if not path.is_file():
        msg = f"model file {path} does not exist"
        raise ModelError(msg)
    try:
        return onnx.load(path)
    except Exception as exc:  # protobuf's DecodeError has no type stubs
        msg = f"cannot load {path} as an ONNX model: {exc}"
        raise ModelError(msg) from exc

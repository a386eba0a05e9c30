"""Find a model by zoo name or file path, and load model files, weights in side files included.

ONNX stores a model over 2 GB (or any model, if its exporter chose to) with
its weights in side files ("external data") named relative to the ``.onnx``
file. :func:`load_model_file` reads them relative to the directory the
``.onnx`` file is listed in and follows symbolic links, as ONNX Runtime does
and ``onnx.load`` refuses to: the Hugging Face cache lists both files as
links into a blob store. A location may not leave that directory.

A model's identity (:func:`model_file_sha256`, ``docs/protocol.md`` section
8) is the sha256 of its ``ModelProto`` serialized with every tensor's data
inline: for a file without external data, its bytes; with external data,
the same model as if saved in one file, so it does not depend on how the
weights are stored.
"""

from __future__ import annotations

import hashlib
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

import onnx
from onnx.external_data_helper import ExternalDataInfo, uses_external_data

from protocol.errors import ModelError

if TYPE_CHECKING:
    from collections.abc import Iterator


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
    return load_model_file(path)


def load_model_file(path: Path) -> onnx.ModelProto:
    """Load an ``.onnx`` file with its external data inline (symbolic links followed).

    Raises:
        ModelError: The file is missing or not an ONNX model, or its external
            data is missing, truncated, or named outside the file's directory.
    """
    model = _parse(path, path.read_bytes() if path.is_file() else None)
    for tensor in _external_tensors(model):
        tensor.raw_data = _external_bytes(path, tensor)
        tensor.ClearField("data_location")  # proto2: absent, as in a model saved in one file
        del tensor.external_data[:]
    return model


def model_file_sha256(path: Path) -> str:
    """The identity of the model in ``path``: sha256 of the file, or of the model with its external data inline.

    Raises:
        ModelError: As :func:`load_model_file`.
    """
    data = path.read_bytes() if path.is_file() else None
    model = _parse(path, data)
    if data is not None and not any(True for _ in _external_tensors(model)):
        return hashlib.sha256(data).hexdigest()
    return hashlib.sha256(load_model_file(path).SerializeToString()).hexdigest()


def _parse(path: Path, data: bytes | None) -> onnx.ModelProto:
    if data is None:
        msg = f"model file {path} {'is a directory' if path.is_dir() else 'does not exist'}"
        raise ModelError(msg)
    try:
        return onnx.load_model_from_string(data)
    except Exception as exc:  # protobuf's DecodeError has no type stubs
        msg = f"cannot load {path} as an ONNX model: {exc}"
        raise ModelError(msg) from exc


def _external_tensors(model: onnx.ModelProto) -> Iterator[onnx.TensorProto]:
    """Every tensor of the model (initializers and attribute tensors, subgraphs included) stored outside it."""
    graphs = [model.graph]
    while graphs:
        graph = graphs.pop()
        tensors = list(graph.initializer)
        for node in graph.node:
            for attribute in node.attribute:
                tensors += [attribute.t] if attribute.HasField("t") else []
                tensors += list(attribute.tensors)
                graphs += [attribute.g] if attribute.HasField("g") else []
                graphs += list(attribute.graphs)
        yield from (tensor for tensor in tensors if uses_external_data(tensor))


def _external_bytes(path: Path, tensor: onnx.TensorProto) -> bytes:
    info = ExternalDataInfo(tensor)
    location = PurePosixPath(info.location.replace("\\", "/"))
    if not info.location or location.is_absolute() or ".." in location.parts:
        msg = f"{path}: tensor {tensor.name!r} names external data outside the model's directory: {info.location!r}"
        raise ModelError(msg)
    side = path.parent / location  # beside the file as listed, not where a link points
    offset = int(info.offset or 0)
    try:
        with side.open("rb") as file:  # follows links: a cache's blob store
            file.seek(offset)
            data = file.read(int(info.length)) if info.length else file.read()
    except OSError as exc:
        msg = f"{path}: cannot read the external data of tensor {tensor.name!r} from {side}: {exc.strerror or exc}"
        raise ModelError(msg) from exc
    if info.length and len(data) != int(info.length):
        msg = f"{path}: {side} holds {len(data)} of the {info.length} bytes of tensor {tensor.name!r} at {offset}"
        raise ModelError(msg)
    return data

"""The package exports exactly its public API, sorted."""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys

import protocol
from protocol.errors import ConfigError, EdgecutError, ModelError, ProtocolError, TransportError

# Private modules that define public API; _checks, _codec_errors, _frames and _msgpack are internal helpers.
API_MODULES = ["_codecs", "_codes", "_images", "_limits", "_messages", "_tensors", "_topics", "_wire", "errors"]


def isort_key(name: str) -> tuple[int, str]:
    if name.isupper():
        return (0, name)
    return (1, name) if name[0].isupper() else (2, name)


def test_all_is_sorted_and_unique() -> None:
    assert protocol.__all__ == sorted(protocol.__all__, key=isort_key)
    assert len(set(protocol.__all__)) == len(protocol.__all__)


def test_every_exported_name_exists() -> None:
    for name in protocol.__all__:
        assert hasattr(protocol, name), name


def test_every_public_definition_is_exported() -> None:
    for module_name in API_MODULES:
        module = importlib.import_module(f"protocol.{module_name}")
        for name, value in vars(module).items():
            if name.startswith("_"):
                continue
            defined_here = (inspect.isclass(value) or inspect.isfunction(value)) and (
                value.__module__ == module.__name__
            )
            constant = name.isupper() and name != "TYPE_CHECKING"
            if defined_here or constant:
                assert name in protocol.__all__, f"protocol.{module_name}.{name} is not exported"
                assert getattr(protocol, name) is value


def test_errors_module_stays_importable() -> None:
    for error in (ConfigError, ModelError, ProtocolError, TransportError):
        assert issubclass(error, EdgecutError)
    assert ProtocolError("x").code == "bad_request"
    assert ProtocolError("x", code="too_large").code == "too_large"


def test_importing_protocol_pulls_in_no_io_or_onnx_code() -> None:
    code = (
        "import sys, protocol; "
        "print(sorted(m for m in ('asyncio', 'aiomqtt', 'paho', 'onnx', 'onnxruntime') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)  # noqa: S603
    assert result.stdout.strip() == "[]"

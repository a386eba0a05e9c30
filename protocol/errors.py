"""The one exception tree of edgecut.

::

    EdgecutError
    ├── ProtocolError    a message on the wire is malformed or not allowed
    ├── TransportError   the broker connection failed or a publish could not be made
    ├── ModelError       a model, cut or split is missing, invalid or does not match
    │   └── ShapesNotStatedError   a model's input sizes are open and nobody stated them
    └── ConfigError      a setting (URL, path, option) is invalid
        └── ProviderUnavailableError   an execution provider asked for is not in this onnxruntime

API misuse (calling things in the wrong order, wrong argument types) raises the
built-in ``ValueError``/``TypeError``/``RuntimeError`` instead.
"""

from __future__ import annotations

from typing import Any


class EdgecutError(Exception):
    """Root of every error edgecut raises on purpose."""


class ProtocolError(EdgecutError):
    """A message could not be decoded or breaks the wire contract.

    Attributes:
        code: The error code a hub puts in its error reply (see ``ErrorCode``).
    """

    def __init__(self, message: str, *, code: str = "bad_request") -> None:
        super().__init__(message)
        self.code = code


class TransportError(EdgecutError):
    """The broker connection failed, was lost, or refused a message."""


class ModelError(EdgecutError):
    """A model, cut or split is unknown, invalid, or does not match its manifest."""


class ShapesNotStatedError(ModelError):
    """A model leaves input sizes open that nobody stated (``--input-shape``, ``input_shapes=``).

    Attributes:
        inputs: The model's inputs as it declares them (``models.TensorSpec``).
    """

    def __init__(self, message: str, inputs: tuple[Any, ...] = ()) -> None:
        super().__init__(message)
        self.inputs = inputs


class ConfigError(EdgecutError):
    """A configuration value (broker URL, path, option) is invalid."""


class ProviderUnavailableError(ConfigError):
    """An ONNX Runtime execution provider asked for (``--providers cuda``) is not in the installed onnxruntime.

    Attributes:
        requested: The providers asked for that are missing (short names such as ``cuda``).
        available: The providers the installed onnxruntime has.
    """

    def __init__(self, *, requested: list[str], available: list[str]) -> None:
        hint = ""
        if {"cuda", "tensorrt"}.intersection(requested):
            hint = " (CUDA and TensorRT come with onnxruntime-gpu in place of onnxruntime: see docs/deploy.md)"
        super().__init__(
            f"execution provider {', '.join(requested)} not available in this onnxruntime,"
            f" which has {', '.join(available)}{hint}"
        )
        self.requested = requested
        self.available = available

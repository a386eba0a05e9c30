"""Execution providers by short name (``cuda``, ``cpu``), and which ones a hub asks ONNX Runtime for.

ORT names its providers ``CUDAExecutionProvider`` and so on; users write
``--providers cuda,cpu``. :func:`resolve_providers` turns such a list into ORT
names, checked against what the installed onnxruntime has
(:func:`~models._runtime.available_providers`), or picks the best available
when none is given.

``auto`` leaves two out; name them to use them. TensorRT: onnxruntime-gpu
lists it whenever it is installed, TensorRT's own libraries or not, and it
builds an engine for each model when the session is created (minutes for a
large model): ``tensorrt,cuda,cpu``. CoreML: every macOS onnxruntime has it,
and it may run parts of a model in fp16 on the Neural Engine, which moves
outputs further from the CPU's than edgecut's float tolerances allow:
``coreml,cpu``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from models._runtime import CPU_PROVIDER, available_providers
from protocol.errors import ConfigError, ProviderUnavailableError

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

PROVIDERS = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "migraphx": "MIGraphXExecutionProvider",
    "directml": "DmlExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "cpu": CPU_PROVIDER,
}
"""Short provider names (as ``--providers`` takes them) to ONNX Runtime's names."""
AUTO = "auto"
"""The providers value that means: the best this onnxruntime has (see :data:`AUTO_ORDER`)."""
AUTO_ORDER = ("cuda", "migraphx", "directml", "openvino", "cpu")
"""What ``auto`` takes, in this order, of the providers available: every one but TensorRT and CoreML."""
_BY_ORT_NAME = {name.lower(): short for short, name in PROVIDERS.items()}


def provider_name(name: str) -> str:
    """ORT's name of provider ``name``: a short name (``cuda``, any case) or ORT's own (``CUDAExecutionProvider``).

    Raises:
        ConfigError: No provider is known by that name.
    """
    key = name.strip().lower()
    if key in PROVIDERS:
        return PROVIDERS[key]
    if key in _BY_ORT_NAME:
        return PROVIDERS[_BY_ORT_NAME[key]]
    msg = f"no execution provider is called {name!r}: use {', '.join(PROVIDERS)} (or {AUTO!r} for the best available)"
    raise ConfigError(msg)


def short_names(providers: Iterable[str]) -> list[str]:
    """Short names of ORT providers where they have one (ORT's name otherwise): for messages."""
    return [_BY_ORT_NAME.get(name.lower(), name) for name in providers]


def parse_providers(text: str) -> tuple[str, ...]:
    """``"cuda,cpu"`` as ``("cuda", "cpu")``, checked (:func:`check_providers`); ``"auto"`` or ``""`` is ``()``.

    Raises:
        ConfigError: An unknown name, a name twice, or ``auto`` beside others.
    """
    return check_providers([part for part in text.split(",") if part.strip()])


def check_providers(names: Sequence[str]) -> tuple[str, ...]:
    """``names`` stripped and checked, not resolved (the empty tuple for ``auto``, given alone or nothing).

    Raises:
        ConfigError: An unknown name, a name twice, or ``auto`` beside others.
    """
    stripped = tuple(name.strip() for name in names)
    if stripped in {(), (AUTO,)}:
        return ()
    if any(name.lower() == AUTO for name in stripped):
        msg = f"{AUTO!r} stands alone: give it or a list of providers such as cuda,cpu, not both"
        raise ConfigError(msg)
    ort_names = [provider_name(name) for name in stripped]
    if len(set(ort_names)) != len(ort_names):
        msg = f"a provider is named twice in {','.join(stripped)!r}"
        raise ConfigError(msg)
    return stripped


def resolve_providers(requested: Sequence[str] = (), available: Sequence[str] | None = None) -> tuple[str, ...]:
    """ORT's names of the providers to ask for, in order: ``requested``, or the best available when it is empty.

    Args:
        requested: Short or ORT names, in order of preference; empty (or ``auto``) for the best available.
        available: The providers the installed onnxruntime has (default: ask it).

    Raises:
        ConfigError: An unknown provider name.
        ProviderUnavailableError: A requested provider is not in this onnxruntime.
    """
    requested = check_providers(requested)
    have = tuple(available_providers() if available is None else available)
    if not requested:
        return tuple(PROVIDERS[short] for short in AUTO_ORDER if PROVIDERS[short] in have) or (CPU_PROVIDER,)
    names = tuple(provider_name(name) for name in requested)
    missing = [name for name in names if name not in have]
    if missing:
        raise ProviderUnavailableError(requested=short_names(missing), available=short_names(have))
    return names

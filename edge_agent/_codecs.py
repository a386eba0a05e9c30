"""Codecs never lie: what a request really sends, and a codec refused where it would send nothing it names.

A message names one codec, which sends the tensors it does not apply to as
``raw`` (docs/protocol.md, section 3.2.1): ``jpeg`` at a cut where only
float32 crosses would send raw float32 under the name ``jpeg``. So the agent
names each request by what its tensors really are sent as
(:func:`protocol.effective_codec`): the one codec they all share, or, when
they differ (``int8+zstd`` with a uint8 image and a float activation), the
codec that sends each its own way. A fixed cut whose codec would send every
tensor raw is refused when the agent starts, and ``cut="auto"`` never offers
such a pair.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from protocol import RAW_CODEC, codec_names, effective_codec
from protocol.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    import numpy as np

    from models import TensorSpec


def tensor_codecs(codec: str, tensors: Mapping[str, np.ndarray]) -> dict[str, str]:
    """What each tensor is sent as in a request whose codec is ``codec``, by tensor name."""
    return {name: effective_codec(codec, array.dtype.name, array.shape) for name, array in tensors.items()}


def request_codec(codec: str, sent_as: Iterable[str]) -> str:
    """The codec a request names: the one every tensor is sent as, else ``codec`` (which sends each its way)."""
    kinds = set(sent_as)
    return kinds.pop() if len(kinds) == 1 else codec


def codec_at(codec: str, crossing: Sequence[TensorSpec]) -> str:
    """What ``codec`` really sends at a cut where ``crossing`` crosses (see :func:`request_codec`).

    A symbolic dimension counts as 1: whether a codec applies depends on
    dtype, rank and channels, not on sizes.
    """
    return request_codec(codec, (effective_codec(codec, spec.dtype, spec.concrete()) for spec in crossing))


def check_codec(codec: str, cut_id: str, crossing: Sequence[TensorSpec]) -> None:
    """Refuse ``codec`` at a cut where it would send every tensor raw.

    Raises:
        ConfigError: ``codec`` is not ``raw`` and applies to none of ``crossing``;
            the message names each tensor with its dtype and shape, and the
            codecs that would apply.
    """
    if codec == RAW_CODEC or codec_at(codec, crossing) != RAW_CODEC:
        return
    tensors = ", ".join(f"{spec.name!r} {spec.dtype}[{','.join(map(str, spec.shape))}]" for spec in crossing)
    useful = [name for name in codec_names() if name != RAW_CODEC and codec_at(name, crossing) == name]
    msg = (
        f"codec {codec!r} applies to no tensor at cut {cut_id!r} and would send them all raw: {tensors}; "
        f"codecs that apply there: {', '.join(useful) or 'none'}; or use raw"
    )
    raise ConfigError(msg)

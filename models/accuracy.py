"""How much a codec at a cut costs in answers, and saves in bytes: ``edgecut models accuracy``.

For every image (one request each, as an agent sends it), every cut and every
codec: the head runs to the cut, the crossing tensors are encoded as a
request message, decoded as a hub would, and the tail runs on what arrived.
Reported per cut and codec: the request's bytes on the wire (mean over the
images), against the same cut in ``raw`` and against the JPEG (quality 90)
of the same image sent cloud-only; top-1 agreement with the full model in
float32 and the largest logit error (relative to the largest logit); and,
with labels, top-1 accuracy and its change in points against the full model.

This module imports ``onnx`` (it splits the model).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np

from models._runtime import Session
from models._segments import Chain
from models._split import split_segments
from protocol import InferenceRequest, decode_request, encode_request
from protocol.errors import ModelError

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    import onnx

__all__ = ["DEFAULT_CODECS", "AccuracyRow", "measure"]

DEFAULT_CODECS = ("raw", "fp16", "int8", "int8-channel", "zstd", "fp16+zstd", "int8+zstd", "int8-channel+zstd", "jpeg")
"""What ``edgecut models accuracy`` compares unless told otherwise."""
_IMAGE_CODECS = frozenset({"jpeg", "png"})
_JPEG = "jpeg"


@dataclasses.dataclass(frozen=True, slots=True)
class AccuracyRow:
    """One cut with one codec, over all the images.

    Attributes:
        cut: The cut.
        codec: The codec.
        bytes: Mean bytes of a request message (one image).
        vs_raw: ``bytes`` against the same cut in ``raw`` (float32 activations, or the uint8 image).
        vs_jpeg: ``bytes`` against the JPEG (q90) of the same image, sent cloud-only.
        agreement: Fraction of images whose top-1 class matches the full model's in float32.
        max_logit_error: Largest logit error over the images, relative to the largest logit.
        top1: Top-1 accuracy (with labels), else ``None``.
        top1_change: ``top1`` minus the full model's, in points (with labels), else ``None``.
    """

    cut: str
    codec: str
    bytes: float
    vs_raw: float
    vs_jpeg: float
    agreement: float
    max_logit_error: float
    top1: float | None = None
    top1_change: float | None = None

    def to_json(self) -> dict[str, object]:
        """The row as a JSON object."""
        return dataclasses.asdict(self)


def measure(
    model: onnx.ModelProto,
    cuts: Sequence[str],
    codecs: Sequence[str],
    images: np.ndarray,
    labels: np.ndarray | None = None,
    *,
    model_id: str = "model",
    progress: Callable[[int, int], None] | None = None,
) -> list[AccuracyRow]:
    """Every cut with every codec, over ``images`` (one request per image).

    Args:
        model: The full model (one image input, the first output is the logits).
        cuts: The cuts to measure (``output`` sends nothing and is skipped).
        codecs: The codecs; image codecs are measured at ``input`` only.
        images: The inputs, batch first, in the model's input dtype.
        labels: The class of each image, if known.
        model_id: The model's name in the request messages.
        progress: Called with (images done, images) after each image.

    Raises:
        ModelError: A cut is unknown, or the model has more than one input.
    """
    if len(model.graph.input) != 1:
        msg = "measuring accuracy needs a model with one input"
        raise ModelError(msg)
    wanted = [cut for cut in dict.fromkeys(cuts) if cut != "output"]
    segments = split_segments(model, wanted, model_id=model_id)
    chain = Chain(segments.manifest, [Session(m.SerializeToString(), threads=1) for m in segments.models])
    ids = {cut.id: cut for cut in segments.manifest.cuts}
    input_name, output_name = segments.manifest.inputs[0].name, segments.manifest.outputs[0].name
    pairs = [(cut, codec) for cut in wanted for codec in codecs if codec not in _IMAGE_CODECS or cut == "input"]
    sizes: dict[tuple[str, str], list[int]] = {pair: [] for pair in pairs}
    errors: dict[tuple[str, str], list[float]] = {pair: [] for pair in pairs}
    classes: dict[tuple[str, str], list[int]] = {pair: [] for pair in pairs}
    raw_sizes: dict[str, list[int]] = {cut: [] for cut in wanted}
    jpeg_sizes: list[int] = []
    reference_classes = []
    for index, image in enumerate(images):
        feeds = {input_name: image[np.newaxis]}
        reference = chain.run(feeds, "input", "output")[0][output_name]
        reference_classes.append(int(np.argmax(reference)))
        jpeg_sizes.append(len(_message(feeds, "input", _JPEG, model_id)))
        for cut in wanted:
            crossing = chain.run(feeds, "input", cut)[0] if cut != "input" else feeds
            tensors = {spec.name: crossing[spec.name] for spec in ids[cut].crossing}
            raw_sizes[cut].append(len(_message(tensors, cut, "raw", model_id)))
            for codec in codecs:
                if (cut, codec) not in sizes:
                    continue
                message = _message(tensors, cut, codec, model_id)
                logits = chain.run(decode_request(message).tensors, cut, "output")[0][output_name]
                sizes[cut, codec].append(len(message))
                errors[cut, codec].append(float(np.abs(logits - reference).max() / max(np.abs(reference).max(), 1e-12)))
                classes[cut, codec].append(int(np.argmax(logits)))
        if progress is not None:
            progress(index + 1, len(images))
    jpeg = float(np.mean(jpeg_sizes))
    expected = np.array(reference_classes)
    full_top1 = float((expected == labels).mean()) if labels is not None else None
    rows = []
    for cut, codec in pairs:
        got = np.array(classes[cut, codec])
        top1 = float((got == labels).mean()) if labels is not None else None
        mean_bytes = float(np.mean(sizes[cut, codec]))
        rows.append(
            AccuracyRow(
                cut=cut,
                codec=codec,
                bytes=mean_bytes,
                vs_raw=mean_bytes / float(np.mean(raw_sizes[cut])),
                vs_jpeg=mean_bytes / jpeg,
                agreement=float((got == expected).mean()),
                max_logit_error=max(errors[cut, codec]),
                top1=top1,
                top1_change=None if top1 is None or full_top1 is None else (top1 - full_top1) * 100,
            )
        )
    return rows


def _message(tensors: dict[str, np.ndarray], cut: str, codec: str, model_id: str) -> bytes:
    request = InferenceRequest(
        request_id="accuracy",
        agent_id="accuracy",
        model_id=model_id,
        model_sha256="0" * 64,
        cut_id=cut,
        tensors=tensors,
        sent_at=0.0,
        deadline_ms=1000.0,
        codec=codec,
    )
    return encode_request(request)

"""read_reply: a hub's reply checked against the request and the model's outputs before any output is decoded."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest

from edge_agent._replies import read_reply
from models import Manifest, TensorSpec
from protocol import InferenceReply, InferenceRequest, encode_reply

# A detector's tail: the batch axis N comes with the request, the number of boxes M only with the reply.
MANIFEST = Manifest(
    model_id="detector",
    model_sha256="ab" * 32,
    cut_id="neck",
    inputs=(TensorSpec("image", "uint8", ("N", 64, 64, 3)),),
    crossing=(TensorSpec("neck", "float32", ("N", 8)),),
    outputs=(TensorSpec("boxes", "float32", ("N", "M", 4)), TensorSpec("count", "int64", ("N",))),
    head_sha256="cd" * 32,
    tail_sha256="ef" * 32,
)
REQUEST = InferenceRequest(
    request_id="r-1",
    agent_id="cam",
    model_id="detector",
    model_sha256="ab" * 32,
    cut_id="neck",
    tensors={"neck": np.zeros((3, 8), np.float32)},
    sent_at=0.0,
    deadline_ms=1000.0,
)


def _reply(boxes: tuple[int, ...], count: tuple[int, ...]) -> bytes:
    outputs = {"boxes": np.ones(boxes, np.float32), "count": np.full(count, 2, np.int64)}
    return encode_reply(InferenceReply("r-1", "hub", outputs, None, queue_ms=0.0, compute_ms=0.0, queue_depth=0))


def test_a_symbolic_dimension_takes_the_request_s_size_or_any_size_the_request_does_not_bind() -> None:
    for boxes in (0, 1, 7):  # M: whatever the tail found, never taken as 1
        reply, why = read_reply(_reply((3, boxes, 4), (3,)), REQUEST, MANIFEST)
        assert why == ""
        assert reply is not None
        assert reply.outputs["boxes"].shape == (3, boxes, 4)
    reply, why = read_reply(_reply((1, 7, 4), (1,)), REQUEST, MANIFEST)  # N is 3 in the request, not 1
    assert reply is None
    assert why.startswith("the reply does not fit the request: the outputs: tensor 'boxes' is float32[1, 7, 4]")


@pytest.mark.parametrize(
    ("shapes", "misfit"),
    [
        ({"boxes": [3, 1 << 26, 4]}, None),  # fits: only its data is short
        ({"boxes": [2, 1 << 26, 4]}, "tensor 'boxes' is float32[2, 67108864, 4]"),
        ({"count": [3, 1 << 28]}, "tensor 'count' is int64[3, 268435456]"),
    ],
)
def test_what_the_outputs_declare_is_checked_before_any_is_decoded(
    shapes: dict[str, list[int]], misfit: str | None
) -> None:
    fields = msgpack.unpackb(_reply((3, 5, 4), (3,)))
    for name, shape in shapes.items():
        fields["outputs"][name]["shape"] = shape  # declared far past the data sent: decoding would fail
    reply, why = read_reply(msgpack.packb(fields), REQUEST, MANIFEST)
    assert reply is None
    if misfit is None:
        assert why.startswith("undecodable reply: tensor 'boxes': has 240 bytes")
    else:
        assert why.startswith(f"the reply does not fit the request: the outputs: {misfit}")

"""What an agent returns and raises, and how long it waits."""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING

from protocol.errors import EdgecutError, ProtocolError, TransportError

if TYPE_CHECKING:
    import numpy as np


class RequestTimeoutError(TransportError):
    """No reply came before the request's deadline and no local fallback was possible."""


class HubError(EdgecutError):
    """The hub answered with an error reply, and no local fallback applied.

    Attributes:
        code: The protocol error code (``protocol.ErrorCode``).
        hub_id: The hub that answered.
    """

    def __init__(self, code: str, message: str, *, hub_id: str) -> None:
        super().__init__(f"{hub_id}: {code}: {message}")
        self.code = code
        self.hub_id = hub_id


class InvalidReplyError(ProtocolError):
    """A reply to the request came, but could not be used, and no local fallback applied.

    It could not be decoded, or it does not fit the request (another request
    id, other output names, dtypes or shapes).
    """


@dataclasses.dataclass(frozen=True, slots=True)
class Timeouts:
    """How long an agent waits, per phase, in seconds.

    Attributes:
        connect: For the first broker connection when the agent starts.
        request: For a reply, counted from the moment the request is ready to
            send (head compute excluded); also the request's deadline at the hub.
        retry: Publish a request again (same id) when it is still unanswered
            after this long, and again after each further ``retry``, while
            the deadline allows; ``None`` never. Hubs run a repeated id at
            most once each, so this costs at most a second run on another
            replica when the first is only slow.
        load: Without a local fallback, how long to keep sending new requests
            while a hub answers ``loading`` (its first use of a large model
            takes longer than ``request``). With a fallback the device
            answers at once instead.
    """

    connect: float = 10.0
    request: float = 5.0
    retry: float | None = 2.0
    load: float = 120.0


@dataclasses.dataclass(frozen=True, slots=True)
class Timings:
    """Where the time of one inference went, in milliseconds.

    ``network_ms`` is the round trip seen by the agent minus the hub's own
    queue and compute time: both transfers, the broker, and the hub's message
    decoding and encoding. ``device_queue_ms`` is what the request waited
    before its head ran: the device busy with earlier requests (it runs one
    at a time), or loading the cut's halves on their first use.
    """

    edge_ms: float = 0.0
    encode_ms: float = 0.0
    network_ms: float = 0.0
    hub_queue_ms: float = 0.0
    hub_compute_ms: float = 0.0
    decode_ms: float = 0.0
    fallback_ms: float = 0.0
    total_ms: float = 0.0
    device_queue_ms: float = 0.0


@dataclasses.dataclass(frozen=True, slots=True)
class InferenceResult:
    """The outputs of one inference and how they were made.

    Attributes:
        outputs: The model's outputs by name.
        cut_id: The cut used.
        timings: Where the time went.
        bytes_sent: Request payload bytes (0 when nothing was sent).
        bytes_received: The hub's reply payload bytes (0 when no hub answered).
        request_id: The request's id (``None`` for edge-only runs).
        hub_id: The hub that answered (``None`` if none did).
        fallback: Why the tail ran on the device instead, or ``None``.
        predicted_ms: What the planner predicted ``timings.total_ms`` would
            be (``nan`` for a fixed cut, or before it can predict).
        predicted_j: The device energy the planner predicted for the
            request, given an energy model (``nan`` otherwise, for a fixed
            cut, or before it can predict; docs/planner.md says what it counts).
        reason: Why this cut, in a few words (the planner's reason with
            ``cut="auto"``).
        codec: The codec the request named: what its tensors were sent as
            when they all went the same way (``int8+zstd`` names ``zstd``
            when only a uint8 image crosses, ``jpeg`` names ``raw`` when only
            floats do), else the codec that sent each its own way (see
            ``tensor_codecs``); ``raw`` when nothing was sent.
        tensor_codecs: What each crossing tensor was sent as, by name
            (``protocol.effective_codec``); empty when nothing was sent.
        hub_batch_size: The batch the hub's tail ran the request in (its own
            batch, or more when the hub joined it with other requests: see
            dynamic batching in docs/runtime.md); ``None`` when no hub ran it
            or the hub did not say.

        model_version: The version of the model that computed it (the start
            of its sha256, ``protocol.version_of``); empty when unknown.
    """

    outputs: dict[str, np.ndarray]
    cut_id: str
    timings: Timings
    bytes_sent: int = 0
    bytes_received: int = 0
    request_id: str | None = None
    hub_id: str | None = None
    fallback: str | None = None
    predicted_ms: float = math.nan
    predicted_j: float = math.nan
    reason: str = ""
    codec: str = "raw"
    tensor_codecs: dict[str, str] = dataclasses.field(default_factory=dict)
    hub_batch_size: int | None = None
    model_version: str = ""

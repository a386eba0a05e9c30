"""The messages: inference request, inference reply, node status, and ping."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from protocol._tensors import RAW_CODEC, tensors_equal

if TYPE_CHECKING:
    from collections.abc import Mapping

    import numpy.typing as npt

    from protocol._tensors import EncodedTensor

NodeRole = Literal["hub", "agent"]
"""What a node is, as announced in its status."""

NodeState = Literal["online", "offline"]
"""Whether a node is up, as announced in its status."""

_Message = TypeVar("_Message", "InferenceRequest", "InferenceReply")


@dataclasses.dataclass(frozen=True, slots=True, eq=False)
class InferenceRequest:
    """An agent asks a hub to run the tail of a model on the head's outputs.

    Equality compares tensors by name order, dtype name, shape and value.

    Attributes:
        request_id: Unique per agent; a retry reuses it.
        agent_id: The sending agent (a valid topic level).
        model_id: Which model.
        model_sha256: sha256 (lowercase hex) of the full model file.
        cut_id: Where the model is split.
        tensors: The tensors crossing the cut, in crossing order.
        sent_at: Unix time in seconds on the agent's clock when sent.
        deadline_ms: Budget in milliseconds, counted from ``sent_at``.
        codec: How the tensors are encoded.
        tail_sha256: sha256 of the tail the agent expects the hub to run, if
            it wants the hub to check.
    """

    request_id: str
    agent_id: str
    model_id: str
    model_sha256: str
    cut_id: str
    tensors: Mapping[str, npt.NDArray[Any]]
    sent_at: float
    deadline_ms: float
    codec: str = RAW_CODEC
    tail_sha256: str | None = None

    __hash__ = None  # type: ignore[assignment]  # holds arrays: unhashable

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, InferenceRequest):
            return NotImplemented
        return _messages_equal(self, other, "tensors")


@dataclasses.dataclass(frozen=True, slots=True, eq=False)
class EncodedRequest:
    """A request as received: every field checked, its tensors not decoded yet.

    A hub checks the declared dtypes and shapes against the cut it serves,
    and their decoded size against its own limits, before it allocates
    anything for them (:meth:`decode`, off the event loop).

    Attributes:
        header: The request's fields; its ``tensors`` are empty.
        tensors: The encoded tensors, in crossing order.
    """

    header: InferenceRequest
    tensors: Mapping[str, EncodedTensor]

    @property
    def nbytes(self) -> int:
        """Bytes the decoded tensors take together."""
        return sum(tensor.nbytes for tensor in self.tensors.values())

    def decode(self) -> InferenceRequest:
        """The request with its tensors decoded.

        Raises:
            ProtocolError: A tensor's data does not decode to what it declares (code ``bad_request``).
        """
        return dataclasses.replace(self.header, tensors={name: t.decode() for name, t in self.tensors.items()})


@dataclasses.dataclass(frozen=True, slots=True)
class ReplyError:
    """Why a request failed.

    Attributes:
        code: An :class:`ErrorCode` value, or a code from a newer peer.
        message: Human-readable detail.
    """

    code: str
    message: str


@dataclasses.dataclass(frozen=True, slots=True, eq=False)
class InferenceReply:
    """A hub's one answer to one request: the tail's outputs, or an error.

    Equality compares outputs by name order, dtype name, shape and value.

    Attributes:
        request_id: The id of the request answered.
        hub_id: The answering hub (a valid topic level).
        outputs: The tail's outputs in graph order; empty on error.
        error: ``None`` on success, else why the request failed.
        queue_ms: Time the request waited in the hub's queue.
        compute_ms: Time spent running the tail.
        queue_depth: Requests waiting at the hub when the reply was sent.
        codec: How the outputs are encoded.
        batch_size: The size of the batch axis in the tail run that answered:
            the request's own batch when it ran alone, more when the hub ran it
            in one batch with other requests (dynamic batching; 1 when the
            model has no batch axis). ``None`` when no tail ran (an error, a
            ping's answer) or the hub does not say.
    """

    request_id: str
    hub_id: str
    outputs: Mapping[str, npt.NDArray[Any]]
    error: ReplyError | None
    queue_ms: float
    compute_ms: float
    queue_depth: int
    codec: str = RAW_CODEC
    batch_size: int | None = None

    @property
    def ok(self) -> bool:
        """True when the request succeeded (``error is None``)."""
        return self.error is None

    @classmethod
    def failure(
        cls,
        request_id: str,
        hub_id: str,
        code: str,
        message: str,
        *,
        queue_depth: int = 0,
        queue_ms: float = 0.0,
        compute_ms: float = 0.0,
    ) -> InferenceReply:
        """A reply saying the request failed, with no outputs.

        Args:
            request_id: The id of the request answered.
            hub_id: The answering hub.
            code: An :class:`ErrorCode` (or its string).
            message: Human-readable detail.
            queue_depth: Requests waiting at the hub.
            queue_ms: Time the request waited before failing.
            compute_ms: Time spent before failing.

        Returns:
            The failed reply.
        """
        return cls(
            request_id=request_id,
            hub_id=hub_id,
            outputs={},
            error=ReplyError(code=str(code), message=message),
            queue_ms=queue_ms,
            compute_ms=compute_ms,
            queue_depth=queue_depth,
        )

    __hash__ = None  # type: ignore[assignment]  # holds arrays: unhashable

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, InferenceReply):
            return NotImplemented
        return _messages_equal(self, other, "outputs")


@dataclasses.dataclass(frozen=True, slots=True)
class EncodedReply:
    """A reply as received: every field checked, its outputs not decoded yet.

    An agent checks the declared names, dtypes and shapes against the
    outputs its model has before it allocates anything for them
    (:meth:`decode`).

    Attributes:
        header: The reply's fields; its ``outputs`` are empty.
        outputs: The encoded outputs, in graph order (empty on error).
    """

    header: InferenceReply
    outputs: Mapping[str, EncodedTensor]

    def decode(self) -> InferenceReply:
        """The reply with its outputs decoded.

        Raises:
            ProtocolError: An output's data does not decode to what it declares (code ``bad_request``).
        """
        return dataclasses.replace(self.header, outputs={name: t.decode() for name, t in self.outputs.items()})


@dataclasses.dataclass(frozen=True, slots=True)
class NodeStatus:
    """A node announces itself (retained), or its last will says it is gone.

    Attributes:
        node_id: The hub's or agent's id (a valid topic level).
        role: ``"hub"`` or ``"agent"``.
        state: ``"online"`` or ``"offline"``.
        sent_at: Unix time in seconds on the node's clock.
        queue_depth: Requests waiting at the node.
        version: The node's software version, free-form (may be empty).
        queue_wait_ms: A hub's recent mean queue wait, or ``None`` (none reported).
        tail_ms: A hub's recent tail times: model sha256 to cut id to ms
            (the median of its recent runs); empty when none are reported.
        loading_s: The tails a hub is loading: model sha256 to cut id to
            seconds since the load began; empty when it loads none.
        refused: What a hub has refused or dropped since it started, by
            reason (an error code such as ``load_refused``, or
            ``ping_dropped``): counts; empty when nothing was.
        providers: The ONNX Runtime execution providers a hub's loaded
            models run on: model sha256 to provider names
            (``CUDAExecutionProvider``, ...), one per provider its sessions
            run on; empty when none are reported.
        models: The models a node runs, by name: the version of each (an
            agent's status, docs/protocol.md section 9.1); empty when none
            are reported.
    """

    node_id: str
    role: NodeRole
    state: NodeState
    sent_at: float
    queue_depth: int = 0
    version: str = ""
    queue_wait_ms: float | None = None
    tail_ms: Mapping[str, Mapping[str, float]] = dataclasses.field(default_factory=dict, hash=False)
    loading_s: Mapping[str, Mapping[str, float]] = dataclasses.field(default_factory=dict, hash=False)
    refused: Mapping[str, int] = dataclasses.field(default_factory=dict, hash=False)
    providers: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict, hash=False)
    models: Mapping[str, str] = dataclasses.field(default_factory=dict, hash=False)


@dataclasses.dataclass(frozen=True, slots=True)
class Ping:
    """An agent measures its link: the hub answers at once with an empty reply of the same id.

    Attributes:
        request_id: Unique per agent, like a request's; the reply carries it.
        sent_at: Unix time in seconds on the agent's clock when sent.
        padding: Bytes that make the ping as large as the agent wants to
            measure the link's bandwidth with (the hub ignores them).
    """

    request_id: str
    sent_at: float
    padding: bytes = b""


def _messages_equal(left: _Message, right: _Message, tensors_field: str) -> bool:
    for field in dataclasses.fields(left):
        mine, theirs = getattr(left, field.name), getattr(right, field.name)
        same = tensors_equal(mine, theirs) if field.name == tensors_field else mine == theirs
        if not same:
            return False
    return True

"""The error codes a hub sends in a failed reply."""

from __future__ import annotations

import enum


class ErrorCode(enum.StrEnum):
    """Why a request failed; the ``code`` of a reply's ``error``.

    A ``StrEnum``: members compare equal to their wire strings. Receivers must
    accept codes they do not know (newer peers may add some) and treat them as
    a generic failure.
    """

    BAD_REQUEST = "bad_request"
    """The request is malformed: not msgpack, a field missing or mistyped."""
    UNSUPPORTED_VERSION = "unsupported_version"
    """The message's ``"v"`` is not a version the receiver speaks."""
    UNSUPPORTED_CODEC = "unsupported_codec"
    """The message's tensor codec is unknown to the receiver."""
    TOO_LARGE = "too_large"
    """The message exceeds a size limit (bytes, tensors, nesting)."""
    AGENT_MISMATCH = "agent_mismatch"
    """The request's ``agent`` is not the agent id of the topic it was published on."""
    UNKNOWN_MODEL = "unknown_model"
    """The hub holds no model with this id."""
    MODEL_MISMATCH = "model_mismatch"
    """The hub's model or tail has another sha256 than the request names."""
    UNKNOWN_CUT = "unknown_cut"
    """The hub holds no split of this model at this cut."""
    TENSOR_MISMATCH = "tensor_mismatch"
    """Tensor names, dtypes or shapes do not match what the cut expects."""
    DEADLINE_EXCEEDED = "deadline_exceeded"
    """The request's deadline passed before the hub could finish it."""
    OVERLOADED = "overloaded"
    """The hub's queue is full; retry later or elsewhere."""
    SHUTTING_DOWN = "shutting_down"
    """The hub is stopping and did not run the request: send it again (another replica takes it)."""
    LOADING = "loading"
    """The hub is still loading this model and could not within the request's deadline: send a new request soon."""
    LOAD_REFUSED = "load_refused"
    """The hub will not load this tail now: it serves only what it preloaded, or the sender (or all senders
    together) started as many loads lately as the hub allows. The message says which; the status counts them."""
    INTERNAL = "internal"
    """The hub failed while running the tail."""

"""The wire contract between edge agents and cloud hubs (``docs/protocol.md``).

Messages are msgpack maps carried over MQTT 5: an agent's
:class:`InferenceRequest` (or :class:`Ping`, to measure the link), a hub's
:class:`InferenceReply`, and every node's retained :class:`NodeStatus`; model delivery's
:class:`ModelOffer`, :class:`FetchRequest` and :class:`Block` (section 9). ``encode_*`` functions raise ``TypeError`` or
``ValueError`` on invalid messages (API misuse); ``decode_*`` functions raise
only :class:`ProtocolError`, whose ``code`` is the :class:`ErrorCode` a hub
replies with. :class:`Topics` names the MQTT topics.

This package imports neither asyncio, MQTT nor ONNX code.
"""

from protocol._codecs import CompressedCodec, Fp16Codec, Int8Codec
from protocol._codes import ErrorCode
from protocol._decode import (
    decode_incoming,
    decode_ping,
    decode_reply,
    decode_request,
    decode_status,
    peek_request_id,
)
from protocol._delivery import (
    BLOCK_ENVELOPE_BYTES,
    DEFAULT_BLOCK_BYTES,
    MAX_BLOCK_BYTES,
    MAX_FETCH_BLOCKS,
    MAX_OFFERED_VERSIONS,
    MIN_BLOCK_BYTES,
    Block,
    FetchRequest,
    ModelKind,
    ModelOffer,
    OfferedFile,
    OfferedVersion,
    block_count,
    version_of,
)
from protocol._delivery_wire import (
    check_delivery_name,
    decode_block,
    decode_fetch,
    decode_offer,
    encode_block,
    encode_fetch,
    encode_offer,
)
from protocol._dtypes import ALLOWED_DTYPES, ONNX_ELEMENT_TYPES, ONNX_TYPE_NAMES
from protocol._images import ImageCodec
from protocol._limits import (
    DEFAULT_MAX_MESSAGE_BYTES,
    MAX_CONTAINERS,
    MAX_ELEMENTS,
    MAX_ID_LENGTH,
    MAX_PING_PADDING,
    MAX_RANK,
    MAX_TENSOR_NAME_LENGTH,
    MAX_TENSORS,
    PACKET_OVERHEAD_BYTES,
    PROTOCOL_VERSION,
)
from protocol._messages import (
    EncodedRequest,
    InferenceReply,
    InferenceRequest,
    NodeRole,
    NodeState,
    NodeStatus,
    Ping,
    ReplyError,
)
from protocol._software import SOFTWARE_VERSION
from protocol._tensors import (
    RAW_CODEC,
    Codec,
    EncodedTensor,
    RawCodec,
    TensorPayload,
    codec_applies,
    codec_names,
    data_bytes_estimate,
    decode_tensor,
    effective_codec,
    encode_tensor,
    get_codec,
    read_tensor,
    register_codec,
    tensors_equal,
)
from protocol._topics import DEFAULT_PREFIX, DEFAULT_SHARE_GROUP, Topics
from protocol._wire import encode_ping, encode_reply, encode_request, encode_status
from protocol.errors import (
    ConfigError,
    EdgecutError,
    ModelError,
    ProtocolError,
    ProviderUnavailableError,
    ShapesNotStatedError,
    TransportError,
)

__all__ = [
    "ALLOWED_DTYPES",
    "BLOCK_ENVELOPE_BYTES",
    "DEFAULT_BLOCK_BYTES",
    "DEFAULT_MAX_MESSAGE_BYTES",
    "DEFAULT_PREFIX",
    "DEFAULT_SHARE_GROUP",
    "MAX_BLOCK_BYTES",
    "MAX_CONTAINERS",
    "MAX_ELEMENTS",
    "MAX_FETCH_BLOCKS",
    "MAX_ID_LENGTH",
    "MAX_OFFERED_VERSIONS",
    "MAX_PING_PADDING",
    "MAX_RANK",
    "MAX_TENSORS",
    "MAX_TENSOR_NAME_LENGTH",
    "MIN_BLOCK_BYTES",
    "ONNX_ELEMENT_TYPES",
    "ONNX_TYPE_NAMES",
    "PACKET_OVERHEAD_BYTES",
    "PROTOCOL_VERSION",
    "RAW_CODEC",
    "SOFTWARE_VERSION",
    "Block",
    "Codec",
    "CompressedCodec",
    "ConfigError",
    "EdgecutError",
    "EncodedRequest",
    "EncodedTensor",
    "ErrorCode",
    "FetchRequest",
    "Fp16Codec",
    "ImageCodec",
    "InferenceReply",
    "InferenceRequest",
    "Int8Codec",
    "ModelError",
    "ModelKind",
    "ModelOffer",
    "NodeRole",
    "NodeState",
    "NodeStatus",
    "OfferedFile",
    "OfferedVersion",
    "Ping",
    "ProtocolError",
    "ProviderUnavailableError",
    "RawCodec",
    "ReplyError",
    "ShapesNotStatedError",
    "TensorPayload",
    "Topics",
    "TransportError",
    "block_count",
    "check_delivery_name",
    "codec_applies",
    "codec_names",
    "data_bytes_estimate",
    "decode_block",
    "decode_fetch",
    "decode_incoming",
    "decode_offer",
    "decode_ping",
    "decode_reply",
    "decode_request",
    "decode_status",
    "decode_tensor",
    "effective_codec",
    "encode_block",
    "encode_fetch",
    "encode_offer",
    "encode_ping",
    "encode_reply",
    "encode_request",
    "encode_status",
    "encode_tensor",
    "get_codec",
    "peek_request_id",
    "read_tensor",
    "register_codec",
    "tensors_equal",
    "version_of",
]

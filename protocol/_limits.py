"""Version and size limits of the wire protocol (see ``docs/protocol.md``)."""

from __future__ import annotations

from typing import Final

PROTOCOL_VERSION: Final = 1
"""The ``"v"`` of every message; a breaking change bumps it."""

DEFAULT_MAX_MESSAGE_BYTES: Final = 16 * 1024 * 1024
"""Largest encoded message a peer accepts unless configured otherwise."""

MAX_PING_PADDING: Final = 1024 * 1024
"""Most padding bytes in a ping a hub answers (the largest bandwidth probe an agent sends)."""

PACKET_OVERHEAD_BYTES: Final = 64 * 1024
"""Room in an MQTT packet besides its payload (fixed header, topic, properties): brokers and clients
are told a packet limit of the message limit plus this."""

MAX_TENSORS: Final = 64
"""Most tensors in one request or reply."""

MAX_RANK: Final = 8
"""Most dimensions of one tensor."""

MAX_ELEMENTS: Final = 2**31 - 1
"""Bound on the product of a tensor's dims, each ``0`` counted as ``1``."""

MAX_ID_LENGTH: Final = 128
"""Longest id (request, agent, hub, node, model, cut, error code), in characters."""

MAX_TENSOR_NAME_LENGTH: Final = 1024
"""Longest tensor name, in characters."""

MAX_CONTAINERS: Final = 4096
"""Most maps and arrays, nested ones included, in one message."""

MAX_CONTAINER_ITEMS: Final = 65536
"""Most items (map entries and array elements), all maps and arrays together, in one message: the largest
real one holds a few hundred (a registry's files, a hub's tail times); 16 MiB of 4-byte keys would hold
millions, each an object to build on the receiver's event loop."""

"""The msgpack wrapper: output identical to msgpack's, bounded and total unpacking."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import MAX_CONTAINER_ITEMS, MAX_CONTAINERS, ErrorCode, ProtocolError
from protocol._msgpack import pack, unpack

values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats()
    | st.text(max_size=10)
    | st.binary(max_size=20),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=5), children, max_size=5),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(values)
def test_pack_is_byte_identical_to_msgpack(value: object) -> None:
    assert pack(value) == msgpack.packb(value)


@pytest.mark.parametrize("size", [0, 1, 255, 256, 16 * 1024 - 1, 16 * 1024, 65535, 65536, 1 << 20])
def test_large_binaries_are_packed_by_reference_correctly(size: int) -> None:
    blob = np.arange(size, dtype=np.uint8)
    value = {"a": {"data": blob.data, "n": size}, "b": bytes(blob), "c": [blob.data, 1], "d": "x"}
    assert pack(value) == msgpack.packb(value)
    assert unpack(pack(value), max_bytes=1 << 24) == msgpack.unpackb(msgpack.packb(value))


def test_non_contiguous_memoryviews_are_left_to_msgpack() -> None:
    view = memoryview(np.zeros((200, 200), np.uint8)[:, ::2])
    with pytest.raises(BufferError):
        msgpack.packb({"x": view})
    with pytest.raises(BufferError):
        pack({"x": view})


def test_top_level_binary() -> None:
    blob = bytes(range(256)) * 100
    assert pack(blob) == msgpack.packb(blob)
    assert pack(memoryview(blob)) == msgpack.packb(blob)


def test_unpack_limits() -> None:
    data = msgpack.packb({"x": b"y" * 100})
    assert unpack(data, max_bytes=len(data)) == {"x": b"y" * 100}
    with pytest.raises(ProtocolError) as info:
        unpack(data, max_bytes=len(data) - 1)
    assert info.value.code == ErrorCode.TOO_LARGE


@pytest.mark.parametrize(
    "value",
    [[{}] * MAX_CONTAINERS, [[]] * MAX_CONTAINERS, {"a": [[[]] * 100] * 41}],
    ids=["maps", "arrays", "nested"],
)
def test_unpack_counts_containers(value: object) -> None:
    with pytest.raises(ProtocolError) as info:
        unpack(msgpack.packb(value), max_bytes=1 << 24)
    assert info.value.code == ErrorCode.TOO_LARGE


def test_unpack_allows_up_to_the_container_limit() -> None:
    value = [[]] * (MAX_CONTAINERS - 1)
    assert unpack(msgpack.packb(value), max_bytes=1 << 24) == value


@pytest.mark.parametrize(
    "value",
    [
        {f"{i:x}": 0 for i in range(MAX_CONTAINER_ITEMS + 1)},  # one map too long: refused before it is built
        [[0] * 60_000, [0] * 6_000],  # the items of several together
        {"unknown": {f"{i:x}": None for i in range(2_000_000)}},  # millions of keys: seconds on an event loop
    ],
    ids=["one map", "together", "a field nobody reads"],
)
def test_unpack_bounds_the_items_it_builds(value: object) -> None:
    with pytest.raises(ProtocolError, match=f"more than {MAX_CONTAINER_ITEMS}") as info:
        unpack(msgpack.packb(value), max_bytes=1 << 24)
    assert info.value.code == ErrorCode.TOO_LARGE


def test_unpack_allows_up_to_the_item_limit() -> None:
    value = [[0] * 32_768, [0] * (MAX_CONTAINER_ITEMS - 32_768 - 2)]  # the outer list's two items count too
    assert unpack(msgpack.packb(value), max_bytes=1 << 24) == value


@pytest.mark.parametrize(
    "data",
    [
        msgpack.packb(msgpack.ExtType(3, b"abc")),
        msgpack.packb(msgpack.Timestamp(0, 0)),
        b"\x91\xd4\xfb\x00",  # [fixext1 of type -5]
        b"\xc1",
        b"\x92\x01",
        b"\x01\x02",
        b"\xa2\xc3\x28",
        "not bytes",
    ],
    ids=repr,
)
def test_unpack_failures_are_protocol_errors(data: bytes) -> None:
    with pytest.raises(ProtocolError) as info:
        unpack(data, max_bytes=1 << 20)
    assert info.value.code == ErrorCode.BAD_REQUEST
    assert info.value.__cause__ is not None or "extension" in str(info.value)


@pytest.mark.parametrize(
    ("data", "detail"),
    [
        (b"\x00not msgpack", "11 bytes follow the first value"),
        (b"\x91" * 100_000, "nested too deeply"),
        (b"\xc1", "a byte that starts no msgpack type"),
        (b"\x92\x01", "incomplete input"),
        (b"\xa2\xc3\x28", "a str is not valid UTF-8"),
        ("not bytes", "a bytes-like object is required"),
    ],
    ids=["trailing bytes", "deep nesting", "reserved byte", "truncated", "bad utf-8", "not bytes"],
)
def test_every_unpack_failure_says_what_is_wrong(data: bytes, detail: str) -> None:
    with pytest.raises(ProtocolError) as info:
        unpack(data, max_bytes=1 << 20)
    message = str(info.value)
    assert message.startswith("not a valid msgpack message: ")
    assert detail in message
    assert message.removeprefix("not a valid msgpack message: ").strip()

"""Field checks shared by encoders and decoders (internal).

Each ``check_*`` takes a value and the name to blame, returns the value in its
canonical Python type, and raises ``TypeError`` or ``ValueError``: encoders let
those reach the caller (API misuse), decoders read fields through
:class:`Fields`, which turns them into :class:`~protocol.errors.ProtocolError`.
"""

from __future__ import annotations

import math
import numbers
import re
from typing import TYPE_CHECKING, TypeVar

from protocol._codes import ErrorCode
from protocol._limits import MAX_ID_LENGTH
from protocol.errors import ProtocolError

if TYPE_CHECKING:
    from collections.abc import Callable

_T = TypeVar("_T")

MAX_INT = 2**63 - 1
"""Largest count on the wire (fits an int64)."""

_SHA256 = re.compile(r"[0-9a-f]{64}")
_TOPIC_FORBIDDEN = ("/", "+", "#", "\0")


def type_name(value: object) -> str:
    """Name of ``value``'s type, for messages."""
    return "nil" if value is None else type(value).__name__


def check_bin(value: object, name: str) -> bytes:
    """A msgpack ``bin``: ``bytes``."""
    if not isinstance(value, bytes):
        msg = f"{name} must be bin, not {type_name(value)}"
        raise TypeError(msg)
    return value


def check_str(value: object, name: str, *, max_length: int = MAX_ID_LENGTH) -> str:
    """A ``str`` of at most ``max_length`` characters (possibly empty)."""
    if not isinstance(value, str):
        msg = f"{name} must be a string, not {type_name(value)}"
        raise TypeError(msg)
    if len(value) > max_length:
        msg = f"{name} must be at most {max_length} characters, not {len(value)}"
        raise ValueError(msg)
    return value


def check_id(value: object, name: str, *, max_length: int = MAX_ID_LENGTH) -> str:
    """A non-empty ``str`` of at most ``max_length`` characters."""
    text = check_str(value, name, max_length=max_length)
    if not text:
        msg = f"{name} must not be empty"
        raise ValueError(msg)
    return text


def check_topic_id(value: object, name: str) -> str:
    """An id that can be one MQTT topic level: no ``/ + #`` or NUL, no leading ``$``."""
    text = check_id(value, name)
    if any(char in text for char in _TOPIC_FORBIDDEN) or text.startswith("$"):
        msg = f"{name} must not contain '/', '+', '#', NUL or start with '$': {text!r}"
        raise ValueError(msg)
    return text


def check_sha256(value: object, name: str) -> str:
    """64 lowercase hex digits."""
    text = check_str(value, name)
    if _SHA256.fullmatch(text) is None:
        msg = f"{name} must be 64 lowercase hex digits: {text!r}"
        raise ValueError(msg)
    return text


def check_bool(value: object, name: str) -> bool:
    """A ``bool``."""
    if not isinstance(value, bool):
        msg = f"{name} must be a bool, not {type_name(value)}"
        raise TypeError(msg)
    return value


def check_real(value: object, name: str) -> float:
    """A finite real number (``bool`` excluded), as ``float``."""
    if type(value) is float:  # fast path
        result = value
    elif isinstance(value, bool) or not isinstance(value, numbers.Real):
        msg = f"{name} must be a number, not {type_name(value)}"
        raise TypeError(msg)
    else:
        result = float(value)
    if not math.isfinite(result):
        msg = f"{name} must be finite, not {result}"
        raise ValueError(msg)
    return result


def check_non_negative(value: object, name: str) -> float:
    """A finite real number ``>= 0``, as ``float``."""
    result = check_real(value, name)
    if result < 0:
        msg = f"{name} must be >= 0, not {result}"
        raise ValueError(msg)
    return result


def check_positive(value: object, name: str) -> float:
    """A finite real number ``> 0``, as ``float``."""
    result = check_real(value, name)
    if result <= 0:
        msg = f"{name} must be > 0, not {result}"
        raise ValueError(msg)
    return result


def check_count(value: object, name: str) -> int:
    """An integer ``0 <= n <= 2**63 - 1`` (``bool`` excluded), as ``int``."""
    if type(value) is int:  # fast path
        result = value
    elif isinstance(value, bool) or not isinstance(value, numbers.Integral):
        msg = f"{name} must be an integer, not {type_name(value)}"
        raise TypeError(msg)
    else:
        result = int(value)
    if not 0 <= result <= MAX_INT:
        msg = f"{name} must be between 0 and {MAX_INT}, not {result}"
        raise ValueError(msg)
    return result


def check_batch_size(value: object, name: str) -> int:
    """A count ``>= 1``: the size of a batch that ran."""
    result = check_count(value, name)
    if result < 1:
        msg = f"{name} must be at least 1, not {result}"
        raise ValueError(msg)
    return result


def nullable(check: Callable[[object, str], _T]) -> Callable[[object, str], _T | None]:
    """``check``, but letting ``None`` (nil) through."""

    def check_or_none(value: object, name: str) -> _T | None:
        return None if value is None else check(value, name)

    return check_or_none


class Fields:
    """Read the fields of one received map; every failure is a ProtocolError.

    Unknown keys are ignored (forward compatibility); a missing key, or a
    value that fails its check, raises ``ProtocolError`` (code
    ``bad_request``) naming the field.
    """

    __slots__ = ("_map", "_where")

    def __init__(self, value: object, where: str) -> None:
        if not isinstance(value, dict):
            msg = f"{where} must be a map, not {type_name(value)}"
            raise ProtocolError(msg, code=ErrorCode.BAD_REQUEST)
        self._map: dict[object, object] = value
        self._where = where

    def get(self, key: str, check: Callable[[object, str], _T]) -> _T:
        """The value of required field ``key``, passed through ``check``."""
        if key not in self._map:
            msg = f"{self._where} lacks the field {key!r}"
            raise ProtocolError(msg, code=ErrorCode.BAD_REQUEST)
        return self._checked(key, check)

    def get_optional(self, key: str, check: Callable[[object, str], _T]) -> _T | None:
        """Like :meth:`get`, but ``None`` when ``key`` is absent."""
        return self._checked(key, check) if key in self._map else None

    def _checked(self, key: str, check: Callable[[object, str], _T]) -> _T:
        try:
            return check(self._map[key], f"{self._where}.{key}")
        except (TypeError, ValueError) as exc:
            raise ProtocolError(str(exc), code=ErrorCode.BAD_REQUEST) from exc

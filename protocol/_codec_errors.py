"""How a codec fails: data it cannot accept (``bad_request``), or a library this side lacks (``unsupported_codec``)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Final

from protocol._codes import ErrorCode
from protocol.errors import ProtocolError

if TYPE_CHECKING:
    from types import ModuleType

_EXTRA: Final = "pip install 'edgecut[codecs]'"


def malformed(message: str) -> ProtocolError:
    """The error for ``data`` or ``params`` a codec cannot decode."""
    return ProtocolError(message, code=ErrorCode.BAD_REQUEST)


def optional_module(module: str, package: str) -> ModuleType:
    """Import an optional codec library, or say which package this side lacks.

    Raises:
        ProtocolError: ``unsupported_codec``, naming ``package``.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        msg = f"this side lacks the {package} package ({_EXTRA})"
        raise ProtocolError(msg, code=ErrorCode.UNSUPPORTED_CODEC) from exc

"""The element types a tensor may have on the wire: the one table every side reads."""

from __future__ import annotations

from typing import Final

# (wire name = numpy dtype name, ONNX TensorProto.DataType value, ONNX type name). The ONNX
# values are fixed by the ONNX spec (onnx.proto), so this module needs no onnx import.
_TABLE: Final = (
    ("bool", 9, "bool"),
    ("uint8", 2, "uint8"),
    ("int8", 3, "int8"),
    ("int16", 5, "int16"),
    ("int32", 6, "int32"),
    ("int64", 7, "int64"),
    ("float16", 10, "float16"),
    ("float32", 1, "float"),
    ("float64", 11, "double"),
)

ALLOWED_DTYPES: Final = tuple(name for name, _, _ in _TABLE)
"""Element types a tensor may have, as numpy ``dtype.name`` strings."""

ONNX_ELEMENT_TYPES: Final = {onnx_type: name for name, onnx_type, _ in _TABLE}
"""ONNX ``TensorProto.DataType`` value to the wire dtype; types not in it cannot cross a cut."""

ONNX_TYPE_NAMES: Final = {f"tensor({onnx_name})": name for name, _, onnx_name in _TABLE}
"""ONNX type strings as ONNX Runtime reports them (``"tensor(float)"``) to the wire dtype."""

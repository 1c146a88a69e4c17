"""Protobuf wire format, the one piece read by hand: a varint (light: standard library only).

Used where a message is read without parsing it whole: compare's layered model finds initializer
offsets in the serialized ONNX file, and gRPC serving reads packed typed contents as raw bytes.
"""

from __future__ import annotations


def read_varint(data: bytes | memoryview, pos: int) -> tuple[int, int]:
    """The protobuf varint at ``data[pos:]``: ``(value, position after it)``. IndexError when
    ``data`` ends inside it."""
    value = shift = 0
    while True:
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        pos += 1
        if byte < 0x80:
            return value, pos
        shift += 7

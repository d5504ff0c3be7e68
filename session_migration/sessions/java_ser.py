"""Recognise Java serialization (`AC ED 00 05`) as written by Spring's default
`JdkSerializationRedisSerializer`: only the shapes Spring Session stores for its bookkeeping
fields (boxed Long/Integer and plain Strings) are decoded; anything else is just "Java".
"""

from __future__ import annotations

MAGIC = b"\xac\xed\x00\x05"

# The fixed class descriptors the JDK writes for boxed numbers; the value follows them.
_NUMBER_DESC = (
    b"\x78\x72\x00\x10java.lang.Number\x86\xac\x95\x1d\x0b\x94\xe0\x8b\x02\x00\x00\x78\x70"
)
LONG_PREFIX = (
    MAGIC + b"\x73\x72\x00\x0ejava.lang.Long\x3b\x8b\xe4\x90\xcc\x8f\x23\xdf\x02\x00\x01J\x00\x05value"
    + _NUMBER_DESC
)
INTEGER_PREFIX = (
    MAGIC + b"\x73\x72\x00\x11java.lang.Integer\x12\xe2\xa0\xa4\xf7\x81\x87\x38\x02\x00\x01I\x00\x05value"
    + _NUMBER_DESC
)


def is_java(data: bytes) -> bool:
    return data.startswith(MAGIC)


def boxed_number(data: bytes) -> int | None:
    """The value of a serialized java.lang.Long / java.lang.Integer, else None."""
    if len(data) == len(LONG_PREFIX) + 8 and data.startswith(LONG_PREFIX):
        return int.from_bytes(data[-8:], "big", signed=True)
    if len(data) == len(INTEGER_PREFIX) + 4 and data.startswith(INTEGER_PREFIX):
        return int.from_bytes(data[-4:], "big", signed=True)
    return None


def string(data: bytes) -> str | None:
    """A serialized java.lang.String (TC_STRING, u16 length, modified UTF-8), else None."""
    if len(data) < 7 or not data.startswith(MAGIC + b"\x74"):
        return None
    n = int.from_bytes(data[5:7], "big")
    if len(data) != 7 + n:
        return None
    return data[7:].decode("utf-8", "replace")

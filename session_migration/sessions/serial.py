"""Safe decoders shared by the Python stores: pickle (walked, never loaded) and msgpack."""

from __future__ import annotations

import msgpack

from .model import Corrupt
from .pickle_walk import CODE_REF_REASON, NOT_A_DICT, NOT_WELL_FORMED, PDict, PickleCodeRef, PickleError, top_dict


def pickled_dict(value: bytes) -> PDict:
    """The top-level dict of a pickle, or `Corrupt` saying what is wrong (the callable a
    code reference names goes to the detail, never to the reason)."""
    try:
        return top_dict(value)
    except PickleCodeRef as exc:
        raise Corrupt(CODE_REF_REASON, exc.name) from None
    except PickleError as exc:
        text = str(exc)
        raise Corrupt(NOT_A_DICT if text == NOT_A_DICT else NOT_WELL_FORMED, text) from None


def headerless_pickle_dict(value: bytes) -> PDict | None:
    """Last resort for bytes no other decoder took: Flask-Session and Django hand anything
    to `pickle.loads`, so a protocol 0/1 pickle (no `80 0N` header) would still be loaded.
    Returns its dict, None when it is not a pickle, and raises `Corrupt` when it calls code.
    """
    try:
        return top_dict(value)
    except PickleCodeRef as exc:
        raise Corrupt(CODE_REF_REASON, exc.name) from None
    except PickleError:
        return None


def msgpack_map(value: bytes) -> dict | None:
    """The string-keyed entries of a msgpack map spanning all of `value`, else None.

    `unpackb` builds only plain containers (ext types become inert `ExtType`), caps lengths
    at the input size and raises on trailing bytes. Map keys other than str/bytes (whose
    hashes are randomised) are ints, floats or tuples whose Python hashes can be made to
    collide, which would make building a dict quadratic: such a payload is read again with
    its maps as lists of pairs, and only the top level's string keys become a dict.
    """
    if not msgpack_is_map(value):
        return None
    try:  # the usual session: string keys only, decoded in C
        obj = msgpack.unpackb(value, raw=False, strict_map_key=True)
    except ValueError as exc:
        return _msgpack_pairs(value) if "map key" in str(exc) else None
    except Exception:  # msgpack raises several unrelated types; any of them means "not msgpack"
        return None
    return obj if isinstance(obj, dict) else None


def _msgpack_pairs(value: bytes) -> dict | None:
    """`msgpack_map` for maps with keys other than strings: no dict is built from them."""
    try:
        pairs = msgpack.unpackb(value, raw=False, strict_map_key=False, object_pairs_hook=list)
    except Exception:
        return None
    return {k: v for k, v in pairs if isinstance(k, str)}


def msgpack_is_map(value: bytes) -> bool:
    """The first byte is a msgpack map header (fixmap, map16, map32)."""
    return bool(value) and (0x80 <= value[0] <= 0x8F or value[0] in (0xDE, 0xDF))

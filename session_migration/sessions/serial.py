"""Safe decoders shared by the Python stores: pickle (walked, never loaded) and msgpack."""

from __future__ import annotations

import msgpack

from .model import Corrupt
from .pickle_walk import PDict, PickleCodeRef, PickleError, top_dict


def pickled_dict(value: bytes) -> PDict:
    """The top-level dict of a pickle, or `Corrupt` naming what is wrong (e.g. a code ref)."""
    try:
        return top_dict(value)
    except PickleError as exc:  # PickleCodeRef's text names the callable
        raise Corrupt(str(exc)) from None


def headerless_pickle_dict(value: bytes) -> PDict | None:
    """Last resort for bytes no other decoder took: Flask-Session and Django hand anything
    to `pickle.loads`, so a protocol 0/1 pickle (no `80 0N` header) would still be loaded.
    Returns its dict, None when it is not a pickle, and raises `Corrupt` when it calls code.
    """
    try:
        return top_dict(value)
    except PickleCodeRef as exc:
        raise Corrupt(str(exc)) from None
    except PickleError:
        return None


def msgpack_map(value: bytes) -> dict | None:
    """A msgpack map spanning all of `value`, else None.

    `unpackb` builds only plain containers (ext types become inert `ExtType`), caps lengths
    at the input size and raises on trailing bytes, so it is safe on hostile input.
    """
    try:
        obj = msgpack.unpackb(value, raw=False, strict_map_key=False)
    except Exception:  # msgpack raises several unrelated types; any of them means "not msgpack"
        return None
    return obj if isinstance(obj, dict) else None

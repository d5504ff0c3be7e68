"""Flask-Session: pickle (<= 0.6), msgpack (>= 0.7 default) or JSON; always written with a TTL.

Readers of 0.7+ fall back to pickle, so any of the three decoding to a dict is a session.
A pickle that references code is corrupt whatever else it contains.
"""

from __future__ import annotations

from ..record import KeyRecord
from .model import Context, Corrupt, Verdict, try_json_object, valid
from .pickle_walk import is_pickle
from .serial import headerless_pickle_dict, msgpack_map, pickled_dict


def judge(record: KeyRecord, ctx: Context) -> Verdict:
    value = record.value or b""
    if is_pickle(value):
        pickled_dict(value)
        return valid("pickled dict (Flask-Session <= 0.6)")
    if msgpack_map(value) is not None:
        return valid("msgpack map (Flask-Session >= 0.7)")
    if value[:1] == b"{" and try_json_object(value) is not None:
        return valid("JSON object (Flask-Session JSON serializer)")
    if headerless_pickle_dict(value) is not None:
        return valid("pickled dict (protocol 0/1)")
    raise Corrupt("none of msgpack, JSON or pickle decodes to a session dict")

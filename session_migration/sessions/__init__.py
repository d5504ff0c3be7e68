"""Recognise and judge web-framework sessions kept in Redis, without executing payloads.

    from session_migration.sessions import detect_store, classify, Classification, STORES, SessionStatus

`detect_store` is the cheap per-key guess used while backing up; `classify` is the full
judgement (valid / expired / stale / corrupt / unknown) following docs/session-stores.md.
`classify` is imported on first use: it brings every store's decoder, which a backup never
needs (its process starts and exits faster without them).
"""

from .detect import STORES, detect_store
from .model import Classification, SessionStatus

__all__ = ["STORES", "Classification", "SessionStatus", "classify", "detect_store"]


def __getattr__(name: str):
    if name == "classify":
        from .registry import classify

        return classify
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""Recognise and judge web-framework sessions kept in Redis, without executing payloads.

    from session_migration.sessions import detect_store, classify, Classification, STORES, SessionStatus

`detect_store` is the cheap per-key guess used while backing up; `classify` is the full
judgement (valid / expired / stale / corrupt / unknown) following docs/session-stores.md.
"""

from .detect import STORES, detect_store
from .model import Classification, SessionStatus
from .registry import classify

__all__ = ["STORES", "Classification", "SessionStatus", "classify", "detect_store"]

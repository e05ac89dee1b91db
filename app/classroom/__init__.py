"""Class mode: a teacher opens a class, students send their drawings, the projector shows them all.

The store (app/classroom/store.py) is plain Python over SQLAlchemy; the page calls it and never SQL.
"""

from app.classroom.store import (
    CLASS_LIFETIME_S,
    CODE_ALPHABET,
    CODE_LENGTH,
    ENV_VAR,
    MAX_DRAWINGS,
    NICKNAME_MAX_CHARS,
    SEND_INTERVAL_S,
    ClassFull,
    ClassNotFound,
    ClassStore,
    ClassStoreError,
    ClassStoreUnavailable,
    Drawing,
    InvalidDrawing,
    Listing,
    RateLimited,
    SchemaMismatch,
    WrongKey,
    database_url,
    normalise_code,
)

__all__ = [
    "CLASS_LIFETIME_S",
    "CODE_ALPHABET",
    "CODE_LENGTH",
    "ENV_VAR",
    "MAX_DRAWINGS",
    "NICKNAME_MAX_CHARS",
    "SEND_INTERVAL_S",
    "ClassFull",
    "ClassNotFound",
    "ClassStore",
    "ClassStoreError",
    "ClassStoreUnavailable",
    "Drawing",
    "InvalidDrawing",
    "Listing",
    "RateLimited",
    "SchemaMismatch",
    "WrongKey",
    "database_url",
    "normalise_code",
]

"""The class store: classes, the drawings students send to them, and the limits that hold across replicas.

One SQL database through SQLAlchemy Core: SQLite for one machine (the default: a file under the user's
data folder) or PostgreSQL for several app replicas behind nginx (deploy/README.md). Every limit of a
class (one drawing per session per 2 s, 500 drawings, 24 hours) is checked inside a database
transaction, so it holds whichever replica a request reaches.

A class is a CODE (6 characters a student types on a phone) and a KEY (a secret only the teacher's page
holds; the database keeps its SHA-256). Anyone with the code may send and list drawings; only the key
deletes, clears and exports them.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import logging
import numbers
import os
import secrets
import threading
import time
import unicodedata
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from PIL import Image
from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    Double,
    Engine,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    create_engine,
    delete,
    event,
    func,
    insert,
    inspect,
    make_url,
    select,
    text,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql, sqlite

log = logging.getLogger(__name__)

ENV_VAR = "CAPSNET_CLASS_DB"
SCHEMA_VERSION = 1

# No look-alikes: 0/O, 1/I/L are left out, so a code read off a projector is typed right on a phone.
CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
CODE_LENGTH = 6
KEY_BYTES = 32  # secrets.token_urlsafe(32): 43 characters, 256 bits

IMAGE_SHAPE = (28, 28)
MAX_DRAWINGS = 500  # per class
SEND_INTERVAL_S = 2.0  # per session: at most one drawing each 2 s
CLASS_LIFETIME_S = 24 * 3600.0
PURGE_INTERVAL_S = 3600.0
NICKNAME_MAX_CHARS = 24
SESSION_ID_MAX_CHARS = 64

_CONNECT_TIMEOUT_S = 5  # PostgreSQL: an unreachable host fails within this, not the OS's minutes
_INIT_LOCK_ID = 0x43415053  # pg_advisory_xact_lock id: replicas starting together create the tables once

metadata = MetaData()

schema_meta = Table(
    "classroom_meta",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", String(256), nullable=False),
)

classes = Table(
    "classroom_classes",
    metadata,
    Column("code", String(CODE_LENGTH), primary_key=True),
    Column(
        "key_sha256", String(64), nullable=False
    ),  # hex SHA-256 of the key; the key itself is never stored
    Column("created_at", Double, nullable=False),  # seconds since the epoch, from the store's clock
    Column("expires_at", Double, nullable=False, index=True),
)

drawings = Table(
    "classroom_drawings",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column(
        "class_code",
        String(CODE_LENGTH),
        ForeignKey(classes.c.code, ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("created_at", Double, nullable=False),
    Column("session_id", String(SESSION_ID_MAX_CHARS), nullable=False),
    Column("nickname", String(NICKNAME_MAX_CHARS)),
    Column("intended", SmallInteger),
    Column("predicted", SmallInteger, nullable=False),
    Column("length", Double, nullable=False),
    Column("routing_changed", Boolean, nullable=False),
    Column("image", LargeBinary, nullable=False),  # (28, 28) little-endian float32, 3136 bytes
)

# The last send of each session: the rate limit lives here, so every replica sees the same one.
session_sends = Table(
    "classroom_session_sends",
    metadata,
    Column("session_id", String(SESSION_ID_MAX_CHARS), primary_key=True),
    Column("last_sent_at", Double, nullable=False),
)


class ClassStoreError(Exception):
    """Base of the store's errors; each message is one line the page can show."""


class ClassStoreUnavailable(ClassStoreError):
    """The database cannot be reached (or is busy); the next call tries again."""


class SchemaMismatch(ClassStoreError):
    """The database holds another schema version than this code reads."""


class ClassNotFound(ClassStoreError):
    """No class with this code, or it has expired."""


class WrongKey(ClassStoreError):
    """A managing call with a key that is not the class's: nothing was changed or read."""


class InvalidDrawing(ClassStoreError, ValueError):
    """A drawing that breaks the rules (shape, dtype, range, nickname, digits); nothing was stored."""


class ClassFull(ClassStoreError):
    """The class holds MAX_DRAWINGS drawings already."""


class RateLimited(ClassStoreError):
    """This session sent a drawing less than SEND_INTERVAL_S ago."""

    def __init__(self, retry_after: float):
        super().__init__(f"one drawing every {SEND_INTERVAL_S:g} s: try again in {retry_after:.1f} s")
        self.retry_after = retry_after


@dataclass(frozen=True)
class Drawing:
    id: int
    created_at: float  # seconds since the epoch
    image: np.ndarray  # (28, 28) float32 in [0, 1], finite
    predicted: int  # the digit the network read
    length: float  # the length of that digit's capsule, in [0, 1]
    intended: int | None  # the digit the student meant, if they said
    nickname: str | None  # as the student typed it: render it as text, never as markup
    routing_changed: bool  # routing changed the answer: the page's 1 iteration read another digit


@dataclass(frozen=True)
class Listing:
    drawings: list[Drawing]  # oldest first
    corrupt_ids: list[int]  # rows that failed validation on the way out: reported here, not shown
    last_id: int | None  # the highest id read (shown or corrupt): the next call's since_id


def database_url(environ: dict[str, str] | None = None) -> str:
    """$CAPSNET_CLASS_DB, else an SQLite file under the user's data folder (never in the repository)."""
    environ = os.environ if environ is None else environ
    url = environ.get(ENV_VAR, "").strip()
    if url:
        return url
    return f"sqlite:///{default_sqlite_path(environ)}"


def default_sqlite_path(environ: dict[str, str] | None = None) -> Path:
    environ = os.environ if environ is None else environ
    xdg = environ.get("XDG_DATA_HOME", "")
    # The XDG spec: a relative XDG_DATA_HOME is invalid and is ignored.
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".local" / "share"
    return base / "capsnet" / "classroom.sqlite3"


def normalise_code(code: object) -> str | None:
    """A code as typed (any case, spaces around) -> its canonical form, or None if it cannot be one."""
    if not isinstance(code, str):
        return None
    code = code.strip().upper()
    if len(code) != CODE_LENGTH or any(c not in CODE_ALPHABET for c in code):
        return None
    return code


def _new_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def _key_hash(key: str) -> str:
    # The key is 256 random bits, not a password: one SHA-256 is as strong as a slow KDF here.
    return hashlib.sha256(key.encode()).hexdigest()


def _is_digit(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and 0 <= value <= 9


def _check_image(image: object) -> np.ndarray:
    if not isinstance(image, np.ndarray):
        raise InvalidDrawing(f"the image must be a numpy array, not {type(image).__name__}")
    if image.shape != IMAGE_SHAPE:
        raise InvalidDrawing(f"the image must be 28x28, not {'x'.join(map(str, image.shape)) or 'a scalar'}")
    if image.dtype != np.float32:
        raise InvalidDrawing(f"the image must be float32, not {image.dtype}")
    if not np.isfinite(image).all():
        raise InvalidDrawing("the image holds NaN or infinite values")
    if image.min() < 0.0 or image.max() > 1.0:
        raise InvalidDrawing("the image's values must lie in [0, 1]")
    return image


def _check_nickname(nickname: object) -> str | None:
    if nickname is None:
        return None
    if not isinstance(nickname, str):
        raise InvalidDrawing(f"the nickname must be text, not {type(nickname).__name__}")
    if len(nickname) > NICKNAME_MAX_CHARS:
        raise InvalidDrawing(f"the nickname is longer than {NICKNAME_MAX_CHARS} characters")
    # Control characters (NUL, newlines, escapes) are never a name; PostgreSQL cannot even store NUL.
    if any(unicodedata.category(c) == "Cc" for c in nickname):
        raise InvalidDrawing("the nickname holds control characters")
    return nickname


def _check_fields(predicted: object, length: object, intended: object, routing_changed: object) -> None:
    if not _is_digit(predicted):
        raise InvalidDrawing(f"the predicted digit must be an integer 0..9, not {predicted!r}")
    if (
        not isinstance(length, numbers.Real)
        or isinstance(length, bool)
        or not np.isfinite(length)
        or not 0.0 <= length <= 1.0
    ):
        raise InvalidDrawing(f"the capsule length must be a number in [0, 1], not {length!r}")
    if intended is not None and not _is_digit(intended):
        raise InvalidDrawing(f"the intended digit must be an integer 0..9 or None, not {intended!r}")
    if not isinstance(routing_changed, bool | np.bool_):
        raise InvalidDrawing(f"routing_changed must be True or False, not {routing_changed!r}")


def _drawing_from_row(row) -> Drawing:
    """A database row -> a Drawing, through the same checks as on the way in (InvalidDrawing if corrupt)."""
    blob = row.image
    if (
        not isinstance(blob, bytes | bytearray | memoryview)
        or len(blob) != 4 * IMAGE_SHAPE[0] * IMAGE_SHAPE[1]
    ):
        raise InvalidDrawing("the stored image is not 3136 bytes")
    image = np.frombuffer(bytes(blob), dtype="<f4").reshape(IMAGE_SHAPE).astype(np.float32)
    _check_image(image)
    _check_fields(row.predicted, row.length, row.intended, row.routing_changed)
    return Drawing(
        id=row.id,
        created_at=float(row.created_at),
        image=image,
        predicted=int(row.predicted),
        length=float(row.length),
        intended=None if row.intended is None else int(row.intended),
        nickname=_check_nickname(row.nickname),
        routing_changed=bool(row.routing_changed),
    )


class ClassStore:
    """The classes of one database. Thread-safe; one per process (st.cache_resource) is enough.

    Nothing connects until the first call. Every call raises ClassStoreUnavailable while the database
    cannot be reached and works again once it can: pooled connections are checked before use
    (pool_pre_ping), and a store whose first connection failed sets the schema up on the next call.
    """

    def __init__(self, url: str | None = None, *, clock: Callable[[], float] = time.time):
        url = database_url() if url is None else url
        parsed = make_url(url)
        self._clock = clock
        self.backend = parsed.get_backend_name()
        self.url = parsed.render_as_string(hide_password=True)
        if self.backend == "sqlite":
            if url == f"sqlite:///{default_sqlite_path()}":
                default_sqlite_path().parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._engine = _sqlite_engine(parsed)
        elif self.backend == "postgresql":
            self._engine = create_engine(
                parsed, pool_pre_ping=True, connect_args={"connect_timeout": _CONNECT_TIMEOUT_S}
            )
        else:
            raise ClassStoreError(f"{ENV_VAR}: unsupported database {self.backend!r} (sqlite or postgresql)")
        self._ready = False
        self._last_purge = float("-inf")
        self._lock = threading.Lock()

    def dispose(self) -> None:
        """Close the pooled connections (tests; a process that exits need not)."""
        self._engine.dispose()

    # -- classes ---------------------------------------------------------------------------------

    def create_class(self) -> tuple[str, str]:
        """A new class -> (code, key). Show the code to the students; keep the key on the teacher's page."""
        self._prepare()
        key = secrets.token_urlsafe(KEY_BYTES)
        now = self._clock()
        for _ in range(20):
            code = _new_code()
            try:
                with self._transaction(write=True) as conn:
                    conn.execute(
                        insert(classes).values(
                            code=code,
                            key_sha256=_key_hash(key),
                            created_at=now,
                            expires_at=now + CLASS_LIFETIME_S,
                        )
                    )
            except sa_exc.IntegrityError:
                continue  # the code is taken (or expired and not purged yet): draw another
            return code, key
        raise ClassStoreError("no free class code found: try again")

    def class_exists(self, code: str) -> bool:
        code = normalise_code(code)
        if code is None:
            return False
        self._prepare()
        with self._transaction() as conn:
            return self._live_class(conn, code) is not None

    # -- drawings --------------------------------------------------------------------------------

    def add_drawing(
        self,
        code: str,
        image: np.ndarray,
        predicted: int,
        length: float,
        *,
        intended: int | None = None,
        nickname: str | None = None,
        routing_changed: bool = False,
        session_id: str,
    ) -> int:
        """Store one drawing -> its id. Raises InvalidDrawing, ClassNotFound, ClassFull or RateLimited
        (nothing is stored then, and a refused drawing does not count against the rate limit)."""
        image = _check_image(image)
        _check_fields(predicted, length, intended, routing_changed)
        nickname = _check_nickname(nickname)
        if not isinstance(session_id, str) or not 0 < len(session_id) <= SESSION_ID_MAX_CHARS:
            raise InvalidDrawing(f"the session id must be 1..{SESSION_ID_MAX_CHARS} characters")
        code = normalise_code(code)
        if code is None:
            raise ClassNotFound("no class has this code")
        self._prepare()
        now = self._clock()
        with self._transaction(write=True) as conn:
            # The class row is locked (FOR UPDATE on PostgreSQL; SQLite's write transaction locks the
            # whole file), so two replicas cannot both see 499 drawings and both add one.
            if self._live_class(conn, code, lock=True) is None:
                raise ClassNotFound("no class has this code (or it has expired)")
            held = conn.scalar(
                select(func.count()).select_from(drawings).where(drawings.c.class_code == code)
            )
            if held >= MAX_DRAWINGS:
                raise ClassFull(f"this class holds {MAX_DRAWINGS} drawings, the most it can")
            self._take_send_slot(conn, session_id, now)
            result = conn.execute(
                insert(drawings).values(
                    class_code=code,
                    created_at=now,
                    session_id=session_id,
                    nickname=nickname,
                    intended=None if intended is None else int(intended),
                    predicted=int(predicted),
                    length=float(length),
                    routing_changed=bool(routing_changed),
                    image=np.ascontiguousarray(image, dtype="<f4").tobytes(),
                )
            )
            return result.inserted_primary_key[0]

    def list_drawings(self, code: str, since_id: int | None = None) -> Listing:
        """The class's drawings with an id above since_id, oldest first. Raises ClassNotFound."""
        if since_id is not None and (not isinstance(since_id, numbers.Integral) or since_id < 0):
            raise ValueError(f"since_id must be a non-negative integer or None, not {since_id!r}")
        code = normalise_code(code)
        if code is None:
            raise ClassNotFound("no class has this code")
        self._prepare()
        with self._transaction() as conn:
            if self._live_class(conn, code) is None:
                raise ClassNotFound("no class has this code (or it has expired)")
            return self._read(conn, code, since_id)

    # -- the teacher's calls: each needs the class's key -----------------------------------------

    def check_key(self, code: str, key: str) -> None:
        """Return if `key` is the class's; ClassNotFound or WrongKey if not (the teacher's page asks once)."""
        with self._managing(code, key):
            pass

    def delete_drawing(self, code: str, key: str, drawing_id: int) -> bool:
        """Delete one drawing of the class -> whether there was one with that id."""
        with self._managing(code, key, write=True) as (conn, code):
            deleted = conn.execute(
                delete(drawings).where(drawings.c.class_code == code, drawings.c.id == int(drawing_id))
            )
            return deleted.rowcount == 1

    def clear_class(self, code: str, key: str) -> int:
        """Delete all the class's drawings -> how many. The class itself stays open."""
        with self._managing(code, key, write=True) as (conn, code):
            return conn.execute(delete(drawings).where(drawings.c.class_code == code)).rowcount

    def export_csv(self, code: str, key: str) -> bytes:
        """The class's drawings as CSV (UTF-8): one row each, the 784 pixels as p0..p783 (row-major).
        Corrupt rows are left out (list_drawings reports them)."""
        with self._managing(code, key) as (conn, code):
            listing = self._read(conn, code, None)
        return _csv_bytes(listing.drawings)

    def export_zip(self, code: str, key: str) -> bytes:
        """drawings.csv (as export_csv) and drawings/<id>.png, 28x28 8-bit greyscale, ink white."""
        with self._managing(code, key) as (conn, code):
            listing = self._read(conn, code, None)
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("drawings.csv", _csv_bytes(listing.drawings))
            for d in listing.drawings:
                archive.writestr(_png_name(d), _png_bytes(d.image))
        return out.getvalue()

    def _purge(self) -> int:
        """Delete the classes past their 24 hours with their drawings -> how many classes.
        Runs on the first call and then at most once an hour (_prepare)."""
        now = self._clock()
        with self._transaction(write=True) as conn:
            expired = select(classes.c.code).where(classes.c.expires_at <= now)
            conn.execute(delete(drawings).where(drawings.c.class_code.in_(expired)))
            purged = conn.execute(delete(classes).where(classes.c.expires_at <= now)).rowcount
            conn.execute(delete(session_sends).where(session_sends.c.last_sent_at <= now - CLASS_LIFETIME_S))
        self._last_purge = now
        return purged

    def _prepare(self) -> None:
        """Schema set up and checked once; expired classes purged then and at most hourly after."""
        if self._ready and self._clock() - self._last_purge < PURGE_INTERVAL_S:
            return
        with self._lock:
            if not self._ready:
                self._set_up_schema()
                self._ready = True
            if self._clock() - self._last_purge >= PURGE_INTERVAL_S:
                self._purge()

    def _set_up_schema(self) -> None:
        with self._transaction(write=True) as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _INIT_LOCK_ID})
            if inspect(conn).has_table(schema_meta.name):
                found = conn.scalar(select(schema_meta.c.value).where(schema_meta.c.name == "schema_version"))
                if found != str(SCHEMA_VERSION):
                    raise SchemaMismatch(
                        f"the class database {self.url} has schema version {found}, this app reads "
                        f"version {SCHEMA_VERSION}: point {ENV_VAR} at another database or migrate this one"
                    )
                return
            metadata.create_all(conn)
            conn.execute(insert(schema_meta).values(name="schema_version", value=str(SCHEMA_VERSION)))

    @contextmanager
    def _transaction(self, write: bool = False) -> Iterator[Connection]:
        """One transaction; the database errors that mean 'cannot reach it' become ClassStoreUnavailable."""
        try:
            with self._engine.connect() as conn:
                conn.execution_options(capsnet_write=write)
                with conn.begin():
                    yield conn
        except (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError) as error:
            raise self._unavailable(error) from error
        except sa_exc.DBAPIError as error:
            if error.connection_invalidated:
                raise self._unavailable(error) from error
            raise

    @contextmanager
    def _managing(self, code: str, key: str, write: bool = False) -> Iterator[tuple[Connection, str]]:
        """A transaction on a class whose key was given -> (conn, canonical code); ClassNotFound or
        WrongKey before anything is read or changed."""
        code = normalise_code(code)
        if code is None:
            raise ClassNotFound("no class has this code")
        self._prepare()
        with self._transaction(write) as conn:
            row = self._live_class(conn, code)
            if row is None:
                raise ClassNotFound("no class has this code (or it has expired)")
            given = _key_hash(key) if isinstance(key, str) else ""
            if not hmac.compare_digest(row.key_sha256, given):
                raise WrongKey("this is not the class's key")
            yield conn, code

    def _unavailable(self, error: Exception) -> ClassStoreUnavailable:
        lines = str(getattr(error, "orig", None) or error).strip().splitlines()
        reason = (lines[0] if lines else type(error).__name__)[:200]
        return ClassStoreUnavailable(f"the class database ({self.backend}) cannot be reached: {reason}")

    def _live_class(self, conn: Connection, code: str, lock: bool = False):
        query = select(classes.c.code, classes.c.key_sha256).where(
            classes.c.code == code, classes.c.expires_at > self._clock()
        )
        return conn.execute(query.with_for_update() if lock else query).first()

    def _take_send_slot(self, conn: Connection, session_id: str, now: float) -> None:
        """Record this send, unless the session sent one less than SEND_INTERVAL_S ago (RateLimited).
        One upsert: concurrent sends of one session through two replicas cannot both pass."""
        dialect_insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
        upsert = dialect_insert(session_sends).values(session_id=session_id, last_sent_at=now)
        upsert = upsert.on_conflict_do_update(
            index_elements=[session_sends.c.session_id],
            set_={"last_sent_at": upsert.excluded.last_sent_at},
            where=session_sends.c.last_sent_at <= now - SEND_INTERVAL_S,
        )
        # RETURNING, not rowcount: drivers need not report a rowcount for an INSERT.
        if conn.execute(upsert.returning(session_sends.c.session_id)).first() is None:
            last = conn.scalar(
                select(session_sends.c.last_sent_at).where(session_sends.c.session_id == session_id)
            )
            raise RateLimited(retry_after=max(0.0, last + SEND_INTERVAL_S - now))

    def _read(self, conn: Connection, code: str, since_id: int | None) -> Listing:
        query = (
            select(
                drawings.c.id,
                drawings.c.created_at,
                drawings.c.image,
                drawings.c.predicted,
                drawings.c.length,
                drawings.c.intended,
                drawings.c.nickname,
                drawings.c.routing_changed,
            )
            .where(drawings.c.class_code == code)
            .order_by(drawings.c.id)
        )
        if since_id is not None:
            query = query.where(drawings.c.id > since_id)
        shown, corrupt, last_id = [], [], since_id
        for row in conn.execute(query):
            last_id = row.id
            try:
                shown.append(_drawing_from_row(row))
            except (InvalidDrawing, TypeError, ValueError) as error:
                log.warning("class %s: drawing %s is corrupt and is not shown: %s", code, row.id, error)
                corrupt.append(row.id)
        return Listing(drawings=shown, corrupt_ids=corrupt, last_id=last_id)


def _sqlite_engine(url) -> Engine:
    engine = create_engine(url, pool_pre_ping=True, connect_args={"timeout": 10})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        # The driver's own transaction handling off: _on_begin below says BEGIN itself.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")  # readers never wait for the writer
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")  # WAL's safe setting: durable except on power loss
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        # A write takes the write lock at BEGIN: a deferred transaction that reads and then writes can
        # fail at once with 'database is locked' when another process wrote in between; IMMEDIATE waits.
        conn.exec_driver_sql(
            "BEGIN IMMEDIATE" if conn.get_execution_options().get("capsnet_write") else "BEGIN"
        )

    return engine


def _spreadsheet_safe(value: str) -> str:
    # A cell starting with = + - @ is a formula to Excel and LibreOffice: a nickname must stay text.
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def _png_name(d: Drawing) -> str:
    return f"drawings/{d.id:06d}.png"


def _png_bytes(image: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.round(image * 255).astype(np.uint8)).save(out, format="PNG")
    return out.getvalue()


CSV_COLUMNS = [
    "id",
    "created_utc",
    "nickname",
    "intended",
    "predicted",
    "length",
    "routing_changed",
    "png",
    *(f"p{i}" for i in range(IMAGE_SHAPE[0] * IMAGE_SHAPE[1])),
]


def _csv_bytes(rows: list[Drawing]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for d in rows:
        writer.writerow(
            [
                d.id,
                datetime.fromtimestamp(d.created_at, UTC).isoformat(timespec="seconds"),
                "" if d.nickname is None else _spreadsheet_safe(d.nickname),
                "" if d.intended is None else d.intended,
                d.predicted,
                repr(d.length),
                int(d.routing_changed),
                _png_name(d),
                # The shortest decimal that reads back as the same float32.
                *(np.format_float_positional(v, unique=True, trim="-") for v in d.image.ravel()),
            ]
        )
    return out.getvalue().encode()

"""The class store against a real database: each test runs on SQLite and on PostgreSQL (conftest.py)."""

from __future__ import annotations

import csv
import hashlib
import io
import os
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import create_engine, event, func, insert, select, update

from app.classroom import (
    CLASS_LIFETIME_S,
    CODE_ALPHABET,
    CODE_LENGTH,
    MAX_DRAWINGS,
    SEND_INTERVAL_S,
    ClassFull,
    ClassNotFound,
    ClassStore,
    ClassStoreError,
    ClassStoreUnavailable,
    InvalidDrawing,
    RateLimited,
    SchemaMismatch,
    WrongKey,
    database_url,
)
from app.classroom import store as store_module
from app.classroom.store import PURGE_INTERVAL_S, classes, drawings, metadata, schema_meta, session_sends


def image(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((28, 28), dtype=np.float32)


def add(store: ClassStore, code: str, session: str = "session-1", seed: int = 0, **fields) -> int:
    fields = {"predicted": 3, "length": 0.9, **fields}
    return store.add_drawing(code, image(seed), fields.pop("predicted"), fields.pop("length"), session_id=session, **fields)  # fmt: skip


def count(url: str, table) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.scalar(select(func.count()).select_from(table))
    finally:
        engine.dispose()


def execute(url: str, statement) -> None:
    """A statement run straight on the database, past the store (to corrupt or fill it)."""
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(statement)
    finally:
        engine.dispose()


# -- codes and keys ----------------------------------------------------------------------------------


def test_the_code_alphabet_has_no_look_alikes():
    assert CODE_LENGTH == 6
    assert not set("0O1IL") & set(CODE_ALPHABET)
    assert len(set(CODE_ALPHABET)) == len(CODE_ALPHABET) == 31  # A-Z and 2-9, less O I L


def test_codes_are_six_characters_of_the_alphabet_and_typed_codes_are_forgiven(store):
    codes = [store.create_class()[0] for _ in range(40)]
    assert len(set(codes)) == 40
    for code in codes:
        assert len(code) == CODE_LENGTH and set(code) <= set(CODE_ALPHABET), code
    assert store.class_exists(codes[0])
    assert store.class_exists(f"  {codes[0].lower()} ")  # as typed on a phone
    assert not store.class_exists(codes[0][:5])
    assert not store.class_exists(codes[0] + "A")
    assert not store.class_exists(None)
    free = next(c * 6 for c in CODE_ALPHABET if c * 6 not in codes)
    assert not store.class_exists(free)


def test_a_code_already_taken_is_drawn_again(store, monkeypatch):
    draws = iter(["AAAAAA", "AAAAAA", "BBBBBB"])
    monkeypatch.setattr(store_module, "_new_code", lambda: next(draws))
    first, first_key = store.create_class()
    second, second_key = store.create_class()
    assert (first, second) == ("AAAAAA", "BBBBBB")
    assert first_key != second_key


def test_the_key_is_a_long_secret_and_only_its_hash_is_stored(store, db_url):
    code, key = store.create_class()
    other_code, other_key = store.create_class()
    assert len(key) >= 40 and key != other_key
    add(store, code, nickname="ada")
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            dump = repr([conn.execute(select(table)).all() for table in metadata.sorted_tables])
            stored = conn.scalar(select(classes.c.key_sha256).where(classes.c.code == code))
    finally:
        engine.dispose()
    assert key not in dump and other_key not in dump
    assert stored == hashlib.sha256(key.encode()).hexdigest()


def test_a_wrong_key_manages_nothing(store):
    code, key = store.create_class()
    other_code, other_key = store.create_class()
    ids = [add(store, code, session=f"s{i}", seed=i) for i in range(3)]
    add(store, other_code, session="s9")
    for wrong in [other_key, key[:-1], key + "x", key.upper(), "", None, 12345]:
        with pytest.raises(WrongKey):
            store.delete_drawing(code, wrong, ids[0])
        with pytest.raises(WrongKey):
            store.clear_class(code, wrong)
        with pytest.raises(WrongKey):
            store.export_csv(code, wrong)
        with pytest.raises(WrongKey):
            store.export_zip(code, wrong)
        with pytest.raises(WrongKey):
            store.check_key(code, wrong)
    assert [d.id for d in store.list_drawings(code).drawings] == ids
    store.check_key(code, key)  # the teacher's page asks this once
    with pytest.raises(ClassNotFound):
        store.check_key("ZZZZZZ" if code != "ZZZZZZ" else "YYYYYY", key)
    # A key opens its own class only, and an unknown code opens nothing.
    assert not store.delete_drawing(other_code, other_key, ids[0])
    with pytest.raises(ClassNotFound):
        store.clear_class("ZZZZZZ" if code != "ZZZZZZ" else "YYYYYY", key)
    assert [d.id for d in store.list_drawings(code).drawings] == ids
    # The right key does manage.
    assert store.delete_drawing(code, key, ids[0])
    assert not store.delete_drawing(code, key, ids[0])
    assert store.clear_class(code.lower(), key) == 2
    assert store.list_drawings(code).drawings == []
    assert len(store.list_drawings(other_code).drawings) == 1


# -- validation --------------------------------------------------------------------------------------

BAD_IMAGES = {
    "nan": np.where(np.eye(28, dtype=bool), np.float32("nan"), image()).astype(np.float32),
    "inf": np.full((28, 28), np.inf, dtype=np.float32),
    "27 columns": image()[:, :27],
    "a batch of one": image()[None],
    "flattened": image().ravel(),
    "below 0": np.full((28, 28), -0.01, dtype=np.float32),
    "above 1": np.full((28, 28), 1.01, dtype=np.float32),
    "float64": image().astype(np.float64),
    "uint8": (image() * 255).astype(np.uint8),
    "a list": image().tolist(),
}


@pytest.mark.parametrize("name", BAD_IMAGES)
def test_a_bad_image_is_refused_and_does_not_use_up_the_send(store, name):
    code, _ = store.create_class()
    with pytest.raises(InvalidDrawing):
        store.add_drawing(code, BAD_IMAGES[name], 3, 0.9, session_id="s")
    assert store.list_drawings(code).drawings == []
    add(store, code, session="s")  # same session, same instant: the refused one did not count


BAD_FIELDS = {
    "predicted 10": {"predicted": 10},
    "predicted -1": {"predicted": -1},
    "predicted True": {"predicted": True},
    "predicted 3.0": {"predicted": 3.0},
    "length NaN": {"length": float("nan")},
    "length 1.5": {"length": 1.5},
    "length -0.1": {"length": -0.1},
    "length text": {"length": "0.5"},
    "intended 10": {"intended": 10},
    "intended text": {"intended": "3"},
    "nickname 25 characters": {"nickname": "x" * 25},
    "nickname with a newline": {"nickname": "ada\nlovelace"},
    "nickname with NUL": {"nickname": "ada\x00"},
    "nickname a number": {"nickname": 7},
    "routing_changed text": {"routing_changed": "yes"},
    "empty session id": {"session": ""},
    "session id too long": {"session": "s" * 65},
}


@pytest.mark.parametrize("name", BAD_FIELDS)
def test_bad_fields_are_refused(store, name):
    code, _ = store.create_class()
    with pytest.raises(InvalidDrawing):
        add(store, code, **BAD_FIELDS[name])
    assert store.list_drawings(code).drawings == []


def test_the_edges_of_the_rules_are_accepted_and_read_back_exactly(store):
    code, _ = store.create_class()
    nickname = "<b>Zoë</b> & 🙂" + "x" * 10  # 24 characters: stored as given, HTML and all
    assert len(nickname) == 24
    blank, full = np.zeros((28, 28), np.float32), np.ones((28, 28), np.float32)
    first = store.add_drawing(code, blank, np.int64(0), 0.0, intended=np.int64(9), nickname=nickname, routing_changed=np.True_, session_id="a")  # fmt: skip
    second = store.add_drawing(code, full, 9, 1.0, session_id="b")
    third = add(store, code, session="c", seed=7, predicted=4, length=0.25, intended=0, nickname="")
    shown = store.list_drawings(code).drawings
    assert [d.id for d in shown] == [first, second, third]
    a, b, c = shown
    assert (a.predicted, a.length, a.intended, a.nickname, a.routing_changed) == (0, 0.0, 9, nickname, True)
    assert (b.predicted, b.length, b.intended, b.nickname, b.routing_changed) == (9, 1.0, None, None, False)
    assert (c.predicted, c.length, c.intended, c.nickname) == (4, 0.25, 0, "")
    assert np.array_equal(a.image, blank) and np.array_equal(b.image, full)
    assert c.image.dtype == np.float32 and np.array_equal(c.image, image(7))


def test_a_row_corrupted_in_the_database_is_reported_not_shown(store, db_url):
    code, key = store.create_class()
    ids = [add(store, code, session=f"s{i}", seed=i) for i in range(6)]
    nan = image(1).copy()
    nan[3, 4] = np.nan
    corruptions = {
        ids[1]: {"image": nan.astype("<f4").tobytes()},
        ids[2]: {"image": b"\x00" * 10},
        ids[3]: {"predicted": 42},
        ids[4]: {"image": np.full((28, 28), 2.0, "<f4").tobytes()},
    }
    for drawing_id, values in corruptions.items():
        execute(db_url, update(drawings).where(drawings.c.id == drawing_id).values(**values))
    listing = store.list_drawings(code)
    assert [d.id for d in listing.drawings] == [ids[0], ids[5]]
    assert listing.corrupt_ids == [ids[1], ids[2], ids[3], ids[4]]
    assert listing.last_id == ids[5]
    # The exports leave them out too.
    rows = list(csv.DictReader(io.StringIO(store.export_csv(code, key).decode())))
    assert [int(r["id"]) for r in rows] == [ids[0], ids[5]]
    with zipfile.ZipFile(io.BytesIO(store.export_zip(code, key))) as archive:
        assert sorted(n for n in archive.namelist() if n.endswith(".png")) == [
            f"drawings/{ids[0]:06d}.png",
            f"drawings/{ids[5]:06d}.png",
        ]


def test_since_id_returns_only_newer_drawings(store):
    code, _ = store.create_class()
    first = add(store, code, session="a")
    listing = store.list_drawings(code)
    assert [d.id for d in listing.drawings] == [first] and listing.last_id == first
    assert store.list_drawings(code, since_id=first).drawings == []
    assert store.list_drawings(code, since_id=first).last_id == first
    second = add(store, code, session="b")
    third = add(store, code, session="c")
    newer = store.list_drawings(code, since_id=listing.last_id)
    assert [d.id for d in newer.drawings] == [second, third] and newer.last_id == third
    empty_code, _ = store.create_class()
    assert store.list_drawings(empty_code).last_id is None
    with pytest.raises(ValueError):
        store.list_drawings(code, since_id=-1)


# -- limits ------------------------------------------------------------------------------------------


def test_one_drawing_per_session_every_two_seconds(store, clock):
    code, _ = store.create_class()
    add(store, code, session="a")
    clock.advance(SEND_INTERVAL_S - 0.01)
    with pytest.raises(RateLimited) as refused:
        add(store, code, session="a")
    assert refused.value.retry_after == pytest.approx(0.01)
    add(store, code, session="b")  # another session is not held back
    clock.advance(0.01)
    add(store, code, session="a")
    assert len(store.list_drawings(code).drawings) == 3


def test_the_rate_limit_holds_across_replicas_and_classes(open_store, clock):
    replica_a, replica_b = open_store(), open_store()
    code, _ = replica_a.create_class()
    other, _ = replica_b.create_class()
    add(replica_a, code, session="a")
    clock.advance(1.0)
    with pytest.raises(RateLimited):
        add(replica_b, code, session="a")
    with pytest.raises(RateLimited):
        add(replica_b, other, session="a")
    clock.advance(1.0)
    add(replica_b, code, session="a")


def fill(url: str, code: str, n: int, at: float) -> None:
    """n valid drawings written straight into the database (filling through the API takes 500 sends)."""
    row = {"class_code": code, "created_at": at, "predicted": 1, "length": 0.5, "routing_changed": False}
    blob = image().astype("<f4").tobytes()
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(
                insert(drawings), [{**row, "session_id": f"fill-{i}", "image": blob} for i in range(n)]
            )
    finally:
        engine.dispose()


def test_a_class_holds_at_most_500_drawings(store, db_url, clock):
    code, key = store.create_class()
    other, _ = store.create_class()
    fill(db_url, code, MAX_DRAWINGS - 1, clock.now)
    last = add(store, code, session="a")
    with pytest.raises(ClassFull):
        add(store, code, session="b")
    assert count(db_url, drawings) == MAX_DRAWINGS
    add(store, other, session="b")  # another class is not full; the refused send did not count
    assert store.delete_drawing(code, key, last)
    clock.advance(SEND_INTERVAL_S)
    add(store, code, session="b")
    assert len(store.list_drawings(code).drawings) == MAX_DRAWINGS


def test_a_class_expires_after_24_hours(store, clock):
    code, key = store.create_class()
    add(store, code)
    clock.advance(CLASS_LIFETIME_S - 1)
    assert store.class_exists(code)
    assert len(store.list_drawings(code).drawings) == 1
    clock.advance(1)
    assert not store.class_exists(code)
    with pytest.raises(ClassNotFound):
        store.list_drawings(code)
    with pytest.raises(ClassNotFound):
        add(store, code, session="late")
    with pytest.raises(ClassNotFound):
        store.export_csv(code, key)
    with pytest.raises(ClassNotFound):
        store.clear_class(code, key)


def test_expired_classes_are_purged_at_most_hourly_and_on_start(open_store, db_url, clock):
    store = open_store()
    old, _ = store.create_class()  # the first call purges (nothing yet); the next purge is due in an hour
    add(store, old, session="a")
    clock.advance(CLASS_LIFETIME_S - 600)
    young, _ = store.create_class()  # a day since the last purge: one now, and nothing has expired
    purged_at = clock.now
    add(store, young, session="b")
    clock.advance(1200)  # `old` expired 10 minutes ago
    assert not store.class_exists(old)
    assert count(db_url, classes) == 2 and count(db_url, drawings) == 2  # 20 minutes since the last purge
    clock.now = purged_at + PURGE_INTERVAL_S - 1
    assert store.class_exists(young)
    assert count(db_url, classes) == 2
    clock.now = purged_at + PURGE_INTERVAL_S
    assert store.class_exists(young)
    assert count(db_url, classes) == 1 and count(db_url, drawings) == 1
    # A store starting (a new replica, a restart) purges at once.
    clock.now = purged_at + CLASS_LIFETIME_S
    assert count(db_url, classes) == 1
    assert not open_store().class_exists(young)
    assert count(db_url, classes) == 0 and count(db_url, drawings) == 0
    assert count(db_url, session_sends) == 0  # the sends are a day old: forgotten too


# -- the database itself -----------------------------------------------------------------------------


def test_a_schema_version_mismatch_is_a_clear_error(open_store, db_url):
    open_store().create_class()
    execute(db_url, update(schema_meta).values(value="999"))
    newer = open_store()
    for _ in range(2):  # every call says so, not just the first
        with pytest.raises(SchemaMismatch, match="schema version 999, this app reads version 1"):
            newer.create_class()


def test_the_default_database_is_sqlite_in_wal_mode_under_the_data_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("CAPSNET_CLASS_DB", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    path = tmp_path / "xdg" / "capsnet" / "classroom.sqlite3"
    assert database_url() == f"sqlite:///{path}"
    store = ClassStore()
    try:
        assert not path.exists()  # nothing until first use
        code, _ = store.create_class()
        assert store.class_exists(code)
        assert path.is_file()
    finally:
        store.dispose()
    engine = create_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    finally:
        engine.dispose()
    # Without XDG_DATA_HOME (or with a relative one, which the XDG spec says to ignore): ~/.local/share.
    for xdg in ({}, {"XDG_DATA_HOME": "relative/dir"}):
        monkeypatch.setenv("HOME", str(tmp_path / "home"))
        expected = tmp_path / "home" / ".local" / "share" / "capsnet" / "classroom.sqlite3"
        assert database_url(xdg) == f"sqlite:///{expected}"
    assert database_url({"CAPSNET_CLASS_DB": "postgresql+psycopg://h/db"}) == "postgresql+psycopg://h/db"


def test_an_unsupported_database_is_refused():
    with pytest.raises(ClassStoreError, match="unsupported database 'mysql'"):
        ClassStore("mysql://localhost/db")


def test_sqlite_unreachable_then_back(tmp_path, clock):
    folder = tmp_path / "not-yet"
    store = ClassStore(f"sqlite:///{folder / 'classroom.sqlite3'}", clock=clock)
    try:
        for call in (store.create_class, lambda: store.class_exists("ABCDEF")):
            with pytest.raises(ClassStoreUnavailable) as unavailable:
                call()
            message = str(unavailable.value)
            assert "\n" not in message and message.startswith("the class database (sqlite) cannot be reached")
        folder.mkdir()  # the database is back: the same store works, schema and all
        code, _ = store.create_class()
        assert store.class_exists(code)
    finally:
        store.dispose()


def test_postgresql_unreachable_then_back(postgres_server, clock):
    url = postgres_server.new_database()
    running, idle = ClassStore(url, clock=clock), ClassStore(url, clock=clock)
    stores = [running, idle]
    try:
        code, key = running.create_class()
        add(running, code)
        assert idle.class_exists(code)  # idle holds a pooled connection, and is not called while down
        postgres_server.stop()
        try:
            stores.append(ClassStore(url, clock=clock))  # a replica starting while the database is down
            for store in (running, stores[2]):
                with pytest.raises(ClassStoreUnavailable) as unavailable:
                    store.list_drawings(code)
                message = str(unavailable.value)
                assert "\n" not in message and message.startswith("the class database (postgresql) cannot be")
        finally:
            postgres_server.start()
        # The first call after the restart works on each: no store keeps a dead connection or a failed set-up.
        for store in stores:
            assert len(store.list_drawings(code).drawings) == 1
        assert idle.clear_class(code, key) == 1
    finally:
        for store in stores:
            store.dispose()


def test_postgresql_two_replicas_cannot_both_take_the_last_place(postgres_server, clock):
    """Replica A counts 499 drawings and is held there while replica B sends: B must wait for A's
    transaction (the class row's lock) and then find the class full, not count 499 too."""
    import psycopg

    url = postgres_server.new_database()
    replica_a, replica_b = ClassStore(url, clock=clock), ClassStore(url, clock=clock)
    try:
        code, _ = replica_a.create_class()
        assert replica_b.class_exists(code)
        fill(url, code, MAX_DRAWINGS - 1, clock.now)
        a_counted, b_done = threading.Event(), threading.Event()
        outcomes = {}

        def b_waits_for_a_lock() -> bool:
            with psycopg.connect(
                host=str(postgres_server.socket_dir), user="capsnet", dbname="postgres"
            ) as c:
                query = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                return c.execute(query).fetchone()[0] > 0

        def hold_a_after_its_count(conn, cursor, statement, parameters, context, executemany):
            if threading.current_thread().name == "A" and "count(*)" in statement:
                a_counted.set()
                deadline = time.monotonic() + 60
                while not b_done.wait(0.05) and not b_waits_for_a_lock():
                    assert time.monotonic() < deadline, "B neither finished nor waited for A"

        event.listen(replica_a._engine, "after_cursor_execute", hold_a_after_its_count)

        def send(name, replica, after=None):
            if after is not None:
                after.wait()
            try:
                outcomes[name] = add(replica, code, session=name)
            except ClassStoreError as error:
                outcomes[name] = error
            finally:
                if name == "B":
                    b_done.set()

        threads = [
            threading.Thread(target=send, args=("A", replica_a), name="A"),
            threading.Thread(target=send, args=("B", replica_b, a_counted), name="B"),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert isinstance(outcomes["A"], int), outcomes
        assert isinstance(outcomes["B"], ClassFull), outcomes
        assert count(url, drawings) == MAX_DRAWINGS
    finally:
        replica_a.dispose()
        replica_b.dispose()


# -- exports -----------------------------------------------------------------------------------------


def test_the_csv_and_zip_exports_hold_every_drawing(store, clock):
    code, key = store.create_class()
    first = add(store, code, session="a", seed=1, predicted=7, length=0.75, intended=1, nickname="=HYPERLINK(x)", routing_changed=True)  # fmt: skip
    clock.advance(SEND_INTERVAL_S)
    second = add(store, code, session="b", seed=2, predicted=2, length=0.5, nickname='Zoë, "the" best')
    exported = store.export_csv(code, key)
    rows = list(csv.DictReader(io.StringIO(exported.decode("utf-8"))))
    assert [int(r["id"]) for r in rows] == [first, second]
    a, b = rows
    assert (a["predicted"], a["intended"], a["length"], a["routing_changed"]) == ("7", "1", "0.75", "1")
    assert (b["predicted"], b["intended"], b["length"], b["routing_changed"]) == ("2", "", "0.5", "0")
    assert a["nickname"] == "'=HYPERLINK(x)"  # a spreadsheet shows it, never runs it
    assert b["nickname"] == 'Zoë, "the" best'
    assert a["created_utc"] == "2023-11-14T22:13:20+00:00"  # the fake clock's 1_700_000_000
    for row, seed in ((a, 1), (b, 2)):
        pixels = np.array([row[f"p{i}"] for i in range(784)], dtype=np.float32).reshape(28, 28)
        assert np.array_equal(pixels, image(seed))  # exact: the decimals read back as the same float32
    with zipfile.ZipFile(io.BytesIO(store.export_zip(code, key))) as archive:
        assert sorted(archive.namelist()) == ["drawings.csv", f"drawings/{first:06d}.png", f"drawings/{second:06d}.png"]  # fmt: skip
        assert archive.read("drawings.csv") == exported
        for drawing_id, seed in ((first, 1), (second, 2)):
            png = Image.open(io.BytesIO(archive.read(f"drawings/{drawing_id:06d}.png")))
            assert png.format == "PNG" and png.mode == "L" and png.size == (28, 28)
            assert np.array_equal(np.asarray(png), np.round(image(seed) * 255).astype(np.uint8))


# -- replicas ----------------------------------------------------------------------------------------


def test_two_replicas_see_each_others_writes(open_store, clock):
    replica_a, replica_b = open_store(), open_store()
    code, key = replica_a.create_class()
    assert replica_b.class_exists(code)
    from_b = add(replica_b, code, session="phone-1", seed=4)
    assert [d.id for d in replica_a.list_drawings(code).drawings] == [from_b]
    from_a = add(replica_a, code, session="phone-2")
    assert [d.id for d in replica_b.list_drawings(code, since_id=from_b).drawings] == [from_a]
    assert replica_b.delete_drawing(code, key, from_b)
    assert [d.id for d in replica_a.list_drawings(code).drawings] == [from_a]
    assert replica_a.clear_class(code, key) == 1
    assert replica_b.list_drawings(code).drawings == []


def race(calls: list) -> list:
    """Run the calls at once, each on its own thread -> each one's result or exception."""
    start = threading.Barrier(len(calls))
    outcomes: list = [None] * len(calls)

    def run(i):
        start.wait()
        try:
            outcomes[i] = calls[i]()
        except Exception as error:  # noqa: BLE001 (the outcome under test)
            outcomes[i] = error

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    return outcomes


def test_concurrent_sends_of_one_session_through_two_replicas_let_one_through(open_store):
    replicas = [open_store(), open_store()]
    code, _ = replicas[0].create_class()
    outcomes = race([lambda r=replicas[i % 2]: add(r, code, session="same") for i in range(8)])
    assert sum(isinstance(o, int) for o in outcomes) == 1, outcomes
    assert sum(isinstance(o, RateLimited) for o in outcomes) == 7, outcomes


def test_concurrent_sends_through_two_replicas_never_pass_the_cap(open_store, db_url, clock):
    replicas = [open_store(), open_store()]
    code, _ = replicas[0].create_class()
    fill(db_url, code, MAX_DRAWINGS - 1, clock.now)
    outcomes = race([lambda i=i: add(replicas[i % 2], code, session=f"s{i}") for i in range(8)])
    assert sum(isinstance(o, int) for o in outcomes) == 1, outcomes
    assert sum(isinstance(o, ClassFull) for o in outcomes) == 7, outcomes
    assert count(db_url, drawings) == MAX_DRAWINGS


# -- the rule for a missing PostgreSQL ---------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("ci, outcome", [(None, "1 skipped"), ("true", "1 error")])
def test_a_missing_postgresql_skips_except_under_ci(tmp_path, ci, outcome):
    env = {k: v for k, v in os.environ.items() if k != "CI"} | {"CAPSNET_PG_BIN": str(tmp_path / "none")}
    if ci:
        env["CI"] = ci
    test = f"{Path(__file__).name}::test_a_wrong_key_manages_nothing[postgresql]"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", test, "-q", "-p", "no:cacheprovider", "-o", "addopts="],
        cwd=Path(__file__).parent, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert outcome in result.stdout.splitlines()[-1], result.stdout
    assert result.returncode == (1 if ci else 0)
    if ci:
        assert "PostgreSQL not found" in result.stdout

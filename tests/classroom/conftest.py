"""Fixtures for the class store: a fake clock, and a real PostgreSQL started in a temporary folder.

Each store test runs twice, on SQLite and on PostgreSQL. A missing PostgreSQL skips those tests on a
developer's machine and fails them under CI=true.
"""

from __future__ import annotations

import pytest
from classroom_servers import PostgresServer, postgres_bindir, require

from app.classroom import ClassStore


class FakeClock:
    """The store's clock, moved by the test: expiry and rate limits without sleeping."""

    def __init__(self, now: float = 1_700_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(scope="session")
def postgres_server():
    bindir = postgres_bindir()
    require(
        bindir is not None,
        "PostgreSQL not found (no /usr/lib/postgresql/*/bin/initdb): apt-get install -y postgresql",
    )
    server = PostgresServer(bindir)
    try:
        server.start()
        yield server
        server.stop()
    finally:
        server.remove()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> str:
    """A fresh, empty database of each kind."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'classroom.sqlite3'}"
    return request.getfixturevalue("postgres_server").new_database()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def open_store(db_url, clock):
    """open_store() -> a ClassStore on the test's database (another call: another 'replica')."""
    opened = []

    def open_(url: str = db_url, clock=clock) -> ClassStore:
        opened.append(ClassStore(url, clock=clock))
        return opened[-1]

    yield open_
    for store in opened:
        store.dispose()


@pytest.fixture
def store(open_store) -> ClassStore:
    return open_store()

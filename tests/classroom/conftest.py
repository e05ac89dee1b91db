"""Fixtures for the class store: a fake clock, and a real PostgreSQL started in a temporary folder.

Each store test runs twice, on SQLite and on PostgreSQL. A missing PostgreSQL (or nginx) skips those
tests on a developer's machine and fails them under CI=true.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from app.classroom import ClassStore


def require(found: bool, message: str) -> None:
    """Skip without a tool a test needs, except under CI=true, where that is a failure."""
    if found:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def postgres_bindir() -> Path | None:
    """The newest Debian PostgreSQL (/usr/lib/postgresql/<major>/bin), else initdb on PATH."""
    versions = sorted(
        (p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "initdb").is_file()),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    if versions:
        return versions[-1]
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def as_postgres_user() -> list[str]:
    """initdb and postgres refuse to run as root: as root they run as the 'postgres' user."""
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


class FakeClock:
    """The store's clock, moved by the test: expiry and rate limits without sleeping."""

    def __init__(self, now: float = 1_700_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class PostgresServer:
    """One PostgreSQL cluster in a temporary folder, reached over a Unix socket in that folder (no TCP
    port, so nothing clashes with another server on the machine)."""

    def __init__(self, bindir: Path):
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="capsnet-pg-"))
        self.data = self.root / "data"
        self.socket_dir = self.root
        self.log = self.root / "server.log"
        self._names = itertools.count()
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        self._run(
            "initdb", "-D", str(self.data), "-U", "capsnet", "--auth=trust", "--no-sync", "-E", "UTF8"
        )  # fmt: skip

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run(
            [*as_postgres_user(), str(self.bindir / tool), *args],
            check=True,
            capture_output=True,
            timeout=180,
        )

    def start(self) -> None:
        # fsync off: a test server that loses its data on a power cut loses nothing of value.
        options = f"-k {self.socket_dir} -c listen_addresses='' -c fsync=off -c full_page_writes=off"
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", "120", "start"
        )

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "120", "stop")

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://capsnet@/{database}?host={self.socket_dir}"

    def new_database(self) -> str:
        import psycopg

        name = f"t{next(self._names)}"
        with psycopg.connect(
            host=str(self.socket_dir), user="capsnet", dbname="postgres", autocommit=True
        ) as c:
            c.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


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

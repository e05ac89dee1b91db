"""The real servers the class tests need: PostgreSQL in a temporary folder, and the rule for a missing one."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest


def require(found: bool, message: str) -> None:
    """Skip without a tool a test needs, except under CI=true, where that is a failure."""
    if found:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def postgres_bindir() -> Path | None:
    """$CAPSNET_PG_BIN (as deploy/local_cluster.sh reads it), else the newest Debian PostgreSQL
    (/usr/lib/postgresql/<major>/bin), else initdb's folder on PATH; None if there is none."""
    if os.environ.get("CAPSNET_PG_BIN"):
        chosen = Path(os.environ["CAPSNET_PG_BIN"])
        return chosen if (chosen / "initdb").is_file() else None
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

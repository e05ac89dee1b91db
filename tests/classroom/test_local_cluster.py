"""deploy/local_cluster.sh for real: PostgreSQL, two replicas of the app and nginx in front, on loopback.

Slow (two Streamlit servers start); skipped without nginx or PostgreSQL, except under CI=true.
"""

from __future__ import annotations

import base64
import http.client
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from classroom_servers import postgres_bindir, require

from app.classroom import ClassStore

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy" / "local_cluster.sh"
# Sources on the loopback network (all of 127.0.0.0/8 is this machine): nginx hashes the client's
# address, so each stands for another browser.
CLIENTS = [f"127.0.0.{i}" for i in range(1, 31)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


def alive(pid: int) -> bool:
    """Running (a zombie, which has exited and waits for its parent to reap it, is not)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes() != b""
    except (FileNotFoundError, ProcessLookupError):
        return False


def wait_for_exit(pid: int, timeout: float = 60) -> None:
    """Block until the process exits: a pidfd turns readable then, parent or not."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        assert select.select([fd], [], [], timeout)[0], f"process {pid} still runs after {timeout} s"
    finally:
        os.close(fd)


def get(port: int, path: str, client: str = "127.0.0.1") -> tuple[int, str, str]:
    """GET through nginx from a given source address -> (status, replica header, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30, source_address=(client, 0))
    try:
        conn.request("GET", path)
        answer = conn.getresponse()
        return answer.status, answer.getheader("X-Capsnet-Replica", ""), answer.read().decode()
    finally:
        conn.close()


def websocket_handshake(port: int) -> str:
    """The head of the answer to a WebSocket upgrade on Streamlit's /_stcore/stream."""
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET /_stcore/stream HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nOrigin: http://127.0.0.1:{port}\r\n"
        f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: streamlit\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(request.encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = s.recv(4096)
            if not chunk:
                break
            head += chunk
    return head.decode(errors="replace").split("\r\n\r\n")[0]


class Cluster:
    def __init__(self, folder: Path):
        self.run_dir = folder / "run"
        self.port = free_port()
        self.replica_ports = [free_port(), free_port()]
        self.env = {
            **os.environ,
            "CAPSNET_CLUSTER_DIR": str(self.run_dir),
            "CAPSNET_CLUSTER_PORT": str(self.port),
            "CAPSNET_REPLICA_PORTS": " ".join(map(str, self.replica_ports)),
            "CAPSNET_PG_BIN": str(postgres_bindir()),
            "CAPSNET_PYTHON": sys.executable,  # the replicas run on the tests' own environment
        }

        self.started: dict[str, int] = {}

    def run(self, command: str) -> subprocess.CompletedProcess:
        result = subprocess.run(
            ["bash", str(SCRIPT), command], env=self.env, capture_output=True, text=True, timeout=600
        )
        if command == "start":
            self.started.update(self.pids())
        return result

    def pids(self) -> dict[str, int]:
        found = {}
        for name, pidfile in [
            *((f"replica {p}", self.run_dir / f"replica-{p}.pid") for p in self.replica_ports),
            ("nginx", self.run_dir / "nginx" / "nginx.pid"),
            ("postgresql", self.run_dir / "postgresql" / "data" / "postmaster.pid"),
        ]:
            if pidfile.is_file():
                found[name] = int(pidfile.read_text().split()[0])
        return found

    def logs(self) -> str:
        names = ["replica-*.log", "nginx/error.log", "postgresql/server.log", "initdb.log"]
        return "\n".join(
            f"--- {p}\n{p.read_text(errors='replace')[-3000:]}" for n in names for p in self.run_dir.glob(n)
        )


@pytest.fixture
def cluster():
    require(shutil.which("nginx") is not None, "nginx not found: apt-get install -y nginx")
    require(postgres_bindir() is not None, "PostgreSQL not found: apt-get install -y postgresql")
    # Under /tmp, not pytest's tmp_path: as root the script runs PostgreSQL as the 'postgres' user,
    # which cannot pass through pytest's private (0700) folders.
    folder = Path(tempfile.mkdtemp(prefix="capsnet-cluster-"))
    folder.chmod(0o711)
    cluster = Cluster(folder)
    try:
        yield cluster
    finally:
        stopped = cluster.run("stop")
        print(stopped.stdout, stopped.stderr, cluster.logs())  # shown when the test failed
        for name, pid in cluster.started.items():  # what a broken stop left behind: this test started it
            if alive(pid):
                print(f"stop left {name} (pid {pid}) running: killed")
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(folder, ignore_errors=True)


def test_the_cluster_starts_serves_both_replicas_through_nginx_and_stops(cluster):
    started = cluster.run("start")
    assert started.returncode == 0, started.stdout + started.stderr
    status = cluster.run("status")
    assert status.returncode == 0, status.stdout
    pids = cluster.pids()
    assert set(pids) == {"nginx", "postgresql", *(f"replica {p}" for p in cluster.replica_ports)}

    # Each replica reaches the cluster's PostgreSQL, with the cookie secret the others have.
    url = f"postgresql+psycopg://capsnet@/capsnet?host={cluster.run_dir / 'postgresql'}"
    assert f"CAPSNET_CLASS_DB={url}" in status.stdout
    environments = [
        dict(v.split("=", 1) for v in Path(f"/proc/{pids[f'replica {p}']}/environ").read_text().split("\0") if "=" in v)
        for p in cluster.replica_ports
    ]  # fmt: skip
    assert [e["CAPSNET_CLASS_DB"] for e in environments] == [url, url]
    assert (
        environments[0]["STREAMLIT_SERVER_COOKIE_SECRET"] == environments[1]["STREAMLIT_SERVER_COOKIE_SECRET"]
    )
    store, other = ClassStore(url), ClassStore(url)
    try:
        code, _ = store.create_class()
        assert other.class_exists(code)
    finally:
        store.dispose()
        other.dispose()

    # The health endpoint and the page, through nginx, from many clients: both replicas answer, and
    # each client always gets the same one.
    replicas = [f"127.0.0.1:{p}" for p in cluster.replica_ports]
    served_by = {}
    for client in CLIENTS:
        status_code, replica, body = get(cluster.port, "/_stcore/health", client)
        assert (status_code, body) == (200, "ok")
        assert replica in replicas
        served_by[client] = replica
    assert set(served_by.values()) == set(replicas)
    for client in CLIENTS[:6]:
        status_code, replica, page = get(cluster.port, "/", client)
        assert status_code == 200 and '<div id="root">' in page
        assert replica == served_by[client]  # sticky
    for replica in replicas:
        client = next(c for c, r in served_by.items() if r == replica)
        assert get(cluster.port, "/", client)[:2] == (200, replica)

    # Streamlit's WebSocket is upgraded through nginx.
    head = websocket_handshake(cluster.port)
    assert head.startswith("HTTP/1.1 101 ") and "Sec-WebSocket-Protocol: streamlit" in head, head

    # A replica goes down: nginx's passive check sends its clients to the other one.
    dead, living = cluster.replica_ports[0], replicas[1]
    os.kill(pids[f"replica {dead}"], signal.SIGTERM)
    wait_for_exit(pids[f"replica {dead}"])
    for client in CLIENTS:
        status_code, replica, body = get(cluster.port, "/_stcore/health", client)
        assert (status_code, body) == (200, "ok"), client
        assert replica.split(", ")[-1] == living  # "dead, living" when it tried the dead one first
    assert cluster.run("status").returncode == 1  # some parts run

    # stop: everything it started is gone and its ports are closed.
    stopped = cluster.run("stop")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    for pid in pids.values():
        wait_for_exit(pid)
        assert not alive(pid)
    for port in [cluster.port, *cluster.replica_ports]:
        assert refused(port)
    assert not (cluster.run_dir / "postgresql" / ".s.PGSQL.5432").exists()
    assert cluster.run("status").returncode == 3


def test_the_run_folder_may_not_be_inside_the_repository():
    env = {**os.environ, "CAPSNET_CLUSTER_DIR": str(ROOT / "run")}
    result = subprocess.run(
        ["bash", str(SCRIPT), "start"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1 and "inside the repository" in result.stderr
    assert not (ROOT / "run").exists()


def test_an_unknown_command_is_a_usage_error():
    result = subprocess.run(["bash", str(SCRIPT), "restart"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "usage:" in result.stderr

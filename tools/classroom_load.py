"""Class mode under load: N student pages and one teacher's gallery through nginx (not a test: prints a
table and, with --json, a JSON line). Run as `tools/load_test.py --classroom [options]`.

deploy/local_cluster.sh starts PostgreSQL, --replicas replicas and nginx in a temporary run folder on
free ports. One Chromium: the teacher's page opens the Class view through nginx and starts a class;
each student's page opens the student link through a relay of its own (TcpRelay), which connects to
nginx from another loopback address, so nginx's hash spreads the students over the replicas as it would
spread phones. Each student shows its own MNIST sample and, for --seconds, presses Send to class,
waits for the page's answer, and waits --pause seconds (the store takes one drawing per session every
2 s; a send refused for that counts as "refused", not as an error).

Measured:
- sends pressed, acknowledged ("Received as drawing #ID") and refused, per kind of refusal;
- send -> on the teacher's screen: from the click on the student's page (its input event's time) to the
  gallery's first showing that drawing's card on the teacher's page (a MutationObserver there), both on
  this machine's clock; median and p95;
- the server's time per send: each replica times its own runs (tools/server_timing.py); a send reruns
  the student page's send box alone (a fragment), so the fragment runs of pages without the teacher's
  key are the sends (the teacher's page runs only the gallery's ticks; the reconnected pages' full
  runs after --kill-replica are not sends); median and p95;
- errors: exceptions or error boxes on a page, sends that got no answer within --action-timeout;
- with --kill-replica: the replica with the most students is killed (SIGKILL) halfway; its pages
  reconnect through nginx to another. A send of theirs that gets no answer within --answer-timeout (in
  flight at the kill, or pressed before the page reconnected) is counted as interrupted, not as an error:
  it was never acknowledged. Each of those pages must have a send acknowledged after the kill (it
  reconnected and works), and afterwards every acknowledged drawing id must be in the database.
Exit status 1 on any error or any acknowledged drawing missing from the database.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tools import server_timing  # noqa: E402
from tools.browser_driver import CHROMIUM, CHROMIUM_ARGS, IDLE, METRIC, free_port  # noqa: E402

SCRIPT = ROOT / "deploy" / "local_cluster.sh"
SENT = ".st-key-class_sent"
ERRORS = "[data-testid='stException'], [data-testid='stAlertContentError']"
CARD_PREFIX = "st-key-class_card_"
# On the teacher's page: the first time (epoch ms) each drawing's card is in the document.
WATCH_CARDS = """() => {
  window.__seen = {};
  const scan = () => {
    for (const e of document.querySelectorAll('[class*="%s"]')) {
      for (const c of e.classList) if (c.startsWith('%s')) {
        const id = c.slice(%d);
        if (!(id in window.__seen)) window.__seen[id] = performance.timeOrigin + performance.now();
      }
    }
  };
  new MutationObserver(scan).observe(document.documentElement, {subtree: true, childList: true});
  scan();
}""" % (CARD_PREFIX, CARD_PREFIX, len(CARD_PREFIX))
# On a student's page: the epoch ms of the next click.
WATCH_CLICK = """() => { window.__click = null;
  window.addEventListener('click', e => { window.__click = performance.timeOrigin + e.timeStamp; },
                          {capture: true, once: true}); }"""


class TcpRelay:
    """127.0.0.1:<port> -> 127.0.0.1:<target>, each connection made from `source` (another loopback
    address): to nginx, a browser behind it is another client."""

    def __init__(self, target: int, source: str):
        self.target, self.source = target, source
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:  # closed
                return
            try:
                upstream = socket.create_connection(
                    ("127.0.0.1", self.target), source_address=(self.source, 0)
                )
            except OSError:
                client.close()
                continue
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.server.close()


def percentile(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


class Cluster:
    """deploy/local_cluster.sh in a temporary run folder, on free ports."""

    def __init__(self, replicas: int, extra_env: dict[str, str]):
        self.folder = Path(tempfile.mkdtemp(prefix="capsnet-classload-"))
        self.folder.chmod(0o711)  # as root, PostgreSQL runs as 'postgres' and must pass through
        self.run_dir = self.folder / "run"
        self.port = free_port()
        self.replica_ports = [free_port() for _ in range(replicas)]
        self.env = {
            **os.environ, **extra_env,
            "CAPSNET_CLUSTER_DIR": str(self.run_dir), "CAPSNET_CLUSTER_PORT": str(self.port),
            "CAPSNET_REPLICA_PORTS": " ".join(map(str, self.replica_ports)), "CAPSNET_PYTHON": sys.executable,
        }  # fmt: skip
        self.db_url = f"postgresql+psycopg://capsnet@/capsnet?host={self.run_dir / 'postgresql'}"

    def run(self, command: str) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", str(SCRIPT), command], env=self.env, capture_output=True, text=True,
                              timeout=900)  # fmt: skip

    def replica_pid(self, port: int) -> int:
        return int((self.run_dir / f"replica-{port}.pid").read_text())

    def close(self) -> None:
        self.run("stop")
        shutil.rmtree(self.folder, ignore_errors=True)


def replica_for(port: int, source: str) -> str:
    """Which replica nginx gives a client at `source` (the local cluster's X-Capsnet-Replica)."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30, source_address=(source, 0))
    try:
        conn.request("GET", "/_stcore/health")
        answer = conn.getresponse()
        answer.read()
        return answer.getheader("X-Capsnet-Replica", "").split(", ")[-1]
    finally:
        conn.close()


def spread(cluster: Cluster, students: int) -> tuple[list[str], dict[str, str]]:
    """A loopback address per student, chosen so that nginx's hash puts about as many students on each
    replica -> (addresses, address -> replica)."""
    load = {f"127.0.0.1:{p}": 0 for p in cluster.replica_ports}
    placed: dict[str, str] = {}
    for k in range(50 * students):
        if len(placed) == students:
            break
        source = f"127.0.{1 + k // 250}.{2 + k % 250}"
        replica = replica_for(cluster.port, source)
        # Take it if its replica has the fewest students so far (or when the candidates run short).
        if load.get(replica, 0) == min(load.values()) or k >= 40 * students:
            placed[source] = replica
            load[replica] = load.get(replica, 0) + 1
    return list(placed), placed


async def wait_idle(page, timeout_ms: float) -> None:
    await page.wait_for_timeout(150)
    await page.wait_for_selector(IDLE, timeout=timeout_ms)


async def student(i: int, browser, url: str, sample: int, args, stop: asyncio.Event, out: dict) -> None:
    context = await browser.new_context(viewport={"width": 1400, "height": 1000})
    page = await context.new_page()
    timeout = args.action_timeout * 1000
    try:
        await page.goto(
            f"{url}&sample={sample}", timeout=args.open_timeout * 1000
        )  # 20 pages opening at once
        await page.wait_for_selector(METRIC, timeout=args.open_timeout * 1000)
        await wait_idle(page, timeout)
        out["opened"] += 1
        await out["all_open"].wait()
        previous = ""
        while not stop.is_set():
            await page.evaluate(WATCH_CLICK)
            button = page.locator(".st-key-send_to_class button")
            pressed_at = time.monotonic()
            try:
                await button.click(timeout=timeout)
                out["pressed"] += 1
                await page.wait_for_function(
                    "prev => { const e = document.querySelector(%s); return e && e.innerText.trim() !== prev; }"
                    % json.dumps(SENT), arg=previous, timeout=args.answer_timeout * 1000,
                )  # fmt: skip
            except Exception as e:  # a timeout, or the page went away with its replica
                killed_at = out.get("killed_at")
                if (
                    i in out["victims"]
                    and killed_at is not None
                    and pressed_at > killed_at - args.answer_timeout
                ):
                    # in flight when its replica died, or pressed before the page had reconnected: never
                    # acknowledged, so not lost; the page must still send again once reconnected (below)
                    out["interrupted"] += 1
                else:
                    out["errors"].append(
                        f"student {i}: no answer to a send: {type(e).__name__}: {str(e)[:120]}"
                    )
                await page.wait_for_selector(METRIC, timeout=timeout)  # reconnected (through nginx)
                previous = ""
                continue
            previous = (await page.locator(SENT).inner_text()).strip()
            clicked = await page.evaluate("window.__click")
            if previous.startswith("Received as drawing #"):
                drawing_id = int(previous.split("#", 1)[1].split(":", 1)[0])
                out["acked"][drawing_id] = clicked
                if out.get("killed_at") is not None and pressed_at > out["killed_at"]:
                    out["sent_after_kill"].add(i)
            else:
                kind = previous.split(":", 1)[1].strip().split(".")[0] if ":" in previous else previous
                out["refused"][kind] = out["refused"].get(kind, 0) + 1
            if await page.locator(ERRORS).count():
                out["errors"].append(f"student {i}: {(await page.locator(ERRORS).first.inner_text())[:120]}")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), args.pause)
    finally:
        await context.close()


async def drive(args, cluster: Cluster, relays: list[TcpRelay], victim: int, victims: set[int]) -> dict:
    """victim: the port of the replica --kill-replica kills; victims: the students it serves."""
    from playwright.async_api import async_playwright

    out = {"opened": 0, "pressed": 0, "acked": {}, "refused": {}, "errors": [], "all_open": asyncio.Event(),
           "victims": victims, "interrupted": 0, "sent_after_kill": set()}  # fmt: skip
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        teacher = await browser.new_page(viewport={"width": 1400, "height": 1000})
        await teacher.goto(f"http://127.0.0.1:{cluster.port}/?view=class")
        await teacher.wait_for_selector(".st-key-start_class button", timeout=args.open_timeout * 1000)
        await wait_idle(teacher, args.action_timeout * 1000)
        await teacher.locator(".st-key-start_class button").click()
        await teacher.wait_for_function("document.querySelectorAll('.st-key-class_code code').length === 2",
                                        timeout=args.action_timeout * 1000)  # fmt: skip
        student_link = (await teacher.locator(".st-key-class_code code").first.inner_text()).strip()
        out["code"] = student_link.rsplit("=", 1)[1]
        await teacher.evaluate(WATCH_CARDS)

        stop = asyncio.Event()
        tasks = [
            asyncio.create_task(
                student(
                    i,
                    browser,
                    student_link.replace(f":{cluster.port}/", f":{r.port}/"),
                    i % 40,
                    args,
                    stop,
                    out,
                )
            )  # fmt: skip
            for i, r in enumerate(relays)
        ]
        deadline = time.monotonic() + args.open_timeout
        while (
            out["opened"] < len(relays) and time.monotonic() < deadline and not all(t.done() for t in tasks)
        ):
            await asyncio.sleep(0.2)
        out["timed_from"] = time.monotonic()
        out["all_open"].set()
        killed = None
        if args.kill_replica:
            await asyncio.sleep(args.seconds / 2)
            out["killed_at"] = time.monotonic()
            os.kill(cluster.replica_pid(victim), signal.SIGKILL)
            killed = f"127.0.0.1:{victim}"
            await asyncio.sleep(args.seconds / 2)
        else:
            await asyncio.sleep(args.seconds)
        stop.set()
        for t in tasks:
            with contextlib.suppress(Exception):
                await t
        for t in tasks:
            if t.exception() is not None:
                out["errors"].append(f"a student failed: {t.exception()!r}"[:200])
        # The last sends reach the gallery at its next tick or two.
        with contextlib.suppress(Exception):
            await teacher.wait_for_function(
                "ids => ids.every(i => i in window.__seen)", arg=[str(i) for i in out["acked"]],
                timeout=args.action_timeout * 1000,
            )  # fmt: skip
        out["seen"] = {int(k): v for k, v in (await teacher.evaluate("window.__seen")).items()}
        out["killed"] = killed
        await browser.close()
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="class mode: N students and a teacher through nginx")
    parser.add_argument("--students", type=int, default=10)
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the timed phase")
    parser.add_argument("--pause", type=float, default=2.5, help="seconds between a student's sends")
    parser.add_argument("--kill-replica", action="store_true",
                        help="SIGKILL the replica with the most students halfway")  # fmt: skip
    parser.add_argument("--action-timeout", type=float, default=60.0)
    parser.add_argument("--answer-timeout", type=float, default=15.0,
                        help="seconds a send may wait for its answer (a page whose replica died gets none)")  # fmt: skip
    parser.add_argument("--open-timeout", type=float, default=240.0)
    parser.add_argument("--json", action="store_true", help="also print the results as one JSON line")
    args = parser.parse_args(argv)
    if args.students < 1 or args.replicas < 1:
        parser.error("--students and --replicas must be at least 1")
    if args.kill_replica and args.replicas < 2:
        parser.error("--kill-replica needs --replicas 2 or more")

    timing_dir = tempfile.TemporaryDirectory(prefix="capsnet-timing-")
    timing_env, timing_log = server_timing.hooked_server_env(timing_dir.name, ROOT)
    cluster = Cluster(args.replicas, {k: v for k, v in timing_env.items() if os.environ.get(k) != v})
    relays: list[TcpRelay] = []
    try:
        started = cluster.run("start")
        if started.returncode != 0:
            print(started.stdout, started.stderr, file=sys.stderr)
            return 1
        sources, placed = spread(cluster, args.students)
        relays = [TcpRelay(cluster.port, s) for s in sources]
        # --kill-replica kills the replica with the most students.
        busiest = max(
            cluster.replica_ports, key=lambda p: sum(v == f"127.0.0.1:{p}" for v in placed.values())
        )
        victims = {i for i, source in enumerate(sources) if placed[source] == f"127.0.0.1:{busiest}"}
        out = asyncio.run(drive(args, cluster, relays, busiest, victims if args.kill_replica else set()))
        from app.classroom import ClassStore

        store = ClassStore(cluster.db_url)
        try:
            stored = {d.id for d in store.list_drawings(out["code"]).drawings}
        finally:
            store.dispose()
    finally:
        for r in relays:
            r.close()
        cluster.close()
    spans, timing_errors = server_timing.read_spans(timing_log, since=out.get("timed_from", 0.0))
    timing_dir.cleanup()
    # A send is a run of a student page's send box (a fragment); the teacher's page runs the gallery's.
    send_server = [
        s["finished"] - s["request"]
        for s in spans
        if s["kind"] == "fragment" and "teacher=" not in s["query"]
    ]
    latencies = [(out["seen"][i] - t) / 1000 for i, t in out["acked"].items() if i in out["seen"] and t]
    missing = sorted(set(out["acked"]) - stored)
    result = {
        "students": args.students, "replicas": args.replicas, "seconds": args.seconds,
        "students_per_replica": {r: sum(v == r for v in placed.values()) for r in sorted(set(placed.values()))},
        "opened": out["opened"], "pressed": out["pressed"], "acknowledged": len(out["acked"]),
        "refused": out["refused"], "stored": len(stored), "acknowledged_missing_from_db": missing,
        "not_on_teacher_screen": sorted(set(out["acked"]) - set(out["seen"])),
        "send_to_teacher_s": {"median": percentile(latencies, 0.5), "p95": percentile(latencies, 0.95),
                              "n": len(latencies)},
        "server_s_per_send": {"median": percentile(send_server, 0.5), "p95": percentile(send_server, 0.95),
                              "n": len(send_server)},
        "killed_replica": out["killed"], "errors": out["errors"],
    }  # fmt: skip
    if out["killed"]:
        # The killed replica's students: their sends in flight got no answer (and were not acknowledged);
        # each page must reconnect through nginx and have a send acknowledged afterwards.
        stranded = sorted(out["victims"] - out["sent_after_kill"])
        result.update(killed_replica_students=len(out["victims"]), interrupted_sends=out["interrupted"],
                      sent_again_after_reconnecting=len(out["victims"] & out["sent_after_kill"]))  # fmt: skip
        out["errors"] += [f"student {i}: no send acknowledged after its replica was killed" for i in stranded]
    print(f"students {args.students} on {args.replicas} replicas {result['students_per_replica']}, "
          f"{args.seconds:g} s{' (one replica killed halfway)' if out['killed'] else ''}")  # fmt: skip
    print(f"sends pressed {out['pressed']}, acknowledged {len(out['acked'])}, refused {out['refused'] or 0}, "
          f"stored {len(stored)}, acknowledged but missing from the database {len(missing)}")  # fmt: skip
    for name, key in (
        ("send -> teacher's screen", "send_to_teacher_s"),
        ("server time per send", "server_s_per_send"),
    ):
        r = result[key]
        if r["n"]:
            print(f"{name}: median {r['median']:.2f} s, p95 {r['p95']:.2f} s (n = {r['n']})")
        else:
            print(f"{name}: no measurements")
    if out["killed"]:
        print(f"killed replica's students {result['killed_replica_students']}: sends in flight at the kill "
              f"{result['interrupted_sends']} (no answer, not acknowledged), sent again after reconnecting "
              f"{result['sent_again_after_reconnecting']}")  # fmt: skip
    if timing_errors:
        print("server timings unavailable:", timing_errors[0])
    if out["errors"]:
        print(f"errors ({len(out['errors'])}):", *out["errors"][:10], sep="\n  ")
    if args.json:
        print(json.dumps(result))
    return 1 if out["errors"] or missing else 0


if __name__ == "__main__":
    sys.exit(main())

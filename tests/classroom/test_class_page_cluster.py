"""Class mode across replicas: deploy/local_cluster.sh (PostgreSQL, two replicas, nginx) and two Chromium
pages through nginx, the student's served by one replica and the teacher's by the other. The drawing the
student sends reaches the teacher's gallery through the shared database, without a reload.

nginx picks a replica by the client's address, and a browser on this machine always comes from
127.0.0.1: the student's page goes through a relay here (TcpRelay) that connects to nginx from another loopback
address, one nginx sends to the other replica (as a phone on the school's Wi-Fi would).
Skipped without nginx, PostgreSQL or Chromium, except under CI=true (tests/classroom/classroom_servers.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from classroom_servers import require
from test_local_cluster import CLIENTS, cluster, get  # noqa: F401 (cluster: the fixture)

from tools.browser_driver import CHROMIUM, METRIC, launch, wait_idle
from tools.classroom_load import TcpRelay

pytestmark = [pytest.mark.cluster, pytest.mark.browser, pytest.mark.slow]

CARDS = ".st-key-class_gallery [class*='st-key-class_card_']"


def replica_of(response) -> str:
    """The replica that answered a page load through nginx (the local cluster's X-Capsnet-Replica)."""
    return response.headers["x-capsnet-replica"].split(", ")[-1]


def test_a_drawing_sent_through_one_replica_shows_in_the_gallery_served_by_the_other(cluster):  # noqa: F811
    require(Path(CHROMIUM).exists(), f"Chromium not found at {CHROMIUM}: apt-get install -y chromium")
    started = cluster.run("start")
    assert started.returncode == 0, started.stdout + started.stderr
    teachers_replica = get(cluster.port, "/_stcore/health")[1]
    source = next(c for c in CLIENTS if get(cluster.port, "/_stcore/health", c)[1] != teachers_replica)
    relay = TcpRelay(cluster.port, source)

    from playwright.sync_api import sync_playwright

    try:
        with sync_playwright() as p:
            browser = launch(p)
            teacher = browser.new_page(viewport={"width": 1400, "height": 1000})
            response = teacher.goto(f"http://127.0.0.1:{cluster.port}/?view=class")
            assert replica_of(response) == teachers_replica
            teacher.wait_for_selector(".st-key-start_class button", timeout=120_000)
            wait_idle(teacher)
            teacher.locator(".st-key-start_class button").click()
            teacher.wait_for_function(
                "document.querySelectorAll('.st-key-class_code code').length === 2", timeout=60_000
            )
            student_link = teacher.locator(".st-key-class_code code").first.inner_text()
            # Built from the address the browser shows, nginx's, not the replica's own port.
            assert student_link.startswith(f"http://127.0.0.1:{cluster.port}/?class=")
            teacher.evaluate("window.__notReloaded = true")

            student = browser.new_page(viewport={"width": 1400, "height": 1000})
            relayed = student_link.replace(f":{cluster.port}/", f":{relay.port}/")
            response = student.goto(f"{relayed}&sample=0")
            assert replica_of(response) not in ("", teachers_replica)
            student.wait_for_selector(METRIC, timeout=120_000)
            wait_idle(student)
            student.locator(".st-key-send_to_class button").click()
            student.wait_for_selector(
                ".st-key-class_sent [data-testid='stAlertContentSuccess']", timeout=60_000
            )

            # The gallery polls every 2 s; a busy machine's two replicas may take a few more.
            teacher.wait_for_function(f"document.querySelectorAll({CARDS!r}).length === 1", timeout=15_000)
            assert "reads 0" in teacher.locator(CARDS).first.inner_text()
            assert teacher.evaluate("window.__notReloaded === true")
            browser.close()
    finally:
        relay.close()

"""Class mode in a real Chromium: a teacher starts a class, two students send (one drawn with the mouse,
one an MNIST sample), the teacher's gallery shows both without a reload, opens one and deletes one; a
student link never shows the teacher's buttons; a wrong code and a wrong key; a phone (390x844, touch)
draws and sends without scrolling sideways.

One server on a temporary SQLite class database, the shipped weights (the drawn 7 is read as a 7).
"""

from __future__ import annotations

import io
import os
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import capsnet
from app.classroom import ClassStore
from tools.browser_driver import CANVAS, METRIC, SEVEN, serve, stroke, touch_stroke, wait_idle

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SHOWN_WITHIN_MS = 3_000  # a send on a student's page reaches the teacher's gallery within this
CARDS = ".st-key-class_gallery [class*='st-key-class_card_']"
TEACHER_ONLY = (".st-key-class_clear, .st-key-class_csv, .st-key-class_zip, [class*='st-key-class_delete_'], "
                "[class*='st-key-class_item_'], .st-key-class_code")  # fmt: skip


@pytest.fixture(scope="module")
def db_url(tmp_path_factory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('classdb') / 'classroom.sqlite3'}"


@pytest.fixture(scope="module")
def server(db_url):
    ckpt = os.environ.get("CAPSNET_BROWSER_CHECKPOINT") or str(capsnet.DEFAULT_CHECKPOINT)
    with serve({"CAPSNET_CHECKPOINT": ckpt, "CAPSNET_CLASS_DB": db_url}) as url:
        yield url


@pytest.fixture
def outside(db_url):
    store = ClassStore(db_url)
    yield store
    store.dispose()


def start_class(browser, url: str):
    """The teacher's page: open the Class view, press Start -> (page, student link, teacher link)."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{url}/?view=class")
    page.wait_for_selector(".st-key-start_class button", timeout=60_000)
    wait_idle(page)
    page.locator(".st-key-start_class button").click()
    page.wait_for_function(
        "document.querySelectorAll('.st-key-class_code code').length === 2", timeout=30_000
    )
    wait_idle(page)
    student, teacher = page.locator(".st-key-class_code code").all_inner_texts()
    hrefs = page.locator(".st-key-class_code a").evaluate_all("es => es.map(e => e.href)")
    assert student in hrefs and teacher in hrefs  # as links too
    return page, student, teacher


def send(page) -> float:
    """Press Send to class; return when the page says it was received (its time.monotonic())."""
    button = page.locator(".st-key-send_to_class button")
    button.scroll_into_view_if_needed()
    button.click()
    page.wait_for_selector(".st-key-class_sent [data-testid='stAlertContentSuccess']", timeout=30_000)
    acknowledged = time.monotonic()
    assert "Received" in page.locator(".st-key-class_sent").inner_text()
    return acknowledged


def test_a_class_in_three_browsers(browser, server, outside):
    teacher, student_link, teacher_link = start_class(browser, server)
    code = student_link.rsplit("=", 1)[1]
    assert student_link.startswith(server) and teacher_link.startswith(server)
    teacher.evaluate("window.__notReloaded = true")

    # Student 1 draws a 7 with the mouse.
    one = browser.new_page(viewport={"width": 1400, "height": 1000})
    one.goto(student_link)
    one.wait_for_selector(CANVAS, timeout=60_000)
    wait_idle(one)
    assert one.locator(TEACHER_ONLY).count() == 0
    stroke(one, SEVEN)
    one.wait_for_selector(METRIC, timeout=30_000)
    wait_idle(one)
    assert one.locator(METRIC).inner_text().strip() == "7"
    sent = send(one)
    teacher.wait_for_function(f"document.querySelectorAll({CARDS!r}).length === 1", timeout=SHOWN_WITHIN_MS)
    print(f"send -> teacher's screen: {time.monotonic() - sent:.2f} s")

    # Student 2 picks an MNIST sample (the first, a 0) and says it is a 3.
    two = browser.new_page(viewport={"width": 1400, "height": 1000})
    two.goto(student_link)
    two.wait_for_selector(CANVAS, timeout=60_000)
    wait_idle(two)
    two.get_by_text("MNIST sample", exact=True).click()
    two.wait_for_selector(METRIC, timeout=30_000)
    wait_idle(two)
    assert two.locator(METRIC).inner_text().strip() == "0"
    two.locator(".st-key-class_intended input").click()
    two.get_by_role("option", name="3", exact=True).click()
    wait_idle(two)
    two.locator(".st-key-class_nickname input").fill("<i>Bo</i>")
    two.locator(".st-key-class_nickname input").press("Enter")
    wait_idle(two)
    sent = send(two)
    teacher.wait_for_function(f"document.querySelectorAll({CARDS!r}).length === 2", timeout=SHOWN_WITHIN_MS)
    print(f"send -> teacher's screen: {time.monotonic() - sent:.2f} s")
    assert teacher.evaluate("window.__notReloaded === true")

    seven, sample = outside.list_drawings(code).drawings
    assert (seven.predicted, seven.intended) == (7, None)
    assert (sample.predicted, sample.intended, sample.nickname) == (0, 3, "<i>Bo</i>")
    card = teacher.locator(f".st-key-class_card_{sample.id}")
    assert "✗ meant 3" in card.inner_text() and "<i>Bo</i>" in card.inner_text()  # as text, not markup
    assert card.locator("i").count() == 0

    # The student pages, even on the Class view, never show the teacher's buttons.
    one.goto(f"{student_link}&view=class")
    one.wait_for_selector(".st-key-class_view", timeout=60_000)
    wait_idle(one)
    assert one.locator(TEACHER_ONLY).count() == 0

    # The class as CSV: the store's export, one row per drawing.
    with teacher.expect_download(timeout=30_000) as download:
        teacher.locator(".st-key-class_csv button").click()
    rows = Path(download.value.path()).read_text().splitlines()
    assert download.value.suggested_filename == f"class-{code}.csv"
    assert [r.split(",")[0] for r in rows[1:]] == [str(seven.id), str(sample.id)]

    # ... and the drawings as a zip: the CSV and one 28x28 PNG per drawing, its pixels the stored input's.
    with teacher.expect_download(timeout=30_000) as download:
        teacher.locator(".st-key-class_zip button").click()
    assert download.value.suggested_filename == f"class-{code}.zip"
    with zipfile.ZipFile(download.value.path()) as archive:
        names = sorted(archive.namelist())
        assert names == sorted(
            ["drawings.csv", f"drawings/{seven.id:06d}.png", f"drawings/{sample.id:06d}.png"]
        )
        assert archive.read("drawings.csv").decode().splitlines() == rows
        for d in (seven, sample):
            png = np.asarray(Image.open(io.BytesIO(archive.read(f"drawings/{d.id:06d}.png"))))
            assert png.shape == (28, 28) and png.dtype == np.uint8
            np.testing.assert_allclose(
                png / 255.0, d.image, atol=0.5 / 255 + 1e-6
            )  # 8-bit rounding of [0, 1]

    # The teacher opens the sample: the overview reads it.
    teacher.locator(f".st-key-class_item_{sample.id} button").click()
    teacher.wait_for_selector(".st-key-class_pick", timeout=30_000)
    teacher.wait_for_selector(METRIC, timeout=30_000)
    wait_idle(teacher)
    assert teacher.locator(METRIC).inner_text().strip() == "0"

    # ... and deletes the seven.
    teacher.locator(f".st-key-class_delete_{seven.id} button").click()
    teacher.wait_for_selector(f".st-key-class_card_{seven.id}", state="detached", timeout=30_000)
    assert [d.id for d in outside.list_drawings(code).drawings] == [sample.id]
    for page in (teacher, one, two):
        page.close()


def test_a_wrong_code_and_a_wrong_key(browser, server, outside):
    code, key = outside.create_class()
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{server}/?class=ZZZZZZ")
    page.wait_for_selector(CANVAS, timeout=60_000)
    wait_idle(page)
    assert "There is no class ZZZZZZ" in page.locator(".st-key-class_send").inner_text()
    assert page.locator(".st-key-send_to_class").count() == 0
    page.locator(".st-key-leave_class button").click()
    page.wait_for_selector(".st-key-class_send", state="detached", timeout=30_000)
    stroke(page, SEVEN)  # the normal page
    page.wait_for_selector(METRIC, timeout=30_000)

    page.goto(f"{server}/?view=class&class={code}&teacher=not-the-key")
    page.wait_for_selector(".st-key-class_gallery", timeout=60_000)
    wait_idle(page)
    assert f"not class {code}'s" in page.locator(".st-key-class_view").inner_text()
    assert page.locator(TEACHER_ONLY).count() == 0 and page.locator(CARDS).count() == 0
    page.close()


def test_a_phone_draws_and_sends_without_scrolling_sideways(browser, server, outside):
    code, _ = outside.create_class()
    context = browser.new_context(viewport={"width": 390, "height": 844}, has_touch=True, is_mobile=True)
    page = context.new_page()
    page.goto(f"{server}/?class={code}")
    page.wait_for_selector(CANVAS, timeout=60_000)
    wait_idle(page)
    page.locator(CANVAS).first.scroll_into_view_if_needed()
    touch_stroke(page, context.new_cdp_session(page), SEVEN)
    page.wait_for_selector(METRIC, timeout=30_000)
    wait_idle(page)
    assert page.locator(METRIC).inner_text().strip() == "7"
    button = page.locator(".st-key-send_to_class button")
    button.scroll_into_view_if_needed()
    box = button.bounding_box()
    assert 0 <= box["x"] and box["x"] + box["width"] <= 390
    button.tap()
    page.wait_for_selector(".st-key-class_sent [data-testid='stAlertContentSuccess']", timeout=30_000)
    (d,) = outside.list_drawings(code).drawings
    assert d.predicted == 7
    widths = page.evaluate(
        "() => [document.scrollingElement.scrollWidth, innerWidth,"
        ' ...[...document.querySelectorAll(\'[data-testid="stMain"], [data-testid="stAppViewContainer"]\')]'
        ".map(e => e.scrollWidth)]"
    )
    assert max(widths[:1] + widths[2:]) <= widths[1], widths
    context.close()

"""Class mode on the page, through Streamlit's AppTest: the Class view starts a class, a student page
(?class=CODE) sends its input, the teacher's gallery (?view=class&class=CODE&teacher=KEY) shows it, and
the bad cases (an unknown code, a wrong key, the database away) say so while the rest of the page works.

Each test has its own SQLite database in a temporary folder (CAPSNET_CLASS_DB), and the page runs the
shipped weights, so a sample's prediction is its MNIST label.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from app import inputs, routing_measures
from app.classroom import ClassStore
from app.sections import classroom
from capsnet.preprocess import to_mnist

APP = str(Path(__file__).resolve().parents[2] / "app" / "streamlit_app.py")
SAMPLES, LABELS = inputs.load_samples()
SAMPLE = 11  # labelled 2; the shipped weights read it as a 2


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def db(tmp_path, monkeypatch, shipped) -> str:
    url = f"sqlite:///{tmp_path / 'db' / 'classroom.sqlite3'}"
    (tmp_path / "db").mkdir()
    monkeypatch.setenv("CAPSNET_CLASS_DB", url)
    yield url
    classroom.store().dispose()


@pytest.fixture
def outside(db):
    """A second 'replica' on the test's database, as the test's own eyes."""
    store = ClassStore(db)
    yield store
    store.dispose()


def page(**query) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    for name, value in query.items():
        at.query_params[name] = value
    return at.run()


def keys(at, kind: str = "button") -> set[str]:
    return {b.key for b in at.get(kind) if b.key}


def container_text(at, key: str) -> str:
    try:
        box = at.container(key=key)
    except KeyError:
        return ""
    return "\n".join(e.value for kind in ("markdown", "text", "caption", "warning") for e in box.get(kind))


def teacher(db) -> tuple[AppTest, str, str]:
    at = page(view="class")
    assert not at.exception
    at.button(key="start_class").click().run()
    assert not at.exception
    code, key = at.query_params["class"], at.query_params["teacher"]
    return at, code, key


def test_starting_a_class_shows_its_links_and_qr_code(db, outside):
    at, code, key = teacher(db)
    assert outside.class_exists(code)
    outside.check_key(code, key)  # the page's link holds the class's real key
    assert at.query_params["view"] == "class"
    box = at.container(key="class_code")
    shown = [c.value for c in box.code]
    assert shown[0].endswith(f"/?class={code}")
    assert shown[1].endswith(f"/?view=class&class={code}&teacher={key}")
    text = container_text(at, "class_code")
    assert f"]({shown[0]})" in text and f"]({shown[1]})" in text  # as links too
    assert [i.caption for el in box.get("image") for i in el.proto.imgs] == [f"class {code}"]  # the QR code
    assert "0 drawings" in container_text(at, "class_gallery")
    assert {"class_csv", "class_zip"} <= keys(at, "download_button")


def test_a_student_sends_a_sample_and_the_gallery_shows_it_as_read(db, outside):
    at, code, key = teacher(db)
    student = page(**{"class": code, "sample": str(SAMPLE)})
    assert not student.exception
    assert "send_to_class" in keys(student)
    assert not keys(student) & {"class_clear", "start_class"}  # nothing of the teacher's
    predicted = int(student.container(key="prediction").metric[0].value)
    assert predicted == LABELS[SAMPLE]
    student.selectbox(key="class_intended").set_value(3)
    student.text_input(key="class_nickname").input("<b>Ann</b> **x**")
    student.button(key="send_to_class").click().run()
    assert not student.exception
    (d,) = outside.list_drawings(code).drawings
    assert [s.value for s in student.container(key="class_sent").success] == [
        f"Received as drawing #{d.id}: your class sees the network read it as a {predicted}."
    ]
    pixels = to_mnist(SAMPLES[SAMPLE])  # the page's network input for that sample
    np.testing.assert_array_equal(d.image, pixels)
    assert (d.predicted, d.intended, d.nickname) == (predicted, 3, "<b>Ann</b> **x**")
    assert f"|v{predicted}| = {d.length:.2f}" == student.container(key="prediction").metric[0].proto.delta
    from app import cache

    res = cache.forward(cache.load_model(str(cache.checkpoint_path())), str(cache.checkpoint_path()),
                        pixels.tobytes(), 3)  # fmt: skip
    assert d.routing_changed == routing_measures.Ablation.from_trace(res["lengths_per_iter"]).changed

    at.run()  # the gallery's next tick
    card = container_text(at, f"class_card_{d.id}")
    assert f"reads **{predicted}**" in card and f"{d.length:.2f}" in card
    assert "✗ meant 3" in card  # the network disagreed with the student
    texts = [t.value for t in at.container(key=f"class_card_{d.id}").text]
    assert texts == ["<b>Ann</b> **x**"]  # the nickname as text, not markup
    assert not any("<b>Ann" in m.value for m in at.markdown)
    assert {f"class_item_{d.id}", f"class_delete_{d.id}", "class_clear"} <= keys(at)
    table = at.container(key="class_summary").table[0].value
    assert table.loc["3", str(predicted)] == 1 and int(table.values.sum()) == 1


def test_the_students_hear_the_stores_refusals_in_plain_words(db, monkeypatch):
    clocked = ClassStore(db, clock=FakeClock())  # every send at the same instant
    monkeypatch.setattr(classroom, "store", lambda: clocked)
    try:
        code, _ = clocked.create_class()
        student = page(**{"class": code, "sample": "3"})
        student.button(key="send_to_class").click().run()
        assert [s.value for s in student.container(key="class_sent").success][0].startswith("Received")
        student.button(key="send_to_class").click().run()  # too soon
        (warning,) = [w.value for w in student.container(key="class_sent").warning]
        assert warning.startswith("Not sent: one drawing every 2 seconds")
        assert len(clocked.list_drawings(code).drawings) == 1
    finally:
        clocked.dispose()


def test_an_unknown_code_says_so_and_leaves_the_normal_page(db):
    student = page(**{"class": "ZZZZZZ", "sample": str(SAMPLE)})
    assert not student.exception
    assert "There is no class ZZZZZZ" in container_text(student, "class_send")
    assert "send_to_class" not in keys(student)
    assert student.container(key="prediction").metric[0].value == str(LABELS[SAMPLE])  # the page works
    student.button(key="leave_class").click().run()
    assert "class" not in student.query_params and not container_text(student, "class_send")


def test_a_wrong_key_shows_an_empty_gallery_and_no_management(db, outside):
    code, key = outside.create_class()
    outside.add_drawing(code, to_mnist(SAMPLES[0]), 7, 0.9, session_id="s1")
    at = page(view="class", **{"class": code, "teacher": key[:-2] + "xx"})
    assert not at.exception
    assert "not class" in "\n".join(w.value for w in at.warning)
    assert container_text(at, "class_gallery") == "No drawings to show."
    assert not {k for k in keys(at) if k.startswith("class_")}
    assert not keys(at, "download_button")
    with pytest.raises(KeyError):
        at.container(key="class_code")


def test_a_student_link_never_shows_management(db, outside):
    code, _ = outside.create_class()
    outside.add_drawing(code, to_mnist(SAMPLES[0]), 7, 0.9, session_id="s1")
    at = page(view="class", **{"class": code})
    assert not at.exception
    names = keys(at) | keys(at, "download_button")
    assert not {k for k in names if k.startswith(("class_item", "class_delete", "class_clear", "class_csv"))}


def test_the_teacher_opens_deletes_and_clears(db, outside):
    at, code, key = teacher(db)
    first = outside.add_drawing(code, to_mnist(SAMPLES[SAMPLE]), 5, 0.5, session_id="s1")
    second = outside.add_drawing(code, to_mnist(SAMPLES[3]), 1, 0.5, session_id="s2")
    at.run()
    at.button(key=f"class_item_{first}").click().run()
    assert not at.exception
    metric = at.container(key="prediction").metric[0]
    assert metric.value == str(LABELS[SAMPLE])  # the page reads the class drawing
    assert at.container(key="class_pick").button[0].key == "class_pick_close"
    at.button(key=f"class_delete_{second}").click().run()
    assert [d.id for d in outside.list_drawings(code).drawings] == [first]
    at.button(key="class_clear").click().run()
    assert outside.list_drawings(code).drawings == []
    at.button(key="class_pick_close").click().run()
    assert any("Draw a digit" in i.value for i in at.info)  # back to the canvas


def test_the_database_away_costs_one_line_and_the_class_resumes(db, outside, tmp_path):
    code, key = outside.create_class()
    outside.dispose()
    (tmp_path / "db").rename(tmp_path / "away")  # SQLite cannot open a file in a missing folder
    student = page(**{"class": code, "sample": str(SAMPLE)})
    assert not student.exception
    assert container_text(student, "class_send").startswith("Class mode is unavailable")
    assert student.container(key="prediction").metric[0].value == str(LABELS[SAMPLE])
    (tmp_path / "away").rename(tmp_path / "db")
    student.run()
    assert "send_to_class" in keys(student)


def test_the_gallery_says_the_database_is_away_in_one_line_and_resumes(db, outside, tmp_path):
    at, code, key = teacher(db)
    outside.add_drawing(code, to_mnist(SAMPLES[0]), 0, 0.9, session_id="s1")
    classroom.store().dispose()  # the page's pooled connection goes; a new one cannot open the file
    (tmp_path / "db").rename(tmp_path / "away")
    at.run()
    assert not at.exception
    assert container_text(at, "class_gallery").startswith("Class mode is unavailable")
    assert not [k for k in keys(at) if k.startswith("class_item_")]
    (tmp_path / "away").rename(tmp_path / "db")
    at.run()
    assert "reads **0**" in container_text(at, "class_gallery")


def test_a_full_gallery_shows_the_newest_cards_and_counts_them_all(db, outside):
    """Past SHOWN drawings the gallery draws the newest SHOWN cards (every card is redrawn on every
    refresh) and says so; the counts and the table hold every drawing, and a toggle shows them all."""
    at, code, key = teacher(db)
    n = classroom.SHOWN + 3
    ids = [
        outside.add_drawing(code, SAMPLES[k % len(SAMPLES)].astype(np.float32) / 255.0, int(LABELS[k % len(LABELS)]),
                            0.9, intended=int(LABELS[k % len(LABELS)]), session_id=f"student-{k}")
        for k in range(n)
    ]  # fmt: skip
    at.run()
    assert not at.exception
    cards = {k for k in keys(at) if k.startswith("class_item_")}
    assert cards == {f"class_item_{i}" for i in ids[-classroom.SHOWN :]}  # the newest, none of the 3 oldest
    text = container_text(at, "class_gallery")
    assert f"**{n} drawings**" in text and f"The newest {classroom.SHOWN} are shown" in text
    assert f"The network read **{n}** of the {n}" in text  # the summary counts every drawing
    at.toggle(key="class_show_all").set_value(True).run()
    assert {k for k in keys(at) if k.startswith("class_item_")} == {f"class_item_{i}" for i in ids}

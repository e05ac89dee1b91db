"""Class mode on the page: a teacher starts a class in the Class view, students send what they feed the
network (?class=CODE), and the teacher's gallery (?view=class&class=CODE&teacher=KEY) shows every
drawing as the network read it, refreshed on its own every 2 s.

The store (app/classroom/store.py) holds the rules; this module calls it and says what happened in plain
words. Every call catches ClassStoreUnavailable: while the database is away the class parts say so in
one line and the rest of the page works; the next run (or the gallery's next tick) tries again.
"""

from __future__ import annotations

import io
from urllib.parse import urlencode, urlsplit, urlunsplit

import numpy as np
import pandas as pd
import segno
import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

from app import pixel_arrays, routing_measures
from app.cache import picture
from app.classroom import (
    MAX_DRAWINGS,
    NICKNAME_MAX_CHARS,
    SEND_INTERVAL_S,
    ClassFull,
    ClassNotFound,
    ClassStore,
    ClassStoreError,
    ClassStoreUnavailable,
    Drawing,
    InvalidDrawing,
    RateLimited,
    WrongKey,
    database_url,
    normalise_code,
)
from app.view_context import ViewContext

# Session state: this page's class (as the link gave it, at most CODE_CHARS characters), the teacher's
# key, what the store said about them, the last send's message, and the class drawing being looked at.
CODE, KEY, CLASS_STATUS, KEY_STATUS = (
    "classroom_code",
    "classroom_key",
    "classroom_status",
    "classroom_key_status",
)
SENT, PICK, FAILED = "classroom_sent", "classroom_pick", "classroom_failed"
CODE_CHARS, KEY_CHARS = 16, 100
OK, MISSING, WRONG = "ok", "missing", "wrong"
REFRESH_S = 2  # the teacher's gallery asks the store for the class's drawings this often
# The gallery's cards: the newest this many unless the teacher asks for all. A projector shows about
# that many legibly (a class of 40 fits), and every card is redrawn on every refresh: with 217 cards
# a refresh took the teacher's page more than 2 s (a drawing reached the screen 4.4 s after its send,
# p95 7 s); with 40, p95 2.8 s (docs/classroom.md).
SHOWN = 40
UNAVAILABLE = "Class mode is unavailable: the class database cannot be reached. The rest of the page works."


@st.cache_resource(show_spinner=False)
def _open_store(url: str) -> ClassStore:
    return ClassStore(url)


def store() -> ClassStore:
    """The process's store for $CAPSNET_CLASS_DB (one per URL, so each test's database is its own)."""
    return _open_store(database_url())


def _session_id() -> str:
    ctx = get_script_run_ctx()
    return ctx.session_id if ctx is not None else "no-session"


# ---------------------------------------------------------------- the share link


def init_state() -> None:
    """On a session's first run: the class (?class=) and the teacher's key (?teacher=) of the link."""
    if "classroom_started" in st.session_state:
        return
    st.session_state.classroom_started = True
    code, key = st.query_params.get("class"), st.query_params.get("teacher")
    if code:
        st.session_state[CODE] = code[:CODE_CHARS]
        if key:
            st.session_state[KEY] = key[:KEY_CHARS]


def query_params() -> dict[str, str]:
    """The class part of the share link: what init_state reads back."""
    params = {}
    if st.session_state.get(CODE):
        params["class"] = st.session_state[CODE]
        if st.session_state.get(KEY):
            params["teacher"] = st.session_state[KEY]
    return params


def links(code: str, key: str | None = None) -> tuple[str, str | None]:
    """(the student link, the teacher link) of a class, on the address the browser shows this page at,
    so they work behind a proxy; the teacher link only with a key."""
    base = _page_url()
    student = f"{base}?{urlencode({'class': code})}"
    teacher = None if key is None else f"{base}?{urlencode({'view': 'class', 'class': code, 'teacher': key})}"
    return student, teacher


def _page_url() -> str:
    """This page's address without its query: the browser's (st.context.url), else the request's Host."""
    url = st.context.url
    if url:
        scheme, netloc, path, _, _ = urlsplit(url)
        return urlunsplit((scheme, netloc, path or "/", "", ""))
    headers = st.context.headers
    host = headers.get("X-Forwarded-Host") or headers.get("Host") or "localhost:8501"
    scheme = headers.get("X-Forwarded-Proto") or "http"
    return f"{scheme}://{host.split(',')[0].strip()}/"


def _leave() -> None:
    for name in (CODE, KEY, CLASS_STATUS, KEY_STATUS, SENT):
        st.session_state.pop(name, None)


# ---------------------------------------------------------------- what the store says, asked once


def _class_status(code: str) -> str | None:
    """OK or MISSING (kept for the session), None while the database cannot be reached."""
    if st.session_state.get(CLASS_STATUS) is None:
        try:
            exists = normalise_code(code) is not None and store().class_exists(code)
        except ClassStoreUnavailable:
            return None
        st.session_state[CLASS_STATUS] = OK if exists else MISSING
    return st.session_state[CLASS_STATUS]


def _key_status(code: str, key: str) -> str | None:
    """OK, WRONG or MISSING (kept for the session), None while the database cannot be reached."""
    if st.session_state.get(KEY_STATUS) is None:
        try:
            store().check_key(code, key)
            st.session_state[KEY_STATUS] = OK
        except ClassStoreUnavailable:
            return None
        except WrongKey:
            st.session_state[KEY_STATUS] = WRONG
        except ClassNotFound:
            st.session_state[KEY_STATUS] = MISSING
    return st.session_state[KEY_STATUS]


def _missing(code: str) -> str:
    shown = normalise_code(code)
    if shown is None:
        return "This link's class code is not a valid code: check the link, or ask for a new one."
    return f"There is no class {shown}: it has ended (classes last 24 hours) or the code is mistyped."


# ---------------------------------------------------------------- the student: send what the network reads


def send_box(ctx: ViewContext | None) -> None:
    """In the input column of a page opened with ?class=CODE: send this input to the class."""
    code = st.session_state.get(CODE)
    if code:
        _send_box(code, ctx)


@st.fragment
def _send_box(code: str, ctx: ViewContext | None) -> None:
    """The send box as a fragment: a send, a digit meant or a nickname reruns this box alone, with
    the input (`ctx`) of the page's last full run; any change of input is a full run, which draws the
    box again with the new one. A full rerun for a send redrew the whole page on the student's phone
    and, with 20 students, kept the servers busy redrawing pages rather than storing drawings."""
    with st.container(key="class_send", border=True):
        status = _class_status(code)
        if status is None:
            st.warning(UNAVAILABLE)
            return
        if status == MISSING:
            st.warning(_missing(code))
            if st.button("Use the page without a class", key="leave_class"):
                _leave()
                st.rerun()  # the whole page (from a fragment too): without the class
            return
        st.markdown(f"**Class {normalise_code(code)}**: send what you feed the network to your class.")
        with st.container(horizontal=True, gap="small"):
            st.selectbox("I meant a ...", [None, *range(10)], key="class_intended", width=120,
                         format_func=lambda d: "—" if d is None else str(d))  # fmt: skip
            st.text_input(
                "Nickname (optional)", key="class_nickname", max_chars=NICKNAME_MAX_CHARS, width=150
            )
        pressed = st.button("Send to class", key="send_to_class", type="primary", disabled=ctx is None,
                            help=None if ctx is not None else "Draw, pick or upload a digit first")  # fmt: skip
        if pressed and ctx is not None:
            st.session_state[SENT] = (*_send(code, ctx), ctx.pixel_bytes)
        sent = st.session_state.get(SENT)
        if sent is not None and ctx is not None and sent[2] == ctx.pixel_bytes:
            with st.container(key="class_sent"):
                (st.success if sent[0] == OK else st.warning)(sent[1])


def drawing_fields(ctx: ViewContext) -> tuple[np.ndarray, int, float, bool]:
    """What a send stores, from the page's own forward pass (no other): the network's input, its
    prediction, that capsule's length, and whether routing changed the answer (1 iteration vs chosen)."""
    res = ctx.res
    predicted = int(res["prediction"])
    changed = routing_measures.Ablation.from_trace(res["lengths_per_iter"]).changed
    return (
        np.asarray(ctx.pixels, dtype=np.float32),
        predicted,
        float(res["lengths"][predicted]),
        bool(changed),
    )


def _send(code: str, ctx: ViewContext) -> tuple[str, str]:
    """Send this input -> (OK or "refused", what to tell the student)."""
    image, predicted, length, changed = drawing_fields(ctx)
    nickname = (st.session_state.get("class_nickname") or "").strip() or None
    try:
        drawing_id = store().add_drawing(
            code, image, predicted, length, intended=st.session_state.get("class_intended"),
            nickname=nickname, routing_changed=changed, session_id=_session_id(),
        )  # fmt: skip
    except RateLimited as e:
        return (
            "refused",
            f"Not sent: one drawing every {SEND_INTERVAL_S:g} seconds. Try again in {e.retry_after:.1f} s.",
        )
    except ClassFull:
        return (
            "refused",
            f"Not sent: the class already holds {MAX_DRAWINGS} drawings. Ask your teacher to clear it.",
        )
    except InvalidDrawing as e:
        return "refused", f"Not sent: {e}."
    except ClassNotFound:
        st.session_state[CLASS_STATUS] = MISSING
        return "refused", "Not sent: " + _missing(code)
    except ClassStoreUnavailable:
        return "refused", "Not sent: the class database cannot be reached. Try again in a moment."
    return OK, f"Received as drawing #{drawing_id}: your class sees the network read it as a {predicted}."


# ---------------------------------------------------------------- a class drawing as the page's input


def picked_input():
    """-> input.Choice: the class drawing the teacher opened (its pixels are the network's input as the student sent
    them), drawn in the input column; None when none is open."""
    pick = st.session_state.get(PICK)
    if pick is None:
        return None
    # The input widgets are not drawn meanwhile: keep their values for when the teacher goes back.
    for name in ("source", "sample"):
        if name in st.session_state:
            st.session_state[name] = st.session_state[name]
    drawing_id, image = pick
    from app.sections.input import Choice  # here: input.py imports app.views, which imports this module

    with st.container(key="class_pick"):
        st.image(
            pixel_arrays.upscale(pixel_arrays.to_uint8(image), 8), caption=f"Class drawing #{drawing_id}"
        )
        st.button("Back to my own input", key="class_pick_close", on_click=_close_pick)
    return Choice(source="Class drawing", raw=image, label=None, pixels=image)


def _close_pick() -> None:
    st.session_state.pop(PICK, None)


# ---------------------------------------------------------------- the Class view


def show(ctx: ViewContext | None) -> None:
    """The Class view: start a class, or (with the teacher's link) its links, QR code and gallery.
    Drawn with or without an input (ctx None)."""
    with st.container(key="class_view"):
        _class_view()


def _class_view() -> None:
    code, key = st.session_state.get(CODE), st.session_state.get(KEY)
    if code and key:
        _teacher(code, key)
        return
    if code:
        status = _class_status(code)
        if status is None:
            st.warning(UNAVAILABLE)
        elif status == MISSING:
            st.warning(_missing(code))
        else:
            st.markdown(f"This page sends to class **{normalise_code(code)}** (the box under the input).")
    _start()


def _start() -> None:
    st.markdown(
        "**Class mode.** Start a class and show its QR code: every student who opens the link sends the "
        "digits they draw, pick or upload, and your gallery shows each one as the network reads it."
    )
    if st.button("Start a class", key="start_class", type="primary"):
        try:
            code, key = store().create_class()
        except ClassStoreUnavailable:
            st.warning(UNAVAILABLE)
            return
        except ClassStoreError as e:
            st.warning(f"No class could be started: {e}")
            return
        _leave()
        st.session_state.update({CODE: code, KEY: key, CLASS_STATUS: OK, KEY_STATUS: OK})
        st.rerun()  # the page becomes the teacher's: its link holds the class and the key


def _teacher(code: str, key: str) -> None:
    status = _key_status(code, key)
    if status is None:
        st.warning(UNAVAILABLE)
        return
    if status == MISSING:
        st.warning(_missing(code))
        _start()
        return
    code = normalise_code(code)
    if status == OK:
        student, teacher = links(code, key)
        with st.container(key="class_code", border=True):
            left, right = st.columns([0.62, 0.38], vertical_alignment="center")
            with left:
                st.markdown(f"### Class {code}")
                st.markdown(f"**Students**: scan the code or open [this link]({student})")
                st.code(student, language=None)
                st.markdown(f"**You** (keep it to yourself: it manages the class): [teacher link]({teacher})")
                st.code(teacher, language=None)
            with right:
                st.image(qr_png(student), width=260, caption=f"class {code}")
    else:
        st.warning(
            f"This teacher link's key is not class {code}'s: no drawings or class management are shown."
        )
    _gallery(code, key, status == OK)


def qr_png(url: str) -> bytes:
    """The QR code of `url` as a PNG, big enough for a projector."""
    out = io.BytesIO()
    segno.make(url, error="m").save(out, kind="png", scale=8, border=2)
    return out.getvalue()


@st.fragment(run_every=REFRESH_S)
def _gallery(code: str, key: str, teacher: bool) -> None:
    """Every drawing of the class, newest first, beside its confusion table. Reruns alone every
    REFRESH_S; with a wrong key (teacher False) it shows nothing."""
    with st.container(key="class_gallery"):
        if not teacher:
            st.caption("No drawings to show.")
            return
        try:
            drawings = store().list_drawings(code).drawings
        except ClassStoreUnavailable:
            st.warning(UNAVAILABLE)
            return
        except ClassNotFound:
            st.warning(_missing(code))
            return
        left, right = st.columns([0.6, 0.4], gap="medium")
        with left:
            n = len(drawings)
            st.markdown(f"**{n} drawing{'s' if n != 1 else ''}** (of at most {MAX_DRAWINGS})")
            shown = drawings
            if n > SHOWN:
                if not st.toggle(f"Show all {n}", key="class_show_all"):
                    shown = drawings[-SHOWN:]
                st.caption(
                    f"The newest {len(shown)} are shown; the table, the counts and the downloads hold all {n}."
                )
            with st.container(horizontal=True, gap="small"):
                for d in reversed(shown):
                    _card(code, key, d)
        with right:
            _summary(drawings)
            _manage(code, key, bool(drawings))


def _card(code: str, key: str, d: Drawing) -> None:
    with st.container(width=120, border=True, key=f"class_card_{d.id}", gap="xsmall"):
        # PNG made once per drawing (the same bytes keep the same URL: the browser's cache has it)
        st.image(picture("digit_image", d.image, 3), output_format="PNG")
        meant = (
            "" if d.intended is None
            else f"  \n:red[**✗ meant {d.intended}**]" if d.intended != d.predicted else f"  \nmeant {d.intended} ✓"
        )  # fmt: skip
        st.markdown(f"reads **{d.predicted}** · {d.length:.2f}{meant}")  # one element: each costs a refresh
        if d.nickname:
            st.text(d.nickname)  # as the student typed it: text, never markup
        if st.button("Open", key=f"class_item_{d.id}"):  # the page's input: the overview reads it
            st.session_state[PICK] = (d.id, d.image)
            st.rerun()  # the whole page, not only the gallery: the overview shows it
        st.button("Delete", key=f"class_delete_{d.id}", type="tertiary", on_click=_manage_call,
                  args=("Not deleted", "delete_drawing", code, key, d.id))  # fmt: skip


def confusion(drawings: list[Drawing]) -> pd.DataFrame:
    """Intended digit (rows) against the digit read (columns), over the drawings whose student said."""
    table = np.zeros((10, 10), dtype=int)
    for d in drawings:
        if d.intended is not None:
            table[d.intended, d.predicted] += 1
    return pd.DataFrame(table, index=[str(i) for i in range(10)], columns=[str(j) for j in range(10)])


def _summary(drawings: list[Drawing]) -> None:
    said = [d for d in drawings if d.intended is not None]
    wrong = sum(d.intended != d.predicted for d in said)
    changed = sum(d.routing_changed for d in drawings)
    with st.container(key="class_summary"):
        st.markdown(
            f"Routing changed the answer for **{changed}** of {len(drawings)} drawings. "
            f"The network read **{len(said) - wrong}** of the {len(said)} whose student said the digit as meant."
        )
        st.caption("The digit meant (rows) against the digit read (columns)")
        st.table(confusion(drawings))


def _manage(code: str, key: str, any_drawings: bool) -> None:
    with st.container(key="class_manage"):
        st.download_button("Download the class (CSV)", lambda: store().export_csv(code, key), on_click="ignore",
                           file_name=f"class-{code}.csv", mime="text/csv", key="class_csv")  # fmt: skip
        st.download_button("Download the drawings (zip)", lambda: store().export_zip(code, key), on_click="ignore",
                           file_name=f"class-{code}.zip", mime="application/zip", key="class_zip")  # fmt: skip
        st.button("Clear the class", key="class_clear", disabled=not any_drawings, on_click=_manage_call,
                  args=("Not cleared", "clear_class", code, key))  # fmt: skip
        if st.session_state.get(FAILED):
            st.warning(st.session_state.pop(FAILED))


def _manage_call(failed: str, method: str, *args) -> None:
    """A teacher's button (a callback: the gallery then reruns with the class as it now is)."""
    try:
        getattr(store(), method)(*args)
    except ClassStoreError as e:
        st.session_state[FAILED] = f"{failed}: {e}"

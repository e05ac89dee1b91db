"""The page's detailed views, in one registry: each view's share-link name (?view=) maps to its tab
label and its `show`, and every `show` takes the one ViewContext (app/view_context.py). The page
builds its tabs from VIEWS and runs the open one's `show`: adding a view is one entry here plus its
module in app/sections/. A name with no entry is an error (UnknownView), never another view; an
unknown ?view= in a share link is user input, which app/sections/input.py ignores before it gets here.
Importable without a running page (tests use it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import streamlit as st

from app.sections import classroom, figure4, lab, pose, routing
from app.view_context import ViewContext


@dataclass(frozen=True)
class View:
    label: str  # the tab's label
    show: Callable[[ViewContext], None]  # draws the view (only while its tab is open)
    needs_input: bool = True  # False: also drawn while there is no input, with None for the context
    # Computes into the caches what `show` will draw for this input (the page calls it while the
    # browser draws the prediction); None: the view computes as it draws.
    prepare: Callable[[ViewContext], None] | None = None


# share-link name -> View, in tab order. The default view is the first tab (st.tabs opens it when
# the state holds no label of its own).
VIEWS = {
    "routing": View("Routing by agreement", routing.show, prepare=routing.prepare),
    "pose": View("Pose explorer", pose.show),
    "figure4": View("Figure 4: every dimension", figure4.show),
    "lab": View("Equivariance lab", lab.show),
    "class": View("Class", classroom.show, needs_input=False),
}
DEFAULT_VIEW = "routing"
VIEW_KEY = "view"  # the tabs' key: session state holds the open tab's label


class UnknownView(KeyError):
    """A view name (or tab label) with no entry in VIEWS: a programming error, not user input."""


def get(name: str) -> View:
    """The registered view `name`; UnknownView when there is none."""
    try:
        return VIEWS[name]
    except KeyError:
        raise UnknownView(f"no view named {name!r}; the registered views are {', '.join(VIEWS)}") from None


def name_of(label: str) -> str:
    """The share-link name of the view whose tab is labelled `label`; UnknownView when none is."""
    for name, v in VIEWS.items():
        if v.label == label:
            return name
    raise UnknownView(f"no view has the tab label {label!r}")


def view() -> str:
    """The open view's share-link name (the default until the tabs or a share link set one)."""
    label = st.session_state.get(VIEW_KEY)
    return DEFAULT_VIEW if label is None else name_of(label)


def open_view(name: str) -> None:
    """Open view `name` on the next run (from a callback, or before the tabs are drawn)."""
    st.session_state[VIEW_KEY] = get(name).label


def open_primary(i: int) -> None:
    """Open the routing view with its inspector on primary capsule i (call from a callback)."""
    st.session_state.primary_i = int(i)
    st.session_state[routing.PART_KEY] = routing.PARTS["inspector"]
    open_view("routing")

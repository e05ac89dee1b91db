"""The page's detailed views and the routing view's parts: their share-link names, labels and
the session-state keys that hold which is open. Importable without a running page (tests use it).
"""

from __future__ import annotations

import streamlit as st

# The detailed views: share-link name -> tab label. The first is the default.
VIEWS = {"routing": "Routing by agreement", "pose": "Pose explorer", "figure4": "Figure 4: every dimension",
         "lab": "Equivariance lab"}  # fmt: skip
DEFAULT_VIEW = "routing"
VIEW_KEY = "view"  # the tabs' key: session state holds the open tab's label
# The routing view's parts: share-link name -> label. Only the chosen part is computed.
PARTS = {"change": "How c changed", "votes": "Votes and agreement", "tree": "Parse tree",
         "ablation": "Does routing matter?", "inspector": "One primary capsule"}  # fmt: skip
DEFAULT_PART = "change"
PART_KEY = "routing_part"
DIM_KEY = "pose_dim"  # the pose view's chosen dimension (measured, outlined among the sliders)


def view() -> str:
    """The open view's share-link name."""
    label = st.session_state.get(VIEW_KEY)
    return next((name for name, text in VIEWS.items() if text == label), DEFAULT_VIEW)


def part() -> str:
    """The routing view's chosen part, by share-link name."""
    label = st.session_state.get(PART_KEY)
    return next((name for name, text in PARTS.items() if text == label), DEFAULT_PART)


def open_primary(i: int) -> None:
    """Open the routing view with its inspector on primary capsule i (call from a callback)."""
    st.session_state.primary_i = int(i)
    st.session_state[PART_KEY] = PARTS["inspector"]
    st.session_state[VIEW_KEY] = VIEWS["routing"]

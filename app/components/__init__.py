"""The page's own custom components, one folder each (app/components/<name>/): index.html, style.css
and main.js, registered with st.components.v2.component as "capsnet.<name>".

Streamlit serves a component's files by path (js="main.js") only for an installed package whose
pyproject.toml declares the component's asset_dir; the app runs from the checkout
(`streamlit run app/streamlit_app.py`), so the files are read here once, at import, from this
folder (found from this file, whatever the working directory), and handed over as inline content.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

HERE = Path(__file__).resolve().parent
FILES = {"html": "index.html", "css": "style.css", "js": "main.js"}


def read(name: str, file: str) -> str:
    """The text of app/components/<name>/<file>. CSS and JS must span several lines:
    st.components.v2 takes a one-line string that looks like a path for a file in an asset_dir."""
    path = HERE / name / file
    text = path.read_text(encoding="utf-8")
    if path.suffix in (".css", ".js") and "\n" not in text.strip():
        raise ValueError(f"{path}: one line would be read as a path by st.components.v2; break it in two")
    return text


def register(name: str, **options):
    """Register the component in app/components/<name>/ (whichever of its three files exist) and
    return the callable that mounts it."""
    parts = {arg: read(name, file) for arg, file in FILES.items() if (HERE / name / file).is_file()}
    return st.components.v2.component(f"capsnet.{name}", **parts, **options)

"""The page's custom components are files (app/components/<name>/), not Python strings: what the
page is sent is those files, whatever the working directory `streamlit run` starts in, and no
module under app/ carries JavaScript or CSS of its own."""

import ast
import re
import sys
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from app import components

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "app" / "streamlit_app.py")


def test_the_page_gets_each_component_from_its_folder_from_any_working_directory(
    shipped, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)  # not the repository root: nothing may be read relative to it
    for name in [m for m in sys.modules if m == "app" or m.startswith("app.")]:
        monkeypatch.delitem(sys.modules, name)  # imported again by the page, from here (put back after)
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params.update({"sample": "12", "view": "pose"})
    at.run()
    assert not at.exception
    sent = {e.proto.component_name: e.proto for e in at.get("bidi_component")}
    assert {"capsnet.capsule_map", "capsnet.pose_sliders"} <= set(sent)
    for name in ("capsule_map", "pose_sliders"):
        folder = ROOT / "app" / "components" / name
        proto = sent[f"capsnet.{name}"]
        assert proto.html_content == (folder / "index.html").read_text()
        assert proto.css_content == (folder / "style.css").read_text()
        assert proto.js_content == (folder / "main.js").read_text()
        assert "export default function" in proto.js_content and not proto.js_source_path  # inline
    styles = [h.proto.body for h in at.get("html")]
    assert styles == [f"<style>{(ROOT / 'app' / 'assets' / 'page.css').read_text()}</style>"]


def test_a_one_line_css_or_js_file_is_refused(tmp_path, monkeypatch):
    """st.components.v2 takes a one-line string with a slash or a `*`, `?`, `[` in it (a URL, an
    attribute selector) for the path of a file in an asset_dir, which the app does not have: the
    loader refuses every one-line file rather than let that depend on the file's text."""
    monkeypatch.setattr(components, "HERE", tmp_path)
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "style.css").write_text(".a { color: red; }\n")
    (tmp_path / "c" / "main.js").write_text("export default function () {\n}\n")
    with pytest.raises(ValueError, match="one line"):
        components.read("c", "style.css")
    assert components.read("c", "main.js") == "export default function () {\n}\n"


# A CSS declaration block or a <style>/<script> tag; a JS declaration, arrow or function.
CSS = re.compile(r"\{\s*[a-z-]+\s*:\s*[^;{}]+;|<style", re.I)
JS = re.compile(r"export default|\bfunction\s*\w*\s*\(|=>|\b(const|let|var)\s+\w+\s*=|<script", re.I)


def code_in_strings(source: str) -> list[tuple[int, str]]:
    """(line, what) for every string literal in `source` that holds CSS or JavaScript."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            for what, pattern in (("CSS", CSS), ("JS", JS)):
                if m := pattern.search(node.value):
                    found.append((node.lineno, f"{what}: {m.group(0)}"))
    return found


def test_no_module_under_app_holds_javascript_or_css():
    found = {
        str(path.relative_to(ROOT)): hits
        for path in sorted((ROOT / "app").rglob("*.py"))
        if (hits := code_in_strings(path.read_text()))
    }
    assert found == {}, "move it into app/components/<name>/ or app/assets/"
    # The check itself: it sees what the modules held before they were files.
    assert code_in_strings('CSS = """\n.map { position: relative; }\n"""') == [
        (1, "CSS: { position: relative;")
    ]
    assert code_in_strings('JS = """\nconst NS = 1;\n"""')[0][1] == "JS: const NS ="
    assert code_in_strings("st.html('<style>a { b: c }</style>')")[0][1] == "CSS: <style"

"""Legibility in a real Chromium: the overview's six stage headings on the first screen at three
window sizes, and no text under 12 px in the overview and the routing view (the computed
font-size of the element of every visible text node, SVG text included: the capsule maps set
their text in page pixels), and the pose atlas's outlined cell clear of its labels.

Uses test_browser.py's fixtures (the shipped weights, one server per module)."""

import pytest
from test_browser import (  # noqa: F401
    STAGE_FIGURES,
    STAGE_IMAGES,
    STAGES,
    draw_every_map,
    open_sample,
    server,
    wait_loaded,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# Every visible text node under `root` (and in the shadow roots below it) whose element's computed
# font-size is under 12 px: [text, px, tag].
SMALL_TEXT = r"""(root) => {
  const out = [];
  const visit = r => {
    const walk = document.createTreeWalker(r, NodeFilter.SHOW_TEXT);
    for (let n = walk.nextNode(); n; n = walk.nextNode()) {
      const text = n.textContent.replace(/[\s\u200b]/g, ''), e = n.parentElement;
      if (!text || !e) continue;
      const box = e.getBoundingClientRect(), cs = getComputedStyle(e);
      if (box.width < 1 || box.height < 1 || cs.visibility === 'hidden' || cs.display === 'none') continue;
      if (e.closest('.katex-mathml')) continue;  // the screen-reader copy of a formula, not drawn
      const px = parseFloat(cs.fontSize);
      if (px < 12) out.push([text.slice(0, 40), px, e.tagName]);
    }
    for (const h of r.querySelectorAll('*')) if (h.shadowRoot) visit(h.shadowRoot);
  };
  visit(root);
  return out;
}"""


def small_text(page, selector: str) -> list:
    return page.locator(selector).evaluate(SMALL_TEXT)


@pytest.mark.parametrize("size", [(1024, 768), (1400, 1000), (1920, 1080)])
def test_the_six_stage_headings_are_on_the_first_screen(browser, server, size):  # noqa: F811
    width, height = size
    page = open_sample(browser, server, "?sample=11&iters=3", width=width, height=height)
    wait_loaded(page, STAGE_IMAGES)
    boxes = page.locator(f"{STAGE_FIGURES} p.title").evaluate_all(
        "es => es.map(e => { const r = e.getBoundingClientRect(); return [e.innerText, r.top, r.bottom]; })"
    )
    stages = {s: [b for b in boxes if b[0].startswith(s)] for s in STAGES}
    for stage, found in stages.items():
        assert len(found) == 1, (stage, boxes)
        text, top, bottom = found[0]
        assert 0 <= top and bottom <= height, (
            f"{text!r} at {top:.0f}..{bottom:.0f} px, window {width}x{height}"
        )
    page.close()


def test_no_text_under_12_px_in_the_overview_and_the_routing_view(browser, server):  # noqa: F811
    page = open_sample(
        browser, server, "?sample=11&iters=3&view=routing&part=change", width=1400, height=1000
    )
    wait_loaded(page, STAGE_IMAGES)
    page.wait_for_selector(".st-key-routing_change svg", timeout=30_000)
    assert draw_every_map(page, "routing_change") == 4
    page.wait_for_timeout(500)  # the maps lay out at their width
    assert small_text(page, ".st-key-overview") == []
    assert small_text(page, ".st-key-routing") == []
    page.close()


# Each map's outlined cell (the inspected capsule) against every label of that map: [label, overlap px].
OUTLINE_OVER_LABELS = r"""(svg) => {
  const outline = [...svg.querySelectorAll(':scope > rect[fill="none"]')].pop(), hits = [];
  if (!outline) return null;
  const a = outline.getBoundingClientRect(), half = parseFloat(outline.getAttribute('stroke-width')) / 2;
  for (const t of svg.querySelectorAll(':scope > text')) {
    const b = t.getBoundingClientRect();
    const w = Math.min(a.right + half, b.right) - Math.max(a.left - half, b.left);
    const h = Math.min(a.bottom + half, b.bottom) - Math.max(a.top - half, b.top);
    if (w > 0 && h > 0) hits.push([t.textContent, Math.round(w)]);
  }
  return hits;
}"""


def test_an_outlined_atlas_cell_leaves_its_row_label_readable(browser, server):  # noqa: F811
    """The pose atlas outlines the explored cell (here digit 2, dim 0: the first column, beside the
    row label "digit 2"); its frame stays clear of every label, at any of its cells' sizes."""
    for width in (1400, 1024):
        page = open_sample(browser, server, "?sample=11&iters=3&view=pose&dim=0", width=width, height=1000)
        page.wait_for_selector(".st-key-pose_atlas_map svg", timeout=30_000)
        page.wait_for_timeout(500)  # laid out at its width
        hits = page.locator(".st-key-pose_atlas_map svg").evaluate(OUTLINE_OVER_LABELS)
        assert hits == [], (width, hits)
        page.close()

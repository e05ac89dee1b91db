"""Regenerate the README's screenshot (docs/screenshot.png) on purpose: the overview (or the first
screen, or the whole page) for one shipped sample in a real Chromium, on the shipped weights.
Tests never write it.

    .venv/bin/python tools/screenshot.py [--query "?sample=11&iters=3"] [--what overview|screen|page]
                                         [--width 1400] [--height 1000] [--out docs/screenshot.png]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tools.browser_driver import METRIC, launch, save_full_page, serve, wait_idle


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--query", default="?sample=11&iters=3", help="share-link parameters of the page to shoot")
    p.add_argument("--what", choices=["overview", "screen", "page"], default="overview",
                   help="the overview container, the first screen of the window, or the whole page")  # fmt: skip
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshot.png")
    p.add_argument("--width", type=int, default=1400)
    p.add_argument("--height", type=int, default=1000)
    args = p.parse_args(argv)
    from playwright.sync_api import sync_playwright

    with serve() as url, sync_playwright() as pw:
        browser = launch(pw)
        page = browser.new_page(viewport={"width": args.width, "height": args.height})
        page.goto(url + args.query)
        page.wait_for_selector(METRIC, timeout=60_000)
        wait_idle(page)
        page.wait_for_timeout(500)  # let Plotly finish its first layout
        args.out.parent.mkdir(parents=True, exist_ok=True)
        if args.what == "page":
            save_full_page(page, args.out)
        elif args.what == "screen":
            page.screenshot(path=str(args.out))
        else:
            page.locator(".st-key-overview").screenshot(path=str(args.out))
        browser.close()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

"""Regenerate the README's screenshot (docs/screenshot.png) on purpose: the overview (or the first
screen, or the whole page) for one shipped sample in a real Chromium, on the shipped weights.
Tests never write it.

    .venv/bin/python tools/screenshot.py [--query "?sample=11&iters=3"] [--what overview|screen|page]
                                         [--width 1400] [--height 1000] [--out docs/screenshot.png]
    .venv/bin/python tools/screenshot.py --what class --out docs/class.png

`--what class` shoots the teacher's gallery of a demonstration class in a temporary database: 11 of
the shipped samples (one per digit, and #11, which routing reads right) sent as 11 students would,
each read by the shipped weights, the intended digit their MNIST label.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tools.browser_driver import METRIC, launch, save_full_page, serve, wait_idle


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--query", default="?sample=11&iters=3", help="share-link parameters of the page to shoot")
    p.add_argument("--what", choices=["overview", "screen", "page", "class"], default="overview",
                   help="the overview container, the first screen of the window, the whole page, "
                        "or a demonstration class's gallery")  # fmt: skip
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshot.png")
    p.add_argument("--width", type=int, default=1400)
    p.add_argument("--height", type=int, default=1000)
    args = p.parse_args(argv)
    from playwright.sync_api import sync_playwright

    env, query, tmp = None, args.query, None
    if args.what == "class":
        tmp = tempfile.TemporaryDirectory()
        env = {"CAPSNET_CLASS_DB": f"sqlite:///{tmp.name}/class.sqlite3"}
        code, key = demo_class(env["CAPSNET_CLASS_DB"])
        query = f"?view=class&class={code}&teacher={key}"
    with serve(env) as url, sync_playwright() as pw:
        browser = launch(pw)
        page = browser.new_page(viewport={"width": args.width, "height": args.height})
        page.goto(url + query)
        page.wait_for_selector(".st-key-class_gallery" if args.what == "class" else METRIC, timeout=60_000)
        wait_idle(page)
        page.wait_for_timeout(500)  # let Plotly finish its first layout
        args.out.parent.mkdir(parents=True, exist_ok=True)
        if args.what == "page":
            save_full_page(page, args.out)
        elif args.what == "class":
            page.locator(".st-key-class_gallery").screenshot(path=str(args.out))
        elif args.what == "screen":
            page.screenshot(path=str(args.out))
        else:
            page.locator(".st-key-overview").screenshot(path=str(args.out))
        browser.close()
    if tmp is not None:
        tmp.cleanup()
    print(f"wrote {args.out}")


def demo_class(db_url: str) -> tuple[str, str]:
    """A class in `db_url` holding the shipped samples as students would send them: (code, key)."""
    import numpy as np
    import torch

    import capsnet
    from app.classroom import ClassStore
    from app.routing_measures import Ablation

    samples = np.load(ROOT / "app" / "samples.npz")
    x = torch.from_numpy(samples["images"]).float().div(255.0)[:, None]  # (40, 1, 28, 28)
    model = capsnet.load_model()
    with torch.no_grad():  # one traced pass: its first iteration is the no-routing answer, as on the page
        out = model(x, iterations=3, trace=True)
    store = ClassStore(db_url)
    code, key = store.create_class()
    for k in [*range(0, 40, 4), 11]:
        store.add_drawing(
            code,
            x[k, 0].numpy(),
            int(out.prediction[k]),
            float(out.lengths[k].max()),
            intended=int(samples["labels"][k]),
            nickname=f"student {k + 1}",
            routing_changed=Ablation.from_trace(out.lengths_per_iter[:, k].numpy()).changed,
            session_id=f"demo-{k}",
        )
    store.dispose()
    return code, key


if __name__ == "__main__":
    main()

"""Make the README's screenshots of the labelling tool in headless Chromium.

``python -m pointsup.annotator.screenshots docs/images`` writes

* ``annotator_labelling.png``: the labelling page, both views (the object with its box and
  context, the close-up at the point) after a few answers given with the keyboard (0.6 to
  1.2 s apart);
* ``annotator_review.png``: review (R): the points of the object answered last, drawn over it
  in the colours of their answers (a click changes one);
* ``annotator_phone.png``: the labelling page on a phone held upright (390 x 844 CSS pixels):
  the views one above the other, the buttons on screen;
* ``annotator_progress.png``: the progress page of the same session, where two scripted
  annotators ("bob", "carol") have also answered: mask values with 8 % of the labels
  flipped, response times drawn from a log-normal distribution around 0.9 s (the paper's
  figure), so the numbers on that page are illustrative, not measured.

The session runs on a synthetic dataset in a temporary folder. PNGs are reduced to a
256-colour palette to keep them small.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from pointsup.annotator.browser import browser_unavailable_reason, launched_chromium
from pointsup.annotator.server import AnnotationServer, serving_in_background
from pointsup.annotator.store import AnnotationStore, open_session
from pointsup.data.synthetic import generate_synthetic_dataset

VIEWPORT = {"width": 1060, "height": 660}
PHONE = {"width": 390, "height": 844}
#: the files written, in order
NAMES = ("annotator_labelling.png", "annotator_review.png", "annotator_phone.png", "annotator_progress.png")
#: answers given in the browser before the labelling page is captured
BROWSER_ANSWERS = 4


def _scripted_annotator(store: AnnotationStore, name: str, num_objects: int, rng: np.random.Generator) -> None:
    """Label ``num_objects`` objects as a careful but imperfect annotator would."""
    masks = {o.position: o.mask_values for o in store.objects()}
    for _ in range(num_objects * store.settings.num_points):
        tasks = store.next_points(name, 1)
        if not tasks:
            return
        t = tasks[0]
        values = masks[t.position]
        assert values is not None  # the synthetic masks all decode
        label = int(values[t.point_index])
        if rng.random() < 0.08:
            label = 1 - label
        seconds = float(rng.lognormal(mean=np.log(0.9), sigma=0.35))
        store.record_answer(name, t.position, t.point_index, label, round(1000 * seconds, 1))


def _save_small_png(source: Path, destination: Path) -> None:
    with Image.open(source) as image:
        image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(destination, optimize=True)


def make_screenshots(output_dir: str | Path, browser: Any | None = None) -> list[Path]:
    """Write the screenshots into ``output_dir``; returns their paths.

    Args:
        output_dir: destination folder (created if missing).
        browser: a Playwright ``Browser`` to use; by default the system Chromium is launched.

    Raises:
        RuntimeError: no headless browser here.
    """
    if browser is None:
        reason = browser_unavailable_reason()
        if reason is not None:
            raise RuntimeError(f"cannot make screenshots: {reason}")
        with launched_chromium() as launched:
            return make_screenshots(output_dir, launched)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        data = generate_synthetic_dataset(Path(tmp) / "data", num_images=4, seed=3, image_size=384, show_progress=False)
        store, _ = open_session(Path(tmp) / "session.db", data.train_json)
        try:
            with serving_in_background(AnnotationServer(store, data.image_dir)) as server:
                _capture(browser, server, store, Path(tmp), output_dir)
        finally:
            store.close()
    return [output_dir / name for name in NAMES]


def _capture(browser: Any, server: AnnotationServer, store: AnnotationStore, tmp: Path, output_dir: Path) -> None:
    """Label a few points, then capture the labelling page, review, a phone and the progress page."""
    raw = tmp / "raw.png"
    page = browser.new_page(viewport=VIEWPORT)
    _label_in_browser(page, server.url() + "?annotator=alice", store)
    rng = np.random.default_rng(1)
    for name in ("bob", "carol"):
        _scripted_annotator(store, name, num_objects=4, rng=rng)
    page.screenshot(path=str(raw))
    _save_small_png(raw, output_dir / NAMES[0])
    page.keyboard.press("r")
    page.wait_for_selector("body[data-state=review]")
    page.screenshot(path=str(raw))
    _save_small_png(raw, output_dir / NAMES[1])
    page.keyboard.press("r")
    page.wait_for_selector("body[data-state=ready]")
    phone_context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    phone_context.add_init_script("localStorage.setItem('pointsup-instructions-read', '1')")
    phone = phone_context.new_page()
    phone.goto(server.url() + "?annotator=dan")
    phone.wait_for_selector("body[data-state=ready]")
    phone.screenshot(path=str(raw))
    _save_small_png(raw, output_dir / NAMES[2])
    phone_context.close()
    page.goto(server.url("/progress"))
    page.screenshot(path=str(raw), full_page=True)
    _save_small_png(raw, output_dir / NAMES[3])
    page.close()


def _label_in_browser(page: Any, url: str, store: AnnotationStore) -> None:
    """Answer :data:`BROWSER_ANSWERS` points with the keyboard, 0.6 to 1.2 s apart."""
    page.goto(url)
    page.wait_for_selector("body[data-state=instructions]")  # a first visit: read, then start
    page.click("#instructions-ok")
    page.wait_for_selector("body[data-state=ready]")
    masks = {o.position: o.mask_values for o in store.objects()}
    rng = np.random.default_rng(0)
    for _ in range(BROWSER_ANSWERS):
        key = page.get_attribute("body", "data-point-key")
        position, index = (int(v) for v in key.split(":"))
        page.wait_for_timeout(int(rng.uniform(600, 1200)))
        values = masks[position]
        assert values is not None  # the synthetic masks all decode
        page.keyboard.press("f" if values[index] else "j")
        page.wait_for_selector(f'body[data-state=ready]:not([data-point-key="{key}"])')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output_dir", type=Path, nargs="?", default=Path("docs/images"))
    for path in make_screenshots(parser.parse_args().output_dir):
        print(f"wrote {path} ({path.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main()

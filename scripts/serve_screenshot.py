"""The README's picture of the ``asr serve`` page: headless Chromium (Debian's ``chromium``, driven
by Playwright) uploads an example clip, clicks a word and stops the audio with it marked.

    python scripts/serve_screenshot.py [--out docs/serve-page.png] [--chromium /usr/bin/chromium]

The page is served in this process with the bundled model and its default decoding (beam search
with its LM). The PNG is reduced to a palette of 64 colours to stay small.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from PIL import Image
from playwright.sync_api import sync_playwright

from asr.serve import ServeConfig, ServerThread, create_app
from asr.transcribe import load_model

ROOT = Path(__file__).resolve().parent.parent
CLIP = ROOT / "examples" / "kathleen" / "arctic_a0003_1592748500.ogg"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "serve-page.png")
    parser.add_argument("--chromium", default=shutil.which("chromium"))
    parser.add_argument("--word", type=int, default=6, help="the word to click (from 0)")
    args = parser.parse_args()
    if not args.chromium:
        raise SystemExit("no chromium: apt-get install chromium, or give --chromium")

    app = create_app(load_model(), ServeConfig())
    with ServerThread(app) as server, sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=args.chromium, args=["--autoplay-policy=no-user-gesture-required"]
        )
        page = browser.new_page(viewport={"width": 860, "height": 520})
        page.goto(server.url + "/")
        page.wait_for_function("() => document.getElementById('model').textContent.includes('M')")
        page.set_input_files("#file", str(CLIP))
        page.wait_for_selector("#transcript .word")
        word = page.locator("#transcript .word").nth(args.word)
        word.click()
        page.wait_for_selector("#transcript .word.active")
        time.sleep(0.15)
        page.evaluate("() => document.getElementById('player').pause()")
        page.mouse.move(0, 0)  # no hover mark
        page.evaluate("() => document.activeElement.blur()")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(args.out), full_page=True)
        browser.close()
    image = Image.open(args.out).convert("RGB").quantize(colors=64, dither=Image.Dither.NONE)
    image.save(args.out, optimize=True)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1000:.0f} kB)")


if __name__ == "__main__":
    main()

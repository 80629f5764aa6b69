"""A headless Chromium on the web app, for the browser tests and the in-browser benchmark.

Playwright (`pip install playwright`, no browser download) drives the system's Chromium:
Debian's `chromium-headless-shell`, or the binary named by `VAE_EDGE_BROWSER`. The app is
served from a local server on a free port of 127.0.0.1 in a background thread.
"""

import contextlib
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

from vae_edge.errors import MissingFileError
from vae_edge.web.server import make_server

BROWSER_ENV = "VAE_EDGE_BROWSER"
BROWSER_NAMES = ("chromium-headless-shell", "chromium", "google-chrome")
INSTALL_HINT = "apt-get install chromium-headless-shell (Debian), or set VAE_EDGE_BROWSER to a Chromium binary"
# page.evaluate(READY): waits for the model and the page's first drawings, returns EdgeVAE.info().
READY = "async () => { const vae = await window.vaeEdgeReady; await window.vaeEdgeIdle(); return vae.info(); }"


def find_browser() -> str | None:
    """The Chromium binary to drive: `$VAE_EDGE_BROWSER`, else the first of `BROWSER_NAMES` on PATH."""
    named = os.environ.get(BROWSER_ENV)
    if named:
        return named if Path(named).is_file() else None
    return next((path for path in map(shutil.which, BROWSER_NAMES) if path), None)


@contextlib.contextmanager
def serving(web_dir: Path) -> Iterator[str]:
    """Serve `web_dir` on 127.0.0.1 (a free port) while the block runs; yields the base URL."""
    if not (Path(web_dir) / "index.html").is_file():
        raise MissingFileError(f"{web_dir}: no web app here; write one with vae_edge.web.app.write_web_app")
    server = make_server(Path(web_dir))
    thread = threading.Thread(target=server.serve_forever, name="vae-edge-web", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@contextlib.contextmanager
def launch(executable: str | None = None) -> Iterator:
    """A headless Playwright `Browser` on the system Chromium (no browser download)."""
    from playwright.sync_api import sync_playwright

    executable = executable or find_browser()
    if executable is None:
        raise MissingFileError(f"no Chromium found; {INSTALL_HINT}")
    args = ["--disable-gpu", "--disable-dev-shm-usage"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        args.append("--no-sandbox")  # Chromium refuses to start its sandbox as root
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=args)
        try:
            yield browser
        finally:
            browser.close()

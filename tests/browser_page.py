"""The web app in a real headless Chromium, for tests/test_web.py and tests/test_byo.py: without a
browser the browser tests skip outside CI; under CI=true a missing browser or Playwright is a failure."""

import contextlib
import os

import pytest

IN_CI = os.environ.get("CI") == "true"


def require_browser() -> str:
    from vae_edge.web.browser import INSTALL_HINT, find_browser

    problem = None
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        problem = "Playwright is not installed (pip install playwright; no browser download needed)"
    executable = find_browser()
    if problem is None and executable is None:
        problem = f"no Chromium found ({INSTALL_HINT})"
    if problem:
        if IN_CI:
            pytest.fail(f"browser tests cannot run under CI: {problem}")
        pytest.skip(problem)
    return executable


class Page:
    """A loaded app page that records console errors and failed requests."""

    def __init__(self, browser, url: str):
        self.page = browser.new_page(viewport={"width": 1100, "height": 900})
        self.errors = []
        self.page.on("console", lambda message: self.errors.append(message.text) if message.type == "error" else None)
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.on("response", lambda response: self.errors.append(f"HTTP {response.status} {response.url}")
                     if response.status >= 400 else None)
        self.page.goto(url)

    def ready(self):
        from vae_edge.web.browser import READY

        return self.page.evaluate(READY)

    def run(self, script: str, arg=None):
        """`script` is the body of an async function of `vae` (the loaded EdgeVAE), `arg` and `VaeEdge` (the module)."""
        return self.page.evaluate(
            f"async (arg) => {{ const vae = await window.vaeEdgeReady; const VaeEdge = window.VaeEdge; {script} }}", arg)


def served_page(browser, web_dir):
    """A context manager: the web app of `web_dir` served and loaded in a page, ready (see `Page.ready`)."""
    from vae_edge.web.browser import serving

    @contextlib.contextmanager
    def opened():
        with serving(web_dir) as url:
            page = Page(browser, url)
            page.info = page.ready()
            try:
                yield page
            finally:
                page.page.close()

    return opened()

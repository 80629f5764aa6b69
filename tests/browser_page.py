"""The web app in a real headless Chromium, for tests/test_web.py and tests/test_byo.py: without a
browser the browser tests skip outside CI; under CI=true a missing browser or Playwright is a failure."""

import contextlib
import signal
import subprocess
import sys

import pytest
from environment import unavailable


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
        unavailable(problem, "browser tests cannot run under CI")
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


@contextlib.contextmanager
def serve_command(bundle):
    """`vae-edge serve BUNDLE --port 0` in a child process: yields its base URL (read from the line it prints
    once the port is bound) and a dict that holds its `returncode`, `out` and `err` once Ctrl-C stopped it."""
    # The child's Ctrl-C handling must not depend on what the test process inherited or set: a SIGINT
    # ignored or blocked here would be ignored or blocked in the child too, and Python then never raises
    # KeyboardInterrupt (suspected in one full CI run where serve did not stop).
    start = ("import signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
             "signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGINT]); from vae_edge.cli.serve import serve; serve()")
    server = subprocess.Popen([sys.executable, "-c", start, str(bundle), "--port", "0"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stopped: dict = {}
    try:
        yield server.stdout.readline().split(" at ")[1].split()[0], stopped
    finally:
        server.send_signal(signal.SIGINT)
        try:
            out, err = server.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
            out, err = server.communicate()
            pytest.fail(f"serve did not stop within 60 s of Ctrl-C; stdout {out!r}, stderr {err[-2000:]!r}")
        stopped.update(returncode=server.returncode, out=out, err=err)

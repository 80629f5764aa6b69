"""A local static server for the web app, with the headers WASM threads need.

onnxruntime-web runs multi-threaded only in a cross-origin isolated page (SharedArrayBuffer),
which takes two response headers: COOP `same-origin` and COEP `require-corp`. Python's
`http.server` serves the files; this adds those headers, the right type for `.mjs` and
`.wasm`, and no caching (a re-exported bundle must not be mixed with a cached old model).
"""

import functools
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ISOLATION_HEADERS = {
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin",
}


class IsolatedHandler(SimpleHTTPRequestHandler):
    """Static files with cross-origin isolation headers; quiet unless `verbose`."""

    extensions_map = {**SimpleHTTPRequestHandler.extensions_map, ".mjs": "text/javascript", ".js": "text/javascript",
                      ".wasm": "application/wasm", ".onnx": "application/octet-stream", ".json": "application/json"}
    verbose = False

    def end_headers(self) -> None:
        for name, value in ISOLATION_HEADERS.items():
            self.send_header(name, value)
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, format: str, *args) -> None:
        if self.verbose:
            super().log_message(format, *args)


def make_server(web_dir: Path, host: str = "127.0.0.1", port: int = 0, verbose: bool = False) -> ThreadingHTTPServer:
    """A server for `web_dir` bound to `host:port` (port 0: a free one; read `server.server_port`)."""
    handler = functools.partial(type("Handler", (IsolatedHandler,), {"verbose": verbose}), directory=str(web_dir))
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server

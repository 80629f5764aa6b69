"""A local static server for the web app, with the headers WASM threads need.

onnxruntime-web runs multi-threaded only in a cross-origin isolated page (SharedArrayBuffer),
which takes two response headers: COOP `same-origin` and COEP `require-corp`. This adds those
headers, the right type for `.mjs` and `.wasm`, and no caching (a re-exported bundle must not
be mixed with a cached old model).

It serves only what the app is: the regular files under its folder. A path that resolves
outside the folder (a symlink out, `..`), a folder (no listings), a hidden file (a writer's
`.partial`) or a name that cannot be a file (`%00`) is a 404 with one log line; a download the
browser cancels is no error at all. Nothing a client sends prints a traceback.
"""

import errno
import functools
import os
import socket
import stat
import sys
import urllib.parse
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from vae_edge.errors import BadInputError, first_line
from vae_edge.printable import printable

ISOLATION_HEADERS = {
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin",
}
INDEX = "index.html"  # what a path ending in `/` serves (the app at `/`)
# A client that goes away mid-answer (a cancelled download, a closed tab) is no server error.
CLIENT_GONE = (ConnectionError, TimeoutError)
REQUEST_SHOWN = 200  # characters of a request line in the log (a client may send 64 KiB)


def file_of(root: Path, url_path: str) -> Path | None:
    """The regular file under `root` (a resolved folder) that `url_path` names, or None.

    None for anything else: a path that leaves `root` once symlinks are resolved, a folder, a
    hidden or empty segment, a name that is not UTF-8 or holds a NUL, a socket or a FIFO.
    """
    path = urllib.parse.urlsplit(url_path).path
    try:
        text = urllib.parse.unquote(path, errors="strict")
    except UnicodeDecodeError:
        return None
    if not text.startswith("/") or "\0" in text or "\\" in text:
        return None
    segments = text[1:].split("/")
    if segments[-1] == "":
        segments[-1] = INDEX
    if any(segment == "" or segment.startswith(".") for segment in segments):
        return None
    try:
        resolved = root.joinpath(*segments).resolve(strict=True)
        is_file = stat.S_ISREG(os.lstat(resolved).st_mode)
    except (OSError, RuntimeError):  # missing, a symlink loop, a name too long
        return None
    return resolved if is_file and resolved.is_relative_to(root) else None


class IsolatedHandler(SimpleHTTPRequestHandler):
    """The regular files of `root` with cross-origin isolation headers; logs one line per failed
    request (every request when `verbose`)."""

    extensions_map = {**SimpleHTTPRequestHandler.extensions_map, ".mjs": "text/javascript", ".js": "text/javascript",
                      ".wasm": "application/wasm", ".onnx": "application/octet-stream", ".json": "application/json"}
    root: Path
    verbose = False

    def version_string(self) -> str:
        """The `Server` header: what serves, not which Python (the default names its version)."""
        return "vae-edge"

    def send_head(self):
        """Headers of the named file and the open file to copy, or a 404 and None."""
        path = file_of(self.root, self.path)
        try:
            # O_NOFOLLOW: the resolved name holds no symlink, unless one was put there since.
            handle = open(os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK), "rb") if path else None
        except OSError:
            handle = None
        if handle is None or not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            if handle is not None:
                handle.close()
            self.send_error(HTTPStatus.NOT_FOUND, "Not found")
            return None
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", self.guess_type(str(path)))
        self.send_header("Content-Length", str(os.fstat(handle.fileno()).st_size))
        self.end_headers()
        return handle

    def end_headers(self) -> None:
        for name, value in ISOLATION_HEADERS.items():
            self.send_header(name, value)
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_request(self, code=0, size=0) -> None:
        """One line per answered request: failures always, successes only when verbose."""
        if self.verbose or int(code) >= HTTPStatus.BAD_REQUEST:
            self.log_message('"%s" %d', (self.requestline or "-")[:REQUEST_SHOWN], int(code))

    def log_error(self, format: str, *args) -> None:
        """Silent: every error is answered, and that answer is the request's one line."""

    def log_message(self, format: str, *args) -> None:
        sys.stderr.write(f"{self.address_string()} - {printable(format % args)}\n")


class IsolatedServer(ThreadingHTTPServer):
    """A threading server whose failures are one line each, and a vanished client none."""

    daemon_threads = True  # not joined on close: Ctrl-C must not wait for a client that keeps a connection idle

    def handle_error(self, request, client_address) -> None:
        error = sys.exc_info()[1]
        if not isinstance(error, CLIENT_GONE):
            sys.stderr.write(f"{client_address[0]} - {type(error).__name__}: {printable(first_line(error))}\n")


def bind_problem(error: Exception, host: str, port: int) -> str:
    """What went wrong binding `host:port` and the option that fixes it."""
    where = f"{host}:{port}"
    if not isinstance(error, OSError) or isinstance(error, socket.gaierror):  # idna and NUL errors are not OSErrors
        reason = error.strerror if isinstance(error, OSError) else first_line(error)
        return (f"--host {host!r} is not a known host name or address ({reason}); pass an address of "
                "this machine, e.g. 127.0.0.1 (this machine only) or 0.0.0.0 (every interface)")
    if error.errno == errno.EADDRINUSE:
        return f"cannot listen on {where}: the port is in use; choose another --port, or --port 0 for a free one"
    if error.errno in (errno.EACCES, errno.EPERM):
        return (f"cannot listen on {where}: ports below 1024 need administrator rights here; "
                "choose a --port of 1024 or more, or --port 0 for a free one")
    if error.errno == errno.EADDRNOTAVAIL:
        return (f"cannot listen on {where}: {host} is not an address of this machine; "
                "pass one of its addresses to --host, e.g. 127.0.0.1 or 0.0.0.0 (every interface)")
    return f"cannot listen on {where} ({first_line(error)}); check --host and --port"


def make_server(web_dir: Path, host: str = "127.0.0.1", port: int = 0, verbose: bool = False) -> ThreadingHTTPServer:
    """A server for `web_dir` bound to `host:port` (port 0: a free one; read `server.server_port`).

    `host` may be a name, an IPv4 or an IPv6 address. A bind that fails raises `BadInputError`
    naming the fix (an unknown host, a port in use, a port that needs privileges)."""
    root = Path(web_dir).resolve()
    handler = type("Handler", (IsolatedHandler,), {"verbose": verbose, "root": root})
    handler = functools.partial(handler, directory=str(root))  # else the handler asks for the working folder
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
        return type("Server", (IsolatedServer,), {"address_family": family})((host, port), handler)
    except (OSError, UnicodeError, ValueError, TypeError) as error:  # a name too long for idna, a NUL in it
        raise BadInputError(bind_problem(error, host, port)) from None

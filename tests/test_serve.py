"""`vae-edge serve` and its server: only the regular files of the app's folder, one log line per bad
request and no traceback, a quiet cancelled download, and a bind error that names its own fix.

No training or export: a small folder stands in for a bundle's `web/`. Every wait is for an event
(the server's own readiness line, a response, the handler threads joined), never for time.
"""

import contextlib
import errno
import http.client
import os
import socket
import struct
import threading
from pathlib import Path

import pytest
from browser_page import serve_command
from click.testing import CliRunner

from vae_edge.cli import main
from vae_edge.errors import BadInputError
from vae_edge.web.server import bind_problem, make_server

BIG = 64 << 20  # larger than any socket buffer: a cancelled download is cut mid-way


@pytest.fixture
def web(tmp_path) -> Path:
    """An app folder with a secret beside it, symlinks out of it and in it, a hidden file and a FIFO."""
    folder = tmp_path / "bundle" / "web"
    (folder / "models").mkdir(parents=True)
    (folder / "ort").mkdir()
    (folder / "index.html").write_text("<p>app</p>")
    (folder / "app.mjs").write_text("export {};")
    (folder / "ort" / "runtime.wasm").write_bytes(b"\0asm")
    (folder / "models" / "encoder.onnx").write_bytes(b"onnx")
    with open(folder / "big.bin", "wb") as stream:
        stream.truncate(BIG)  # sparse: nothing written to disk
    (tmp_path / "secret.txt").write_text("secret")
    (tmp_path / "private").mkdir()
    (tmp_path / "private" / "key.txt").write_text("key")
    (folder / "link.txt").symlink_to(tmp_path / "secret.txt")
    (folder / "linked").symlink_to(tmp_path / "private")
    (folder / "inside.onnx").symlink_to(Path("models") / "encoder.onnx")  # a link that stays inside is a file of the app
    (folder / ".index.html.x1y2.partial").write_text("half")
    os.mkfifo(folder / "pipe")
    return folder


@contextlib.contextmanager
def running(folder: Path, **kwargs):
    """The server in a thread; on exit, stopped with every handler thread joined (so all its logging is done)."""
    server = make_server(folder, **kwargs)
    server.daemon_threads = False  # server_close() then joins the handlers (the command line does not wait for them)
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    try:
        yield server.server_port
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def fetch(port: int, path: str, method: str = "GET") -> tuple[int, dict, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.putrequest(method, path, skip_accept_encoding=True)
        connection.endheaders()
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


SERVED = [("/", b"<p>app</p>", "text/html"), ("/index.html", b"<p>app</p>", "text/html"),
          ("/app.mjs", b"export {};", "text/javascript"), ("/ort/runtime.wasm", b"\0asm", "application/wasm"),
          ("/models/encoder.onnx?v=2", b"onnx", "application/octet-stream"),
          ("/inside.onnx", b"onnx", "application/octet-stream")]
REFUSED = ["/link.txt", "/linked/key.txt", "/linked/", "/models/", "/models", "/ort/", "/%00", "/%00/x", "/%ff",
           "/../secret.txt", "/%2e%2e/secret.txt", "/models/%2e%2e/%2e%2e/secret.txt", "/.index.html.x1y2.partial",
           "/pipe", "/models//encoder.onnx", "/nothing.js", "/" + "a" * 5000, "/..%5csecret.txt"]


def test_only_the_regular_files_of_the_folder_are_served(web, capsys):
    with running(web) as port:
        for path, body, content_type in SERVED:
            status, headers, content = fetch(port, path)
            assert (status, content, headers["Content-Type"]) == (200, body, content_type), path
            assert headers["Cross-Origin-Opener-Policy"] == "same-origin", path
            assert headers["Cross-Origin-Embedder-Policy"] == "require-corp", path
            assert "Python" not in headers["Server"]
        for path in REFUSED:
            status, _, content = fetch(port, path)
            assert status == 404 and b"secret" not in content and b"key" not in content, path
        assert fetch(port, "/", "POST")[0] == 501
    log = capsys.readouterr().err.splitlines()
    assert len(log) == len(REFUSED) + 1, log  # one line per refused request, none for a served one
    assert all(" 404" in line for line in log[:-1]) and " 501" in log[-1]
    assert "Traceback" not in "\n".join(log)


def test_verbose_logs_every_request_and_control_characters_are_escaped(web, capsys):
    with running(web, verbose=True) as port:
        assert fetch(port, "/")[0] == 200
        with socket.create_connection(("127.0.0.1", port)) as client:
            client.sendall(b"GET /\x1b[2J\x1b[31mfake HTTP/1.0\r\n\r\n")
            assert client.recv(64).startswith(b"HTTP/1.0 4")
    log = capsys.readouterr().err.splitlines()
    assert len(log) == 2 and '"GET / HTTP/1.1" 200' in log[0]
    assert "\x1b" not in log[1] and "\\x1b[2J" in log[1]


def cancel_download(port: int, path: str = "/big.bin") -> None:
    """Start a download, read its first bytes, then reset the connection as a cancelled browser download does."""
    with socket.create_connection(("127.0.0.1", port)) as client:
        client.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert client.recv(4096).startswith(b"HTTP/1.0 200")
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def test_cancelled_downloads_and_dropped_connections_are_quiet(web, capsys):
    with running(web) as port:
        for _ in range(3):
            cancel_download(port)
        socket.create_connection(("127.0.0.1", port)).close()  # connects and says nothing
        with socket.create_connection(("127.0.0.1", port)) as client:  # half a request, then a reset
            client.sendall(b"GET / HTTP/1.1\r\n")
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        assert fetch(port, "/")[0] == 200  # still serving
    assert capsys.readouterr().err == ""


def test_a_port_in_use_names_the_fix(web):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(BadInputError, match="the port is in use; choose another --port, or --port 0"):
            make_server(web, "127.0.0.1", port)
        result = CliRunner().invoke(main, ["serve", str(web.parent), "--port", str(port)])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1 and "--port" in result.stderr


@pytest.mark.parametrize("host, message", [
    ("nosuch.invalid", "is not a known host name or address"),
    ("", "is not a known host name or address"),
    ("a..b", "is not a known host name or address"),  # idna refuses an empty label: a UnicodeError, not an OSError
    ("a" * 300, "is not a known host name or address"),
    ("127.0.0.1\x00", "is not a known host name or address"),  # a TypeError
    ("192.0.2.1", "is not an address of this machine"),  # TEST-NET-1: never local
], ids=["unknown", "empty", "idna", "long", "nul", "not-local"])
def test_a_bad_host_names_the_fix(web, host, message):
    result = CliRunner().invoke(main, ["serve", str(web.parent), "--host", host, "--port", "0"])
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0] and "--host" in lines[0]
    assert "another --port" not in lines[0]


def test_a_privileged_port_names_the_fix():
    problem = bind_problem(PermissionError(errno.EACCES, "Permission denied"), "127.0.0.1", 80)
    assert "administrator rights" in problem and "--port of 1024 or more" in problem


@pytest.mark.skipif(os.geteuid() == 0, reason="root may listen on any port")
def test_a_privileged_port_is_refused_in_one_line(web):
    result = CliRunner().invoke(main, ["serve", str(web.parent), "--port", "1"])
    assert result.exit_code == 2 and "--port of 1024 or more" in result.stderr


def test_ipv6_loopback_is_served(web):
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    server = make_server(web, "::1", 0)
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    try:
        connection = http.client.HTTPConnection("::1", server.server_port, timeout=30)
        connection.request("GET", "/")
        assert connection.getresponse().read() == b"<p>app</p>"
        connection.close()
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_serve_command_logs_one_line_per_bad_request_and_stops_on_ctrl_c_with_a_client_idle(web):
    with serve_command(web.parent) as (url, stopped):
        port = int(url.rstrip("/").rsplit(":", 1)[1])
        for path in ("/%00", "/link.txt", "/models/"):
            assert fetch(port, path)[0] == 404
        cancel_download(port)
        idle = socket.create_connection(("127.0.0.1", port))  # a browser's pre-connection: it never sends a request
        assert fetch(port, "/")[0] == 200
    idle.close()  # only now: Ctrl-C stopped the server with the idle client still connected
    err = stopped["err"]
    assert stopped["returncode"] == 0 and "stopped" in stopped["out"]
    assert "Traceback" not in err
    assert [line.split('"')[1] for line in err.splitlines()] == ["GET /%00 HTTP/1.1", "GET /link.txt HTTP/1.1",
                                                                 "GET /models/ HTTP/1.1"], err


def test_serve_refuses_a_missing_bundle_in_one_line(tmp_path):
    result = CliRunner().invoke(main, ["serve", str(tmp_path / "nowhere")])
    assert result.exit_code == 2 and result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1
    assert "not a folder" in result.stderr


def test_serve_refuses_a_web_folder_that_links_out_of_the_bundle(web, tmp_path):
    hostile = tmp_path / "hostile"
    hostile.mkdir()
    (hostile / "web").symlink_to(web)  # a bundle unpacked from elsewhere: web/ is a link to any folder
    result = CliRunner().invoke(main, ["serve", str(hostile), "--port", "0"])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1 and "outside the bundle" in result.stderr

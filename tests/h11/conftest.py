"""Fixtures and helpers for the h11 conformance suite.

atomserve is run as a real process (the binary named by ATOMSERVE_BIN, default
target/debug/atomserve) on ephemeral loopback ports, and every response it sends is parsed
by h11, a strict HTTP/1.1 implementation that shares no code with the server: a response
h11 rejects raises h11.RemoteProtocolError and fails the test.

Nothing here builds the server; build it first (cargo build).
"""

from __future__ import annotations

import dataclasses
import email.utils
import os
import queue
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import h11
import pytest

REPO = Path(__file__).resolve().parents[2]
DEFAULT_BIN = REPO / "target" / "debug" / "atomserve"

#: Every socket operation gives up after this long, so that no test can hang.
SOCKET_TIMEOUT = 5.0
#: How long the server may take to print its banner.
STARTUP_TIMEOUT = 15.0
#: How long the server may take to exit after SIGTERM (its default grace is 10 s).
SHUTDOWN_TIMEOUT = 20.0

INDEX_HTML = (
    "<!doctype html>\n"
    "<html lang=\"en\">\n"
    "<head><meta charset=\"utf-8\"><title>atomserve h11 fixture</title>\n"
    "<script type=\"module\" src=\"/assets/app-abc123.js\"></script>\n"
    "<link rel=\"stylesheet\" href=\"/style.css\"></head>\n"
    "<body><div id=\"app\">caf\u00e9 \u2014 the root index</div></body>\n"
    "</html>\n"
).encode("utf-8")
DOCS_INDEX_HTML = (
    b"<!doctype html>\n<html><head><title>docs</title></head>"
    b"<body><h1>The docs index</h1></body></html>\n"
)
APP_JS = b'console.log("app-abc123");\nexport const answer = 42;\n'
STYLE_CSS = b"body { margin: 0; font-family: sans-serif; }\n"
SECRET = b"TOP-SECRET-DOTFILE-CONTENT do not serve\n"

#: The files of the document root, by URL path.
FILES = {
    "/index.html": INDEX_HTML,
    "/docs/index.html": DOCS_INDEX_HTML,
    "/assets/app-abc123.js": APP_JS,
    "/style.css": STYLE_CSS,
    "/.secret": SECRET,
    # Site rules: every h11 response of the public listener carries these fields, so the
    # conformance checks run over responses with custom headers too.
    "/_headers": b"/*\n  X-Frame-Options: DENY\n  Referrer-Policy: no-referrer\n",
}

_IMF_FIXDATE = re.compile(
    r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), (0[1-9]|[12][0-9]|3[01]) "
    r"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} "
    r"([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9] GMT"
)
_LISTENING = re.compile(r"^atomserve: listening on http://([0-9.]+):(\d+)\s*$")
_ADMIN = re.compile(r"^atomserve: admin on http://([0-9.]+):(\d+)/healthz\b")


# --------------------------------------------------------------------------------------------
# The server process
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Server:
    proc: subprocess.Popen
    host: str
    port: int
    admin_port: int
    stderr_lines: list
    root: Path
    #: SIGTERM was sent. A second one means "stop now" and exits 1, so it is sent only once.
    terminated: bool = False

    def terminate(self) -> None:
        if not self.terminated and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        self.terminated = True

    def stderr_text(self) -> str:
        return "".join(self.stderr_lines)


def _server_binary() -> Path:
    path = Path(os.environ.get("ATOMSERVE_BIN", str(DEFAULT_BIN)))
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(f"atomserve binary not found or not executable: {path} (set ATOMSERVE_BIN)")
    return path


def start_server(root: Path, *extra_args: str) -> Server:
    """Starts atomserve on ephemeral ports and waits for its banner."""
    # Flags win over ATOMSERVE_* variables, but a stray ATOMSERVE_NO_SPA_FALLBACK (a boolean
    # flag) from the caller's environment would still change behaviour: drop them all.
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATOMSERVE_")}
    # The one variable kept, as a flag: `make test` runs this suite once per I/O backend.
    io = os.environ.get("ATOMSERVE_IO", "epoll")
    args = [
        str(_server_binary()),
        "--root", str(root),
        "--listen", "127.0.0.1:0",
        "--admin-listen", "127.0.0.1:0",
        "--workers", "2",
        "--io", io,
        *extra_args,
    ]
    proc = subprocess.Popen(
        args,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
        encoding="utf-8",
        errors="replace",
    )
    lines: list = []
    fresh: queue.Queue = queue.Queue()

    def pump() -> None:
        # Keep draining stderr for the life of the process so the pipe never fills.
        for line in proc.stderr:
            lines.append(line)
            fresh.put(line)
        fresh.put(None)

    threading.Thread(target=pump, name="atomserve-stderr", daemon=True).start()

    port = admin_port = None
    host = None
    deadline = time.monotonic() + STARTUP_TIMEOUT
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RuntimeError("timed out waiting for the startup banner")
            try:
                line = fresh.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise RuntimeError(f"server exited during startup (status {proc.wait()})")
            if m := _LISTENING.match(line):
                host, port = m.group(1), int(m.group(2))
            elif m := _ADMIN.match(line):
                admin_port = int(m.group(2))
            elif line.startswith("atomserve: variants complete"):
                # Serving since the "workers" line; wait for the background compression too,
                # so that every variant the cases ask for exists.
                break
        if port is None or admin_port is None:
            raise RuntimeError("banner lacked the 'listening on' or 'admin on' line")
        backend = {"uring": "io_uring"}.get(io, io)
        if io != "auto" and not any(f", {backend}; " in l for l in lines):
            raise RuntimeError(f"the server does not say it runs on {backend}")
    except RuntimeError as e:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        pytest.fail(f"atomserve {' '.join(extra_args)}: {e}\nstderr:\n{''.join(lines)}")
    return Server(proc, host, port, admin_port, lines, root)


def stop_server(server: Server) -> None:
    """SIGTERM, then require a clean exit (status 0) within SHUTDOWN_TIMEOUT."""
    proc = server.proc
    server.terminate()
    try:
        status = proc.wait(timeout=SHUTDOWN_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail(f"atomserve did not exit within {SHUTDOWN_TIMEOUT}s of SIGTERM\n"
                    f"stderr:\n{server.stderr_text()}")
    time.sleep(0.05)  # let the reader thread take the last lines
    assert status == 0, f"atomserve exited with {status}\nstderr:\n{server.stderr_text()}"
    assert "panicked" not in server.stderr_text(), server.stderr_text()


@pytest.fixture(scope="session")
def doc_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("atomserve-root")
    for url_path, content in FILES.items():
        path = root / url_path.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return root


@pytest.fixture(scope="module")
def server(doc_root):
    srv = start_server(doc_root)
    yield srv
    stop_server(srv)


@pytest.fixture(scope="module")
def server_no_spa(doc_root):
    srv = start_server(doc_root, "--no-spa-fallback")
    yield srv
    stop_server(srv)


# --------------------------------------------------------------------------------------------
# Client helpers
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Reply:
    """One response as h11 parsed it."""

    response: h11.Response
    body: bytes
    conn: h11.Connection
    #: Bytes received past the end of this response (must be empty when nothing else was asked).
    trailing: bytes
    #: For raw_request: whether the server closed the connection after the response.
    closed: bool | None = None
    #: h11's (our_state, their_state) right after the response was parsed.
    states_at_end: tuple | None = None

    @property
    def status(self) -> int:
        return self.response.status_code

    def header(self, name: str) -> str | None:
        """The value of a header that must appear at most once, or None."""
        values = self.headers(name)
        assert len(values) <= 1, f"{name} repeated: {values}"
        return values[0] if values else None

    def headers(self, name: str) -> list:
        key = name.lower().encode("ascii")
        return [v.decode("latin-1") for k, v in self.response.headers if k == key]


def connect(port: int, host: str = "127.0.0.1") -> socket.socket:
    sock = socket.create_connection((host, port), timeout=SOCKET_TIMEOUT)
    sock.settimeout(SOCKET_TIMEOUT)
    return sock


def new_client() -> h11.Connection:
    return h11.Connection(h11.CLIENT)


def read_response(sock: socket.socket, conn: h11.Connection) -> Reply:
    """Feeds bytes from `sock` into `conn` until one whole response has been parsed."""
    response = None
    body = bytearray()
    deadline = time.monotonic() + SOCKET_TIMEOUT
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            if time.monotonic() > deadline:
                raise TimeoutError("no complete response in time")
            conn.receive_data(sock.recv(65536))
            continue
        if isinstance(event, h11.InformationalResponse):
            raise AssertionError(f"unexpected 1xx response: {event!r}")
        if isinstance(event, h11.Response):
            response = event
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            assert response is not None
            trailing, _closed = conn.trailing_data
            states = (conn.our_state, conn.their_state)
            return Reply(response, bytes(body), conn, bytes(trailing), states_at_end=states)
        elif isinstance(event, h11.ConnectionClosed):
            raise AssertionError(f"connection closed before a complete response (got {response!r})")
        else:
            raise AssertionError(f"unexpected h11 event {event!r}")


def send_request(sock, conn, method: str, target: str, headers=None, body: bytes = b"") -> None:
    """Serialises a request with h11 itself (so h11 knows what the response answers)."""
    hdrs = [("Host", "127.0.0.1")] if headers is None else list(headers)
    if body:
        hdrs.append(("Content-Length", str(len(body))))
    data = conn.send(h11.Request(method=method, target=target, headers=hdrs))
    if body:
        data += conn.send(h11.Data(data=body))
    data += conn.send(h11.EndOfMessage())
    sock.sendall(data)


def request(port: int, method: str, target: str, headers=None, body: bytes = b"") -> Reply:
    """One request on a fresh connection, sent and parsed by h11."""
    with connect(port) as sock:
        conn = new_client()
        send_request(sock, conn, method, target, headers, body)
        reply = read_response(sock, conn)
        assert reply.trailing == b"", (
            f"{len(reply.trailing)} stray bytes after the response: {reply.trailing[:200]!r}")
        return reply


def raw_request(port: int, raw: bytes, method: str = "GET", await_close: bool = True) -> Reply:
    """Sends `raw` bytes as they are and parses the answer strictly with h11.

    h11 cannot send malformed requests, so a client connection is primed with a well-formed
    request of `method` (its bytes are discarded) to make it expect a response, and the bytes
    received are fed to it. With `await_close`, `reply.closed` tells whether the server then
    closed the connection (waiting up to SOCKET_TIMEOUT); without it, the connection is
    dropped after the response and `reply.closed` stays None.
    """
    conn = new_client()
    conn.send(h11.Request(method=method, target="/", headers=[("Host", "x")]))
    conn.send(h11.EndOfMessage())
    with connect(port) as sock:
        try:
            sock.sendall(raw)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may answer and close before reading everything; read what it sent
        reply = read_response(sock, conn)
        if await_close:
            reply.closed = server_closed(sock, conn)
        return reply


def server_closed(sock: socket.socket, conn: h11.Connection) -> bool:
    """After a response: True when the server closes the connection (and sends nothing more).

    Asserts that no byte follows the response, and that h11 agrees the connection ended.
    """
    trailing, closed = conn.trailing_data
    assert trailing == b"", f"stray bytes after the response: {trailing[:200]!r}"
    try:
        data = sock.recv(65536)
    except socket.timeout:
        return False
    assert data == b"", f"stray bytes after the response: {data[:200]!r}"
    conn.receive_data(b"")
    event = conn.next_event()
    assert isinstance(event, h11.ConnectionClosed), event
    return True


def assert_common_headers(reply: Reply) -> None:
    """Headers every atomserve response carries: Server and an IMF-fixdate Date near now."""
    assert reply.header("Server") == "atomserve"
    date = reply.header("Date")
    assert date is not None, "no Date header"
    assert _IMF_FIXDATE.fullmatch(date), f"Date is not IMF-fixdate: {date!r}"
    when = email.utils.parsedate_to_datetime(date).timestamp()
    assert abs(when - time.time()) < 120, f"Date is far from now: {date!r}"


def assert_length_matches(reply: Reply) -> None:
    length = reply.header("Content-Length")
    assert length is not None, "no Content-Length"
    assert int(length) == len(reply.body), (length, len(reply.body))

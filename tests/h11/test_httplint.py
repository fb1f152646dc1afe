"""Every kind of response atomserve gives, checked by httplint (the linter behind REDbot).

Each case sends one request over a real socket, reads the raw response bytes, splits them into
status line, fields and content by Content-Length (the framing itself is h11's job in
test_conformance.py), and feeds them to httplint's `HttpResponseLinter`, linked to an
`HttpRequestLinter` of the request so that method- and header-dependent checks (HEAD, Range,
Accept-Encoding, conditionals) apply. A note of level BAD fails the case; a WARN fails it too
unless it is allowlisted below with the reason it is not a defect; a real defect is listed in
KNOWN_DEFECTS and its case is an xfail until it is fixed. At the end the module prints a line
per response kind: its note counts by level and the allowed notes it got.
"""

from __future__ import annotations

import dataclasses
import socket
import time
from pathlib import Path

import pytest
from httplint import HttpRequestLinter, HttpResponseLinter, levels

from conftest import SOCKET_TIMEOUT, start_server, stop_server

#: A page large enough to get gzip and brotli variants (≥ 256 bytes, ≥ 10 % saved).
INDEX_HTML = (
    "<!doctype html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\">"
    "<title>atomserve httplint fixture</title>\n"
    "<script type=\"module\" src=\"/assets/app-Ab12Cd34.js\"></script></head>\n<body>\n"
    + "".join(f"<p>Paragraph {i}: the quick brown fox jumps over the lazy dog.</p>\n"
              for i in range(40))
    + "</body>\n</html>\n"
).encode("utf-8")
#: A Vite-fingerprinted asset (hash ≥ 8 characters): `immutable` caching.
APP_JS = ("export const answer = 42;\n"
          + "".join(f"console.log('line {i} of the bundle');\n" for i in range(60))).encode()
STYLE_CSS = b"body { margin: 0; font-family: sans-serif; }\n" * 20
DOCS_INDEX_HTML = (
    b"<!doctype html>\n<html><head><title>docs</title></head><body>docs</body></html>\n")
LOGO_PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000001e221bc330000000049454e44ae426082")

FILES = {
    "index.html": INDEX_HTML,
    "assets/app-Ab12Cd34.js": APP_JS,
    "style.css": STYLE_CSS,
    "docs/index.html": DOCS_INDEX_HTML,
    "logo.png": LOGO_PNG,
    "404.html": b"<!doctype html>\n<html><head><title>not found</title></head><body>not here</body></html>\n",
    # Every response carries these; /assets/* gets its Cache-Control from here (the same value
    # atomserve gives a fingerprinted asset, now by rule).
    "_headers": (b"/*\n  Content-Security-Policy: default-src 'self'\n  X-Frame-Options: DENY\n"
                 b"  Referrer-Policy: no-referrer\n/assets/*\n  Cache-Control: max-age=31536000, immutable\n"),
    "_redirects": (b"/old /docs/ 301\n/moved/* /docs/:splat 308\n/go /docs/?from=go 302\n"
                   b"/app/* /index.html 200\n/private/* /404.html 404!\n"),
}


@pytest.fixture(scope="module")
def lint_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("atomserve-httplint")
    for rel, content in FILES.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return root


@pytest.fixture(scope="module")
def lint_server(lint_root):
    # A 1 s header timeout makes the 408 case quick; every other request is sent at once.
    srv = start_server(lint_root, "--header-timeout", "1s", "--header", "X-Content-Type-Options: nosniff")
    yield srv
    stop_server(srv)


# --------------------------------------------------------------------------------------------
# Raw exchange
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Exchange:
    request: bytes
    method: bytes
    status_line: bytes
    fields: list
    content: bytes

    @property
    def status(self) -> int:
        return int(self.status_line.split(b" ", 2)[1])

    def field(self, name: str) -> str | None:
        for k, v in self.fields:
            if k.lower() == name.lower().encode():
                return v.decode("latin-1")
        return None


def _recv_head(sock: socket.socket, buf: bytearray) -> bytes:
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed before a complete head: {bytes(buf)!r}")
        buf += chunk
    head, _, rest = bytes(buf).partition(b"\r\n\r\n")
    buf[:] = rest
    return head


def exchange(port: int, raw: bytes) -> Exchange:
    """Sends `raw` on a fresh connection and reads one response."""
    method = raw.split(b" ", 1)[0]
    with socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT) as sock:
        sock.settimeout(SOCKET_TIMEOUT)
        try:
            sock.sendall(raw)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may answer and close before reading everything
        buf = bytearray()
        head = _recv_head(sock, buf)
        status_line, *lines = head.split(b"\r\n")
        fields = []
        for line in lines:
            name, colon, value = line.partition(b":")
            assert colon and name and name == name.strip(), f"malformed field line {line!r}"
            fields.append((name, value.strip(b" \t")))
        ex = Exchange(raw, method, status_line, fields, b"")
        no_content = method == b"HEAD" or ex.status in (204, 304) or ex.status < 200
        length = ex.field("Content-Length")
        if not no_content:
            assert length is not None, f"no Content-Length on {status_line!r}"
            while len(buf) < int(length):
                chunk = sock.recv(65536)
                assert chunk, "connection closed mid-content"
                buf += chunk
        want = 0 if no_content else int(length)
        ex.content = bytes(buf[:want])
        assert len(buf) == want, f"{len(buf) - want} stray bytes after the response"
        return ex


def _request_linter(raw: bytes, start: float) -> HttpRequestLinter:
    head = raw.split(b"\r\n\r\n", 1)[0]
    top, *lines = head.split(b"\r\n")
    req = HttpRequestLinter(start_time=start)
    parts = top.split(b" ")
    if len(parts) == 3:
        req.process_request_topline(parts[0], parts[1], parts[2].rpartition(b"/")[2])
    fields = []
    for line in lines:
        name, colon, value = line.partition(b":")
        if colon:
            fields.append((name, value.strip(b" \t")))
    req.process_headers(fields)
    req.finish_content(True)
    return req


def lint(ex: Exchange, start: float) -> HttpResponseLinter:
    req = _request_linter(ex.request, start)
    resp = HttpResponseLinter(start_time=start, _related=req)
    resp.is_head_response = ex.method == b"HEAD"
    version, status, phrase = (ex.status_line.split(b" ", 2) + [b""])[:3]
    resp.process_response_topline(version.rpartition(b"/")[2], status, phrase)
    resp.process_headers(ex.fields)
    resp.feed_content(ex.content)
    resp.finish_content(True)
    return resp


def flatten(notes):
    for note in notes:
        yield note
        yield from flatten(note.subnotes)


# --------------------------------------------------------------------------------------------
# The cases
# --------------------------------------------------------------------------------------------

UA = "User-Agent: atomserve-httplint-test\r\n"


def get(target: str, *fields: str, method: str = "GET", version: str = "1.1") -> bytes:
    extra = "".join(f"{f}\r\n" for f in fields)
    return f"{method} {target} HTTP/{version}\r\nHost: 127.0.0.1\r\n{UA}{extra}\r\n".encode()


#: Notes httplint gives on every response of a status code, whatever the server does: they say
#: the *request* was refused, and these requests are malformed on purpose.
REFUSED_ON_PURPOSE = {
    "STATUS_BAD_REQUEST": "the request is malformed on purpose (noted on every 400)",
    "STATUS_URI_TOO_LONG": "the target is over --max-request-line on purpose (noted on every 414)",
    "STATUS_VERSION_NOT_SUPPORTED": "the request says HTTP/2.0 on purpose (noted on every 505)",
}

#: httplint decodes a 206's content through its Content-Encoding as if it were the whole
#: representation, but RFC 9110 §14.1.2 defines ranges on the *encoded* bytes: a slice of a
#: brotli stream is not a brotli stream. The case checks the slice against the full encoded
#: representation instead (test_range_of_encoded_representation).
RANGE_OF_ENCODED = {
    "BAD_BROTLI": "a range of the br representation is not a brotli stream (RFC 9110 §14.1.2)",
}

#: WARN notes allowed on every response, with the reason each is not a defect.
ALLOWED_WARN: dict[str, str] = {
    # None: `public` used to be allowed here (STORE_PUBLIC_UNNECESSARY) as part of the default
    # Cache-Control policies; it is redundant on responses to requests without Authorization,
    # so the defaults no longer carry it and httplint's note fails a case again.
}


@dataclasses.dataclass
class Case:
    kind: str
    status: int
    raw: bytes
    #: Notes (any level) this case may get, by class name, with the reason.
    expected: dict = dataclasses.field(default_factory=dict)
    #: Before sending, GET this (target, *fields) and substitute {etag} and {last_modified}
    #: in `raw` from that response.
    validators_from: tuple | None = None
    #: For a full 200: the file whose bytes httplint must have decoded from the content.
    file: str | None = None
    admin: bool = False


CASES = [
    Case("200 HTML", 200, get("/"), file="index.html"),
    Case("200 HTML, SPA fallback", 200, get("/some/client/route"), file="index.html"),
    Case("200 HTML over HTTP/1.0", 200, get("/index.html", version="1.0"), file="index.html"),
    Case("200 hashed JS asset (immutable)", 200, get("/assets/app-Ab12Cd34.js"),
         file="assets/app-Ab12Cd34.js"),
    Case("200 CSS (default Cache-Control)", 200, get("/style.css"), file="style.css"),
    Case("200 PNG (no variants)", 200, get("/logo.png", "Accept-Encoding: gzip, br"),
         file="logo.png"),
    Case("200 br representation", 200, get("/", "Accept-Encoding: gzip, deflate, br"),
         file="index.html"),
    Case("200 gzip representation", 200,
         get("/assets/app-Ab12Cd34.js", "Accept-Encoding: gzip"), file="assets/app-Ab12Cd34.js"),
    Case("200 HEAD", 200, get("/", method="HEAD")),
    Case("200 HEAD br", 200, get("/", "Accept-Encoding: br", method="HEAD")),
    Case("206 single range, identity", 206, get("/style.css", "Range: bytes=10-99")),
    Case("206 suffix range, br", 206, get("/", "Accept-Encoding: br", "Range: bytes=-50"),
         expected=RANGE_OF_ENCODED),
    Case("206 If-Range ETag", 206, get("/style.css", "Range: bytes=0-9", "If-Range: {etag}"),
         validators_from=("/style.css",)),
    Case("304 If-None-Match", 304, get("/", "Accept-Encoding: br", "If-None-Match: {etag}"),
         validators_from=("/", "Accept-Encoding: br")),
    Case("304 If-Modified-Since", 304,
         get("/assets/app-Ab12Cd34.js", "If-Modified-Since: {last_modified}"),
         validators_from=("/assets/app-Ab12Cd34.js",)),
    Case("412 If-Match", 412, get("/style.css", 'If-Match: "no-such-tag"')),
    Case("416 range past the end", 416, get("/style.css", "Range: bytes=100000-")),
    Case("301 directory without slash", 301, get("/docs?x=1")),
    Case("404 missing asset (the root's 404.html)", 404, get("/assets/missing-0123abcd.js")),
    Case("301 _redirects", 301, get("/old")),
    Case("308 _redirects splat", 308, get("/moved/a/b")),
    Case("302 _redirects with its own query", 302, get("/go?x=1")),
    Case("200 _redirects rewrite", 200, get("/app/settings"), file="index.html"),
    Case("404 forced _redirects rule", 404, get("/private/key")),
    Case("404 HEAD", 404, get("/assets/missing-0123abcd.js", method="HEAD")),
    Case("405 POST", 405, get("/", "Content-Length: 0", method="POST")),
    Case("204 OPTIONS", 204, get("/", method="OPTIONS")),
    Case("501 unknown method", 501, get("/", method="BREW")),
    Case("505 HTTP/2.0", 505, get("/", version="2.0"), expected=REFUSED_ON_PURPOSE),
    Case("400 no Host", 400, f"GET / HTTP/1.1\r\n{UA}\r\n".encode(), expected=REFUSED_ON_PURPOSE),
    Case("200 GET with a chunked body", 200, get("/", "Transfer-Encoding: chunked") + b"3\r\nabc\r\n0\r\n\r\n"),
    Case("400 Transfer-Encoding with Content-Length", 400,
         get("/", "Transfer-Encoding: chunked", "Content-Length: 5") + b"0\r\n\r\n",
         expected=REFUSED_ON_PURPOSE),
    Case("400 path above the root", 400, get("/../etc/passwd"), expected=REFUSED_ON_PURPOSE),
    Case("413 body too large", 413, get("/", "Content-Length: 2000000", method="POST")),
    Case("414 request line too long", 414, get("/" + "a" * 9000), expected=REFUSED_ON_PURPOSE),
    Case("431 head too large", 431, get("/", *(f"X-Filler-{i}: {'v' * 200}" for i in range(90)))),
    # An unfinished head: the 1 s --header-timeout answers it (within the 1 s timer sweep).
    Case("408 head timeout", 408, b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n"),
    Case("admin 200 /healthz", 200, get("/healthz"), admin=True),
    Case("admin 200 /metrics", 200, get("/metrics"), admin=True),
    Case("admin 200 /stats", 200, get("/stats"), admin=True),
    Case("admin 404", 404, get("/nope"), admin=True),
]

#: Real defects httplint finds, by case kind: the case is an xfail while that note (and only
#: it) is given, and fails once the server is fixed, so that the entry goes.
KNOWN_DEFECTS: dict[str, str] = {}

#: One line per case for the summary printed at the end of the module.
SUMMARY: list = []


@pytest.fixture(scope="module", autouse=True)
def print_summary(request):
    yield
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print("\nhttplint notes per response kind (good/info/warn/bad; allowed or known notes):")
        for line in SUMMARY:
            print("  " + line)


def check(ex: Exchange, start: float, kind: str, expected: dict) -> HttpResponseLinter:
    """Lints `ex`; fails on a BAD note or a WARN that is neither allowed nor expected."""
    resp = lint(ex, start)
    notes = list(flatten(resp.notes))
    count = {lv: sum(n.level is lv for n in notes) for lv in levels}
    excused = sorted({type(n).__name__ for n in notes if type(n).__name__ in expected
                      or (n.level is levels.WARN and type(n).__name__ in ALLOWED_WARN)})
    if kind in KNOWN_DEFECTS:
        excused.append(f"known defect {KNOWN_DEFECTS[kind]}")
    SUMMARY.append(
        f"{kind:34} {ex.status}  {count[levels.GOOD]}/{count[levels.INFO]}/"
        f"{count[levels.WARN]}/{count[levels.BAD]}  {', '.join(excused)}".rstrip())
    unexcused = [
        f"[{n.level.name}] {type(n).__name__}: {n.summary}"
        for n in notes
        if n.level in (levels.WARN, levels.BAD) and type(n).__name__ not in expected
        and not (n.level is levels.WARN and type(n).__name__ in ALLOWED_WARN)
    ]
    if kind in KNOWN_DEFECTS:
        names = {line.split(" ")[1].rstrip(":") for line in unexcused}
        if names == {KNOWN_DEFECTS[kind]}:
            pytest.xfail(f"known defect: {KNOWN_DEFECTS[kind]}")
        assert unexcused, f"{kind}: {KNOWN_DEFECTS[kind]} is fixed; remove it from KNOWN_DEFECTS"
    assert not unexcused, (f"{kind}: {ex.status_line!r} {ex.fields!r}", unexcused)
    return resp


def fetch(port: int, case: Case) -> Exchange:
    raw = case.raw
    if case.validators_from:
        target, *fields = case.validators_from
        first = exchange(port, get(target, *fields))
        raw = raw.replace(b"{etag}", first.field("ETag").encode()).replace(
            b"{last_modified}", first.field("Last-Modified").encode())
    return exchange(port, raw)


@pytest.mark.parametrize("case", CASES, ids=[c.kind for c in CASES])
def test_response_kind(lint_server, case):
    port = lint_server.admin_port if case.admin else lint_server.port
    start = time.time()
    ex = fetch(port, case)
    assert ex.status == case.status, (ex.status_line, ex.fields, ex.content[:200])
    resp = check(ex, start, case.kind, case.expected)
    if case.file:
        # httplint undid the Content-Encoding (if any) and saw the whole file.
        assert resp.content_decoded
        assert resp.decoded.length == len(FILES[case.file]), (resp.decoded.length, case.file)


def test_range_of_encoded_representation(lint_server):
    """The br 206 that httplint cannot decode is exactly the tail of the br representation."""
    whole = exchange(lint_server.port, get("/", "Accept-Encoding: br"))
    part = exchange(lint_server.port, get("/", "Accept-Encoding: br", "Range: bytes=-50"))
    assert whole.field("Content-Encoding") == part.field("Content-Encoding") == "br"
    assert whole.field("ETag") == part.field("ETag")
    n = len(whole.content)
    assert part.field("Content-Range") == f"bytes {n - 50}-{n - 1}/{n}"
    assert part.content == whole.content[-50:]


def test_503_over_max_connections(lint_root):
    """The acceptor's fixed 503 (Retry-After: 1) when --max-connections is reached."""
    srv = start_server(lint_root, "--max-connections", "1")
    try:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=SOCKET_TIMEOUT) as held:
            # The first connection is served (and so counted) before the second one arrives.
            held.settimeout(SOCKET_TIMEOUT)
            held.sendall(get("/style.css"))
            assert held.recv(65536).startswith(b"HTTP/1.1 200 ")
            start = time.time()
            ex = exchange(srv.port, get("/"))
            assert ex.status == 503, ex.status_line
            assert ex.field("Retry-After") == "1"
            # RFC 9110 §6.6.1: Date is a MUST on 2xx-4xx only, a MAY on 5xx. This 503 is a
            # fixed byte string the acceptor writes without reading a clock.
            no_date = {"DATE_CLOCKLESS": "Date is optional on 5xx (RFC 9110 §6.6.1)"}
            check(ex, start, "503 over --max-connections", no_date)
    finally:
        stop_server(srv)

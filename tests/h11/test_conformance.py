"""HTTP/1.1 conformance of atomserve, checked by h11 as an independent parser.

Every response is parsed by a strict h11 client connection; anything h11 refuses raises
h11.RemoteProtocolError and fails the test. Requests are serialised by h11 too, except the
deliberately broken ones, which go out as raw bytes (see conftest.raw_request).
"""

from __future__ import annotations

import socket
import time

import h11
import pytest

from conftest import (
    APP_JS,
    DOCS_INDEX_HTML,
    INDEX_HTML,
    SECRET,
    STYLE_CSS,
    assert_common_headers,
    assert_length_matches,
    connect,
    new_client,
    raw_request,
    read_response,
    request,
    send_request,
    server_closed,
    start_server,
    stop_server,
)

HTML = "text/html; charset=utf-8"
ALLOW = "GET, HEAD, OPTIONS"


def assert_file(reply, body: bytes, content_type: str) -> None:
    assert reply.status == 200, (reply.status, reply.body[:200])
    assert reply.header("Content-Type") == content_type
    assert_length_matches(reply)
    assert reply.body == body
    assert_common_headers(reply)


def assert_error(reply, status: int) -> None:
    """A generated error page: the status, a text body of the length announced."""
    assert reply.status == status, (reply.status, reply.body[:200])
    assert reply.header("Content-Type") == "text/plain; charset=utf-8"
    assert_length_matches(reply)
    assert reply.body.strip(), "empty error body"
    assert_common_headers(reply)


# --------------------------------------------------------------------------------------------
# GET and HEAD
# --------------------------------------------------------------------------------------------


def test_get_root(server):
    reply = request(server.port, "GET", "/")
    assert_file(reply, INDEX_HTML, HTML)
    assert reply.header("Content-Length") == str(len(INDEX_HTML))
    assert reply.response.http_version == b"1.1"
    assert reply.response.reason == b"OK"
    # HTTP/1.1 default: the connection stays open, and h11 agrees.
    assert reply.header("Connection") is None
    assert reply.conn.their_state is h11.DONE
    assert reply.conn.our_state is h11.DONE


def test_head_root(server):
    with connect(server.port) as sock:
        conn = new_client()
        send_request(sock, conn, "HEAD", "/")
        head = read_response(sock, conn)
        assert head.status == 200
        assert head.header("Content-Type") == HTML
        assert head.header("Content-Length") == str(len(INDEX_HTML))
        assert head.body == b""
        assert head.trailing == b"", f"HEAD response carried body bytes: {head.trailing[:100]!r}"
        assert_common_headers(head)
        # No body bytes may follow the head: the next response on the connection must parse.
        conn.start_next_cycle()
        send_request(sock, conn, "GET", "/")
        get = read_response(sock, conn)
        assert_file(get, INDEX_HTML, HTML)
        assert get.trailing == b""


def test_head_of_404_has_no_body(server):
    reply = request(server.port, "HEAD", "/missing.js")
    assert reply.status == 404
    assert int(reply.header("Content-Length")) > 0
    assert reply.body == b""
    assert_common_headers(reply)


# A request whose head parses but is refused still names its method. For HEAD, RFC 9110 §9.3.2
# says the response ends with its header section; a body here desynchronises the client (h11
# sees the body bytes as stray data after the response).
HEAD_REFUSED = {
    "nul-in-path": (b"HEAD /a%00b HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    "path-above-root": (b"HEAD /../x HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    "no-host": (b"HEAD / HTTP/1.1\r\n\r\n", 400),
    "transfer-encoding-not-chunked-last": (
        b"HEAD / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
        400,
    ),
    "body-over-1mib": (b"HEAD / HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n", 413),
}


# Regression: Conn::fail() used to write the error body even for HEAD (found by this suite).
@pytest.mark.parametrize("raw, status", HEAD_REFUSED.values(), ids=HEAD_REFUSED.keys())
def test_head_refused_has_no_body(server, raw, status):
    reply = raw_request(server.port, raw, method="HEAD")
    assert reply.status == status
    assert reply.header("Connection") == "close"
    assert reply.body == b""
    assert reply.closed  # asserts nothing follows the header section


STATIC_FILES = [
    # (request-target, expected body, expected Content-Type)
    ("/index.html", INDEX_HTML, HTML),
    ("/assets/app-abc123.js", APP_JS, "text/javascript; charset=utf-8"),
    ("/style.css", STYLE_CSS, "text/css; charset=utf-8"),
    ("/docs/index.html", DOCS_INDEX_HTML, HTML),
    ("/style.css?v=3#frag", STYLE_CSS, "text/css; charset=utf-8"),
    ("/assets/../style.css", STYLE_CSS, "text/css; charset=utf-8"),
    ("/assets/app%2Dabc123.js", APP_JS, "text/javascript; charset=utf-8"),
    ("http://example.test/style.css", STYLE_CSS, "text/css; charset=utf-8"),
]


@pytest.mark.parametrize(
    "target, body, content_type", STATIC_FILES, ids=[t for t, _, _ in STATIC_FILES]
)
def test_static_files(server, target, body, content_type):
    assert_file(request(server.port, "GET", target), body, content_type)


# --------------------------------------------------------------------------------------------
# Connection management
# --------------------------------------------------------------------------------------------


def test_keep_alive_50_requests(server):
    targets = [
        ("/", INDEX_HTML),
        ("/style.css", STYLE_CSS),
        ("/assets/app-abc123.js", APP_JS),
        ("/docs/", DOCS_INDEX_HTML),
        ("/users/7", INDEX_HTML),
    ]
    with connect(server.port) as sock:
        conn = new_client()
        for i in range(50):
            if i:
                conn.start_next_cycle()
            target, body = targets[i % len(targets)]
            send_request(sock, conn, "GET", target)
            reply = read_response(sock, conn)
            assert reply.status == 200, (i, target, reply.status)
            assert reply.body == body, (i, target)
            assert_length_matches(reply)
            assert reply.trailing == b"", (i, reply.trailing[:100])
            assert reply.header("Connection") is None, (i, reply.header("Connection"))
            assert conn.their_state is h11.DONE, (i, conn.their_state)


def test_pipelined_requests(server):
    """Three requests in one write; the answers come back in order and each parses."""
    requests = [("GET", "/style.css", STYLE_CSS), ("HEAD", "/", b""), ("GET", "/", INDEX_HTML)]
    wire = b""
    for method, target, _ in requests:
        c = new_client()
        wire += c.send(h11.Request(method=method, target=target, headers=[("Host", "x")]))
        wire += c.send(h11.EndOfMessage())
    with connect(server.port) as sock:
        sock.sendall(wire)
        conn = new_client()
        for i, (method, target, body) in enumerate(requests):
            if i:
                conn.start_next_cycle()
            conn.send(h11.Request(method=method, target=target, headers=[("Host", "x")]))
            conn.send(h11.EndOfMessage())
            reply = read_response(sock, conn)
            assert reply.status == 200, (method, target, reply.status)
            assert reply.body == body, (method, target)
            assert_common_headers(reply)
        assert conn.trailing_data[0] == b""


def test_request_sent_byte_by_byte(server):
    """A head that arrives in many segments is reassembled (the partial-request path)."""
    conn = new_client()
    wire = conn.send(h11.Request(method="GET", target="/style.css", headers=[("Host", "x")]))
    wire += conn.send(h11.EndOfMessage())
    with connect(server.port) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(len(wire)):
            sock.sendall(wire[i : i + 1])
            time.sleep(0.002)
        reply = read_response(sock, conn)
        assert_file(reply, STYLE_CSS, "text/css; charset=utf-8")
        assert reply.trailing == b""


def test_large_request_body_is_discarded(server):
    """A 300 kB POST body, sent in pieces, is skipped; the next request on the connection works."""
    body = bytes(range(256)) * 1200
    with connect(server.port) as sock:
        conn = new_client()
        wire = conn.send(h11.Request(
            method="POST", target="/", headers=[("Host", "x"), ("Content-Length", str(len(body)))]))
        wire += conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage())
        for i in range(0, len(wire), 32 * 1024):
            sock.sendall(wire[i : i + 32 * 1024])
        reply = read_response(sock, conn)
        assert_error(reply, 405)
        assert reply.header("Connection") is None
        conn.start_next_cycle()
        send_request(sock, conn, "GET", "/assets/app-abc123.js")
        assert_file(read_response(sock, conn), APP_JS, "text/javascript; charset=utf-8")


def test_http10_without_keep_alive_closes(server):
    # h11 only sends HTTP/1.1, so the request goes out raw.
    reply = raw_request(server.port, b"GET / HTTP/1.0\r\n\r\n")
    assert_file(reply, INDEX_HTML, HTML)
    assert reply.header("Connection") == "close"
    assert reply.states_at_end == (h11.MUST_CLOSE, h11.MUST_CLOSE)
    assert reply.closed, "server kept an HTTP/1.0 connection open without keep-alive"


def test_http10_with_keep_alive_stays_open(server):
    with connect(server.port) as sock:
        conn = new_client()
        for i in range(2):
            if i:
                conn.start_next_cycle()
            conn.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))
            conn.send(h11.EndOfMessage())
            sock.sendall(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            reply = read_response(sock, conn)
            assert_file(reply, INDEX_HTML, HTML)
            assert reply.header("Connection") == "keep-alive"
            assert conn.their_state is h11.DONE


def test_connection_close_request(server):
    with connect(server.port) as sock:
        conn = new_client()
        send_request(sock, conn, "GET", "/", headers=[("Host", "x"), ("Connection", "close")])
        reply = read_response(sock, conn)
        assert_file(reply, INDEX_HTML, HTML)
        assert reply.header("Connection") == "close"
        assert server_closed(sock, conn)


# --------------------------------------------------------------------------------------------
# Resolution: 404, SPA fallback, directories, dotfiles
# --------------------------------------------------------------------------------------------


def test_missing_asset_is_404(server):
    assert_error(request(server.port, "GET", "/missing.js"), 404)


def test_missing_asset_is_404_without_spa(server_no_spa):
    assert_error(request(server_no_spa.port, "GET", "/missing.js"), 404)


def test_spa_fallback(server):
    assert_file(request(server.port, "GET", "/users/42"), INDEX_HTML, HTML)


def test_no_spa_fallback(server_no_spa):
    assert_error(request(server_no_spa.port, "GET", "/users/42"), 404)
    # Real files are still served.
    assert_file(request(server_no_spa.port, "GET", "/"), INDEX_HTML, HTML)


def test_directory_redirect(server):
    reply = request(server.port, "GET", "/docs")
    assert reply.status == 301
    assert reply.header("Location") == "/docs/"
    assert_length_matches(reply)
    assert_common_headers(reply)


def test_directory_redirect_keeps_query(server):
    reply = request(server.port, "GET", "/docs?page=2")
    assert reply.status == 301
    assert reply.header("Location") == "/docs/?page=2"
    assert_length_matches(reply)
    assert_common_headers(reply)


def test_directory_redirect_head_has_no_body(server):
    reply = request(server.port, "HEAD", "/docs")
    assert reply.status == 301
    assert reply.header("Location") == "/docs/"
    assert reply.body == b""
    assert int(reply.header("Content-Length")) > 0


def test_directory_index(server):
    assert_file(request(server.port, "GET", "/docs/"), DOCS_INDEX_HTML, HTML)


@pytest.mark.parametrize("target", ["/.secret", "/%2Esecret", "/docs/../.secret"])
def test_dotfile_never_served(server, server_no_spa, target):
    spa = request(server.port, "GET", target)
    assert SECRET not in spa.body
    # A dot segment gets 404 even with the SPA fallback on (it used to get the app shell with
    # 200, which scanners report as an exposed file): no client-side route starts with a dot.
    assert_error(spa, 404)
    assert_error(request(server_no_spa.port, "GET", target), 404)


# --------------------------------------------------------------------------------------------
# Methods
# --------------------------------------------------------------------------------------------


def test_post_is_405(server):
    with connect(server.port) as sock:
        conn = new_client()
        send_request(sock, conn, "POST", "/", body=b"name=value&other=thing")
        reply = read_response(sock, conn)
        assert_error(reply, 405)
        assert reply.header("Allow") == ALLOW
        # The request body was read and discarded: the connection still works.
        assert conn.their_state is h11.DONE
        conn.start_next_cycle()
        send_request(sock, conn, "GET", "/style.css")
        assert_file(read_response(sock, conn), STYLE_CSS, "text/css; charset=utf-8")


def test_options_is_204(server):
    with connect(server.port) as sock:
        conn = new_client()
        send_request(sock, conn, "OPTIONS", "/")
        reply = read_response(sock, conn)
        assert reply.status == 204
        assert reply.header("Allow") == ALLOW
        assert reply.body == b""
        # RFC 9110 §8.6: no Content-Length in a 204.
        assert reply.header("Content-Length") is None
        assert reply.trailing == b""
        assert_common_headers(reply)
        conn.start_next_cycle()
        send_request(sock, conn, "GET", "/")
        assert_file(read_response(sock, conn), INDEX_HTML, HTML)


def test_unknown_method_is_501(server):
    # BREW is a valid token, so h11 sends it and knows what the response answers.
    reply = request(server.port, "BREW", "/")
    assert_error(reply, 501)


def test_lowercase_method_is_501(server):
    # Methods are case-sensitive (RFC 9110 §9.1): `get` is not GET.
    reply = request(server.port, "get", "/")
    assert_error(reply, 501)


# --------------------------------------------------------------------------------------------
# Malformed and oversized requests: an error status, Connection: close, then the server closes
# --------------------------------------------------------------------------------------------


def _headers(count: int, value_len: int = 1) -> bytes:
    return b"".join(b"X-Field-%d: %s\r\n" % (i, b"v" * value_len) for i in range(count))


BAD_REQUESTS = {
    "garbage": (b"GARBAGE\r\n\r\n", 400),
    "http2-version": (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505),
    "request-line-over-8k": (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    # 20 fields of ~1 KiB: well under the field-count limit, over the 16 KiB head limit.
    "header-block-over-16k": (
        b"GET / HTTP/1.1\r\nHost: x\r\n" + _headers(20, 1000) + b"\r\n",
        431,
    ),
    # Host plus 100 more: 101 fields, one over the limit.
    "101-header-fields": (b"GET / HTTP/1.1\r\nHost: x\r\n" + _headers(100) + b"\r\n", 431),
    "chunked-with-content-length": (
        b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
        400,
    ),
    "chunked-bad-size": (
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        400,
    ),
    "unknown-transfer-coding": (
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: br, chunked\r\n\r\n0\r\n\r\n",
        501,
    ),
    "http11-without-host": (b"GET / HTTP/1.1\r\nAccept: */*\r\n\r\n", 400),
    "two-hosts": (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    "two-content-lengths": (
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nab",
        400,
    ),
    "space-before-colon": (b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400),
    "path-above-root": (b"GET /../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    "nul-in-path": (b"GET /a%00b HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    "body-over-1mib": (
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n",
        413,
    ),
}


@pytest.mark.parametrize("raw, status", BAD_REQUESTS.values(), ids=BAD_REQUESTS.keys())
def test_bad_request_closes(server, raw, status):
    reply = raw_request(server.port, raw)
    assert_error(reply, status)
    assert reply.header("Connection") == "close"
    assert reply.states_at_end == (h11.MUST_CLOSE, h11.MUST_CLOSE)
    assert reply.closed, f"server kept the connection open after {status}"


# Just inside each limit, the same requests are served: the limits are where they claim to be.
# (raw request, whether the server closes after answering)
WITHIN_LIMITS = {
    "request-line-8000": (b"GET /" + b"a" * 7980 + b" HTTP/1.1\r\nHost: x\r\n\r\n", False),
    "header-block-15k": (
        b"GET / HTTP/1.1\r\nHost: x\r\n" + _headers(15, 1000) + b"\r\n",
        False,
    ),
    "100-header-fields": (b"GET / HTTP/1.1\r\nHost: x\r\n" + _headers(99) + b"\r\n", False),
    "http10-without-host": (b"GET / HTTP/1.0\r\n\r\n", True),
    "leading-empty-lines": (
        b"\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        True,
    ),
}


@pytest.mark.parametrize("raw, closes", WITHIN_LIMITS.values(), ids=WITHIN_LIMITS.keys())
def test_within_limits_is_served(server, raw, closes):
    reply = raw_request(server.port, raw, await_close=closes)
    assert_file(reply, INDEX_HTML, HTML)
    assert reply.trailing == b""
    if closes:
        assert reply.header("Connection") == "close"
        assert reply.closed
    else:
        assert reply.header("Connection") is None
        assert reply.states_at_end == (h11.DONE, h11.DONE)


# --------------------------------------------------------------------------------------------
# Admin listener
# --------------------------------------------------------------------------------------------


def test_admin_healthz(server):
    reply = request(server.admin_port, "GET", "/healthz")
    assert reply.status == 200
    assert reply.body == b"ok\n"
    assert reply.header("Cache-Control") == "no-store"
    assert reply.header("Content-Type") == "text/plain; charset=utf-8"
    assert_length_matches(reply)
    assert_common_headers(reply)


def test_admin_unknown_path_is_404(server):
    assert_error(request(server.admin_port, "GET", "/index.html"), 404)


def test_public_port_has_no_healthz(server):
    # /healthz on the public listener is just another SPA route.
    assert_file(request(server.port, "GET", "/healthz"), INDEX_HTML, HTML)


# --------------------------------------------------------------------------------------------
# Shutdown
# --------------------------------------------------------------------------------------------


def test_sigterm_drains(doc_root):
    """SIGTERM: idle connections are closed, a request in flight is answered (with
    Connection: close), new connections are refused, and the process exits 0."""
    srv = start_server(doc_root)
    try:
        with connect(srv.port) as idle, connect(srv.port) as busy:
            conn = new_client()
            send_request(idle, conn, "GET", "/")
            assert read_response(idle, conn).status == 200
            busy.sendall(b"GET /style.css HTTP/1.1\r\nHo")
            time.sleep(0.2)  # let the server read the first half
            srv.terminate()
            assert idle.recv(1) == b"", "idle keep-alive connection not closed on SIGTERM"
            busy.sendall(b"st: x\r\n\r\n")
            busy_conn = new_client()
            busy_conn.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))
            busy_conn.send(h11.EndOfMessage())
            reply = read_response(busy, busy_conn)
            assert_file(reply, STYLE_CSS, "text/css; charset=utf-8")
            assert reply.header("Connection") == "close"
            assert server_closed(busy, busy_conn)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", srv.port), timeout=1).close()
            except ConnectionRefusedError:
                break
            time.sleep(0.05)
        else:
            pytest.fail("the listener still accepts connections after SIGTERM")
    finally:
        stop_server(srv)
    assert "draining" in srv.stderr_text()

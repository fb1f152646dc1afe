//! End-to-end HTTP behaviour over real loopback sockets against the real binary.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::*;

fn server(name: &str, args: &[&str]) -> (Root, Server) {
    let root = fixture_root(name);
    let server = Server::start(&root.path, args);
    (root, server)
}

#[test]
fn serves_files_with_type_length_and_standard_fields() {
    let (_root, s) = server("basic", &[]);
    let r = s.get("/");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), INDEX);
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(r.header("content-length"), Some(INDEX.len().to_string().as_str()));
    assert_eq!(r.header("server"), Some("atomserve"));
    let date = r.header("date").expect("Date");
    assert!(date.ends_with(" GMT") && date.len() == 29, "IMF-fixdate: {date}");
    assert_eq!(r.header("connection"), Some("close"));

    let js = s.get("/assets/app-Ab12Cd34.js");
    assert_eq!((js.status, js.text().as_str()), (200, APP_JS));
    assert_eq!(js.header("content-type"), Some("text/javascript; charset=utf-8"));
    assert_eq!(s.get("/assets/style-Zz9.css").header("content-type"), Some("text/css; charset=utf-8"));
    assert_eq!(s.get("/assets/logo.svg").header("content-type"), Some("image/svg+xml; charset=utf-8"));
    assert_eq!(s.get("/data.bin").header("content-type"), Some("application/octet-stream"));
    assert_eq!(s.get("/a%20b.txt").text(), "space\n");
    // The query string is ignored for lookup.
    assert_eq!(s.get("/assets/app-Ab12Cd34.js?v=2").text(), APP_JS);
    // Absolute-form targets are served too (RFC 9112 §3.2.2).
    assert_eq!(s.get("http://test/assets/app-Ab12Cd34.js").text(), APP_JS);
}

#[test]
fn big_file_arrives_intact() {
    let (_root, s) = server("bigfile", &[]);
    let r = s.get("/big.bin");
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), BIG_LEN);
    assert!(r.body.iter().enumerate().all(|(i, &b)| b == big_byte(i)), "5 MiB body corrupted");
}

#[test]
fn two_hundred_keep_alive_requests_on_one_connection() {
    let (_root, s) = server("keepalive", &[]);
    let mut c = s.connect();
    for i in 0..200 {
        let path = if i % 2 == 0 { "/" } else { "/assets/app-Ab12Cd34.js" };
        write!(c, "GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        let r = read_response(&mut c, false).expect("response");
        assert_eq!(r.status, 200, "request {i}");
        assert_eq!(r.header("connection"), None, "HTTP/1.1 keep-alive needs no Connection field");
        assert_eq!(r.text(), if i % 2 == 0 { INDEX } else { APP_JS });
    }
}

#[test]
fn thirty_two_pipelined_requests_answered_in_order() {
    let (_root, s) = server("pipeline", &[]);
    let paths = ["/", "/assets/app-Ab12Cd34.js", "/docs/", "/missing.js", "/docs/deep/page.txt"];
    let mut batch = Vec::new();
    for i in 0..32 {
        write!(batch, "GET {} HTTP/1.1\r\nHost: t\r\n\r\n", paths[i % paths.len()]).unwrap();
    }
    let mut c = s.connect();
    c.write_all(&batch).unwrap(); // all 32 in one write
    for i in 0..32 {
        let r = read_response(&mut c, false).expect("response");
        let want: (u16, &str) = match paths[i % paths.len()] {
            "/" => (200, INDEX),
            "/assets/app-Ab12Cd34.js" => (200, APP_JS),
            "/docs/" => (200, DOCS_INDEX),
            "/missing.js" => (404, "Not Found\n"),
            _ => (200, "deep\n"),
        };
        assert_eq!((r.status, r.text().as_str()), want, "response {i} out of order or wrong");
    }
}

#[test]
fn pipelined_requests_split_at_every_byte_boundary() {
    let (_root, s) = server("split", &[]);
    let req = b"GET /docs/deep/page.txt HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n";
    for cut in [1, 5, 17, 30, 44, 45, 46, 60] {
        let mut c = s.connect();
        c.write_all(&req[..cut]).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        c.write_all(&req[cut..]).unwrap();
        assert_eq!(read_response(&mut c, false).unwrap().text(), "deep\n", "cut at {cut}");
        assert_eq!(read_response(&mut c, false).unwrap().text(), INDEX, "cut at {cut}");
    }
}

#[test]
fn http10_closes_by_default_and_keeps_alive_on_request() {
    let (_root, s) = server("http10", &[]);
    let (r, mut c) = s.raw(b"GET / HTTP/1.0\r\n\r\n");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("connection"), Some("close"));
    assert!(is_closed(&mut c), "HTTP/1.0 without keep-alive must close");

    let mut c = s.connect();
    for _ in 0..3 {
        c.write_all(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").unwrap();
        let r = read_response(&mut c, false).unwrap();
        assert_eq!(r.header("connection"), Some("keep-alive"));
        assert_eq!(r.text(), INDEX);
    }
    let (r, mut c) = s.raw(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert_eq!(r.header("connection"), Some("close"));
    assert!(is_closed(&mut c));
}

#[test]
fn head_has_length_and_no_body() {
    let (_root, s) = server("head", &[]);
    let mut c = s.connect();
    c.write_all(
        b"HEAD /big.bin HTTP/1.1\r\nHost: t\r\n\r\nGET /docs/deep/page.txt HTTP/1.1\r\nHost: t\r\n\r\n",
    )
    .unwrap();
    let head = read_response(&mut c, true).unwrap();
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some(BIG_LEN.to_string().as_str()));
    // If HEAD had sent a body, this next response would be garbage.
    let next = read_response(&mut c, false).unwrap();
    assert_eq!((next.status, next.text().as_str()), (200, "deep\n"));
}

#[test]
fn error_statuses() {
    let (_root, s) = server("errors", &[]);
    let status = |raw: &[u8]| s.raw(raw).0;

    assert_eq!(s.get("/nope.js").status, 404);

    let r = status(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc");
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, HEAD, OPTIONS"));
    for m in ["PUT", "DELETE", "PATCH", "TRACE", "CONNECT"] {
        assert_eq!(status(format!("{m} / HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes()).status, 405, "{m}");
    }
    let r = status(b"OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!((r.status, r.header("allow")), (204, Some("GET, HEAD, OPTIONS")));
    assert_eq!(status(b"BREW / HTTP/1.1\r\nHost: t\r\n\r\n").status, 501);
    assert_eq!(status(b"GET / HTTP/2.0\r\nHost: t\r\n\r\n").status, 505);
    assert_eq!(status(b"GET / HTTP/3.0\r\nHost: t\r\n\r\n").status, 505);

    // Malformed: answered 400 and closed, because the framing of anything after is in doubt.
    for bad in [
        b"GARBAGE\r\n\r\n".as_slice(),
        b"GET / HTTP/1.1\r\n\r\n",                       // no Host
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", // two Hosts
        b"GET / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nz\r\n",
        b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: +5\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost : t\r\n\r\n", // space before colon
        b"GET / HTTP/1.1\r\nHost: t\r\nX: a\x00b\r\n\r\n", // NUL in a value
        b"GET /a b HTTP/1.1\r\nHost: t\r\n\r\n",
        b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n\r\n", // a TLS ClientHello
    ] {
        let (r, mut c) = s.raw(bad);
        assert_eq!(r.status, 400, "{:?}", String::from_utf8_lossy(bad));
        assert_eq!(r.header("connection"), Some("close"));
        assert!(is_closed(&mut c), "closed after 400 for {:?}", String::from_utf8_lossy(bad));
    }

    let long = format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(9000));
    assert_eq!(status(long.as_bytes()).status, 414);
    let big_head = format!("GET / HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n", "b".repeat(17 * 1024));
    assert_eq!(status(big_head.as_bytes()).status, 431);
    let mut many = String::from("GET / HTTP/1.1\r\nHost: t\r\n");
    for i in 0..100 {
        many.push_str(&format!("X-{i}: v\r\n"));
    }
    many.push_str("\r\n");
    assert_eq!(status(many.as_bytes()).status, 431, "101 fields");
    let body = format!("GET / HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n", 2 * 1024 * 1024);
    assert_eq!(status(body.as_bytes()).status, 413);
}

#[test]
fn limits_are_flags() {
    let (_root, s) =
        server("limits", &["--max-request-line", "100", "--max-headers", "3", "--max-header-bytes", "300"]);
    let long = format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(120));
    assert_eq!(s.raw(long.as_bytes()).0.status, 414);
    assert_eq!(s.raw(b"GET / HTTP/1.1\r\nHost: t\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n").0.status, 431);
    let big = format!("GET / HTTP/1.1\r\nHost: t\r\nA: {}\r\n\r\n", "x".repeat(300));
    assert_eq!(s.raw(big.as_bytes()).0.status, 431);
    assert_eq!(s.raw(b"GET / HTTP/1.1\r\nHost: t\r\nA: 1\r\n\r\n").0.status, 200);
}

#[test]
fn request_body_is_discarded_and_the_connection_kept() {
    let (_root, s) = server("body", &[]);
    let mut c = s.connect();
    c.write_all(b"POST /form HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\nhello world").unwrap();
    c.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(20));
    c.write_all(b"abcdGET /docs/deep/page.txt HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut c, false).unwrap().status, 405);
    assert_eq!(read_response(&mut c, false).unwrap().text(), INDEX);
    assert_eq!(read_response(&mut c, false).unwrap().text(), "deep\n");
}

#[test]
fn spa_fallback_and_its_limits() {
    let (root, s) = server("spa", &[]);
    for route in ["/users/42", "/settings", "/a/b/c/", "/v1.2/users"] {
        let r = s.get(route);
        assert_eq!((r.status, r.text().as_str()), (200, INDEX), "{route}");
    }
    for missing in ["/assets/missing.js", "/nope.css", "/favicon.ico", "/docs/deep/none.txt"] {
        assert_eq!(s.get(missing).status, 404, "{missing}");
    }
    // A directory without its slash redirects, keeping the query string.
    let r = s.get("/docs?tab=2");
    assert_eq!((r.status, r.header("location")), (301, Some("/docs/?tab=2")));
    assert_eq!(s.get("/docs/").text(), DOCS_INDEX);
    assert_eq!(s.get("/docs/index.html").text(), DOCS_INDEX);
    drop(s);

    let s = Server::start(&root.path, &["--no-spa-fallback"]);
    assert_eq!(s.get("/users/42").status, 404);
    assert_eq!(s.get("/").text(), INDEX);
}

/// Regression: with the SPA fallback on, `/.env` and `/.git/config` got the app's index.html
/// with 200 — nothing leaked, but scanners report such a 200 as an exposed file, and no
/// client-side route starts with a dot segment. Now they get 404; routes still get the app.
#[test]
fn dot_segments_get_404_even_with_the_spa_fallback() {
    let (_root, s) = server("dot-segments", &[]);
    for path in ["/.env", "/.git/config", "/.well-known/security.txt", "/users/.hidden", "/%2eenv"] {
        assert_eq!(s.get(path).status, 404, "{path}");
    }
    assert_eq!(s.get("/users/42").status, 200, "a client-side route still loads the app");
    assert_eq!(s.get("/users/42").text(), INDEX);
}

#[test]
fn traversal_attempts_never_escape_the_root() {
    let (_root, s) = server("traversal", &["--no-spa-fallback"]);
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let attempts = [
        ("/../../../../etc/passwd", Some(400)),
        ("/%2e%2e/%2e%2e/etc/passwd", Some(400)),
        ("/%2E%2E%2F%2E%2E%2Fetc%2Fpasswd", Some(400)),
        ("/assets/..%2f..%2f..%2fetc/passwd", Some(400)),
        ("/%252e%252e/%252e%252e/etc/passwd", None), // decoded once: a literal name, SPA or 404
        ("/..\\..\\..\\etc\\passwd", None),
        ("/index.html%00.js", Some(400)),
        ("/passwd", Some(404)), // a symlink that leads out of the root is not loaded
        ("/.secret", Some(404)),
        ("/.git/config", Some(404)),
        ("/%2esecret", Some(404)),
        ("/assets/../.secret", Some(404)),
        ("//etc/passwd", Some(404)),
        ("/docs/../../etc/passwd", Some(400)),
    ];
    for (path, want) in attempts {
        let mut c = s.connect();
        write!(c, "GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        let r = read_response(&mut c, false).unwrap();
        if let Some(want) = want {
            assert_eq!(r.status, want, "{path}");
        }
        let body = r.text();
        assert!(!body.contains("root:") && !body.contains("TOP-SECRET"), "{path} leaked: {body}");
        assert!(passwd.is_empty() || !body.contains(passwd.lines().next().unwrap()), "{path}");
    }
    // A symlink that stays inside the root is followed.
    assert_eq!(s.get("/alias.txt").text(), "deep\n");
}

#[test]
fn ipv6_and_several_listeners() {
    let root = fixture_root("ipv6");
    let s = Server::start(&root.path, &["--listen", "[::1]:0", "--listen", "127.0.0.1:0"]);
    let log = s.log();
    let addrs: Vec<std::net::SocketAddr> = log
        .lines()
        .filter_map(|l| l.split_once("listening on http://").map(|(_, a)| a.parse().unwrap()))
        .collect();
    assert_eq!(addrs.len(), 2, "{log}");
    for addr in addrs {
        let mut c = connect(addr);
        c.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").unwrap();
        assert_eq!(read_response(&mut c, false).unwrap().text(), INDEX, "{addr}");
    }
}

#[test]
fn admin_healthz() {
    let (_root, s) = server("admin", &[]);
    let mut c = connect(s.admin.expect("admin address"));
    c.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let r = read_response(&mut c, false).unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "ok\n"));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    c.write_all(b"GET /index.html HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut c, false).unwrap().status, 404, "admin port serves no files");

    let root = fixture_root("admin-off");
    let s = Server::start(&root.path, &["--admin-listen", "none"]);
    assert!(s.admin.is_none());
    assert_eq!(s.get("/").status, 200);
}

#[test]
fn slow_reader_gets_every_byte() {
    let (_root, s) = server("slowreader", &[]);
    let mut c = s.connect();
    c.write_all(
        b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\nGET /docs/deep/page.txt HTTP/1.1\r\nHost: t\r\n\r\n",
    )
    .unwrap();
    // Let the socket buffers fill so the server has to resume on EPOLLOUT many times.
    std::thread::sleep(Duration::from_millis(300));
    let mut head = [0u8; 64];
    c.read_exact(&mut head).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let mut rest = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let head_text = String::from_utf8_lossy(&head).into_owned();
    assert!(head_text.starts_with("HTTP/1.1 200 OK"));
    // Read the remainder of the first response and the whole second one.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !rest.ends_with(b"deep\n") && std::time::Instant::now() < deadline {
        let n = c.read(&mut chunk).unwrap();
        assert!(n > 0, "closed early");
        rest.extend_from_slice(&chunk[..n]);
    }
    let all = [head.as_slice(), &rest].concat();
    let split = all.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let body = &all[split..split + BIG_LEN];
    assert!(body.iter().enumerate().all(|(i, &b)| b == big_byte(i)));
    assert!(all[split + BIG_LEN..].starts_with(b"HTTP/1.1 200 OK"));
}

#[test]
fn a_flood_of_empty_lines_is_refused() {
    // Regression: leading CRLFs were skipped before the size checks, so a client streaming them
    // grew its buffer without bound and could pin its worker in a quadratic re-scan.
    let (_root, s) = server("crlf-flood", &["--workers", "1"]);
    let mut c = s.connect();
    let flood = b"\r\n".repeat(32 * 1024);
    let _ = c.write_all(&flood); // the server may close before taking it all
    let r = read_response(&mut c, false).expect("a response");
    assert_eq!(r.status, 400);
    assert!(is_closed(&mut c));
    assert_eq!(s.get("/").status, 200);
}

#[test]
fn expect_continue_with_a_body_is_answered_and_closed() {
    // We never send 100 Continue, so the client may hold the body back: answering and closing is
    // the only framing we can be sure of.
    let (_root, s) = server("expect", &[]);
    let (r, mut c) =
        s.raw(b"POST /upload HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 10\r\n\r\n");
    assert_eq!(r.status, 405);
    assert_eq!(r.header("connection"), Some("close"));
    assert!(is_closed(&mut c));
}

#[test]
fn one_greedy_pipelining_client_does_not_starve_another() {
    // Regression: a connection whose input never ran dry kept its worker in one drive() call,
    // delaying every other connection (and the timers) on that worker.
    let (_root, s) = server("fairness", &["--workers", "1"]);
    let greedy_conn = s.connect();
    let mut reader = greedy_conn.try_clone().unwrap();
    let mut writer = greedy_conn.try_clone().unwrap();
    let greedy = std::thread::spawn(move || {
        let batch = b"GET /docs/deep/page.txt HTTP/1.1\r\nHost: t\r\n\r\n".repeat(512);
        let w = std::thread::spawn(move || {
            for _ in 0..400 {
                if writer.write_all(&batch).is_err() {
                    break;
                }
            }
        });
        let mut sink = vec![0u8; 1 << 16];
        while matches!(reader.read(&mut sink), Ok(n) if n > 0) {}
        let _ = w.join();
    });
    std::thread::sleep(Duration::from_millis(200));
    let mut worst = Duration::ZERO;
    let mut c = s.connect();
    for _ in 0..30 {
        let t = std::time::Instant::now();
        c.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        assert_eq!(read_response(&mut c, false).unwrap().text(), INDEX);
        worst = worst.max(t.elapsed());
    }
    let _ = greedy_conn.shutdown(std::net::Shutdown::Both); // ends the greedy reader and writer
    let _ = greedy.join();
    assert!(worst < Duration::from_millis(500), "a request waited {worst:?} behind a greedy client");
}

/// RFC 9112 §7.1: a server MUST be able to parse the chunked coding. A chunked body is skipped
/// (never buffered past --max-body), its request answered as any other, and the connection goes
/// on with the request after it; every framing doubt still gets its 400 (or 413, 501) and a close.
#[test]
fn chunked_request_bodies_are_skipped_then_answered() {
    let root = fixture_root("chunked");
    let s = Server::start(&root.path, &["--max-body", "256"]);
    // A POST with a chunked body, then a GET on the same connection: 405, then 200.
    let mut c = s.connect();
    c.write_all(
        b"POST /index.html HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
          4;ext=1\r\nWiki\r\n5\r\npedia\r\n0\r\nTrailer: yes\r\n\r\n\
          GET /index.html HTTP/1.1\r\nHost: t\r\n\r\n",
    )
    .unwrap();
    assert_eq!(read_response(&mut c, false).unwrap().status, 405);
    let r = read_response(&mut c, false).unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, INDEX));
    // The body in pieces, across reads: answered once its end arrives, not before.
    c.write_all(b"GET /docs/ HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3\r\nab")
        .unwrap();
    c.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    let mut byte = [0u8; 1];
    assert!(c.read(&mut byte).is_err(), "no answer before the body's end");
    c.set_read_timeout(None).unwrap();
    c.write_all(b"c\r\n0\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(50));
    c.write_all(b"\r\n").unwrap();
    let r = read_response(&mut c, false).unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, DOCS_INDEX));
    assert_eq!(r.header("connection"), None, "still keep-alive");
    // Over --max-body: 413 and a close, before the rest is read.
    let (r, mut c) = s.raw(b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n200\r\n");
    assert_eq!((r.status, r.header("connection")), (413, Some("close")));
    assert!(is_closed(&mut c));
    // A coding atomserve cannot undo: 501 and a close.
    let (r, mut c) =
        s.raw(b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: zstd, chunked\r\n\r\n0\r\n\r\n");
    assert_eq!((r.status, r.header("connection")), (501, Some("close")));
    assert!(is_closed(&mut c));
    // A bare LF inside the body: 400 and a close.
    let (r, mut c) =
        s.raw(b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n1\nx\r\n0\r\n\r\n");
    assert_eq!((r.status, r.header("connection")), (400, Some("close")));
    assert!(is_closed(&mut c));
}

//! Caching end to end (RFC 9110 §13, §14): validators, Cache-Control that fits Vite, 304s,
//! 412s, byte ranges and If-Range — what a browser or CDN in front of atomserve relies on.

mod common;

use std::io::Write;

use common::*;

fn req(s: &Server, head: &str) -> Response {
    let mut c = s.connect();
    write!(c, "{head}\r\nHost: t\r\nConnection: close\r\n\r\n").unwrap();
    read_response(&mut c, head.starts_with("HEAD")).unwrap()
}

fn get_with(s: &Server, path: &str, field: &str) -> Response {
    req(s, &format!("GET {path} HTTP/1.1\r\n{field}"))
}

#[test]
fn validators_and_cache_control_fit_vite() {
    let root = fixture_root("cache-control");
    let s = Server::start(&root.path, &[]);
    let html = s.get("/");
    assert_eq!(html.header("cache-control"), Some("no-cache"));
    let etag = html.header("etag").unwrap();
    assert!(etag.starts_with('"') && etag.ends_with('"') && !etag.starts_with("W/"), "{etag}");
    let lm = html.header("last-modified").unwrap();
    assert!(lm.ends_with(" GMT") && lm.len() == 29, "{lm}");
    assert_eq!(html.header("accept-ranges"), Some("bytes"));
    assert_eq!(s.get("/assets/app-Ab12Cd34.js").header("cache-control"), Some("max-age=31536000, immutable"));
    assert_eq!(s.get("/assets/style-Zz9.css").header("cache-control"), Some("max-age=3600"));
    assert_eq!(s.get("/docs/").header("cache-control"), Some("no-cache"));
    // SPA fallback answers with index.html's validators.
    assert_eq!(s.get("/client/route").header("etag"), Some(etag));
    // Different content, different tag; the same content after a restart, the same tag.
    assert_ne!(s.get("/docs/").header("etag"), Some(etag));
    let again = Server::start(&root.path, &["--cache-control", "max-age=60"]);
    assert_eq!(again.get("/").header("etag"), Some(etag));
    assert_eq!(again.get("/assets/logo.svg").header("cache-control"), Some("max-age=60"));
    // A reload after an edit changes the tag.
    std::fs::write(root.path.join("index.html"), "<!doctype html><p>v2</p>\n").unwrap();
    again.signal(libc::SIGHUP);
    let end = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while again.get("/").header("etag") == Some(etag) {
        assert!(std::time::Instant::now() < end, "tag unchanged after reload");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn conditional_requests() {
    let root = fixture_root("conditional");
    let s = Server::start(&root.path, &[]);
    let full = s.get("/assets/app-Ab12Cd34.js");
    let etag = full.header("etag").unwrap().to_string();
    let lm = full.header("last-modified").unwrap().to_string();

    for field in [
        format!("If-None-Match: {etag}"),
        format!("If-None-Match: \"nope\", W/{etag}"),
        "If-None-Match: *".to_string(),
        format!("If-Modified-Since: {lm}"),
        "If-Modified-Since: Fri, 01 Jan 2100 00:00:00 GMT".to_string(),
    ] {
        let r = get_with(&s, "/assets/app-Ab12Cd34.js", &field);
        assert_eq!(r.status, 304, "{field}");
        assert!(r.body.is_empty());
        assert_eq!(r.header("etag"), Some(etag.as_str()), "304 keeps the ETag");
        assert_eq!(r.header("cache-control"), Some("max-age=31536000, immutable"));
        assert!(r.header("date").is_some());
        assert_eq!(r.header("content-length"), None);
    }
    for field in [
        "If-None-Match: \"other\"".to_string(),
        "If-Modified-Since: Thu, 01 Jan 1970 00:00:00 GMT".to_string(),
        "If-Modified-Since: not a date".to_string(),
        // If-None-Match wins over If-Modified-Since.
        format!("If-None-Match: \"other\"\r\nIf-Modified-Since: {lm}"),
    ] {
        assert_eq!(get_with(&s, "/assets/app-Ab12Cd34.js", &field).status, 200, "{field}");
    }
    assert_eq!(get_with(&s, "/", "If-Match: \"other\"").status, 412);
    assert_eq!(get_with(&s, "/", "If-Unmodified-Since: Thu, 01 Jan 1970 00:00:00 GMT").status, 412);

    // A 304 on a keep-alive connection leaves the framing intact.
    let mut c = s.connect();
    write!(c, "GET /assets/app-Ab12Cd34.js HTTP/1.1\r\nHost: t\r\nIf-None-Match: {etag}\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut c, false).unwrap().status, 304);
    assert_eq!(read_response(&mut c, false).unwrap().text(), INDEX);
}

#[test]
fn byte_ranges() {
    let root = fixture_root("ranges");
    let s = Server::start(&root.path, &[]);
    let r = get_with(&s, "/big.bin", "Range: bytes=1000-1999");
    assert_eq!(r.status, 206);
    assert_eq!(r.header("content-range"), Some(format!("bytes 1000-1999/{BIG_LEN}").as_str()));
    assert_eq!(r.body.len(), 1000);
    assert!(r.body.iter().enumerate().all(|(i, &b)| b == big_byte(1000 + i)));

    let r = get_with(&s, "/big.bin", "Range: bytes=-10");
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes {}-{}/{BIG_LEN}", BIG_LEN - 10, BIG_LEN - 1).as_str())
    );
    assert_eq!(r.body, (BIG_LEN - 10..BIG_LEN).map(big_byte).collect::<Vec<_>>());
    let r = get_with(&s, "/big.bin", &format!("Range: bytes={}-", BIG_LEN - 3));
    assert_eq!((r.status, r.body.len()), (206, 3));
    let r = get_with(&s, "/big.bin", "Range: bytes=0-18446744073709551615");
    assert_eq!((r.status, r.body.len()), (206, BIG_LEN));

    let r = get_with(&s, "/big.bin", &format!("Range: bytes={BIG_LEN}-"));
    assert_eq!(r.status, 416);
    assert_eq!(r.header("content-range"), Some(format!("bytes */{BIG_LEN}").as_str()));
    assert!(r.body.is_empty());

    for ignored in ["Range: bytes=5-1", "Range: bytes=0-1,5-6", "Range: lines=1-2", "Range: bytes=x-y"] {
        let r = get_with(&s, "/assets/app-Ab12Cd34.js", ignored);
        assert_eq!((r.status, r.text().as_str()), (200, APP_JS), "{ignored}");
    }
    // If-Range: a matching strong tag honours the range, anything else gets the whole file.
    let etag = s.get("/assets/app-Ab12Cd34.js").header("etag").unwrap().to_string();
    let r = get_with(&s, "/assets/app-Ab12Cd34.js", &format!("Range: bytes=0-6\r\nIf-Range: {etag}"));
    assert_eq!((r.status, r.text().as_str()), (206, "console"));
    let r = get_with(&s, "/assets/app-Ab12Cd34.js", "Range: bytes=0-6\r\nIf-Range: \"stale\"");
    assert_eq!((r.status, r.text().as_str()), (200, APP_JS));
    // HEAD ignores Range (range handling is defined for GET only).
    let r = req(&s, "HEAD /big.bin HTTP/1.1\r\nRange: bytes=0-9");
    assert_eq!(r.status, 200);
    // Pipelined 206s keep their framing.
    let mut c = s.connect();
    c.write_all(b"GET /big.bin HTTP/1.1\r\nHost: t\r\nRange: bytes=0-4\r\n\r\nGET /docs/deep/page.txt HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut c, false).unwrap().body, (0..5).map(big_byte).collect::<Vec<_>>());
    assert_eq!(read_response(&mut c, false).unwrap().text(), "deep\n");
}

#[test]
fn compressed_variants_are_negotiated() {
    let root = fixture_root("compress");
    let js = "export function greet(name) { return `hello, ${name}`; }\n".repeat(100);
    std::fs::write(root.path.join("assets/bundle-AbCdEf12.js"), &js).unwrap();
    // A build that ships its own brotli file: used as is (a marker proves it).
    std::fs::write(root.path.join("assets/shipped.css"), "body { color: red; }\n".repeat(50)).unwrap();
    std::fs::write(root.path.join("assets/shipped.css.br"), b"SHIPPED-BROTLI").unwrap();
    std::fs::write(root.path.join("assets/shipped.css.zst"), b"SHIPPED-ZSTD").unwrap();
    let s = Server::start(&root.path, &[]);
    let path = "/assets/bundle-AbCdEf12.js";

    let br = get_with(&s, path, "Accept-Encoding: gzip, deflate, br, zstd");
    assert_eq!(br.header("content-encoding"), Some("br"));
    assert_eq!(br.header("vary"), Some("Accept-Encoding"));
    assert!(br.body.len() < js.len() / 5, "brotli saved too little: {}", br.body.len());
    assert_eq!(decode(&br), js.as_bytes());

    let gz = get_with(&s, path, "Accept-Encoding: gzip;q=1, br;q=0.5");
    assert_eq!(gz.header("content-encoding"), Some("gzip"));
    assert_eq!(decode(&gz), js.as_bytes());

    // zstd: chosen when the client prefers it, or offers it without br; br wins a tie.
    let zst = get_with(&s, path, "Accept-Encoding: gzip, zstd");
    assert_eq!(zst.header("content-encoding"), Some("zstd"));
    assert_eq!(zst.header("vary"), Some("Accept-Encoding"));
    assert_eq!(decode(&zst), js.as_bytes());
    let zst_first = get_with(&s, path, "Accept-Encoding: br;q=0.9, zstd");
    assert_eq!(zst_first.header("content-encoding"), Some("zstd"));

    let plain = get_with(&s, path, "Accept-Encoding: identity");
    assert_eq!(plain.header("content-encoding"), None);
    assert_eq!(plain.header("vary"), Some("Accept-Encoding"), "every representation says it varies");
    assert_eq!(plain.body, js.as_bytes());
    assert_eq!(s.get(path).body, js.as_bytes(), "no Accept-Encoding: identity");
    assert_eq!(get_with(&s, path, "Accept-Encoding: br;q=0, gzip;q=0").header("content-encoding"), None);

    // Each representation has its own validator; a 304 is only for the one the client holds.
    let tags = [br.header("etag"), gz.header("etag"), plain.header("etag"), zst.header("etag")];
    let distinct: std::collections::HashSet<_> = tags.iter().collect();
    assert_eq!(distinct.len(), 4, "{tags:?}");
    let field = format!("Accept-Encoding: br\r\nIf-None-Match: {}", tags[0].unwrap());
    let r = get_with(&s, path, &field);
    assert_eq!((r.status, r.header("vary")), (304, Some("Accept-Encoding")));
    let field = format!("Accept-Encoding: gzip\r\nIf-None-Match: {}", tags[0].unwrap());
    assert_eq!(get_with(&s, path, &field).status, 200);
    // A client holding another representation it accepts (it loaded the file before brotli was
    // built, say) gets a 304 for the one it holds, with that one's validator: not the same
    // content again in another coding. One it does not accept (identity;q=0) is not chosen.
    let browser = "Accept-Encoding: gzip, deflate, br, zstd";
    for (held, coding) in [(tags[2], None), (tags[1], Some("gzip")), (tags[3], Some("zstd"))] {
        let r = get_with(&s, path, &format!("{browser}\r\nIf-None-Match: \"x\", {}", held.unwrap()));
        assert_eq!((r.status, r.header("etag")), (304, held), "{coding:?}");
        assert_eq!(r.header("vary"), Some("Accept-Encoding"));
    }
    let field = format!("Accept-Encoding: br, identity;q=0\r\nIf-None-Match: {}", tags[2].unwrap());
    let r = get_with(&s, path, &field);
    assert_eq!((r.status, r.header("content-encoding")), (200, Some("br")));
    assert_eq!(get_with(&s, path, &format!("{browser}\r\nIf-None-Match: *")).header("etag"), tags[0]);

    // A range applies to the representation chosen.
    let r = get_with(&s, path, "Accept-Encoding: br\r\nRange: bytes=0-9");
    assert_eq!((r.status, r.header("content-encoding")), (206, Some("br")));
    assert_eq!(r.body, br.body[..10]);
    // HEAD gives the chosen representation's length.
    let r = req(&s, &format!("HEAD {path} HTTP/1.1\r\nAccept-Encoding: br"));
    assert_eq!(r.header("content-length"), Some(br.body.len().to_string().as_str()));

    // Small or incompressible files get no variant and no Vary.
    let small = get_with(&s, "/assets/app-Ab12Cd34.js", "Accept-Encoding: br, gzip");
    assert_eq!((small.header("content-encoding"), small.header("vary")), (None, None));
    let bin = get_with(&s, "/big.bin", "Accept-Encoding: br, gzip");
    assert_eq!(bin.header("content-encoding"), None);

    let shipped = get_with(&s, "/assets/shipped.css", "Accept-Encoding: br");
    assert_eq!(shipped.body, b"SHIPPED-BROTLI");
    let shipped = get_with(&s, "/assets/shipped.css", "Accept-Encoding: zstd");
    assert_eq!(
        (shipped.header("content-encoding"), shipped.body.as_slice()),
        (Some("zstd"), &b"SHIPPED-ZSTD"[..])
    );

    drop(s);
    let s = Server::start(&root.path, &["--no-compress"]);
    let r = get_with(&s, path, "Accept-Encoding: br, gzip");
    assert_eq!((r.header("content-encoding"), r.header("vary")), (None, None));
}

/// Regression: two If-None-Match fields are one list (RFC 9110 §5.3); only the last one used
/// to count, so a tag named in the first field got a full 200.
#[test]
fn repeated_if_none_match_fields_are_one_list() {
    let root = fixture_root("inm-repeated");
    let s = Server::start(&root.path, &[]);
    let etag = s.get("/index.html").header("etag").unwrap().to_string();
    let r = get_with(&s, "/index.html", &format!("If-None-Match: {etag}\r\nIf-None-Match: \"other\""));
    assert_eq!(r.status, 304);
    let r = get_with(&s, "/index.html", &format!("If-None-Match: \"other\"\r\nIf-None-Match: {etag}"));
    assert_eq!(r.status, 304);
    let r = get_with(&s, "/index.html", "If-None-Match: \"a\"\r\nIf-None-Match: \"b\"");
    assert_eq!(r.status, 200);
}

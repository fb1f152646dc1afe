//! `_headers`, `_redirects`, `404.html` and `--header` end to end, over real sockets: what a
//! Vite app deployed as on Netlify or Cloudflare Pages expects of its host, the precedence
//! between the rules, and the clear start-up and reload errors a malformed file gets.

mod common;

use std::fs;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

const HEADERS: &str = "\
# Netlify/Cloudflare Pages syntax: every matching rule applies.
/*
  X-Frame-Options: DENY
  Content-Security-Policy: default-src 'self'
/assets/*
  Cache-Control: public, max-age=600
  Access-Control-Allow-Origin: *
/docs/*
  ! X-Frame-Options
/feed
  Content-Type: application/rss+xml; charset=utf-8
";

const REDIRECTS: &str = "\
# from                  to                              status
/home                   /                               301
/moved                  /docs/                          308
/old/:year/:slug        /posts/:year-:slug              302
/see                    /docs/                          303
/temp                   /docs/?from=temp                307
/blog/*                 https://blog.example.test/:splat 301
/app/*                  /docs/index.html                200
/gone/*                 /404.html                       404
/docs/deep/page.txt     /elsewhere                      301
/assets/logo.svg        /404.html                       404!
";

/// The fixture root plus the rule files and a 404 page.
fn site_root(name: &str) -> Root {
    let root = fixture_root(name);
    fs::write(root.path.join("_headers"), HEADERS).unwrap();
    fs::write(root.path.join("_redirects"), REDIRECTS).unwrap();
    fs::write(root.path.join("404.html"), "<!doctype html><title>not here</title>\n").unwrap();
    fs::write(root.path.join("feed"), "<rss/>\n").unwrap();
    root
}

fn req(s: &Server, head: &str) -> Response {
    let mut c = s.connect();
    write!(c, "{head}\r\nHost: t\r\nConnection: close\r\n\r\n").unwrap();
    read_response(&mut c, head.starts_with("HEAD")).unwrap()
}

#[test]
fn header_rules_reach_every_response_about_a_file() {
    let root = site_root("site-headers");
    let s = Server::start(&root.path, &[]);
    let index = s.get("/");
    assert_eq!(index.header("x-frame-options"), Some("DENY"));
    assert_eq!(index.header("content-security-policy"), Some("default-src 'self'"));
    assert_eq!(index.header("cache-control"), Some("no-cache"), "atomserve's default stands");
    let js = s.get("/assets/app-Ab12Cd34.js");
    assert_eq!(js.header("cache-control"), Some("public, max-age=600"), "a rule replaces the default");
    assert_eq!(js.count("cache-control"), 1);
    assert_eq!(js.header("access-control-allow-origin"), Some("*"));
    assert_eq!(js.header("x-frame-options"), Some("DENY"), "the /* rule applies too");
    // 304 and 206 carry them as the 200 does.
    let etag = index.header("etag").unwrap();
    let not_modified = req(&s, &format!("GET / HTTP/1.1\r\nIf-None-Match: {etag}"));
    assert_eq!(not_modified.status, 304);
    assert_eq!(not_modified.header("content-security-policy"), Some("default-src 'self'"));
    let part = req(&s, "GET /assets/app-Ab12Cd34.js HTTP/1.1\r\nRange: bytes=0-3");
    assert_eq!(part.status, 206);
    assert_eq!(part.header("access-control-allow-origin"), Some("*"));
    // `! Name` detaches a field where its rule matches.
    let docs = s.get("/docs/");
    assert_eq!(docs.header("x-frame-options"), None);
    assert_eq!(docs.header("content-security-policy"), Some("default-src 'self'"));
    // Content-Type replaced for one path.
    assert_eq!(s.get("/feed").header("content-type"), Some("application/rss+xml; charset=utf-8"));
    // A 404 and a redirect match the rules at request time.
    let missing = s.get("/assets/missing-AAAAAAAA.js");
    assert_eq!(missing.status, 404);
    assert_eq!(missing.header("access-control-allow-origin"), Some("*"));
    assert_eq!(s.get("/home").header("x-frame-options"), Some("DENY"));
}

#[test]
fn the_rule_files_are_configuration_never_content() {
    let root = site_root("site-hidden");
    let s = Server::start(&root.path, &["--no-spa-fallback"]);
    for path in ["/_headers", "/_redirects"] {
        let r = s.get(path);
        assert_eq!(r.status, 404, "{path}");
        assert!(!r.text().contains("X-Frame-Options") && !r.text().contains("/home"), "{path}");
    }
}

#[test]
fn redirects_answer_every_status_with_splats_and_placeholders() {
    let root = site_root("site-redirects");
    let s = Server::start(&root.path, &[]);
    let r = s.get("/home");
    assert_eq!((r.status, r.header("location")), (301, Some("/")));
    assert!(r.header("cache-control").is_some(), "a permanent redirect gets a lifetime");
    assert_eq!((s.get("/moved").status, s.get("/moved").header("location")), (308, Some("/docs/")));
    let r = s.get("/old/2024/hello?ref=x");
    assert_eq!((r.status, r.header("location")), (302, Some("/posts/2024-hello?ref=x")), "the query is kept");
    assert_eq!(r.header("cache-control"), None);
    assert_eq!(s.get("/see").status, 303);
    let r = s.get("/temp?drop=me");
    assert_eq!(
        (r.status, r.header("location")),
        (307, Some("/docs/?from=temp")),
        "the target's own query wins"
    );
    let r = s.get("/blog/2024/a%20post");
    assert_eq!((r.status, r.header("location")), (301, Some("https://blog.example.test/2024/a%20post")));
    // 200: the target's content, at the requested address, with its validators.
    let r = s.get("/app/settings/profile");
    assert_eq!((r.status, r.text().as_str()), (200, DOCS_INDEX));
    assert!(r.header("etag").is_some());
    let r = req(&s, "HEAD /app/x HTTP/1.1");
    assert_eq!((r.status, r.body.len()), (200, 0));
    // 404: the target's content with status 404.
    let r = s.get("/gone/anything");
    assert_eq!(r.status, 404);
    assert!(r.text().contains("not here"));
}

#[test]
fn precedence_forced_rule_file_rule_fallback_404_page() {
    let root = site_root("site-precedence");
    let s = Server::start(&root.path, &[]);
    // 1. A forced rule wins over an existing file.
    let r = s.get("/assets/logo.svg");
    assert_eq!(r.status, 404);
    assert!(r.text().contains("not here"));
    // 2. An existing file shadows an unforced rule.
    assert_eq!(s.get("/docs/deep/page.txt").text(), "deep\n");
    // 3. A rule applies where nothing exists (see the redirect test); 4. the SPA fallback
    // answers a route; 5. the 404 page answers a missing asset, with status 404.
    let r = s.get("/client/route");
    assert_eq!((r.status, r.text().as_str()), (200, INDEX));
    let r = s.get("/assets/missing-AAAAAAAA.js");
    assert_eq!(r.status, 404);
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    assert!(r.text().contains("not here"));
    assert_eq!(r.header("etag"), None, "not the page's own validators: it answers another path");
    // Dot segments never fall back, and get the 404 page too.
    assert_eq!(s.get("/.git/config").status, 404);
    // Without the fallback, a route gets the 404 page.
    let s = Server::start(&root.path, &["--no-spa-fallback"]);
    assert_eq!(s.get("/client/route").status, 404);
    assert!(s.get("/client/route").text().contains("not here"));
}

#[test]
fn a_catch_all_rule_replaces_the_built_in_fallback() {
    let root = fixture_root("site-catch-all");
    fs::write(root.path.join("_redirects"), "/* /docs/index.html 200\n").unwrap();
    let s = Server::start(&root.path, &[]);
    assert_eq!(s.get("/client/route").text(), DOCS_INDEX, "the rule, not the built-in /index.html");
    assert_eq!(s.get("/assets/missing.js").text(), DOCS_INDEX, "the rule has no extension test");
    assert_eq!(s.get("/").text(), INDEX, "files still win");
}

#[test]
fn header_flags_go_on_every_public_response_and_files_can_live_outside_the_root() {
    let root = fixture_root("site-flags");
    let rules = std::env::temp_dir().join(format!("atomserve-rules-{}", std::process::id()));
    fs::create_dir_all(&rules).unwrap();
    fs::write(rules.join("h"), "/docs/*\n  X-Docs: yes\n  ! Strict-Transport-Security\n").unwrap();
    fs::write(rules.join("r"), "/go /docs/ 302\n").unwrap();
    let (h, r) = (rules.join("h"), rules.join("r"));
    let s = Server::start_with(
        &root.path,
        &["--header", "Strict-Transport-Security: max-age=63072000", "--headers-file", h.to_str().unwrap()],
        |cmd| {
            cmd.env("ATOMSERVE_HEADER", "X-One: 1\nX-Two: 2").env("ATOMSERVE_REDIRECTS_FILE", &r);
        },
    );
    let index = s.get("/");
    assert_eq!(index.header("strict-transport-security"), Some("max-age=63072000"));
    assert_eq!(index.header("x-one"), None, "the flag wins over the variable");
    assert_eq!(s.get("/docs/").header("x-docs"), Some("yes"));
    assert_eq!(s.get("/docs/").header("strict-transport-security"), None, "detached for /docs/*");
    assert_eq!(s.get("/go").status, 302);
    assert_eq!(s.get("/nope.js").header("strict-transport-security"), Some("max-age=63072000"));
    let bad = req(&s, "GET /a%zz HTTP/1.1");
    assert_eq!(bad.status, 400);
    assert_eq!(bad.header("strict-transport-security"), Some("max-age=63072000"), "even an error");
    let (_, mut c) = s.raw(b"BROKEN\r\n\r\n");
    let _ = c.flush();
    let admin = s.admin_get("/healthz");
    assert_eq!(admin.header("strict-transport-security"), None, "the admin listener is not the site");
    // The variable alone, newline-separated.
    let s = Server::start_with(&root.path, &[], |cmd| {
        cmd.env("ATOMSERVE_HEADER", "X-One: 1\nX-Two: 2");
    });
    assert_eq!((s.get("/").header("x-one"), s.get("/").header("x-two")), (Some("1"), Some("2")));
    fs::remove_dir_all(&rules).unwrap();
}

/// Runs atomserve on `root` expecting a start-up failure; returns its one-line message.
fn start_up_error(root: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_atomserve"))
        .arg("--root")
        .arg(root)
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "none"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{err}");
    let line = err.lines().find(|l| l.contains("error")).unwrap_or(&err).to_string();
    line
}

#[test]
fn malformed_rule_files_stop_the_start_naming_file_and_line() {
    let root = fixture_root("site-malformed");
    let cases: &[(&str, &str, &str)] = &[
        ("_redirects", "/a /b\n/only-from\n", "_redirects:2: \"/only-from\": a rule needs a target"),
        ("_redirects", "/a /b 418\n", "_redirects:1: status \"418\""),
        (
            "_redirects",
            "/x/* /app/missing.html 200\n",
            "_redirects:1: target /app/missing.html is not a file",
        ),
        ("_redirects", "/a https://elsewhere.test/ 200\n", "cannot be another host"),
        ("_headers", "/*\n  Bad Name: 1\n", "_headers:2: \"Bad Name\" is not a valid field name"),
        ("_headers", "/*\n  X-A: one\rtwo\n", "_headers:2: the value of X-A contains a control character"),
        ("_headers", "/*\n  Content-Length: 1\n", "_headers:2: Content-Length cannot be set"),
        ("_headers", "/*\n  Transfer-Encoding: chunked\n", "Transfer-Encoding cannot be set"),
    ];
    for (file, text, want) in cases {
        fs::write(root.path.join(file), text).unwrap();
        let err = start_up_error(&root.path, &[]);
        assert!(err.contains(want), "{file} {text:?}: {err}");
        fs::remove_file(root.path.join(file)).unwrap();
    }
    fs::write(root.path.join("_redirects"), "#".repeat(1024 * 1024)).unwrap();
    let err = start_up_error(&root.path, &[]);
    assert!(err.contains("_redirects: larger than 524288 bytes"), "{err}");
    fs::remove_file(root.path.join("_redirects")).unwrap();
    let err = start_up_error(&root.path, &["--header", "X-Broken"]);
    assert!(err.contains("--header: \"X-Broken\" is not `Name: value`"), "{err}");
    let err = start_up_error(&root.path, &["--header", "Connection: close"]);
    assert!(err.contains("Connection cannot be set"), "{err}");
}

#[test]
fn a_reload_with_a_broken_rule_keeps_the_old_snapshot_and_rules() {
    let root = site_root("site-reload");
    let s = Server::start(&root.path, &[]);
    assert_eq!(s.get("/home").status, 301);
    fs::write(root.path.join("_redirects"), "/home / 999\n").unwrap();
    s.signal(libc::SIGHUP);
    s.wait_log("atomserve: reload", 1, Duration::from_secs(10));
    assert!(s.log().contains("_redirects:1: status \"999\""), "{}", s.log());
    assert!(s.log().contains("failed, keeping generation 0"), "{}", s.log());
    assert_eq!(s.get("/home").status, 301, "the old rules still answer");
    fs::write(root.path.join("_redirects"), "/home /docs/ 302\n").unwrap();
    s.signal(libc::SIGHUP);
    s.wait_log("atomserve: reload", 2, Duration::from_secs(10));
    let r = s.get("/home");
    assert_eq!((r.status, r.header("location")), (302, Some("/docs/")), "rules reload with the files");
}

#[test]
fn the_documented_limits_load_and_one_more_is_refused() {
    let root = fixture_root("site-limits");
    let mut headers = String::new();
    for i in 0..100 {
        headers.push_str(&format!("/p{i}/*\n  X-Rule: {i}\n"));
    }
    let mut redirects: String = (0..2000).map(|i| format!("/s{i} /docs/ 301\n")).collect();
    redirects.extend((0..100).map(|i| format!("/d{i}/:x/* /t/:x/:splat 302\n")));
    fs::write(root.path.join("_headers"), &headers).unwrap();
    fs::write(root.path.join("_redirects"), &redirects).unwrap();
    let s = Server::start(&root.path, &[]);
    assert_eq!(s.get("/p99/x.js").header("x-rule"), Some("99"));
    assert_eq!(s.get("/s1999").header("location"), Some("/docs/"));
    let r = s.get("/d99/a/b/c");
    assert_eq!((r.status, r.header("location")), (302, Some("/t/a/b/c")));
    drop(s);
    fs::write(root.path.join("_headers"), format!("{headers}/p100\n  X-Rule: 100\n")).unwrap();
    assert!(start_up_error(&root.path, &[]).contains("more than 100 rules"));
}

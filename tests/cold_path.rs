//! The cold path: serving starts with identity bodies while variants are built in the background
//! (two-phase loads), a reload reuses what did not change, `--watch` loses no change, reloads keep
//! up with signals, memory stays bounded over hundreds of reloads, and a tree that changes under
//! a load never gets a half-built or outside file served.

mod common;

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

/// Text that compresses about 3× (words from a small vocabulary): what a JS bundle looks like to
/// brotli, deterministic per `seed`.
fn js(len: usize, seed: u64) -> Vec<u8> {
    const WORDS: [&str; 16] = [
        "function",
        "return",
        "const",
        "let",
        "this",
        "props",
        "state",
        "value",
        "=>",
        "{",
        "}",
        "(",
        ")",
        "useEffect",
        "render",
        "export",
    ];
    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ seed.wrapping_mul(0x2545_f491_4f6c_dd1d);
    let mut out = Vec::with_capacity(len + 16);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(WORDS[(x >> 60) as usize].as_bytes());
        out.push(if x & 7 == 0 { b'\n' } else { b' ' });
        if x & 0xff == 0 {
            out.extend_from_slice(format!("{}", x >> 40).as_bytes());
        }
    }
    out.truncate(len);
    out
}

fn get_br(c: &mut std::net::TcpStream, path: &str) -> Response {
    write!(c, "GET {path} HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip, deflate, br, zstd\r\n\r\n").unwrap();
    read_response(c, false).expect("a response")
}

fn stats(s: &Server) -> serde_json::Value {
    let r = s.admin_get("/stats");
    assert_eq!(r.status, 200);
    serde_json::from_slice(&r.body).expect("JSON")
}

/// Replaces `path` the way build tools and deploy scripts do: write a temporary file, rename it
/// over the old one.
fn replace(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp-atomserve");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A root of `chunks` JS chunks of `len` bytes each, plus index.html and data/report.json.
fn bundle_root(name: &str, chunks: usize, len: usize) -> Root {
    let root =
        Root { path: std::env::temp_dir().join(format!("atomserve-test-{name}-{}", std::process::id())) };
    let _ = std::fs::remove_dir_all(&root.path);
    std::fs::create_dir_all(root.path.join("assets")).unwrap();
    std::fs::create_dir_all(root.path.join("data")).unwrap();
    std::fs::write(root.path.join("index.html"), INDEX).unwrap();
    std::fs::write(root.path.join("data/report.json"), b"{\"version\": 1}\n").unwrap();
    for i in 0..chunks {
        std::fs::write(root.path.join(format!("assets/chunk{i}-AbCd{i:04}.js")), js(len, i as u64)).unwrap();
    }
    root
}

/// Phase 1 serves identity bodies at once (with `Vary`, since variants are coming); the br
/// variant appears later with its own ETag; no response in between fails, tears or mixes.
#[test]
fn identity_is_served_before_the_variants_then_br_appears_and_nothing_tears() {
    let root = bundle_root("two-phase", 2, 400_000);
    let s = Server::start_serving(&root.path, &[], |_| {});
    let path = "/assets/chunk0-AbCd0000.js";
    let want = js(400_000, 0);
    let mut c = s.connect();
    let first = get_br(&mut c, path);
    assert_eq!(first.status, 200);
    assert_eq!(first.header("content-encoding"), None, "variants cannot be ready yet:\n{}", s.log());
    assert_eq!(
        first.header("vary"),
        Some("Accept-Encoding"),
        "identity says it varies while variants are built"
    );
    assert!(first.body == want);
    assert_eq!(stats(&s)["cache"]["last_reload"]["variants_ms"], 0.0);
    assert!(stats(&s)["cache"]["variants_pending"].as_u64().unwrap() > 0);

    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = (0..3)
        .map(|i| {
            let (stop, seen, addr, want) = (stop.clone(), seen.clone(), s.addr, want.clone());
            std::thread::spawn(move || {
                let mut c = connect(addr);
                let path = format!("/assets/chunk{}-AbCd{:04}.js", i % 2, i % 2);
                let want = if i % 2 == 0 { want } else { js(400_000, 1) };
                while !stop.load(Ordering::Relaxed) {
                    let r = get_br(&mut c, &path);
                    assert_eq!(r.status, 200);
                    assert!(decode(&r) == want, "a torn or mixed body ({:?})", r.header("content-encoding"));
                    seen.fetch_add(1, Ordering::Relaxed);
                    // Leave idle time: compression runs at SCHED_IDLE, and a machine kept 100%
                    // busy (2 cores here) would starve it by design.
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
        })
        .collect();
    let end = Instant::now() + Duration::from_secs(120);
    let br = loop {
        let r = get_br(&mut c, path);
        if r.header("content-encoding") == Some("br") {
            break r;
        }
        assert!(decode(&r) == want);
        assert!(Instant::now() < end, "no br variant after 120 s:\n{}", s.log());
        std::thread::sleep(Duration::from_millis(20));
    };
    s.wait_log("variants complete", 1, Duration::from_secs(120));
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().expect("a client saw a failed or torn response");
    }
    assert!(decode(&br) == want);
    assert_ne!(br.header("etag"), first.header("etag"), "each representation has its own tag");
    assert_eq!(br.header("vary"), Some("Accept-Encoding"));
    assert!(seen.load(Ordering::Relaxed) > 10);
    let log = s.log();
    assert!(log.contains("at SCHED_IDLE") || log.contains("at nice 19"), "{log}");
    assert_eq!(stats(&s)["cache"]["variants_pending"], 0);
}

/// Regression: the inotify watches were added after the initial load, so a file replaced while
/// the server started (after the walk read it) was never noticed and its old bytes were served
/// until some later change.
#[test]
fn a_change_made_while_the_server_starts_is_served_with_watch() {
    let root = bundle_root("watch-start", 8, 700_000); // seconds of compression at start-up before
    let report = root.path.join("data/report.json");
    let replacer = {
        let report = report.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            replace(&report, b"{\"version\": 2}\n");
        })
    };
    let s = Server::start_serving(&root.path, &["--watch"], |_| {});
    replacer.join().unwrap();
    let end = Instant::now() + Duration::from_secs(3);
    while s.get("/data/report.json").body != b"{\"version\": 2}\n" {
        assert!(Instant::now() < end, "the change made during start-up was lost:\n{}", s.log());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A reload takes every unchanged body and variant from the snapshot it replaces (counted in
/// `/stats`), compresses only the changed file, and serves changed, added and removed files right.
#[test]
fn a_reload_reuses_unchanged_content_and_serves_what_changed() {
    let root = bundle_root("reuse", 4, 70_000);
    let s = Server::start(&root.path, &[]);
    let before = stats(&s)["cache"].clone();
    assert_eq!(before["reused_files"], 0);
    // Rewrite every file (as a Vite build does), change one, add one, remove one.
    for i in 0..4 {
        let p = root.path.join(format!("assets/chunk{i}-AbCd{i:04}.js"));
        replace(&p, &js(70_000, if i == 2 { 99 } else { i as u64 }));
    }
    std::fs::write(root.path.join("assets/new-XyZ12345.js"), js(5_000, 7)).unwrap();
    std::fs::remove_file(root.path.join("data/report.json")).unwrap();
    s.signal(libc::SIGHUP);
    s.wait_log("variants complete", 2, Duration::from_secs(60));
    let after = stats(&s)["cache"].clone();
    // index.html and 3 chunks unchanged; the changed chunk and the new file are not.
    assert_eq!(after["reused_files"], 4, "{after}");
    let reused = after["reused_bytes"].as_u64().unwrap();
    assert!(reused > 3 * 70_000, "variants of unchanged chunks are reused too: {reused}");
    assert_eq!(after["last_reload"]["trigger"], "signal");
    assert!(after["last_reload"]["variants_ms"].as_f64().unwrap() > 0.0);
    let log = s.log();
    let line = log.lines().filter(|l| l.contains("variants complete")).nth(1).unwrap();
    assert!(line.contains(": 2 files compressed"), "only the changed and the new file: {line}");
    let mut c = s.connect();
    assert!(decode(&get_br(&mut c, "/assets/chunk2-AbCd0002.js")) == js(70_000, 99));
    assert_eq!(get_br(&mut c, "/assets/chunk2-AbCd0002.js").header("content-encoding"), Some("br"));
    assert!(decode(&get_br(&mut c, "/assets/chunk1-AbCd0001.js")) == js(70_000, 1));
    assert!(s.get("/assets/new-XyZ12345.js").body == js(5_000, 7));
    assert_eq!(s.get("/data/report.json").status, 404);
}

/// Memory held, in KiB: RSS, its anonymous and shared-memory parts (the heap, mapped memfd
/// pages), and the memory of every memfd (allocated blocks, so punched holes count as freed).
#[derive(Clone, Copy, Debug, Default)]
struct Memory {
    rss: u64,
    anon: u64,
    shmem: u64,
    memfd: u64,
    /// The part of `anon` in transparent huge pages: for the failure message (see `data`).
    anon_huge: u64,
}

impl Memory {
    /// RSS and memfds: what issue #13 bounds.
    fn total(&self) -> u64 {
        self.rss + self.memfd
    }

    /// The part of it that the server allocates: RSS less its file-backed pages. Those are the
    /// executable's and libraries' code and read-only data, mapped as it first runs a path, and a
    /// kernel with large page-cache folios may map 2 MiB of them at one fault.
    ///
    /// Anonymous memory can jump by 2 MiB that nothing allocated, too: where the host's
    /// transparent huge pages are `always`, khugepaged may turn a sparse 2 MiB stretch of a malloc
    /// arena into one huge page. A CI run saw `anon` 1,996 KiB higher after 200 reloads than
    /// after the first; with `always` and a 100 ms khugepaged scan here, AnonHugePages read
    /// 2,048 kB in both of two runs. The server now keeps huge pages to the mappings that ask for
    /// them (`sys::mem::huge_pages_only_where_advised`; 0 kB in three runs so), and a failure
    /// prints `anon_huge`, so that it says whether such a page is back.
    fn data(&self) -> u64 {
        self.anon + self.shmem + self.memfd
    }
}

fn memory_kib(pid: i32) -> Memory {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap()
    };
    let mut seen = std::collections::HashSet::new();
    let mut memfd = 0;
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().flatten() {
        let target = std::fs::read_link(fd.path()).unwrap_or_default();
        if !target.to_string_lossy().starts_with("/memfd:") {
            continue;
        }
        if let Ok(meta) = std::fs::metadata(fd.path()) {
            use std::os::unix::fs::MetadataExt;
            if seen.insert(meta.ino()) {
                memfd += meta.blocks() * 512 / 1024;
            }
        }
    }
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    let anon_huge = rollup
        .lines()
        .find(|l| l.starts_with("AnonHugePages:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0);
    Memory { rss: field("VmRSS:"), anon: field("RssAnon:"), shmem: field("RssShmem:"), memfd, anon_huge }
}

/// The least memory held over a second (ten readings): what stays, not what a reload still in
/// its last steps (a read buffer not yet trimmed, an old snapshot not yet reclaimed) holds for a
/// moment, stretched on a loaded machine. A leak stays in every reading.
fn settled_memory_kib(pid: i32) -> Memory {
    (0..10)
        .map(|_| {
            std::thread::sleep(Duration::from_millis(100));
            memory_kib(pid)
        })
        .min_by_key(Memory::data)
        .unwrap()
}

/// Over 200 reloads under load, each changing a different large body (so every memfd ends up
/// holding some dead stretches), what the server allocates grows by at most 5% of the memory it
/// held after the first (settled readings, file-backed pages aside: [`Memory::data`]), no
/// response fails, and reloads keep up: the last version is served as soon as its reload is.
/// An injected leak of 16 KiB a reload fails it (3,228 KiB grown against a bound of 356).
#[test]
fn two_hundred_reloads_under_load_keep_memory_flat_and_lose_nothing() {
    const CHUNKS: usize = 8;
    const LEN: usize = 256 * 1024;
    let root = bundle_root("reload-memory", 0, 0);
    // Incompressible types: this test is about identity bodies and their memfd stretches.
    let body = |i: usize, v: usize| -> Vec<u8> {
        let mut b: Vec<u8> = (0..LEN).map(|j| ((j * 31 + i * 7 + v * 13) % 251) as u8).collect();
        b[..8].copy_from_slice(&(v as u64).to_le_bytes());
        b
    };
    for i in 0..CHUNKS {
        std::fs::write(root.path.join(format!("assets/blob{i}.bin")), body(i, 0)).unwrap();
    }
    let s = Server::start(&root.path, &["--workers", "2"]);
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = (0..2)
        .map(|k| {
            let (stop, ok, addr) = (stop.clone(), ok.clone(), s.addr);
            std::thread::spawn(move || {
                let mut c = connect(addr);
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let i = (n + k) % CHUNKS;
                    n += 1;
                    write!(c, "GET /assets/blob{i}.bin HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
                    let r = read_response(&mut c, false).expect("response");
                    assert_eq!(r.status, 200);
                    let v = u64::from_le_bytes(r.body[..8].try_into().unwrap()) as usize;
                    assert!(r.body == body(i, v), "a torn or mixed body");
                    let r = read_response(&mut c, false).expect("response");
                    assert_eq!((r.status, r.text().as_str()), (200, INDEX));
                    ok.fetch_add(2, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(1));
                }
            })
        })
        .collect();
    let mut after_first = Memory::default();
    let started = Instant::now();
    for v in 1..=200 {
        let i = v % CHUNKS;
        replace(&root.path.join(format!("assets/blob{i}.bin")), &body(i, v));
        s.signal(libc::SIGHUP);
        // Reloads keep up: each is served well within a second of its signal.
        let end = Instant::now() + Duration::from_secs(1);
        while s.get(&format!("/assets/blob{i}.bin")).body[..8] != (v as u64).to_le_bytes() {
            assert!(Instant::now() < end, "reload {v} not served 1 s after its signal:\n{}", s.log());
            std::thread::sleep(Duration::from_millis(2));
        }
        if v == 1 {
            after_first = settled_memory_kib(s.pid());
        }
    }
    let elapsed = started.elapsed();
    let after = settled_memory_kib(s.pid());
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().expect("a client saw a failed or torn response");
    }
    let log = s.log();
    assert!(!log.contains("failed"), "{log}");
    assert!(ok.load(Ordering::Relaxed) > 200, "load was too light to mean anything");
    eprintln!("memory {after_first:?} KiB after the first reload, {after:?} KiB after 200 ({elapsed:?})");
    // What the server allocated may grow by 5% of all it held after the first reload.
    let grown = after.data().saturating_sub(after_first.data());
    assert!(
        grown * 100 <= after_first.total() * 5,
        "memory grew by {grown} KiB, from {after_first:?} KiB to {after:?} KiB, over 200 reloads \
         (anonymous huge pages: {} KiB, then {} KiB)",
        after_first.anon_huge,
        after.anon_huge
    );
}

/// A deploy that swaps the whole root (`mv dist dist.old && mv dist.new dist`) is picked up by
/// SIGHUP and by `--watch` (which watches the new directory from then on).
#[test]
fn a_root_replaced_wholesale_is_served_after_a_reload_and_watched() {
    let root = bundle_root("swap-root", 1, 1_000);
    let s = Server::start(&root.path, &["--watch"]);
    let next = root.path.with_extension("next");
    let old = root.path.with_extension("old");
    let _ = std::fs::remove_dir_all(&next);
    std::fs::create_dir_all(next.join("data")).unwrap();
    std::fs::write(next.join("index.html"), "<!doctype html><title>v2</title>\n").unwrap();
    std::fs::write(next.join("data/report.json"), b"{\"version\": 2}\n").unwrap();
    std::fs::rename(&root.path, &old).unwrap();
    std::fs::rename(&next, &root.path).unwrap();
    let end = Instant::now() + Duration::from_secs(5);
    while s.get("/data/report.json").body != b"{\"version\": 2}\n" {
        assert!(Instant::now() < end, "the new root was not served:\n{}", s.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(s.get("/assets/chunk0-AbCd0000.js").status, 404);
    // The new directory is watched.
    replace(&root.path.join("data/report.json"), b"{\"version\": 3}\n");
    let end = Instant::now() + Duration::from_secs(5);
    while s.get("/data/report.json").body != b"{\"version\": 3}\n" {
        assert!(Instant::now() < end, "a change in the new root was missed:\n{}", s.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = std::fs::remove_dir_all(&old);
}

/// 10,000 files load, serve and reload (all reused); the reload's log line says so.
#[test]
fn ten_thousand_files_load_serve_and_reload() {
    let root = bundle_root("many", 0, 0);
    for d in 0..100 {
        let dir = root.path.join(format!("d{d}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..100 {
            std::fs::write(dir.join(format!("f{f}.txt")), format!("file {d}/{f}\n")).unwrap();
        }
    }
    let s = Server::start(&root.path, &[]);
    assert_eq!(s.get("/d42/f17.txt").text(), "file 42/17\n");
    assert_eq!(s.get("/d99/f99.txt").text(), "file 99/99\n");
    s.signal(libc::SIGHUP);
    s.wait_log("atomserve: reloaded", 1, Duration::from_secs(30));
    assert!(s.log().contains("10002 files ("), "{}", s.log());
    assert_eq!(stats(&s)["cache"]["reused_files"], 10_002);
    assert_eq!(s.get("/d0/f0.txt").text(), "file 0/0\n");
}

//! No heap allocation per request on the keep-alive hot path, proven with a counting global
//! allocator: the server runs inside this test process (its own binary, so its signal handlers
//! and threads disturb no other test), and every allocation made on a worker thread is counted
//! while real clients send thousands of requests over loopback on connections already open.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use common::*;

/// Counts allocations made by threads named `atomserve-w*` (the workers).
struct Counting;

static WORKER_ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// 0: not known yet, 1: finding out (allocations meanwhile are the lookup's own), 2: a
    /// worker, 3: another thread.
    static KIND: Cell<u8> = const { Cell::new(0) };
}

fn note() {
    let _ = KIND.try_with(|kind| match kind.get() {
        0 => {
            kind.set(1);
            let worker = std::thread::current().name().is_some_and(|n| n.starts_with("atomserve-w"));
            kind.set(if worker { 2 } else { 3 });
            if worker {
                WORKER_ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
            }
        }
        2 => {
            WORKER_ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        _ => {}
    });
}

// SAFETY: every call is forwarded to the system allocator unchanged; `note` only touches a
// thread-local and an atomic, and guards against re-entry.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        // SAFETY: forwarded unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// One round of the request mix on an open keep-alive connection.
fn round(c: &mut TcpStream, etag: &str) {
    let mix = [
        "GET /index.html HTTP/1.1\r\nHost: t\r\n\r\n".to_string(),
        "GET /assets/app-Ab12Cd34.js HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip, deflate, br, zstd\r\n\r\n"
            .to_string(),
        format!("GET /index.html HTTP/1.1\r\nHost: t\r\nIf-None-Match: {etag}\r\n\r\n"),
        "GET /big.bin HTTP/1.1\r\nHost: t\r\nRange: bytes=100-199\r\n\r\n".to_string(),
        "GET /client/route HTTP/1.1\r\nHost: t\r\n\r\n".to_string(),
        "GET /missing.png HTTP/1.1\r\nHost: t\r\n\r\n".to_string(),
        "HEAD /docs/ HTTP/1.1\r\nHost: t\r\n\r\n".to_string(),
        // `_redirects`: a dynamic redirect (the 99th of 100), a static one, a rewrite.
        "GET /d98/a/b%20c HTTP/1.1\r\nHost: t\r\n\r\n".to_string(),
        "GET /s99?q=1 HTTP/1.1\r\nHost: t\r\n\r\n".to_string(),
        "GET /app/settings HTTP/1.1\r\nHost: t\r\n\r\n".to_string(),
    ];
    for (i, req) in mix.iter().enumerate() {
        c.write_all(req.as_bytes()).unwrap();
        let r = read_response(c, i == 6).unwrap();
        assert!(matches!(r.status, 200 | 206 | 301 | 302 | 304 | 404), "{}", r.status);
        assert_eq!(r.header("x-frame-options"), Some("DENY"), "{req}");
    }
    // Pipelined: three requests in one write, three responses in one sendmsg.
    c.write_all(mix[..3].concat().as_bytes()).unwrap();
    for _ in 0..3 {
        read_response(c, false).unwrap();
    }
    // A pipelined batch large enough to be coalesced into more than a small buffer's worth
    // (16 responses of the index, as `wrk -s pipeline.lua` sends): on epoll the copy's buffer
    // comes from the worker's spares, not the allocator; on the ring, which sends the batch as
    // one iovec per response, the queue's chunks and the send's fixed iovec array hold it.
    c.write_all(mix[0].repeat(16).as_bytes()).unwrap();
    for _ in 0..16 {
        assert_eq!(read_response(c, false).unwrap().status, 200);
    }
}

#[test]
fn the_keep_alive_hot_path_allocates_nothing() {
    let root = fixture_root("allocations");
    // The hot path with a full rule set: 100 `_headers` rules (matched at request time for the
    // 404s and redirects) and 100 dynamic + 100 static `_redirects` rules.
    let mut headers = String::from("/*\n  X-Frame-Options: DENY\n");
    headers.extend((0..99).map(|i| format!("/p{i}/*\n  X-Rule: {i}\n")));
    let mut redirects: String = (0..100).map(|i| format!("/s{i} /docs/ 301\n")).collect();
    redirects.extend((0..99).map(|i| format!("/d{i}/:x/* /t/:x/:splat 302\n")));
    redirects.push_str("/app/* /docs/index.html 200\n");
    std::fs::write(root.path.join("_headers"), headers).unwrap();
    std::fs::write(root.path.join("_redirects"), redirects).unwrap();
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let root_arg = root.path.to_str().unwrap().to_string();
    // The server runs in this process: `make test`'s --seccomp pass must not filter the test.
    std::env::remove_var("ATOMSERVE_SECCOMP");
    let config = atomserve::config::Config::parse_from([
        "atomserve",
        "--root",
        &root_arg,
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--admin-listen",
        "none",
        "--workers",
        "2",
    ]);
    let server = std::thread::spawn(move || atomserve::server::run(&config).map_err(|e| e.to_string()));
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let started = Instant::now();
    let mut conns: Vec<TcpStream> = loop {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(100)) {
            Ok(_) => break (0..8).map(|_| connect(addr)).collect(),
            Err(_) if started.elapsed() < Duration::from_secs(30) => {
                std::thread::sleep(Duration::from_millis(50))
            }
            Err(e) => panic!("the server did not start: {e}"),
        }
    };
    let mut first = conns[0].try_clone().unwrap();
    first.write_all(b"GET /index.html HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let etag = read_response(&mut first, false).unwrap().header("etag").unwrap().to_string();

    // Warm-up: buffers reach their working sizes, every connection has answered every kind.
    for _ in 0..20 {
        for c in conns.iter_mut() {
            round(c, &etag);
        }
    }
    let before = WORKER_ALLOCATIONS.load(Ordering::Relaxed);
    for _ in 0..200 {
        for c in conns.iter_mut() {
            round(c, &etag);
        }
    }
    let after = WORKER_ALLOCATIONS.load(Ordering::Relaxed);
    let requests = 200 * 8 * 29;
    assert_eq!(
        after - before,
        0,
        "{} allocations on worker threads over {requests} requests",
        after - before
    );

    drop(conns);
    drop(first);
    // SAFETY: kill(2) on this very process; the server's SIGTERM handler drains and returns.
    unsafe { libc::kill(std::process::id() as i32, libc::SIGTERM) };
    assert_eq!(server.join().unwrap(), Ok(()));
}

//! Files too large for memory (over `--max-cached-file`, or past `--cache-budget`) are sent from
//! a descriptor opened beneath the root at load time, with sendfile(2): whole, in ranges, to
//! slow readers, without starving other connections, and safely when the file changes.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;

fn request(s: &Server, head: &str) -> Response {
    let mut c = s.connect();
    write!(c, "{head}\r\nHost: t\r\nConnection: close\r\n\r\n").unwrap();
    read_response(&mut c, head.starts_with("HEAD")).unwrap()
}

fn expected(range: std::ops::Range<usize>) -> Vec<u8> {
    range.map(big_byte).collect()
}

#[test]
fn a_file_over_the_limit_is_sent_from_disk_whole_and_in_ranges() {
    let root = fixture_root("bigfiles");
    let s = Server::start(&root.path, &["--max-cached-file", "1M"]);
    assert!(s.log().contains("1 files over --max-cached-file"), "{}", s.log());

    let r = s.get("/big.bin");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some(BIG_LEN.to_string().as_str()));
    assert!(r.body == expected(0..BIG_LEN), "the body differs from the file");
    assert_eq!(r.header("accept-ranges"), Some("bytes"));
    let etag = r.header("etag").unwrap().to_string();
    assert!(etag.starts_with('"') && etag.contains("-m"), "{etag}");
    assert!(r.header("last-modified").is_some());
    assert!(r.header("vary").is_none(), "one representation only");

    let r = request(&s, "GET /big.bin HTTP/1.1\r\nRange: bytes=1000-1999");
    assert_eq!(r.status, 206);
    assert_eq!(r.header("content-range"), Some(format!("bytes 1000-1999/{BIG_LEN}").as_str()));
    assert_eq!(r.body, expected(1000..2000));
    let r = request(&s, "GET /big.bin HTTP/1.1\r\nRange: bytes=-10");
    assert_eq!(r.body, expected(BIG_LEN - 10..BIG_LEN));
    let r = request(&s, &format!("GET /big.bin HTTP/1.1\r\nRange: bytes={BIG_LEN}-"));
    assert_eq!(r.status, 416);
    assert_eq!(r.header("content-range"), Some(format!("bytes */{BIG_LEN}").as_str()));

    let r = request(&s, "HEAD /big.bin HTTP/1.1");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some(BIG_LEN.to_string().as_str()));
    let r = request(&s, &format!("GET /big.bin HTTP/1.1\r\nIf-None-Match: {etag}"));
    assert_eq!(r.status, 304);
    assert!(r.body.is_empty());

    // Keep-alive and pipelining across a disk file and cached ones: in order, byte-exact.
    let mut c = s.connect();
    c.write_all(
        b"GET /big.bin HTTP/1.1\r\nHost: t\r\nRange: bytes=5-9\r\n\r\n\
          GET /index.html HTTP/1.1\r\nHost: t\r\n\r\n\
          GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n\
          GET /assets/app-Ab12Cd34.js HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    assert_eq!(read_response(&mut c, false).unwrap().body, expected(5..10));
    assert_eq!(read_response(&mut c, false).unwrap().text(), INDEX);
    assert!(read_response(&mut c, false).unwrap().body == expected(0..BIG_LEN));
    assert_eq!(read_response(&mut c, false).unwrap().text(), APP_JS);
}

#[test]
fn past_the_budget_the_largest_files_go_to_disk() {
    let root = fixture_root("budget");
    // 64 KiB of memory: every small file fits, the 5 MiB one does not.
    let s = Server::start(&root.path, &["--cache-budget", "64K"]);
    assert!(s.log().contains("1 files over"), "{}", s.log());
    assert!(s.get("/big.bin").body == expected(0..BIG_LEN));
    assert_eq!(s.get("/").text(), INDEX);
    // The snapshot's byte count is what memory holds: the disk file is not in it.
    let mut a = connect(s.admin.unwrap());
    a.write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").unwrap();
    let m = read_response(&mut a, false).unwrap().text();
    let bytes: u64 = m
        .lines()
        .find_map(|l| l.strip_prefix("atomserve_cache_bytes "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap();
    assert!(bytes < 64 * 1024, "{bytes}");
}

/// Reads a response slowly through a tiny receive buffer: the server's socket fills, sendfile
/// returns EAGAIN, and the send must resume on EPOLLOUT where it stopped.
/// A download whose last bytes use up exactly its share of a turn (5 MiB is 20 × 256 KiB) is
/// still finished: its duration recorded, the next request timed afresh. On the ring the share
/// ran out before the end-of-response bookkeeping, which was then skipped: the histogram counted
/// none of these downloads.
#[test]
fn downloads_that_end_with_their_share_are_counted() {
    let root = fixture_root("bigfiles-share");
    let s = Server::start(&root.path, &["--max-cached-file", "1M"]);
    let mut c = s.connect();
    for _ in 0..3 {
        write!(c, "GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        let r = read_response(&mut c, false).unwrap();
        assert_eq!((r.status, r.body.len()), (200, BIG_LEN));
    }
    let metrics = s.admin_get("/metrics").text();
    let count = |name: &str| -> u64 {
        let line = metrics.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("no {name}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert_eq!(count("atomserve_http_request_duration_seconds_count "), 3, "{metrics}");
}

#[test]
fn a_slow_reader_gets_every_byte() {
    let root = fixture_root("slow-reader");
    let s = Server::start(&root.path, &["--max-cached-file", "1M"]);
    let mut c = s.connect();
    c.write_all(b"GET /big.bin HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    let started = Instant::now();
    loop {
        match c.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => panic!("{e}"),
        }
        if got.len() < 2 * 1024 * 1024 {
            std::thread::sleep(Duration::from_millis(2)); // slow at first
        }
        assert!(started.elapsed() < Duration::from_secs(30));
    }
    let head_end = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert!(got[head_end..] == expected(0..BIG_LEN));
}

/// One client downloading a large file as fast as it can must not hold up another client on
/// the same worker: a disk file is sent a share at a time (the worker's ready list).
#[test]
fn a_fast_download_does_not_starve_other_connections() {
    let root = fixture_root("fairness");
    let huge: Vec<u8> = (0..64 * 1024 * 1024).map(|i: usize| (i % 253) as u8).collect();
    fs::write(root.path.join("huge.bin"), &huge).unwrap();
    let s = Server::start(&root.path, &["--max-cached-file", "1M", "--workers", "1"]);
    let addr = s.addr;
    let downloader = std::thread::spawn(move || {
        let mut total = 0;
        for _ in 0..4 {
            let mut c = connect(addr);
            c.write_all(b"GET /huge.bin HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").unwrap();
            let mut buf = vec![0u8; 1 << 20];
            loop {
                match c.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => total += n,
                    Err(e) => panic!("{e}"),
                }
            }
        }
        total
    });
    std::thread::sleep(Duration::from_millis(20));
    let mut worst = Duration::ZERO;
    let mut c = s.connect();
    for _ in 0..50 {
        let t = Instant::now();
        c.write_all(b"GET /index.html HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        assert_eq!(read_response(&mut c, false).unwrap().text(), INDEX);
        worst = worst.max(t.elapsed());
        std::thread::sleep(Duration::from_millis(5));
    }
    let total = downloader.join().unwrap();
    assert!(total > 4 * 64 * 1024 * 1024, "{total}");
    // Generous for a shared, noisy machine. (On loopback the socket buffer fills often enough
    // that this also holds without the per-turn share; `out_queue`'s unit test pins the share.)
    assert!(worst < Duration::from_millis(100), "worst small-request latency {worst:?}");
}

/// Sent from its source file: over `--max-cached-file` (not read), and read but sent from the
/// page cache (`--large-bodies page-cache`).
const FROM_SOURCE: [&[&str]; 2] = [&["--max-cached-file", "1M"], &["--large-bodies", "page-cache"]];

/// The file shrinks after load: the promised Content-Length cannot be kept, so the connection
/// closes early (the client sees a truncated body, not a wrong one), and the server goes on.
#[test]
fn a_file_that_shrank_closes_the_connection_and_nothing_else() {
    for args in FROM_SOURCE {
        let root = fixture_root("shrank");
        let s = Server::start(&root.path, args);
        let f = fs::OpenOptions::new().write(true).open(root.path.join("big.bin")).unwrap();
        f.set_len(1000).unwrap();
        let mut c: TcpStream = s.connect();
        c.write_all(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        let mut got = Vec::new();
        let _ = c.read_to_end(&mut got);
        let head_end = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        assert_eq!(got.len() - head_end, 1000, "{args:?}: the bytes the file still has, then a close");
        assert_eq!(s.get("/index.html").text(), INDEX);
    }
}

/// Each reload opens the source files again (a file sent from its page cache too: it is sent
/// through the descriptor that load read it with); the old snapshot's descriptors are closed
/// once it is reclaimed, so reloads do not leak descriptors.
#[test]
fn reloads_do_not_leak_disk_file_descriptors() {
    for args in FROM_SOURCE {
        reloads_do_not_leak(args);
    }
}

fn reloads_do_not_leak(args: &[&str]) {
    let root = fixture_root("disk-reload");
    let s = Server::start(&root.path, args);
    assert_eq!(s.get("/big.bin").status, 200);
    let before = settled_fds(&s);
    for i in 0..10 {
        s.signal(libc::SIGHUP);
        let want = "reloaded (";
        let end = Instant::now() + Duration::from_secs(10);
        while s.log().matches(want).count() < i + 1 {
            assert!(Instant::now() < end, "{}", s.log());
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(s.get("/big.bin").body.len(), BIG_LEN);
    }
    let after = s.wait_fds(before, Duration::from_secs(5));
    // A leak would grow with every reload (at least +10 here); one connection still in its
    // lingering close when the count is taken must not fail the test on a busy machine.
    assert!(after <= before + 1, "fds {before} before, {after} after 10 reloads");
}

/// The fd count once it has stayed the same for half a second (closing connections settle).
fn settled_fds(s: &Server) -> usize {
    let mut last = s.open_fds();
    let mut since = Instant::now();
    let end = Instant::now() + Duration::from_secs(5);
    while since.elapsed() < Duration::from_millis(500) && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
        let n = s.open_fds();
        if n != last {
            last = n;
            since = Instant::now();
        }
    }
    last
}

/// `--large-bodies page-cache`: a cached body of 512 KiB or more is sent from its source file —
/// the server holds that file open and no copy of it —, byte-exact, in ranges and compressed,
/// tagged by its content; `--large-bodies memfd`: from a copy in memory (the file is not held).
/// `auto` picks one by the host's shmem huge pages (`cache::pack`), so both are forced here.
#[test]
fn large_bodies_are_sent_from_the_page_cache_or_a_memfd_as_asked() {
    let root = fixture_root("large-bodies");
    let text: Vec<u8> =
        (0..700_000u32).flat_map(|i| format!("line {} of a large log\n", i % 9_973).into_bytes()).collect();
    let text = &text[..700_000];
    fs::write(root.path.join("assets/large.txt"), text).unwrap();
    let sources = [
        fs::canonicalize(root.path.join("assets/large.txt")).unwrap(),
        fs::canonicalize(root.path.join("big.bin")).unwrap(),
    ];
    for (mode, held) in [("page-cache", true), ("memfd", false)] {
        let s = Server::start(&root.path, &["--large-bodies", mode]);
        let open: Vec<_> = fs::read_dir(format!("/proc/{}/fd", s.pid()))
            .unwrap()
            .filter_map(|e| fs::read_link(e.unwrap().path()).ok())
            .collect();
        for source in &sources {
            assert_eq!(open.contains(source), held, "{mode}: {} held open: {open:?}", source.display());
        }
        let r = s.get("/big.bin");
        assert!(r.body == expected(0..BIG_LEN), "{mode}: the body differs from the file");
        let etag = r.header("etag").unwrap();
        assert!(!etag.contains("-m"), "{mode}: a content tag, not size and mtime: {etag}");
        let r = request(&s, "GET /big.bin HTTP/1.1\r\nRange: bytes=4000000-4000009");
        assert_eq!((r.status, r.body.clone()), (206, expected(4_000_000..4_000_010)), "{mode}");
        s.wait_log("variants complete", 1, Duration::from_secs(120));
        let r = request(&s, "GET /assets/large.txt HTTP/1.1\r\nAccept-Encoding: br");
        assert_eq!(r.header("content-encoding"), Some("br"), "{mode}");
        assert!(decode(&r) == text, "{mode}: the brotli variant differs from the file");
        assert!(s.get("/assets/large.txt").body == text, "{mode}");
        // The log says where those bodies are, at start and at each reload: the byte counts of
        // both lines are what the snapshot holds, which they are not part of.
        let note = format!("; 2 bodies ({} bytes) sent from their files' page cache", BIG_LEN + 700_000);
        assert_eq!(
            s.log().contains(&format!("to compress in the background{note})")),
            held,
            "{mode}: {}",
            s.log()
        );
        s.signal(libc::SIGHUP);
        s.wait_log("reloaded (Signal)", 1, Duration::from_secs(20));
        assert_eq!(s.log().contains(&format!("files to compress{note}")), held, "{mode}: {}", s.log());
        // And so do /metrics and /stats, for whoever watches memory from a dashboard.
        let (files, bytes) = if held { (2, (BIG_LEN + 700_000) as u64) } else { (0, 0) };
        let metrics = s.admin_get("/metrics").text();
        let metric = |name: &str| -> Option<u64> {
            metrics.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        };
        assert_eq!(metric("atomserve_cache_page_cache_files"), Some(files), "{mode}:\n{metrics}");
        assert_eq!(metric("atomserve_cache_page_cache_bytes"), Some(bytes), "{mode}");
        assert_eq!(metric("atomserve_cache_disk_files"), Some(0), "{mode}");
        let stats: serde_json::Value = serde_json::from_slice(&s.admin_get("/stats").body).expect("JSON");
        assert_eq!(stats["cache"]["page_cache_files"], files, "{mode}: {stats}");
        assert_eq!(stats["cache"]["page_cache_bytes"], bytes, "{mode}: {stats}");
    }
}

/// A large download keeps little in its socket that is not yet on the wire: once a file has
/// used its share of a turn the connection sets `TCP_NOTSENT_LOWAT` (128 KiB), so a client that
/// stops reading holds about its receive window plus that much of the server's kernel memory,
/// not a send buffer grown to 4 MiB — and on a fast client the kernel transmits each share from
/// the server's `sendfile`, not later from the client's ACKs (docs/benchmarks.md). Read on the
/// server's socket with `ss -ti` (iproute2), which prints the `tcpi_notsent_bytes` of TCP_INFO.
#[test]
fn a_large_download_keeps_little_unsent_in_its_socket() {
    const HUGE: usize = 32 << 20;
    let root = fixture_root("bigfiles-paced");
    fs::write(root.path.join("huge.bin"), vec![7u8; HUGE]).unwrap();
    let s = Server::start(&root.path, &[]);
    let mut c = s.connect();
    // SO_RCVBUF: the client's receive window stops growing, so a pause in reading backs the
    // server's data up into the server's socket at once.
    set_sockopt(&c, libc::SOL_SOCKET, libc::SO_RCVBUF, 64 * 1024 as libc::c_int);
    write!(c, "GET /huge.bin HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    // 2 MiB read at full speed — the server's file shares go out whole and it moves on to its
    // other connections — then the client stops reading.
    let mut buf = vec![0; 64 * 1024];
    let mut got = c.read(&mut buf).unwrap();
    let head = buf[..got].windows(4).position(|w| w == b"\r\n\r\n").expect("the head in the first read") + 4;
    assert!(buf.starts_with(b"HTTP/1.1 200 "), "{}", String::from_utf8_lossy(&buf[..head]));
    got -= head; // body bytes from here on
    while got < 2 << 20 {
        got += c.read(&mut buf).unwrap();
    }
    // Until the server's queue stops growing (three equal readings 50 ms apart).
    let (mut last, mut same) = (u64::MAX, 0);
    let end = Instant::now() + Duration::from_secs(10);
    while same < 3 && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
        let now = server_notsent(s.addr.port());
        same = if now == last { same + 1 } else { 0 };
        last = now;
    }
    assert!(last <= 256 * 1024, "{last} bytes queued and not sent for a client that stopped reading");
    // The rest still arrives once the client reads again.
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    while got < HUGE {
        let n = c.read(&mut buf[..(HUGE - got).min(64 * 1024)]).unwrap();
        assert!(n > 0, "closed after {got} bytes of the body");
        assert!(buf[..n].iter().all(|&b| b == 7), "a wrong byte");
        got += n;
    }
}

/// Bytes queued and not yet sent in the server's end of the one established connection on
/// `port` (`notsent:` of `ss -ti`, printed only when not zero).
fn server_notsent(port: u16) -> u64 {
    let out = std::process::Command::new("ss")
        .args(["-tniH", "state", "established", &format!("( sport = :{port} )")])
        .output()
        .expect("ss (iproute2)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && !text.trim().is_empty(), "ss: {text}");
    text.split_whitespace().find_map(|w| w.strip_prefix("notsent:")).map_or(0, |n| n.parse().unwrap())
}

/// A client that pipelines requests for a large file faster than it reads the answers, while
/// reading as fast as it can: the server takes in at most its input limit beyond what the
/// sockets hold, then stops reading that connection until its output is sent (epoll by not
/// reading while output is pending; the ring by cancelling its receive past
/// `ring_conn::PAUSE_AT`). Requests trickle in 64 KiB writes, each smaller than one of the
/// ring's receive buffers: a burst larger than the buffer ring would end the receive with
/// `ENOBUFS`, which stops the reading by itself and hides a missing pause (it did, in a first
/// version of this test).
#[test]
fn input_behind_a_download_is_not_taken_without_bound() {
    let root = fixture_root("bigfiles-flood");
    let s = Server::start(&root.path, &["--max-cached-file", "1M", "--workers", "1"]);
    let c = s.connect();
    let mut reader = c.try_clone().unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reading = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 1 << 20];
            let mut total = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match reader.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => total += n as u64,
                }
            }
            total
        })
    };
    let one = b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n";
    let chunk: Vec<u8> = one.iter().copied().cycle().take(one.len() * (64 * 1024 / one.len())).collect();
    // Non-blocking writes (`MSG_DONTWAIT`) on the blocking socket the reader shares.
    let send = |bytes: &[u8]| {
        use std::os::fd::AsRawFd;
        // SAFETY: `bytes` is valid for its length during the call; the fd is `c`, open.
        let n = unsafe { libc::send(c.as_raw_fd(), bytes.as_ptr().cast(), bytes.len(), libc::MSG_DONTWAIT) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock, "{e}");
        }
        n.max(0) as usize
    };
    let (mut offered, mut taken) = (0usize, 0usize);
    let end = Instant::now() + Duration::from_secs(3);
    while Instant::now() < end {
        offered += chunk.len();
        let mut at = 0;
        while at < chunk.len() {
            match send(&chunk[at..]) {
                0 => break,
                n => at += n,
            }
        }
        taken += at;
        std::thread::sleep(Duration::from_millis(5));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = c.shutdown(std::net::Shutdown::Both);
    let read = reading.join().unwrap();
    eprintln!("offered {offered} bytes of requests, the sockets and server took {taken}; {read} read");
    assert!(read > 20 << 20, "only {read} bytes of answers read: the download did not run");
    // The client's send buffer and the server's receive buffer grow to at most 4 and 6 MiB
    // (tcp_wmem, tcp_rmem), and the server may hold 256 KiB more.
    assert!(taken < 12 << 20, "{taken} of {offered} bytes of requests taken behind a download");
    // And the server goes on, with every receive buffer back (the ring's cancelled receives).
    assert_eq!(s.get("/index.html").status, 200);
    s.assert_recv_buffers_back();
}

//! Zero-downtime upgrades with `--reuse-port`: under continuous load, a second atomserve starts on
//! the same addresses, the first gets SIGTERM, and no client sees a failed request or a reset.
//!
//! The clients are honest about HTTP/1.1 keep-alive: a server may close an idle persistent
//! connection at any moment, so a request sent on a *reused* connection that gets back no byte
//! at all (end of stream) is retried once on a new connection — the rule browsers and
//! RFC 9112 §9.3.1 follow. Everything else counts as a failure: an error on a new connection, a
//! reset anywhere (even where a browser would retry), a short or wrong response, a timeout.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// What the clients saw, summed over all of them.
#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    /// Requests that got nothing back on a reused connection, retried on a new one.
    retried: AtomicU64,
    /// Responses carrying `Connection: close` (the old process draining).
    told_to_close: AtomicU64,
    new_connections: AtomicU64,
    resets: AtomicU64,
    failures: Mutex<Vec<String>>,
}

impl Tally {
    fn fail(&self, why: String) {
        let mut f = self.failures.lock().unwrap();
        if f.len() < 20 {
            f.push(why);
        } else {
            f[19] = format!("… and more, last: {why}");
        }
    }
}

/// How one request went.
enum Outcome {
    /// A complete, correct response; `close`: the server said `Connection: close`.
    Ok { close: bool },
    /// Not one byte came back (end of stream or an error before any byte).
    Nothing { error: Option<std::io::Error> },
    /// Anything else.
    Broken(String),
}

const PATHS: [(&str, &str); 2] = [("/index.html", INDEX), ("/assets/app-Ab12Cd34.js", APP_JS)];

fn is_reset(e: &std::io::Error) -> bool {
    matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe)
}

/// Sends one GET and reads its response.
fn request(s: &mut TcpStream, path: &str, want: &str) -> Outcome {
    if let Err(e) = s.write_all(format!("GET {path} HTTP/1.1\r\nHost: upgrade\r\n\r\n").as_bytes()) {
        return Outcome::Nothing { error: Some(e) };
    }
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match s.read(&mut chunk) {
            Ok(0) if buf.is_empty() => return Outcome::Nothing { error: None },
            Ok(0) => return Outcome::Broken(format!("end of stream mid-head after {} bytes", buf.len())),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if buf.is_empty() => return Outcome::Nothing { error: Some(e) },
            Err(e) => return Outcome::Broken(format!("{e} mid-head")),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    if !head.starts_with("http/1.1 200 ") {
        return Outcome::Broken(format!("status {:?}", head.lines().next()));
    }
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(usize::MAX);
    let close = head.contains("\r\nconnection: close");
    while buf.len() < head_end + len {
        match s.read(&mut chunk) {
            Ok(0) => return Outcome::Broken("end of stream mid-body".into()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Outcome::Broken(format!("{e} mid-body")),
        }
    }
    if &buf[head_end..] != want.as_bytes() {
        return Outcome::Broken(format!("wrong body for {path}"));
    }
    Outcome::Ok { close }
}

/// One client: keep-alive requests until `stop`; with `churn`, a new connection every few
/// requests (new visitors), without it one connection for as long as the server keeps it (a
/// browser's pool) — those are the ones a drain must close.
fn client(addr: SocketAddr, seed: u64, churn: bool, stop: &AtomicBool, tally: &Tally) {
    let mut rng = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut conn: Option<(TcpStream, u32)> = None;
    while !stop.load(Relaxed) {
        let (path, want) = PATHS[(next() % 2) as usize];
        if churn && next() % 4 == 0 {
            conn = None;
        }
        let (mut s, used) = match conn.take() {
            Some(c) => c,
            None => match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
                Ok(s) => {
                    tally.new_connections.fetch_add(1, Relaxed);
                    s.set_nodelay(true).unwrap();
                    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                    (s, 0)
                }
                Err(e) => {
                    tally.resets.fetch_add(is_reset(&e) as u64, Relaxed);
                    tally.fail(format!("connect: {e}"));
                    continue;
                }
            },
        };
        let mut outcome = request(&mut s, path, want);
        if let Outcome::Nothing { error } = &outcome {
            if let Some(e) = error {
                tally.resets.fetch_add(is_reset(e) as u64, Relaxed);
            }
            let timed_out =
                matches!(error, Some(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut));
            if used > 0 && !timed_out {
                // The server closed an idle keep-alive connection as we sent: retry, once, anew.
                tally.retried.fetch_add(1, Relaxed);
                match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
                    Ok(fresh) => {
                        tally.new_connections.fetch_add(1, Relaxed);
                        fresh.set_nodelay(true).unwrap();
                        fresh.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                        s = fresh;
                        outcome = request(&mut s, path, want);
                        if let Outcome::Nothing { error: Some(e) } = &outcome {
                            tally.resets.fetch_add(is_reset(e) as u64, Relaxed);
                        }
                    }
                    Err(e) => outcome = Outcome::Broken(format!("reconnect: {e}")),
                }
            }
        }
        match outcome {
            Outcome::Ok { close } => {
                tally.ok.fetch_add(1, Relaxed);
                if close {
                    tally.told_to_close.fetch_add(1, Relaxed);
                } else {
                    conn = Some((s, used + 1));
                }
            }
            Outcome::Nothing { error } => {
                tally.fail(format!("{path}: nothing back on a new connection ({error:?})"))
            }
            Outcome::Broken(why) => tally.fail(format!("{path}: {why}")),
        }
    }
}

/// Reads the head of the response to `GET /big.bin`, which must be a 200.
fn read_head(s: &mut TcpStream) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut byte).expect("response head"), 1, "end of stream in the head");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200 "), "{head}");
}

/// Reads the 5 MiB body slowly (64 KiB per 5 ms, about 0.4 s), so that it is still in flight
/// while its server drains: whether it is intact, and the connection.
fn slow_body(mut s: TcpStream) -> (bool, TcpStream) {
    let mut chunk = vec![0u8; 64 * 1024];
    let mut at = 0;
    let mut intact = true;
    while at < BIG_LEN {
        let want = chunk.len().min(BIG_LEN - at);
        let n = s.read(&mut chunk[..want]).expect("body");
        assert!(n > 0, "end of stream after {at} of {BIG_LEN} bytes");
        intact &= chunk[..n].iter().enumerate().all(|(i, &b)| b == big_byte(at + i));
        at += n;
        thread::sleep(Duration::from_millis(5));
    }
    (intact, s)
}

/// Starts an atomserve that shares `addr` and `admin` with the one already there.
fn successor(root: &std::path::Path, addr: SocketAddr, admin: SocketAddr) -> Server {
    let s = Server::start(
        root,
        &[
            "--reuse-port",
            "--listen",
            &addr.to_string(),
            "--admin-listen",
            &admin.to_string(),
            "--workers",
            "2",
        ],
    );
    assert_eq!((s.addr, s.admin), (addr, Some(admin)), "the successor took over the same addresses");
    s
}

/// SIGTERM, and the drain must end with exit status 0.
fn stop(mut s: Server) {
    s.signal(libc::SIGTERM);
    let status = s.wait_exit(Duration::from_secs(15)).expect("the old process exits after its drain");
    assert_eq!(status.code(), Some(0), "{}", s.log());
}

#[test]
fn two_hand_overs_under_load_lose_no_request() {
    let root = fixture_root("upgrade");
    let first = Server::start(&root.path, &["--reuse-port", "--workers", "2"]);
    let (addr, admin) = (first.addr, first.admin.expect("admin listener"));

    let stopping = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let clients: Vec<_> = (0..6)
        .map(|i| {
            let (stopping, tally) = (stopping.clone(), tally.clone());
            thread::spawn(move || client(addr, i + 1, i % 2 == 0, &stopping, &tally))
        })
        .collect();
    let phase = |d: u64| thread::sleep(Duration::from_millis(d));
    // A browser tab of generation 1, which will be mid-download when its server is told to stop.
    let mut tab = connect(addr);
    tab.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut tab, false).unwrap().status, 200);

    // Generation 1 alone; then 2 joins and 1 leaves; then 3 joins and 2 leaves. The second
    // hand-over checks that the steering still picks the newcomer once the group has shrunk and
    // grown again.
    phase(400);
    let second = successor(&root.path, addr, admin);
    phase(300);
    // The response has begun (its head is here) before the old server is told to stop.
    tab.write_all(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    read_head(&mut tab);
    let download = thread::spawn(move || slow_body(tab));
    stop(first);
    let (intact, mut tab) = download.join().unwrap();
    assert!(intact, "the 5 MiB response in flight at SIGTERM arrived whole");
    assert!(is_closed(&mut tab), "and then the draining server closed the connection");
    phase(400);
    let third = successor(&root.path, addr, admin);
    phase(300);
    stop(second);
    let ok_before = tally.ok.load(Relaxed);
    let t = Instant::now();
    phase(700);
    let ok_after = tally.ok.load(Relaxed) - ok_before;

    stopping.store(true, Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let failures = tally.failures.lock().unwrap().clone();
    eprintln!(
        "{} requests ok ({} after the last hand-over, in {:?}), {} new connections, {} told to \
         close, {} retried after an idle close, {} resets, {} failures",
        tally.ok.load(Relaxed),
        ok_after,
        t.elapsed(),
        tally.new_connections.load(Relaxed),
        tally.told_to_close.load(Relaxed),
        tally.retried.load(Relaxed),
        tally.resets.load(Relaxed),
        failures.len(),
    );
    assert!(failures.is_empty(), "failed requests: {failures:#?}\nlog of the last:\n{}", third.log());
    assert_eq!(tally.resets.load(Relaxed), 0, "connections reset");
    assert!(ok_after > 100, "the third generation serves alone: {ok_after} requests");
    // And the admin port moved along: the newest process answers /healthz with 200.
    let mut c = connect(admin);
    c.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut c, false).unwrap().status, 200);
}

#[test]
fn a_second_process_without_reuse_port_cannot_bind() {
    // The hand-over needs the flag on both sides; without it the newcomer fails plainly.
    let root = fixture_root("upgrade-noflag");
    let first = Server::start(&root.path, &["--reuse-port", "--workers", "1"]);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_atomserve"))
        .args(["--root", root.path.to_str().unwrap(), "--listen", &first.addr.to_string()])
        .args(["--admin-listen", "none", "--workers", "1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot listen on") && err.contains("in use"), "{err}");
}

#[test]
fn once_the_newcomer_serves_it_takes_every_new_connection() {
    // Without the steering the kernel would hash about half of them to the old process, whose
    // drain then has more to finish (and, before the accept queue is drained, more to lose).
    let root = fixture_root("upgrade-steer");
    let old = Server::start(&root.path, &["--reuse-port", "--workers", "1"]);
    let new = successor(&root.path, old.addr, old.admin.unwrap());
    // Sockets only (listeners and connections): a worker may still be making its epoll fd.
    let sockets = |s: &Server| {
        std::fs::read_dir(format!("/proc/{}/fd", s.pid()))
            .unwrap()
            .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .filter(|target| target.to_string_lossy().starts_with("socket:"))
            .count()
    };
    let (old_sockets, new_sockets) = (sockets(&old), sockets(&new));
    let held: Vec<TcpStream> = (0..64)
        .map(|_| {
            let mut c = connect(old.addr);
            c.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
            assert_eq!(read_response(&mut c, false).unwrap().status, 200);
            c
        })
        .collect();
    assert_eq!(sockets(&old), old_sockets, "the old process took none");
    assert_eq!(sockets(&new), new_sockets + held.len(), "the new one took all {}", held.len());
}

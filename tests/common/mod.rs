//! Shared harness for the end-to-end tests: a real `atomserve` process on ephemeral loopback
//! ports, a fixture document root, and a small raw HTTP/1.1 client.

#![allow(dead_code)]

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running server.
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    pub admin: Option<SocketAddr>,
    pub log: Arc<Mutex<String>>,
}

/// A temporary document root that is removed on drop.
pub struct Root {
    pub path: PathBuf,
}

impl Drop for Root {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

pub const INDEX: &str = "<!doctype html><title>fixture</title><div id=root></div>\n";
pub const DOCS_INDEX: &str = "<!doctype html><title>docs</title>\n";
pub const APP_JS: &str = "console.log('app');\n";
pub const SECRET: &str = "TOP-SECRET-DOTFILE\n";
pub const BIG_LEN: usize = 5 * 1024 * 1024;

/// Byte `i` of the 5 MiB fixture file: a pattern that makes misplaced bytes detectable.
pub fn big_byte(i: usize) -> u8 {
    (i % 251) as u8
}

/// Builds a fixture root: index.html, nested dirs, a fingerprinted asset, a 5 MiB file, a
/// dotfile, a symlink inside the root and one that leads out of it.
pub fn fixture_root(name: &str) -> Root {
    let path = std::env::temp_dir().join(format!("atomserve-test-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&path);
    fs::create_dir_all(path.join("assets")).unwrap();
    fs::create_dir_all(path.join("docs/deep")).unwrap();
    fs::create_dir_all(path.join(".git")).unwrap();
    fs::write(path.join("index.html"), INDEX).unwrap();
    fs::write(path.join("docs/index.html"), DOCS_INDEX).unwrap();
    fs::write(path.join("docs/deep/page.txt"), "deep\n").unwrap();
    fs::write(path.join("assets/app-Ab12Cd34.js"), APP_JS).unwrap();
    fs::write(path.join("assets/style-Zz9.css"), "body{}\n").unwrap();
    fs::write(path.join("assets/logo.svg"), "<svg xmlns='http://www.w3.org/2000/svg'/>\n").unwrap();
    fs::write(path.join("a b.txt"), "space\n").unwrap();
    fs::write(path.join("data.bin"), [0u8, 1, 2, 3]).unwrap();
    fs::write(path.join(".secret"), SECRET).unwrap();
    fs::write(path.join(".git/config"), SECRET).unwrap();
    let big: Vec<u8> = (0..BIG_LEN).map(big_byte).collect();
    fs::write(path.join("big.bin"), big).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", path.join("passwd")).unwrap();
    std::os::unix::fs::symlink("docs/deep/page.txt", path.join("alias.txt")).unwrap();
    Root { path }
}

impl Server {
    /// Starts atomserve on `root` with extra `args`, on ephemeral ports.
    pub fn start(root: &Path, args: &[&str]) -> Server {
        Self::start_with(root, args, |_| {})
    }

    /// As `start`, with a hook to adjust the command (environment, taskset…). Returns once the
    /// server serves and its background compression (phase 2 of the load) is complete, so that
    /// every variant exists; [`Server::start_serving`] returns as soon as it serves.
    pub fn start_with(root: &Path, args: &[&str], adjust: impl FnOnce(&mut Command)) -> Server {
        let s = Self::start_serving(root, args, adjust);
        s.wait_log("variants complete", 1, Duration::from_secs(60));
        s
    }

    /// Waits until the log holds `n` lines containing `marker`.
    pub fn wait_log(&self, marker: &str, n: usize, timeout: Duration) {
        let end = Instant::now() + timeout;
        while self.log().matches(marker).count() < n {
            assert!(Instant::now() < end, "no {n}× {marker:?} in the log:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// As `start_with`, returning as soon as the server serves (phase 1 of the load: identity
    /// bodies; variants may still be being built).
    pub fn start_serving(root: &Path, args: &[&str], adjust: impl FnOnce(&mut Command)) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_atomserve"));
        cmd.arg("--root").arg(root);
        if !args.iter().any(|a| a.starts_with("--listen")) {
            cmd.args(["--listen", "127.0.0.1:0"]);
        }
        if !args.iter().any(|a| a.starts_with("--admin-listen")) {
            cmd.args(["--admin-listen", "127.0.0.1:0"]);
        }
        cmd.args(args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        adjust(&mut cmd);
        let mut child = cmd.spawn().expect("spawn atomserve");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push_str(&line);
                sink.lock().unwrap().push('\n');
                if line.contains(" workers, ") {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(());
                    }
                }
            }
        });
        if rx.recv_timeout(Duration::from_secs(20)).is_err() {
            let _ = child.kill();
            panic!("atomserve did not start:\n{}", log.lock().unwrap());
        }
        let text = log.lock().unwrap().clone();
        let find = |marker: &str| {
            text.lines().find_map(|l| l.split_once(marker)).map(|(_, rest)| {
                let addr = rest.split_whitespace().next().unwrap_or(rest);
                addr.trim_end_matches("/healthz").parse::<SocketAddr>().expect("address in banner")
            })
        };
        let addr = find("listening on http://").expect("listening line");
        let admin = find("admin on http://");
        Server { child, addr, admin, log }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn connect(&self) -> TcpStream {
        connect(self.addr)
    }

    /// Sends one request and reads one response on a fresh connection.
    pub fn get(&self, path: &str) -> Response {
        let mut s = self.connect();
        write!(s, "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").unwrap();
        read_response(&mut s, false).expect("a response")
    }

    /// One request to the admin listener (`/stats`, `/metrics`, `/healthz`).
    pub fn admin_get(&self, path: &str) -> Response {
        let mut c = connect(self.admin.expect("admin listener"));
        write!(c, "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").unwrap();
        read_response(&mut c, false).expect("an admin response")
    }

    /// Asserts that each worker's `atomserve_uring_recv_buffers_held` on `/metrics` is 0:
    /// provided receive buffers the kernel handed over and the worker has not given back, as of
    /// its last turn (always 0 on epoll). At rest more is a leaked buffer, which the kernel no
    /// longer has for receives. (The scrape's own receive is released in the turn that answers
    /// it, after the value it reads was published.)
    pub fn assert_recv_buffers_back(&self) {
        let metrics = self.admin_get("/metrics").text();
        let held: Vec<u64> = metrics
            .lines()
            .filter_map(|l| l.strip_prefix("atomserve_uring_recv_buffers_held{worker=\""))
            .map(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()).expect("a count"))
            .collect();
        assert!(!held.is_empty(), "no atomserve_uring_recv_buffers_held in\n{metrics}");
        assert!(held.iter().all(|&n| n == 0), "buffers held: {held:?}");
    }

    /// Sends raw bytes on a fresh connection and reads one response.
    pub fn raw(&self, bytes: &[u8]) -> (Response, TcpStream) {
        let mut s = self.connect();
        s.write_all(bytes).unwrap();
        let r = read_response(&mut s, false).expect("a response");
        (r, s)
    }

    /// Open file descriptors of the server process.
    pub fn open_fds(&self) -> usize {
        fs::read_dir(format!("/proc/{}/fd", self.pid())).map(|d| d.count()).unwrap_or(0)
    }

    /// Waits until the fd count drops to `want` (connections close asynchronously).
    pub fn wait_fds(&self, want: usize, timeout: Duration) -> usize {
        let end = Instant::now() + timeout;
        loop {
            let n = self.open_fds();
            if n <= want || Instant::now() > end {
                return n;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until the fd count reaches at least `want`; false on timeout.
    pub fn wait_fds_at_least(&self, want: usize, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        while self.open_fds() < want {
            if Instant::now() > end {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid with a valid signal number.
        unsafe { libc::kill(self.pid(), sig) };
    }

    /// Stops the process (SIGSTOP) and waits until every one of its threads is stopped: kill(2)
    /// returns once the signal is queued, while each thread stops only when it next leaves the
    /// kernel — on a loaded machine, milliseconds later, and until then a worker still reaps
    /// whatever arrives.
    pub fn stop(&self) {
        self.signal(libc::SIGSTOP);
        let end = Instant::now() + Duration::from_secs(20);
        let tasks = format!("/proc/{}/task", self.pid());
        let stopped = |dir: fs::DirEntry| {
            let stat = fs::read_to_string(dir.path().join("stat")).unwrap_or_default();
            // The state is the first field after the parenthesised command name.
            let state = stat.rsplit_once(") ").map(|(_, rest)| rest.trim_start());
            matches!(state.and_then(|s| s.chars().next()), Some('T' | 't'))
        };
        while !fs::read_dir(&tasks).map(|d| d.flatten().all(stopped)).unwrap_or(false) {
            assert!(Instant::now() < end, "{tasks}: not every thread stopped within 20 s");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Waits for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `setsockopt(2)` of a plain value on a client socket; panics when the kernel refuses it.
pub fn set_sockopt<T: Copy>(c: &TcpStream, level: libc::c_int, name: libc::c_int, value: T) {
    use std::os::fd::AsRawFd;
    // SAFETY: `value` lives across the call and the length passed is its exact size; the fd is
    // the caller's open socket.
    let rc = unsafe {
        libc::setsockopt(
            c.as_raw_fd(),
            level,
            name,
            (&value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "setsockopt({level}, {name}): {}", std::io::Error::last_os_error());
}

/// Makes `c` close with a reset instead of a FIN (`SO_LINGER` with a zero timeout).
pub fn reset_on_close(c: &TcpStream) {
    set_sockopt(c, libc::SOL_SOCKET, libc::SO_LINGER, libc::linger { l_onoff: 1, l_linger: 0 });
}

pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    // `write!` issues several small writes; without this, Nagle holds the second one back until
    // the server's delayed ACK (40 ms) — a client-side artefact, not a server delay.
    s.set_nodelay(true).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// A parsed response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    pub fn count(&self, name: &str) -> usize {
        self.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)).count()
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Reads exactly one response (head + Content-Length body; none for HEAD) from `s`.
/// Returns `None` on a clean end of stream before any byte.
pub fn read_response(s: &mut TcpStream, head_request: bool) -> Option<Response> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(0) if head.is_empty() => return None,
            Ok(0) => panic!("connection closed mid-head: {:?}", String::from_utf8_lossy(&head)),
            Ok(_) => head.push(byte[0]),
            Err(e) => panic!("reading head: {e} after {:?}", String::from_utf8_lossy(&head)),
        }
        assert!(head.len() < 64 * 1024, "response head too large");
    }
    let text = String::from_utf8(head).expect("ASCII head");
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap();
    assert!(status_line.starts_with("HTTP/1.1 "), "status line {status_line:?}");
    let status: u16 = status_line[9..12].parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (n, v) = l.split_once(':').expect("header line");
            (n.to_string(), v.trim().to_string())
        })
        .collect();
    let len: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v.parse().unwrap())
        .unwrap_or(0);
    let mut body = vec![0u8; if head_request { 0 } else { len }];
    s.read_exact(&mut body).expect("body");
    Some(Response { status, headers, body })
}

/// Whether the server closed the connection: a read returns end of stream (or a reset).
pub fn is_closed(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 256];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue, // leftover bytes; keep reading
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return false
            }
            Err(_) => return true,
        }
    }
}

/// Raises this test process's open-file limit to its hard limit.
pub fn raise_fd_limit() -> u64 {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: valid pointer to an rlimit.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    lim.rlim_cur = lim.rlim_max;
    // SAFETY: valid pointer to an rlimit; only raises the soft limit to the hard one.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
    lim.rlim_cur
}

/// The body of a response, decoded from its `Content-Encoding` (br, gzip or none).
pub fn decode(r: &Response) -> Vec<u8> {
    let mut out = Vec::new();
    match r.header("content-encoding") {
        Some("br") => brotli::Decompressor::new(r.body.as_slice(), 4096).read_to_end(&mut out).unwrap(),
        Some("gzip") => flate2::read::GzDecoder::new(r.body.as_slice()).read_to_end(&mut out).unwrap(),
        Some("zstd") => return zstd::stream::decode_all(r.body.as_slice()).unwrap(),
        None => return r.body.clone(),
        Some(other) => panic!("unexpected coding {other}"),
    };
    out
}

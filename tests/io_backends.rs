//! `--io epoll|uring|auto`: which backend serves, and what happens where io_uring is refused.
//!
//! Container runtimes refuse `io_uring_setup(2)` with `EPERM` through their seccomp profile
//! (Docker's default since 2023), as does `kernel.io_uring_disabled = 2` machine-wide. The test
//! does what a runtime does: it installs a seccomp filter in the child before `exec` that fails
//! `io_uring_setup` with `EPERM` and allows everything else — never a sysctl, which would change
//! the whole machine. The rest of the suite runs on both backends (`make test` runs it again
//! with `ATOMSERVE_IO=uring`); this file pins the choice itself and the ring's resources.

mod common;

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{fixture_root, Server};

/// Makes `io_uring_setup` fail with `EPERM` in the child, as a container's seccomp profile does.
#[cfg(target_arch = "x86_64")]
fn refuse_io_uring(cmd: &mut Command) {
    const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
    let filter = [
        // Not x86-64: allow (the server is x86-64; this only keeps the filter well-formed).
        libc::sock_filter { code: 0x20, jt: 0, jf: 0, k: 4 }, // ld arch
        libc::sock_filter { code: 0x15, jt: 0, jf: 3, k: AUDIT_ARCH_X86_64 },
        libc::sock_filter { code: 0x20, jt: 0, jf: 0, k: 0 }, // ld nr
        libc::sock_filter { code: 0x15, jt: 0, jf: 1, k: libc::SYS_io_uring_setup as u32 },
        libc::sock_filter { code: 0x06, jt: 0, jf: 0, k: 0x0005_0000 | libc::EPERM as u32 }, // ERRNO
        libc::sock_filter { code: 0x06, jt: 0, jf: 0, k: 0x7fff_0000 },                      // ALLOW
    ];
    // SAFETY: between fork and exec the closure makes only two syscalls (prctl, seccomp) on
    // memory it owns (`filter`, moved in); no allocation, no lock.
    unsafe {
        cmd.pre_exec(move || {
            let prog = libc::sock_fprog { len: filter.len() as u16, filter: filter.as_ptr() as *mut _ };
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::syscall(libc::SYS_seccomp, 1, 0, &prog as *const libc::sock_fprog) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[test]
#[cfg(target_arch = "x86_64")]
fn auto_falls_back_to_epoll_with_one_line_saying_why() {
    let root = fixture_root("io-fallback");
    let s = Server::start_with(&root.path, &["--io", "auto"], |cmd| {
        cmd.env_remove("ATOMSERVE_IO");
        refuse_io_uring(cmd);
    });
    let log = s.log();
    let why: Vec<&str> = log.lines().filter(|l| l.contains("io_uring is not available")).collect();
    assert_eq!(why.len(), 1, "{log}");
    assert!(why[0].contains("Operation not permitted") && why[0].contains("serving with epoll"), "{log}");
    assert!(log.contains(", epoll; open-file limit"), "{log}");
    assert_eq!(s.get("/").status, 200);
}

#[test]
#[cfg(target_arch = "x86_64")]
fn uring_asked_for_and_refused_fails_start_up_with_the_reason() {
    let root = fixture_root("io-refused");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_atomserve"));
    cmd.args(["--root"]).arg(&root.path);
    cmd.args(["--listen", "127.0.0.1:0", "--admin-listen", "none", "--io", "uring"]);
    cmd.env_remove("ATOMSERVE_IO").stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    refuse_io_uring(&mut cmd);
    let out = cmd.output().expect("run atomserve");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--io uring") && err.contains("Operation not permitted"), "{err}");
}

#[test]
fn auto_picks_io_uring_where_the_kernel_allows_it() {
    let root = fixture_root("io-auto");
    let s = Server::start_with(&root.path, &["--io", "auto"], |cmd| {
        cmd.env_remove("ATOMSERVE_IO");
    });
    assert!(s.log().contains(", io_uring; open-file limit"), "{}", s.log());
    assert!(!s.log().contains("not available"), "{}", s.log());
    assert_eq!(s.get("/").status, 200);
}

/// On the ring, a connection that ends in any state — timed out idle, mid-head or mid-body,
/// lingering after a 400, reset while a large response is in flight — leaves nothing behind:
/// the fd count is back to its baseline while the clients still hold their ends (so the server
/// closed each socket itself, which takes cancelling the receive armed on it: io_uring keeps a
/// socket open while an operation holds it), and the server still answers on every worker (a
/// worker whose provided buffers leaked would stall its receives), and every provided buffer is
/// back with the kernel (`atomserve_uring_recv_buffers_held` is 0 on each worker).
#[test]
fn uring_connections_leave_no_descriptor_behind_whatever_state_they_close_in() {
    let root = fixture_root("io-leaks");
    let args =
        ["--io", "uring", "--workers", "2", "--keepalive-timeout", "300ms", "--header-timeout", "300ms"];
    let s = Server::start_with(&root.path, &args, |cmd| {
        cmd.env_remove("ATOMSERVE_IO");
    });
    assert_eq!(s.get("/").status, 200);
    // That connection closes once the server reads our FIN: wait for the count to settle.
    let mut baseline = s.open_fds();
    for _ in 0..10 {
        std::thread::sleep(Duration::from_millis(20));
        let now = s.open_fds();
        if now == baseline {
            break;
        }
        baseline = now;
    }
    for round in 0..2 {
        let mut held = Vec::new();
        for i in 0..300 {
            let mut c = s.connect();
            match i % 5 {
                0 => {} // idle: the header timer (no byte yet) closes it
                1 => c.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n").unwrap(), // mid-head
                2 => c.write_all(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\nxx").unwrap(),
                3 => {
                    // A large response in flight, then a reset (SO_LINGER 0).
                    c.write_all(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
                    let mut first = [0u8; 1];
                    c.read_exact(&mut first).unwrap();
                    common::reset_on_close(&c);
                    drop(c);
                    continue;
                }
                _ => c.write_all(b"\x16\x03\x01garbage\r\n\r\n").unwrap(), // a TLS hello: 400
            }
            held.push(c);
        }
        // Timers: 300 ms for heads and bodies, 2 s of lingering after the 400s.
        let left = s.wait_fds(baseline, Duration::from_secs(10));
        assert_eq!(left, baseline, "round {round}: {left} fds open, baseline {baseline}");
        drop(held);
    }
    // 600 fresh requests, spread over both workers: every one answered.
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let addr = s.addr;
            std::thread::spawn(move || {
                for _ in 0..150 {
                    let mut c = common::connect(addr);
                    c.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").unwrap();
                    assert_eq!(common::read_response(&mut c, false).expect("answered").status, 200);
                }
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    assert!(!s.log().contains("failed"), "{}", s.log());
    // And every provided buffer went back to the kernel, whichever way its connection ended.
    s.assert_recv_buffers_back();
}

/// A burst of completions larger than the completion ring loses nothing. The ring has 4,096 CQ
/// entries per worker; with `DEFER_TASKRUN` the kernel posts completions only when the worker
/// enters the ring, so stopping the process (SIGSTOP), sending a request on each of 6,000 open
/// connections and letting it go (SIGCONT) makes its next enter post 6,000 receive completions
/// at once — beyond the ring, into the kernel's overflow list (`IORING_FEAT_NODROP`), which the
/// worker must drain through further enters. Every connection gets its answer.
#[test]
fn a_burst_beyond_the_completion_ring_loses_nothing() {
    const CONNS: usize = 6000;
    if common::raise_fd_limit() < (CONNS as u64) * 2 + 200 {
        eprintln!("skipped: the open-file limit is below {}", CONNS * 2 + 200);
        return;
    }
    let root = fixture_root("io-burst");
    // Every connection must stay open until the burst, however long opening 6,000 of them takes
    // on a loaded machine: a header timeout longer than the test (a new connection has 10 s to
    // send its head, and on a debug build beside the other tests the connects took longer, so
    // the first ones were closed before the last were open: "not all adopted: 11 of 6011 fds"
    // — every one closed — in one `make test`), and a hand-off queue that holds them all (no
    // 503 from a full queue while the worker is held up). Neither is what this test is about.
    let args = ["--io", "uring", "--workers", "1", "--queue-capacity", "8192", "--header-timeout", "300s"];
    let s = burst_while_stopped(&root.path, &args, CONNS, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n", |_| {});
    assert!(!s.log().contains("failed"), "{}", s.log());
    let overflows = worker_counter(&s, "atomserve_uring_cq_overflows_total");
    assert!(overflows >= 1, "the overflow was seen and counted: {overflows}");
}

/// Starts a server on `root` with `args` (io_uring, whatever `ATOMSERVE_IO` says), opens `conns`
/// connections and waits until it has adopted them all and armed their receives, runs `before`,
/// then stops the process (SIGSTOP, every thread stopped), sends `request` on every connection
/// and lets it go (SIGCONT): with
/// `DEFER_TASKRUN` every receive completes at its next enter. Checks that each connection is
/// answered 200, and returns the server.
fn burst_while_stopped(
    root: &std::path::Path,
    args: &[&str],
    conns: usize,
    request: &[u8],
    before: impl FnOnce(&Server),
) -> Server {
    let s = Server::start_with(root, args, |cmd| {
        cmd.env_remove("ATOMSERVE_IO");
    });
    let baseline = s.open_fds();
    let mut open: Vec<_> = (0..conns).map(|_| s.connect()).collect();
    // Every connection adopted (its socket open in the server) before the stop.
    let adopted = s.wait_fds_at_least(baseline + conns, Duration::from_secs(60));
    assert!(adopted, "not all adopted: {} of {} fds\n{}", s.open_fds(), baseline + conns, s.log());
    // Served by the one worker after it has taken every connection queued before it (the
    // hand-off queue is FIFO) and submitted their receives, which the burst must find armed.
    s.admin_get("/healthz");
    before(&s);
    s.stop();
    for c in open.iter_mut() {
        c.write_all(request).unwrap();
    }
    s.signal(libc::SIGCONT);
    for (i, c) in open.iter_mut().enumerate() {
        c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let r = common::read_response(c, false).unwrap_or_else(|| panic!("connection {i}: no answer"));
        assert_eq!(r.status, 200, "connection {i}");
    }
    s.assert_recv_buffers_back();
    s
}

/// Worker 0's sample of a per-worker counter on `/metrics`.
fn worker_counter(s: &Server, name: &str) -> u64 {
    let metrics = s.admin_get("/metrics").text();
    let sample = format!("{name}{{worker=\"0\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(sample.as_str()))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {sample} in\n{metrics}"))
}

/// More bytes at once than the worker's provided receive buffers hold (1 MiB): with the server
/// stopped, 300 connections each send a 6 KiB request, so its next enter receives 1.8 MB. The
/// receives beyond the buffers end with `ENOBUFS`; the worker gives the used buffers back, arms
/// those receives again, and every connection gets its answer. The exhaustion is counted on
/// `/metrics`, where an operator sees a worker short of buffers for its bursts.
#[test]
fn receives_beyond_the_provided_buffers_are_armed_again_and_answered() {
    const CONNS: usize = 300;
    let root = fixture_root("io-enobufs");
    let args = ["--io", "uring", "--workers", "1", "--header-timeout", "300s"];
    let request = format!("GET / HTTP/1.1\r\nHost: t\r\nX-Pad: {}\r\n\r\n", "p".repeat(6 * 1024));
    let s = burst_while_stopped(&root.path, &args, CONNS, request.as_bytes(), |s| {
        assert_eq!(worker_counter(s, "atomserve_uring_recv_buffers_exhausted_total"), 0);
    });
    let exhausted = worker_counter(&s, "atomserve_uring_recv_buffers_exhausted_total");
    assert!(exhausted >= 1, "1.8 MB at once did not exhaust 1 MiB of buffers? {exhausted}");
}

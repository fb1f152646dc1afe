//! systemd integration end to end: socket activation through systemd's own
//! `systemd-socket-activate`, readiness through a `NOTIFY_SOCKET` listener in the test, and the
//! shipped unit files through `systemd-analyze verify` and `systemd-analyze security`.
//!
//! The systemd tools come from Debian's `systemd` package (`make test` installs it when it is
//! missing). Without them these tests skip and say so, unless `ATOMSERVE_REQUIRE_SYSTEMD=1`.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr as UnixAddr, UnixDatagram};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

/// Whether `tool` is on PATH; if not, the test skips (or fails when systemd is required).
fn have(tool: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os("ATOMSERVE_REQUIRE_SYSTEMD").is_none(),
            "{tool} is required (Debian package systemd)"
        );
        eprintln!("skipped: {tool} not found (Debian package systemd)");
    }
    found
}

/// A loopback port that is free now (bound, read, released).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn get(addr: SocketAddr, path: &str) -> Response {
    let mut c = connect(addr);
    write!(c, "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").unwrap();
    read_response(&mut c, false).expect("a response")
}

#[test]
fn socket_activation_serves_on_the_passed_sockets() {
    if !have("systemd-socket-activate") {
        return;
    }
    let root = fixture_root("systemd-activate");
    let (site, admin): (SocketAddr, SocketAddr) =
        (([127, 0, 0, 1], free_port()).into(), ([127, 0, 0, 1], free_port()).into());
    // As systemd would run it from atomserve.socket + atomserve-admin.socket. --listen and
    // --admin-listen are ignored when sockets are passed: ports 1 and 2 would fail to bind.
    // systemd-socket-activate starts its command with a fresh environment: the variables by which
    // `make test` picks the backend and the allow-list (`ATOMSERVE_IO`, `ATOMSERVE_SECCOMP`) are
    // passed on by name with -E, or this test would run on epoll in every pass.
    let passed: Vec<&str> = ["ATOMSERVE_IO", "ATOMSERVE_SECCOMP"]
        .into_iter()
        .filter(|v| std::env::var_os(v).is_some())
        .flat_map(|v| ["-E", v])
        .collect();
    let mut child = Command::new("systemd-socket-activate")
        .args(["-l", &site.to_string(), "-l", &admin.to_string(), "--fdname=http:admin"])
        .args(&passed)
        .arg(env!("CARGO_BIN_EXE_atomserve"))
        .args(["--root", root.path.to_str().unwrap(), "--listen", "127.0.0.1:1"])
        .args(["--admin-listen", "127.0.0.1:2", "--workers", "1", "--no-compress"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn systemd-socket-activate");
    let log = Arc::new(Mutex::new(String::new()));
    let sink = log.clone();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            sink.lock().unwrap().push_str(&(line + "\n"));
        }
    });
    // The socket exists before atomserve does: a client that comes early waits in its queue.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut early = loop {
        match std::net::TcpStream::connect(site) {
            Ok(c) => break c,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => panic!("systemd-socket-activate never listened: {e}\n{}", log.lock().unwrap()),
        }
    };
    early.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    early.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").unwrap();
    let r = read_response(&mut early, false).expect("the early client is answered");
    assert_eq!((r.status, r.text().as_str()), (200, INDEX));

    // The banner's last line is written before the acceptor runs, but read by another thread.
    while !log.lock().unwrap().contains(" workers, ") && Instant::now() < deadline + Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let text = log.lock().unwrap().clone();
    assert!(text.contains(&format!("listening on http://{site} (socket from systemd)")), "{text}");
    assert!(text.contains(&format!("admin on http://{admin}/healthz")), "{text}");
    if std::env::var("ATOMSERVE_IO").as_deref() == Ok("uring") {
        assert!(text.contains(", io_uring; "), "asked for io_uring:\n{text}");
    }
    let r = get(site, "/assets/app-Ab12Cd34.js");
    assert_eq!((r.status, r.text().as_str()), (200, APP_JS));
    assert_eq!(get(admin, "/healthz").status, 200, "the socket named admin serves the admin endpoints");
    assert_eq!(get(site, "/healthz").status, 200, "and the site is the site (SPA fallback)");
    assert_ne!(get(site, "/healthz").text(), "ok\n");

    // SAFETY: kill(2) on our own child (systemd-socket-activate exec'd atomserve in its place).
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{}", log.lock().unwrap());
}

#[test]
fn a_passed_descriptor_that_is_not_a_listening_socket_is_a_start_up_error() {
    let root = fixture_root("systemd-notsocket");
    // fd 3 is /dev/null, LISTEN_PID is the shell that becomes atomserve.
    let script = format!(
        "exec 3</dev/null; export LISTEN_PID=$$ LISTEN_FDS=1; exec {} --root {} --workers 1 --no-compress",
        env!("CARGO_BIN_EXE_atomserve"),
        root.path.display()
    );
    let out = Command::new("sh").args(["-c", &script]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("fd 3 is not a listening TCP socket"), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
}

/// Receives the next notification, or panics after `secs` seconds.
fn next_message(sock: &UnixDatagram, secs: u64) -> String {
    sock.set_read_timeout(Some(Duration::from_secs(secs))).unwrap();
    let mut buf = [0u8; 4096];
    let n = sock.recv(&mut buf).expect("a notification in time");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000
}

#[test]
fn readiness_reload_and_stop_are_notified_on_an_abstract_socket() {
    let root = fixture_root("systemd-notify");
    let name = format!("atomserve-test-notify-{}", std::process::id());
    let sock = UnixDatagram::bind_addr(&UnixAddr::from_abstract_name(name.as_bytes()).unwrap()).unwrap();
    let mut s = Server::start_with(&root.path, &["--workers", "1", "--no-compress"], |cmd| {
        cmd.env("NOTIFY_SOCKET", format!("@{name}"));
    });
    let ready = next_message(&sock, 20);
    assert!(ready.starts_with("READY=1\n") && ready.contains("STATUS=serving "), "{ready:?}");
    // READY=1 means serving: a request right now is answered.
    assert_eq!(s.get("/").status, 200);

    let before = monotonic_usec();
    s.signal(libc::SIGHUP);
    let reloading = next_message(&sock, 10);
    assert!(reloading.starts_with("RELOADING=1\n"), "{reloading:?}");
    let stamp: u64 = reloading
        .lines()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .and_then(|v| v.parse().ok())
        .expect("MONOTONIC_USEC");
    assert!(stamp >= before && stamp <= monotonic_usec(), "{stamp} is not CLOCK_MONOTONIC now");
    let reloaded = next_message(&sock, 20);
    assert!(reloaded.starts_with("READY=1\n") && reloaded.contains("), generation 1"), "{reloaded:?}");

    s.signal(libc::SIGTERM);
    let stopping = next_message(&sock, 10);
    assert!(stopping.starts_with("STOPPING=1\n"), "{stopping:?}");
    assert_eq!(s.wait_exit(Duration::from_secs(10)).and_then(|st| st.code()), Some(0));
}

#[test]
fn a_failed_reload_still_ends_with_ready_on_a_path_socket() {
    let root = Root {
        path: std::env::temp_dir().join(format!("atomserve-test-notify-path-{}", std::process::id())),
    };
    let _ = std::fs::remove_dir_all(&root.path);
    std::fs::create_dir_all(&root.path).unwrap();
    std::fs::write(root.path.join("index.html"), INDEX).unwrap();
    let path = root.path.with_extension("sock");
    let _ = std::fs::remove_file(&path);
    let sock = UnixDatagram::bind(&path).unwrap();
    let s = Server::start_with(&root.path, &["--workers", "1", "--no-compress"], |cmd| {
        cmd.env("NOTIFY_SOCKET", &path);
    });
    assert!(next_message(&sock, 20).starts_with("READY=1\n"));
    // The root is gone: the reload fails, the old snapshot stays, and systemd hears it is over.
    let moved = root.path.with_extension("moved");
    std::fs::rename(&root.path, &moved).unwrap();
    s.signal(libc::SIGHUP);
    assert!(next_message(&sock, 10).starts_with("RELOADING=1\n"));
    let after = next_message(&sock, 20);
    assert!(after.starts_with("READY=1\n") && after.contains("STATUS=reload failed"), "{after:?}");
    assert_eq!(s.get("/").status, 200);
    drop(s);
    let _ = std::fs::remove_file(&path);
    std::fs::rename(&moved, &root.path).unwrap();
}

/// The repository's `deploy/` directory.
fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

#[test]
fn unit_files_pass_systemd_analyze_verify_and_security() {
    if !have("systemd-analyze") {
        return;
    }
    // verify wants ExecStart's binary to exist: point it at the one just built.
    let dir = std::env::temp_dir().join(format!("atomserve-test-units-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let units = ["atomserve.service", "atomserve.socket", "atomserve-admin.socket"];
    for unit in units {
        let text = std::fs::read_to_string(deploy_dir().join(unit)).unwrap();
        let text = text.replace("/usr/local/bin/atomserve", env!("CARGO_BIN_EXE_atomserve"));
        std::fs::write(dir.join(unit), text).unwrap();
    }
    let paths: Vec<PathBuf> = units.iter().map(|u| dir.join(u)).collect();
    let out = Command::new("systemd-analyze").args(["verify", "--man=no"]).args(&paths).output().unwrap();
    // It reports a bad line as a warning ("…, ignoring") and still exits 0: any output fails.
    let said = String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && said.trim().is_empty(), "systemd-analyze verify:\n{said}");

    // The hardening, scored by systemd itself: 0 is a perfect sandbox, 10 none at all.
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&paths[0])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let score: f64 = text
        .lines()
        .find_map(|l| l.split_once("Overall exposure level for atomserve.service: "))
        .and_then(|(_, rest)| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{text}{}", String::from_utf8_lossy(&out.stderr)));
    eprintln!("systemd-analyze security: exposure {score}");
    assert!(score <= 2.0, "exposure {score} (2.0 or less is what systemd calls OK):\n{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

//! `atomserve --healthcheck URL`, the container image's `HEALTHCHECK` (the distroless image has no
//! curl): exit 0 while the admin `/healthz` says 200, 1 once it says 503 draining, 1 when nothing
//! listens. The Dockerfile itself is linted by hadolint in `make deploy-check`.

mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::process::Command;
use std::time::Duration;

use common::*;

fn healthcheck(url: &str) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_atomserve")).args(["--healthcheck", url]).output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn healthcheck_follows_the_admin_healthz() {
    let root = fixture_root("healthcheck");
    let mut s = Server::start(&root.path, &["--workers", "1", "--no-compress", "--shutdown-grace", "5s"]);
    let admin = s.admin.unwrap();
    assert_eq!(healthcheck(&format!("http://{admin}/healthz")), (Some(0), String::new()));

    // Draining (kept up by a download in flight): the listeners are closed, so the probe is
    // refused and fails. (A connection made before SIGTERM would get 503 draining; that answer
    // is the stand-in server's in the next test.)
    let mut slow = s.connect();
    slow.write_all(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    s.signal(libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(200));
    let (code, err) = healthcheck(&format!("http://{admin}/healthz"));
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("healthcheck http://") && err.contains("refused"), "{err}");
    drop(slow);
    assert_eq!(s.wait_exit(Duration::from_secs(10)).and_then(|st| st.code()), Some(0));
}

#[test]
fn healthcheck_fails_on_anything_but_200() {
    // A stand-in server answering 503 draining, as atomserve's admin does during a drain.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (mut c, _) = listener.accept().unwrap();
        let mut buf = [0u8; 1024];
        let _ = std::io::Read::read(&mut c, &mut buf);
        c.write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 9\r\n\r\ndraining\n").unwrap();
    });
    let (code, err) = healthcheck(&format!("http://{addr}/healthz"));
    server.join().unwrap();
    assert_eq!(code, Some(1));
    assert!(err.contains("503"), "{err}");
    let (code, err) = healthcheck("https://127.0.0.1:9464/healthz");
    assert_eq!(code, Some(1));
    assert!(err.contains("only http://"), "{err}");
}

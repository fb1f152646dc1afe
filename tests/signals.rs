//! The signal handler's wake-up descriptor, in-process: its number is written by a handler that
//! may run at any moment, so it must never be closed and reused by another file.

use std::net::TcpListener;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use clap::Parser;

/// Regression: `server::run` made the wake-up eventfd a local; a start-up error after the
/// handlers were installed (here: the listen address is taken) dropped it without detaching, so
/// the next file to get that number received 8 bytes from every later SIGHUP.
#[test]
fn a_failed_start_up_leaves_no_descriptor_for_the_signal_handler_to_write_into() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let root = std::env::temp_dir().join(format!("atomserve-test-signals-{}", std::process::id()));
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("index.html"), "<!doctype html>\n").unwrap();
    // The server runs in this process: `make test`'s --seccomp pass must not filter the test.
    std::env::remove_var("ATOMSERVE_SECCOMP");
    let config = atomserve::config::Config::parse_from([
        "atomserve",
        "--root",
        root.to_str().unwrap(),
        "--listen",
        &taken.local_addr().unwrap().to_string(),
        "--admin-listen",
        "none",
    ]);
    let err = atomserve::server::run(&config).expect_err("the address is taken");
    assert!(err.to_string().contains("cannot listen"), "{err}");
    // New descriptors take the lowest free numbers: one of these would get the freed one.
    let fresh: Vec<OwnedFd> = (0..32)
        .map(|_| {
            // SAFETY: eventfd(2) with valid flags; the fd is owned at once.
            let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
            assert!(fd >= 0);
            // SAFETY: a fresh descriptor, ours alone.
            unsafe { OwnedFd::from_raw_fd(fd) }
        })
        .collect();
    // SAFETY: raise(3) with a valid signal; atomserve's handler is installed.
    assert_eq!(unsafe { libc::raise(libc::SIGHUP) }, 0);
    for fd in &fresh {
        let mut value = 0u64;
        // SAFETY: reads 8 bytes into `value`, which is 8 bytes.
        let n = unsafe { libc::read(fd.as_raw_fd(), (&mut value as *mut u64).cast(), 8) };
        assert_eq!(n, -1, "fd {} received a stray write of {value} from the signal handler", fd.as_raw_fd());
    }
    let _ = std::fs::remove_dir_all(&root);
}

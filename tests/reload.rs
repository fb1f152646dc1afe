//! Live reload: SIGHUP builds a new snapshot off the serving path and swaps it in atomically;
//! until then the served content never changes; a failed reload keeps the old snapshot; under
//! load no response fails or mixes two versions; retired snapshots are really freed.

mod common;

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

/// Waits until the server's log mentions `n` reloads (ok or failed).
fn wait_reloads(s: &Server, n: usize) {
    s.wait_log("atomserve: reload", n, Duration::from_secs(10));
}

#[test]
fn content_changes_only_on_reload() {
    let root = fixture_root("reload-basic");
    let s = Server::start(&root.path, &[]);
    std::fs::write(root.path.join("docs/deep/page.txt"), "edited\n").unwrap();
    std::fs::write(root.path.join("new.txt"), "new\n").unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(s.get("/docs/deep/page.txt").text(), "deep\n", "the snapshot is immutable until a reload");
    assert_eq!(s.get("/new.txt").status, 404);

    s.signal(libc::SIGHUP);
    wait_reloads(&s, 1);
    assert!(s.log().contains("generation 1"), "{}", s.log());
    assert_eq!(s.get("/docs/deep/page.txt").text(), "edited\n");
    assert_eq!(s.get("/new.txt").text(), "new\n");
}

#[test]
fn a_failed_reload_keeps_the_old_snapshot() {
    let root = fixture_root("reload-fail");
    let s = Server::start(&root.path, &[]);
    // Take the root away: the reload must fail and change nothing. (A root over the memory
    // budget used to fail too; now its largest files are sent from disk instead.)
    std::fs::write(root.path.join("docs/deep/page.txt"), "edited\n").unwrap();
    let moved = root.path.with_extension("moved");
    std::fs::rename(&root.path, &moved).unwrap();
    s.signal(libc::SIGHUP);
    wait_reloads(&s, 1);
    assert!(s.log().contains("failed, keeping generation 0"), "{}", s.log());
    assert_eq!(s.get("/docs/deep/page.txt").text(), "deep\n");
    // Put the root back: the next reload succeeds.
    std::fs::rename(&moved, &root.path).unwrap();
    s.signal(libc::SIGHUP);
    wait_reloads(&s, 2);
    assert_eq!(s.get("/docs/deep/page.txt").text(), "edited\n");
}

#[test]
fn forty_reloads_under_load_lose_or_tear_nothing() {
    let root = fixture_root("reload-load");
    // Two versions of a file big enough that responses are often in flight during a swap.
    let version = |v: u8| -> Vec<u8> { (0..256 * 1024).map(|i| (i % 200) as u8 + v).collect() };
    let (a, b) = (version(0), version(50));
    std::fs::write(root.path.join("asset.bin"), &a).unwrap();
    let s = Server::start(&root.path, &[]);
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (stop, ok, addr) = (stop.clone(), ok.clone(), s.addr);
            let (a, b) = (a.clone(), b.clone());
            std::thread::spawn(move || {
                let mut c = connect(addr);
                while !stop.load(Ordering::Relaxed) {
                    c.write_all(
                        b"GET /asset.bin HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n",
                    )
                    .unwrap();
                    let r = read_response(&mut c, false).expect("response");
                    assert_eq!(r.status, 200);
                    assert!(r.body == a || r.body == b, "a torn or mixed response");
                    let r = read_response(&mut c, false).expect("response");
                    assert_eq!((r.status, r.text().as_str()), (200, INDEX));
                    ok.fetch_add(2, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let t = Instant::now();
    for i in 0..40 {
        std::fs::write(root.path.join("asset.bin"), if i % 2 == 0 { &b } else { &a }).unwrap();
        s.signal(libc::SIGHUP);
        wait_reloads(&s, i + 1);
        std::thread::sleep(Duration::from_millis(100).saturating_sub(Duration::from_millis(0)));
    }
    let elapsed = t.elapsed();
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().expect("a client saw a failed or torn response");
    }
    let log = s.log();
    assert_eq!(log.matches("atomserve: reloaded").count(), 40, "{log}");
    assert!(!log.contains("still held"), "{log}");
    assert!(ok.load(Ordering::Relaxed) > 100, "load was too light to mean anything");
    eprintln!("40 reloads in {elapsed:?} under {} good responses", ok.load(Ordering::Relaxed));
}

#[test]
fn memory_returns_to_baseline_after_a_hundred_reloads() {
    let root = fixture_root("reload-rss"); // holds a 5 MiB file
    let s = Server::start(&root.path, &["--workers", "2"]);
    let rss = || {
        let status = std::fs::read_to_string(format!("/proc/{}/status", s.pid())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap().to_string();
        line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() // KiB
    };
    // Warm up: the allocator settles after a few reloads (each reload builds entries on
    // short-lived threads, and glibc keeps per-thread arenas; RSS plateaus, it does not grow).
    for i in 0..20 {
        s.signal(libc::SIGHUP);
        wait_reloads(&s, i + 1);
    }
    assert_eq!(s.get("/").status, 200);
    let baseline = rss();
    for i in 20..120 {
        s.signal(libc::SIGHUP);
        wait_reloads(&s, i + 1);
        if i % 10 == 0 {
            assert_eq!(s.get("/big.bin").body.len(), BIG_LEN); // workers pass quiescent points
        }
    }
    let after = rss();
    // Each snapshot is ~5.3 MiB: a leak of retired snapshots would add ~530 MiB (measured: 557 MiB
    // with freeing disabled); allocator arenas settling stay well under 48 MiB.
    assert!(after < baseline + 48 * 1024, "RSS grew from {baseline} KiB to {after} KiB over 100 reloads");
    eprintln!("RSS {baseline} KiB -> {after} KiB after 100 reloads");
}

#[test]
fn watch_reloads_once_a_burst_of_changes_settles() {
    let root = fixture_root("watch");
    let s = Server::start(&root.path, &["--watch"]);
    // A build tool rewrites many files in a burst: expect one reload (or very few), not twenty.
    for i in 0..20 {
        std::fs::write(root.path.join("docs/deep/page.txt"), format!("version {i}\n")).unwrap();
        std::thread::sleep(Duration::from_millis(3));
    }
    wait_reloads(&s, 1);
    std::thread::sleep(Duration::from_millis(400));
    let reloads = s.log().matches("reloaded (Watch)").count();
    assert!((1..=3).contains(&reloads), "{reloads} reloads for one burst:\n{}", s.log());
    assert_eq!(s.get("/docs/deep/page.txt").text(), "version 19\n");

    // A directory created after start is watched too.
    std::fs::create_dir(root.path.join("later")).unwrap();
    std::fs::write(root.path.join("later/a.txt"), "a\n").unwrap();
    wait_reloads(&s, reloads + 1);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(s.get("/later/a.txt").text(), "a\n");
    let before = s.log().matches("atomserve: reload").count();
    std::fs::write(root.path.join("later/a.txt"), "b\n").unwrap();
    wait_reloads(&s, before + 1);
    assert_eq!(s.get("/later/a.txt").text(), "b\n");
}

/// Regression: `--seccomp` with a relative `--root` (what `make run` passes) killed the server
/// with SIGSYS at its first reload — resolving the relative root again calls `getcwd(2)`, which
/// was not on the allow-list. Both backends: the ring's syscalls are on the list only with
/// `--io uring`.
#[test]
#[cfg(target_arch = "x86_64")]
fn seccomp_with_a_relative_root_survives_reloads() {
    let root = fixture_root("reload-relative");
    let (parent, name) =
        (root.path.parent().unwrap().to_path_buf(), root.path.file_name().unwrap().to_owned());
    for io in ["epoll", "uring"] {
        let s = Server::start_with(std::path::Path::new(&name), &["--seccomp", "--io", io], |cmd| {
            cmd.current_dir(&parent).env_remove("ATOMSERVE_IO").env_remove("ATOMSERVE_SECCOMP");
        });
        for n in 1..=2 {
            s.signal(libc::SIGHUP);
            wait_reloads(&s, n);
            assert_eq!(s.get("/").status, 200, "{io}: after reload {n}:\n{}", s.log());
        }
    }
}

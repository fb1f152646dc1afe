//! The memory figures behind docs/deploy.md's capacity planning, measured on the real binary:
//! what an open connection costs (5,000 idle keep-alive connections, RSS from /proc before and
//! after; the kernel's share from /proc/net/sockstat and the `Slab:` line of /proc/meminfo), and what a cached
//! MiB costs (RSS with a 64 MiB root against an empty one). The bounds are loose on purpose —
//! they catch a regression of an order of magnitude (a buffer kept per idle connection, a second
//! copy of every file), not noise — and the figures are printed (`--nocapture`).

mod common;

use std::fs;
use std::io::Write;
use std::time::Duration;

use common::*;

/// A process's resident set in KiB (`VmRSS`).
fn rss_kib(pid: i32) -> u64 {
    status_kib(pid, "VmRSS:")
}

/// A line of /proc/PID/status in KiB: `VmRSS:` now, `VmHWM:` the peak since the start.
fn status_kib(pid: i32, field: &str) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"))
}

/// Pages of TCP buffer memory the kernel has charged (`TCP: … mem N` in /proc/net/sockstat).
fn tcp_mem_pages() -> u64 {
    let text = fs::read_to_string("/proc/net/sockstat").unwrap();
    let line = text.lines().find(|l| l.starts_with("TCP:")).unwrap();
    line.split_whitespace().skip_while(|&w| w != "mem").nth(1).unwrap().parse().unwrap()
}

/// The kernel's slab memory in KiB (`Slab:` in /proc/meminfo): socket, file and epoll objects.
fn slab_kib() -> u64 {
    let text = fs::read_to_string("/proc/meminfo").unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("Slab:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("Slab")
}

/// Settles RSS after a burst: what is in use, not a moment of it.
fn settled_rss(pid: i32) -> u64 {
    std::thread::sleep(Duration::from_millis(300));
    rss_kib(pid)
}

/// KiB held in the process's sealed memfd (large cached bodies, sent with sendfile): memory that
/// RSS does not show, because the pages are never mapped. Allocated blocks, not the size: the
/// file is padded to a whole number of huge pages, and the padding holds no memory.
fn memfd_kib(pid: i32) -> u64 {
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else { return 0 };
    fds.flatten()
        .filter(|fd| fs::read_link(fd.path()).is_ok_and(|t| t.to_string_lossy().starts_with("/memfd:")))
        .filter_map(|fd| fs::metadata(fd.path()).ok())
        .map(|m| std::os::unix::fs::MetadataExt::blocks(&m) / 2) // allocated 512-byte blocks
        .sum()
}

#[test]
fn an_idle_connection_costs_the_server_little_memory() {
    const N: usize = 5_000;
    if raise_fd_limit() < 2 * N as u64 + 200 {
        eprintln!("skipped: the open-file limit is below {}", 2 * N + 200);
        return;
    }
    let root = fixture_root("capacity-conns");
    let s = Server::start(&root.path, &["--workers", "2", "--no-compress", "--keepalive-timeout", "60s"]);
    // Warm up: one request per worker path, so that lazily built state is there before "before".
    for _ in 0..20 {
        assert_eq!(s.get("/").status, 200);
    }
    let (before, kernel_before, slab_before) = (settled_rss(s.pid()), tcp_mem_pages(), slab_kib());
    let mut conns = Vec::with_capacity(N);
    for _ in 0..N {
        let mut c = s.connect();
        c.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        assert_eq!(read_response(&mut c, false).unwrap().status, 200);
        conns.push(c); // idle keep-alive from here on
    }
    let (after, kernel_after, slab_after) = (settled_rss(s.pid()), tcp_mem_pages(), slab_kib());
    let per_conn = (after.saturating_sub(before)) as f64 * 1024.0 / N as f64;
    // Both ends of each loopback connection are on this machine: halve the kernel's figure.
    let kernel_per_conn = kernel_after.saturating_sub(kernel_before) as f64 * 4096.0 / (2 * N) as f64;
    let slab_per_conn = slab_after.saturating_sub(slab_before) as f64 * 1024.0 / (2 * N) as f64;
    eprintln!(
        "{N} idle keep-alive connections: server RSS {before} KiB -> {after} KiB, {per_conn:.0} bytes \
         per connection; kernel, per socket: {kernel_per_conn:.0} bytes of TCP buffers (sockstat), \
         about {slab_per_conn:.0} bytes of slab (meminfo, machine-wide, so approximate)"
    );
    assert!(per_conn < 4096.0, "{per_conn:.0} bytes of RSS per idle connection");
    drop(conns);
}

/// With `--large-bodies memfd` a cached MiB costs about a MiB of memory (the copy); with
/// `page-cache` the bodies stay in the kernel's page cache, which atomserve does not hold:
/// about nothing of its own — not even while loading, when each file is hashed a piece at a
/// time (the peak, `VmHWM`, was a MiB per MiB when the load held the bodies it read).
#[test]
fn a_cached_mib_costs_about_a_mib_in_a_memfd_and_nothing_from_the_page_cache() {
    // 64 files of 1 MiB that do not compress (so no gzip/brotli variants are kept), against an
    // empty root: the snapshot's own overhead per byte.
    let empty =
        Root { path: std::env::temp_dir().join(format!("atomserve-test-capacity-0-{}", std::process::id())) };
    let _ = fs::remove_dir_all(&empty.path);
    fs::create_dir_all(&empty.path).unwrap();
    fs::write(empty.path.join("index.html"), INDEX).unwrap();
    let big = Root {
        path: std::env::temp_dir().join(format!("atomserve-test-capacity-64m-{}", std::process::id())),
    };
    let _ = fs::remove_dir_all(&big.path);
    fs::create_dir_all(&big.path).unwrap();
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for i in 0..64 {
        let bytes: Vec<u8> = (0..1 << 20)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        fs::write(big.path.join(format!("blob{i:02}.bin")), bytes).unwrap();
    }
    fs::write(big.path.join("index.html"), INDEX).unwrap();
    for (mode, expected) in [("memfd", 0.95..1.5), ("page-cache", 0.0..0.1)] {
        let args = ["--workers", "1", "--cache-budget", "1G", "--large-bodies", mode];
        let base = Server::start(&empty.path, &args);
        let base_rss = settled_rss(base.pid()) + memfd_kib(base.pid());
        let full = Server::start(&big.path, &args);
        let (rss, memfd) = (settled_rss(full.pid()), memfd_kib(full.pid()));
        let full_rss = rss + memfd;
        assert_eq!(full.get("/blob07.bin").body.len(), 1 << 20);
        let per_mib = (full_rss.saturating_sub(base_rss)) as f64 / 64.0 / 1024.0;
        eprintln!(
            "--large-bodies {mode}, 64 MiB of incompressible files: memory {base_rss} KiB (an index.html \
             alone) -> {full_rss} KiB ({rss} KiB RSS + {memfd} KiB in memfds), {per_mib:.2} MiB per MiB of files"
        );
        assert!(expected.contains(&per_mib), "{mode}: {per_mib:.2} MiB of memory per cached MiB");
        if mode == "page-cache" {
            let (base_peak, peak) = (status_kib(base.pid(), "VmHWM:"), status_kib(full.pid(), "VmHWM:"));
            let peak_per_mib = peak.saturating_sub(base_peak) as f64 / 64.0 / 1024.0;
            eprintln!(
                "  peak while loading: {base_peak} KiB -> {peak} KiB, {peak_per_mib:.2} MiB per MiB of files"
            );
            assert!(peak_per_mib < 0.1, "{mode}: the load peaked at {peak_per_mib:.2} MiB per cached MiB");
        }
    }
}

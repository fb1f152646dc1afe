//! Telemetry end to end: `/metrics` counts are exact, the admin listener's own traffic is not
//! counted, the exposition passes Prometheus's `promtool check metrics`, a real Prometheus
//! scrapes it, and `/stats` is valid JSON with the same figures.
//!
//! `make test` installs Debian's `prometheus` package (promtool + server) and sets
//! `ATOMSERVE_REQUIRE_PROMETHEUS=1`; without it the tests that need those binaries skip and say so.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn admin_get(s: &Server, path: &str) -> Response {
    s.admin_get(path)
}

/// Parses the text exposition into `name{labels}` → value.
fn scrape(s: &Server) -> HashMap<String, f64> {
    let r = admin_get(s, "/metrics");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/plain; version=0.0.4; charset=utf-8"));
    r.text()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').unwrap();
            (k.to_string(), v.parse().unwrap())
        })
        .collect()
}

fn need(tool: &str) -> bool {
    let found =
        Command::new(tool).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok();
    if !found {
        assert!(
            std::env::var_os("ATOMSERVE_REQUIRE_PROMETHEUS").is_none(),
            "{tool} missing: make test installs it"
        );
        eprintln!("{tool} not installed: skipping (make test installs the prometheus package)");
    }
    found
}

/// Sends a known mix of requests: 7 GET / (200), 1 HEAD / (200), 3 missing assets (404),
/// 2 POST (405), 1 malformed (400), on 4 connections.
fn known_traffic(s: &Server) {
    let mut c = s.connect();
    for _ in 0..7 {
        c.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        read_response(&mut c, false).unwrap();
    }
    c.write_all(b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    read_response(&mut c, true).unwrap();
    for _ in 0..3 {
        c.write_all(b"GET /assets/missing.js HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        read_response(&mut c, false).unwrap();
    }
    for _ in 0..2 {
        let (r, _) = s.raw(b"POST / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        assert_eq!(r.status, 405);
    }
    drop(c);
    let (r, _) = s.raw(b"GARBAGE\r\n\r\n");
    assert_eq!(r.status, 400);
}

#[test]
fn metrics_counts_are_exact_and_admin_traffic_is_not_counted() {
    let root = fixture_root("metrics-exact");
    let s = Server::start(&root.path, &["--workers", "2"]);
    known_traffic(&s);
    std::thread::sleep(Duration::from_millis(200)); // let the closes be counted
    let m = scrape(&s);
    let get = |k: &str| *m.get(k).unwrap_or_else(|| panic!("{k} missing"));
    assert_eq!(get("atomserve_http_requests_total{code=\"200\"}"), 8.0);
    assert_eq!(get("atomserve_http_requests_total{code=\"404\"}"), 3.0);
    assert_eq!(get("atomserve_http_requests_total{code=\"405\"}"), 2.0);
    assert_eq!(get("atomserve_http_requests_total{code=\"400\"}"), 1.0);
    assert_eq!(get("atomserve_http_request_duration_seconds_count"), 14.0);
    assert_eq!(get("atomserve_http_request_duration_seconds_bucket{le=\"+Inf\"}"), 14.0);
    assert!(get("atomserve_http_request_duration_seconds_sum") > 0.0);
    // Buckets are cumulative: never decreasing.
    let mut last = 0.0;
    for bound in [
        "0.000005", "0.00001", "0.000025", "0.00005", "0.0001", "0.00025", "0.0005", "0.001", "0.0025",
        "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf",
    ] {
        let v = get(&format!("atomserve_http_request_duration_seconds_bucket{{le=\"{bound}\"}}"));
        assert!(v >= last, "bucket {bound}");
        last = v;
    }
    let body_bytes =
        7 * INDEX.len() + 3 * "Not Found\n".len() + 2 * "Method Not Allowed\n".len() + "Bad Request\n".len();
    assert_eq!(get("atomserve_http_response_bytes_total"), body_bytes as f64);
    assert_eq!(get("atomserve_cache_hits_total"), 8.0);
    // The first `GET /` is answered by the responder and captured; the six after it come whole
    // from the worker's rendered responses (the HEAD is never rendered).
    assert_eq!(get("atomserve_cache_rendered_hits_total"), 6.0);
    assert_eq!(get("atomserve_cache_misses_total"), 3.0);
    assert_eq!(get("atomserve_connections_accepted_total"), 4.0);
    assert_eq!(get("atomserve_connections_closed_total"), 4.0);
    assert_eq!(get("atomserve_connections_active"), 0.0);
    assert_eq!(get("atomserve_accept_queue_depth"), 0.0);
    assert_eq!(get("atomserve_accept_queue_full_total"), 0.0);
    let per_worker = get("atomserve_worker_requests_total{worker=\"0\"}")
        + get("atomserve_worker_requests_total{worker=\"1\"}");
    assert_eq!(per_worker, 14.0);
    assert_eq!(get("atomserve_uring_recv_buffers_exhausted_total{worker=\"0\"}"), 0.0);
    assert_eq!(get("atomserve_cache_files"), 10.0); // dotfiles and the symlink out of the root are not loaded
    assert_eq!(get("atomserve_cache_reloads_total{result=\"ok\"}"), 0.0);
    assert!(get("process_resident_memory_bytes") > 1e6);
    assert!(get("process_open_fds") >= 5.0);
    assert!(get("process_max_fds") >= 1024.0);
    let start = get("process_start_time_seconds");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    assert!(start <= now && start > now - 120.0, "start time {start}");

    // Scraping (and health checks) do not move the HTTP figures.
    admin_get(&s, "/healthz");
    admin_get(&s, "/nope");
    let again = scrape(&s);
    for key in [
        "atomserve_http_requests_total{code=\"200\"}",
        "atomserve_http_request_duration_seconds_count",
        "atomserve_connections_accepted_total",
    ] {
        assert_eq!(again[key], m[key], "{key} moved after admin requests");
    }
    // A reload is counted, and the file gauge follows it.
    std::fs::write(root.path.join("extra.txt"), "x").unwrap();
    s.signal(libc::SIGHUP);
    let end = Instant::now() + Duration::from_secs(5);
    while scrape(&s)["atomserve_cache_reloads_total{result=\"ok\"}"] < 1.0 {
        assert!(Instant::now() < end, "reload not counted");
        std::thread::sleep(Duration::from_millis(20));
    }
    let m = scrape(&s);
    assert_eq!(m["atomserve_cache_files"], 11.0);
    assert_eq!(m["atomserve_cache_generation"], 1.0);
}

/// `atomserve_worker_turns_total` counts the worker's waits: 16 requests pipelined in one write
/// are answered in a few turns, not 16 (and not none), on either backend.
#[test]
fn pipelined_requests_share_worker_turns() {
    let root = fixture_root("metrics-turns");
    let s = Server::start(&root.path, &["--workers", "1"]);
    let turns = |s: &Server| scrape(s)["atomserve_worker_turns_total{worker=\"0\"}"];
    let before = turns(&s);
    let mut c = s.connect();
    c.write_all("GET /index.html HTTP/1.1\r\nHost: t\r\n\r\n".repeat(16).as_bytes()).unwrap();
    for i in 0..16 {
        assert_eq!(read_response(&mut c, false).map(|r| r.status), Some(200), "response {i}");
    }
    let taken = turns(&s) - before;
    // The scrape between is served by the same worker: a few turns of its own.
    assert!((1.0..12.0).contains(&taken), "16 pipelined requests took {taken} turns");
}

#[test]
fn stats_json_matches_metrics() {
    let root = fixture_root("stats-json");
    let s = Server::start(&root.path, &["--workers", "2"]);
    known_traffic(&s);
    std::thread::sleep(Duration::from_millis(100));
    let r = admin_get(&s, "/stats");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    let v: serde_json::Value = serde_json::from_slice(&r.body).expect("valid JSON");
    assert_eq!(v["requests_total"], 14);
    assert_eq!(v["responses_by_code"]["200"], 8);
    assert_eq!(v["responses_by_code"]["404"], 3);
    assert_eq!(v["duration_seconds"]["count"], 14);
    assert_eq!(v["duration_seconds"]["bounds"].as_array().unwrap().len(), 20);
    assert_eq!(v["duration_seconds"]["counts"].as_array().unwrap().len(), 21);
    let workers = v["workers"].as_array().unwrap();
    assert_eq!(workers.len(), 2);
    let sum: u64 = workers.iter().map(|w| w["requests"].as_u64().unwrap()).sum();
    assert_eq!(sum, 14);
    assert_eq!(v["cache"]["files"], 10);
    assert_eq!(v["cache"]["rendered_hits"], 6);
    assert_eq!(v["cache"]["generation"], 0);
    assert_eq!(v["connections_active"], 0);
}

#[test]
fn promtool_accepts_the_exposition() {
    if !need("promtool") {
        return;
    }
    let root = fixture_root("promtool");
    let s = Server::start(&root.path, &[]);
    known_traffic(&s);
    let body = admin_get(&s, "/metrics").body;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&body).unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && report.trim().is_empty(), "promtool: {report}");
}

#[test]
fn a_real_prometheus_scrapes_the_admin_port() {
    if !need("prometheus") {
        return;
    }
    let root = fixture_root("prometheus");
    let s = Server::start(&root.path, &[]);
    known_traffic(&s);
    let dir = root.path.join(".prom"); // a dot-directory: never served, never loaded
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: atomserve\n    static_configs:\n      - targets: ['{}']\n",
        s.admin.unwrap()
    );
    std::fs::write(dir.join("prometheus.yml"), config).unwrap();
    let mut prom = Command::new("prometheus")
        .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start prometheus");
    let query = |q: &str| -> Option<f64> {
        let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
        c.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(c, "GET /api/v1/query?query={q} HTTP/1.0\r\n\r\n").ok()?;
        let mut text = String::new();
        c.read_to_string(&mut text).ok()?;
        let body = text.split_once("\r\n\r\n")?.1;
        let v: serde_json::Value = serde_json::from_str(body).ok()?;
        v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    };
    let end = Instant::now() + Duration::from_secs(30);
    let mut seen = None;
    while Instant::now() < end {
        if query("up") == Some(1.0) {
            seen = query("atomserve_http_requests_total%7Bcode%3D%22200%22%7D");
            if seen.is_some() {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let _ = prom.kill();
    let _ = prom.wait();
    assert_eq!(seen, Some(8.0), "Prometheus did not scrape the expected value");
}

/// OpenMetrics when the scraper asks for it, as Prometheus does by default: counter families
/// are named without `_total` (their samples keep it), and the exposition ends with `# EOF`.
#[test]
fn openmetrics_when_the_accept_header_asks() {
    let root = fixture_root("openmetrics");
    let s = Server::start(&root.path, &[]);
    assert_eq!(s.get("/").status, 200);
    let mut c = connect(s.admin.unwrap());
    c.write_all(
        b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\nAccept: application/openmetrics-text;\
          version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1\r\n\r\n",
    )
    .unwrap();
    let r = read_response(&mut c, false).unwrap();
    assert_eq!(r.header("content-type"), Some("application/openmetrics-text; version=1.0.0; charset=utf-8"));
    let text = r.text();
    assert!(text.ends_with("# EOF\n"), "{text}");
    assert!(text.contains("# TYPE atomserve_http_requests counter\n"));
    assert!(text.contains("atomserve_http_requests_total{code=\"200\"} 1\n"));
    assert!(text.contains("# TYPE atomserve_http_request_duration_seconds histogram\n"));
    // Without the header: the 0.0.4 text format, as before.
    let plain = admin_get(&s, "/metrics");
    assert!(plain.header("content-type").unwrap().starts_with("text/plain; version=0.0.4"));
    assert!(!plain.text().contains("# EOF"));
}

/// `connections_active` under churn: with 5 keep-alive connections held open and two clients
/// connecting, requesting and closing as fast as they can, every reading of `/stats` lies
/// between the 5 held and the most that can be open, and never wraps (it used to be computed as
/// accepted − closed with `accepted` counted after the hand-off, so a worker's close could be
/// seen before its accept; `saturating_sub` turned that into a count below the truth).
#[test]
fn open_connections_stay_between_the_truth_and_its_bound_under_churn() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let root = fixture_root("active-churn");
    let s = Server::start(&root.path, &["--workers", "2"]);
    let held: Vec<_> = (0..5)
        .map(|_| {
            let mut c = s.connect();
            c.write_all(b"GET /index.html HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
            read_response(&mut c, false).unwrap();
            c
        })
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let churners: Vec<_> = (0..2)
        .map(|_| {
            let (stop, addr) = (stop.clone(), s.addr);
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let mut c = connect(addr);
                    c.write_all(b"GET /index.html HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").unwrap();
                    read_response(&mut c, false).unwrap();
                }
            })
        })
        .collect();
    let end = Instant::now() + Duration::from_secs(2);
    let mut readings = 0;
    while Instant::now() < end {
        let v: serde_json::Value = serde_json::from_slice(&admin_get(&s, "/stats").body).unwrap();
        let active = v["connections_active"].as_u64().unwrap();
        // Each churner has at most one connection of its own open, plus ones it closed that a
        // worker has not noticed yet: a few each.
        assert!((5..=5 + 2 * 4).contains(&active), "connections_active read as {active}");
        readings += 1;
    }
    stop.store(true, Ordering::Relaxed);
    for c in churners {
        c.join().unwrap();
    }
    drop(held);
    assert!(readings > 100, "only {readings} readings");
}

//! Whole responses rendered per worker for hot small files (`serve::rendered`): seen from a
//! client they are indistinguishable from the responder's — a reload shows on a connection that
//! stays open, and the `Date` keeps up with the clock while the same response is served over and
//! over.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;

fn get(c: &mut TcpStream, path: &str) -> Response {
    write!(c, "GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    read_response(c, false).unwrap()
}

/// `cache.rendered_hits` from `/stats`: requests answered whole from a rendered response.
fn rendered_hits(s: &Server) -> u64 {
    let mut c = connect(s.admin.expect("admin listener"));
    let r = get(&mut c, "/stats");
    let v: serde_json::Value = serde_json::from_slice(&r.body).expect("JSON");
    v["cache"]["rendered_hits"].as_u64().expect("cache.rendered_hits")
}

/// Regression guard for the table's key: it is the snapshot's serial, not its address (a new
/// snapshot may be allocated where the freed one was), and a same-size edit is the case where a
/// stale entry would go unnoticed.
#[test]
fn a_reload_shows_on_a_connection_that_stays_open() {
    let root = fixture_root("rendered-reload");
    // And a body in the snapshot's memfd (rendered whole with its head), edited in place too.
    let chunk = |fill: u8| vec![fill; 100 * 1024];
    std::fs::write(root.path.join("chunk.bin"), chunk(b'a')).unwrap();
    let s = Server::start(&root.path, &["--workers", "1"]);
    let mut c = s.connect();
    for _ in 0..5 {
        assert_eq!(get(&mut c, "/docs/deep/page.txt").text(), "deep\n");
        assert!(get(&mut c, "/chunk.bin").body == chunk(b'a'));
    }
    for (n, (text, fill)) in [("DEEP\n", b'b'), ("deep\n", b'a'), ("DeeP\n", b'c')].into_iter().enumerate() {
        std::fs::write(root.path.join("docs/deep/page.txt"), text).unwrap();
        std::fs::write(root.path.join("chunk.bin"), chunk(fill)).unwrap();
        s.signal(libc::SIGHUP);
        s.wait_log("atomserve: reload", n + 1, Duration::from_secs(10));
        let before = rendered_hits(&s);
        for _ in 0..5 {
            assert_eq!(get(&mut c, "/docs/deep/page.txt").text(), text, "after reload {}", n + 1);
            assert!(get(&mut c, "/chunk.bin").body == chunk(fill), "after reload {}", n + 1);
        }
        // What is checked above came from the rendered responses, not only from the responder:
        // of the ten, the first of each path is the responder's (a new snapshot empties the
        // table), and so may be one more if the variants built in the background are published
        // in between.
        let rendered = rendered_hits(&s) - before;
        assert!(rendered >= 4, "after reload {}: {rendered} of 10 responses rendered", n + 1);
    }
}

/// For a small response (on the heap), a large one (sent from a memfd that each new second
/// replaces: `rendered::FILE_MIN`), and one whose body is in the snapshot's memfd (from
/// `cache::pack::ZERO_COPY_MIN`), rendered whole with its head all the same.
#[test]
fn the_date_keeps_up_with_the_clock() {
    let root = fixture_root("rendered-date");
    let large: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(root.path.join("large.bin"), &large).unwrap();
    let chunk: Vec<u8> = (0..150_000u32).map(|i| (i % 241) as u8).collect();
    std::fs::write(root.path.join("chunk.bin"), &chunk).unwrap();
    let s = Server::start(&root.path, &["--workers", "1"]);
    let mut c = s.connect();
    for (path, body) in [("/index.html", None), ("/large.bin", Some(&large)), ("/chunk.bin", Some(&chunk))] {
        let started = Instant::now();
        let mut dates = Vec::new();
        let mut etags = Vec::new();
        while started.elapsed() < Duration::from_millis(2500) {
            let before = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
            let r = get(&mut c, path);
            let after = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
            let date = r.header("date").unwrap().to_string();
            let secs = httpdate_secs(&date);
            assert!(before <= secs && secs <= after, "{path}: Date {date} outside {before}..={after}");
            if let Some(body) = body {
                assert!(&r.body == body, "{path}: the body, whole, every time");
            }
            if dates.last() != Some(&date) {
                dates.push(date);
            }
            etags.push(r.header("etag").unwrap().to_string());
            std::thread::sleep(Duration::from_millis(2));
        }
        assert!(dates.len() >= 3, "{path}: {dates:?}");
        etags.dedup();
        assert_eq!(etags.len(), 1, "{path}: only the date changes");
    }
}

/// Seconds since the epoch of an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`).
fn httpdate_secs(date: &str) -> u64 {
    let parts: Vec<&str> = date.split([' ', ':']).collect();
    let [_, day, month, year, h, m, s, "GMT"] = parts[..] else { panic!("{date}") };
    let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let month = months.iter().position(|&x| x == month).unwrap() as u64 + 1;
    let (year, day): (u64, u64) = (year.parse().unwrap(), day.parse().unwrap());
    // Days from civil (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    days * 86_400
        + h.parse::<u64>().unwrap() * 3600
        + m.parse::<u64>().unwrap() * 60
        + s.parse::<u64>().unwrap()
}

//! Criterion benches of the per-request hot path: parse a request head, normalise its path and
//! look it up in a snapshot. Run with `cargo bench` (or `make bench`).

use std::hint::black_box;
use std::mem::MaybeUninit;

use atomserve::cache::{load, LoadOptions, Lookup};
use atomserve::http::path;
use atomserve::http::request::{parse, Limits, Parsed};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const CHROME_GET: &[u8] = b"GET /assets/index-ThlbQ9On.js HTTP/1.1\r\nHost: localhost:8080\r\nConnection: keep-alive\r\n\
sec-ch-ua-platform: \"Linux\"\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36\r\n\
Accept: */*\r\nSec-Fetch-Site: same-origin\r\nSec-Fetch-Mode: no-cors\r\nSec-Fetch-Dest: script\r\nReferer: http://localhost:8080/\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\nAccept-Language: en-US,en;q=0.9\r\n\r\n";

fn request_parse(c: &mut Criterion) {
    let limits = Limits::default();
    let mut g = c.benchmark_group("request");
    g.throughput(Throughput::Elements(1));
    g.bench_function("parse_browser_get", |b| {
        b.iter(|| {
            let mut headers = [const { MaybeUninit::uninit() }; 100];
            match parse(black_box(CHROME_GET), &mut headers, &limits) {
                Parsed::Complete(r) => r.head_len,
                _ => unreachable!(),
            }
        })
    });
    g.finish();
}

fn path_and_lookup(c: &mut Criterion) {
    let root = std::env::temp_dir().join(format!("atomserve-bench-{}", std::process::id()));
    std::fs::create_dir_all(root.join("assets")).unwrap();
    std::fs::write(root.join("index.html"), "<!doctype html>").unwrap();
    for i in 0..50 {
        std::fs::write(root.join(format!("assets/chunk-{i:04}.js")), "x").unwrap();
    }
    std::fs::write(root.join("assets/index-ThlbQ9On.js"), "console.log(1)").unwrap();
    let snapshot = load(&LoadOptions {
        root: root.clone(),
        spa_fallback: true,
        budget: u64::MAX,
        max_cached_file: u64::MAX,
        cache_control: String::new(),
        compress: false,
    })
    .unwrap();
    let (mut key, mut scratch) = (Vec::with_capacity(256), Vec::with_capacity(256));
    let mut g = c.benchmark_group("lookup");
    g.throughput(Throughput::Elements(1));
    g.bench_function("normalize_and_resolve", |b| {
        b.iter(|| {
            let n = path::normalize(black_box(b"/assets/index-ThlbQ9On.js?v=1"), &mut key).unwrap();
            match snapshot.resolve(&key, n.dir, &mut scratch) {
                Lookup::File(e) => e.identity.body.len(),
                _ => unreachable!(),
            }
        })
    });
    g.finish();
    let _ = std::fs::remove_dir_all(root);
}

criterion_group!(benches, request_parse, path_and_lookup);
criterion_main!(benches);

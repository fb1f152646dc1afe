//! Criterion benches of the per-request hot path: parse a request head, normalise its path and
//! look it up in a snapshot, negotiate `Accept-Encoding`, parse `Range`, and write what a
//! response writes per request (the tail after a pre-rendered head, or a whole 206 head). Run
//! with `cargo bench` (or `make bench`).

use std::hint::black_box;

use atomserve::cache::{load, LoadOptions, Lookup};
use atomserve::http::encoding::AcceptEncoding;
use atomserve::http::request::{parse, Fields, Limits, Parsed};
use atomserve::http::response::{self, FileMeta, Frame, Persistence};
use atomserve::http::{date, path, range};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

mod heads;
use heads::CHROME_GET;

fn request_parse(c: &mut Criterion) {
    let limits = Limits::default();
    let mut g = c.benchmark_group("request");
    g.throughput(Throughput::Elements(1));
    g.bench_function("parse_browser_get", |b| {
        // A fresh slot per request, as `Link::process` makes one.
        b.iter(|| match parse(black_box(CHROME_GET), &limits, &mut Fields::default()) {
            Parsed::Complete(r) => r.head_len,
            _ => unreachable!(),
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
        source_min: u64::MAX,
        cache_control: String::new(),
        compress: false,
        site: Default::default(),
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

fn negotiation_and_ranges(c: &mut Criterion) {
    let mut g = c.benchmark_group("headers");
    g.throughput(Throughput::Elements(1));
    g.bench_function("accept_encoding_browser", |b| {
        b.iter(|| AcceptEncoding::parse(black_box(Some(b"gzip, deflate, br, zstd"))).choose(|_| true))
    });
    g.bench_function("accept_encoding_qvalues", |b| {
        b.iter(|| AcceptEncoding::parse(black_box(Some(b"br;q=0.5, gzip;q=0.9, *;q=0"))).choose(|_| true))
    });
    g.bench_function("range_first_last", |b| b.iter(|| range::parse(black_box(b"bytes=1000-1999"), 5 << 20)));
    g.bench_function("range_suffix", |b| b.iter(|| range::parse(black_box(b"bytes=-500"), 5 << 20)));
    g.finish();
}

fn response_rendering(c: &mut Criterion) {
    let date = date::format(1_795_663_171);
    let meta = FileMeta {
        content_type: "text/javascript; charset=utf-8",
        encoding: Some("br"),
        vary: true,
        len: 61_234,
        etag: b"\"3b8a2-9f1c2e4d5a6b7c8d-br\"",
        last_modified: &date,
        cache_control: "max-age=31536000, immutable",
        headers: b"",
    };
    let mut out = Vec::with_capacity(1024);
    let mut g = c.benchmark_group("response");
    g.throughput(Throughput::Elements(1));
    // What every cached 200 writes per request: the head is pre-rendered at load.
    g.bench_function("tail_keep_alive", |b| {
        b.iter(|| {
            out.clear();
            response::write_tail(
                &mut out,
                Frame { date: black_box(&date), persistence: Persistence::KeepAlive11, head_only: false },
            );
            out.len()
        })
    });
    // A 206 renders its whole head per request (the range differs each time).
    g.bench_function("partial_head", |b| {
        b.iter(|| {
            out.clear();
            response::write_partial_head(&mut out, black_box(&meta), 1000, 1999);
            response::write_tail(
                &mut out,
                Frame { date: &date, persistence: Persistence::KeepAlive11, head_only: false },
            );
            out.len()
        })
    });
    // What the loader does once per representation.
    g.bench_function("render_file_head_at_load", |b| {
        b.iter(|| response::render_file_head(black_box(&meta)).len())
    });
    g.finish();
}

/// What each coding costs the *client*: decoding the bundled front end's JavaScript bundle as
/// atomserve compresses it (gzip best, zstd 19, brotli 11). Behind the preference br > zstd >
/// gzip at equal q (docs/http.md, "Compression"). Skipped when frontend/dist is not built.
fn client_decode(c: &mut Criterion) {
    use atomserve::cache::compress;
    use std::io::Read;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("frontend/dist/assets");
    let Some(js) = std::fs::read_dir(&dir)
        .ok()
        .and_then(|d| d.flatten().map(|e| e.path()).find(|p| p.extension().is_some_and(|x| x == "js")))
    else {
        return;
    };
    let body = std::fs::read(&js).unwrap();
    let gz = compress::gzip_variant(&body).unwrap();
    let zst = compress::zstd_variant(&body).unwrap();
    let br = compress::brotli_variant(&body).unwrap();
    eprintln!(
        "{}: {} bytes; gzip {} ({:.1}%), zstd {} ({:.1}%), br {} ({:.1}%)",
        js.display(),
        body.len(),
        gz.len(),
        100.0 * gz.len() as f64 / body.len() as f64,
        zst.len(),
        100.0 * zst.len() as f64 / body.len() as f64,
        br.len(),
        100.0 * br.len() as f64 / body.len() as f64
    );
    let mut g = c.benchmark_group("client_decode");
    g.throughput(Throughput::Bytes(body.len() as u64));
    let mut out = Vec::with_capacity(body.len());
    g.bench_function("gzip", |b| {
        b.iter(|| {
            out.clear();
            flate2::read::GzDecoder::new(black_box(gz.as_slice())).read_to_end(&mut out).unwrap()
        })
    });
    g.bench_function("zstd", |b| {
        b.iter(|| zstd::bulk::decompress(black_box(&zst), body.len()).unwrap().len())
    });
    g.bench_function("br", |b| {
        b.iter(|| {
            out.clear();
            brotli::Decompressor::new(black_box(br.as_slice()), 64 * 1024).read_to_end(&mut out).unwrap()
        })
    });
}

criterion_group!(
    benches,
    request_parse,
    path_and_lookup,
    negotiation_and_ranges,
    response_rendering,
    client_decode
);
criterion_main!(benches);

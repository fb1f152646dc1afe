//! Instructions per parsed request head, for callgrind (a deterministic count where timing on a
//! shared VM is noise): `request::parse` on 16 back-to-back copies of one head, as a pipelining
//! connection hands them over, `N` times (default 100,000).
//!
//!     cargo build --release --example parse_count
//!     valgrind --tool=callgrind target/release/examples/parse_count 10000          # wrk's head
//!     CHROME=1 valgrind --tool=callgrind target/release/examples/parse_count 2000  # a browser's
//!
//! Divide the "refs" valgrind prints by 16 N. The heads are `benches/heads.rs`'s.

use atomserve::http::request::{parse, Fields, Limits, Parsed};
use std::hint::black_box;

mod heads;
use heads::{CHROME_GET, WRK_GET};

fn main() {
    let limits = Limits::default();
    let head = if std::env::var_os("CHROME").is_some() { CHROME_GET } else { WRK_GET };
    let batch = head.repeat(16);
    let n: usize = std::env::args().nth(1).map_or(100_000, |s| s.parse().expect("a count"));
    let mut targets = 0;
    for _ in 0..n {
        let mut pos = 0;
        while pos < batch.len() {
            // A fresh slot per request, as `Link::process` makes one.
            let mut fields = Fields::default();
            match parse(black_box(&batch[pos..]), &limits, &mut fields) {
                Parsed::Complete(req) => {
                    pos += req.head_len;
                    targets += req.target.len();
                }
                other => panic!("{other:?}"),
            }
        }
    }
    println!("{targets}");
}

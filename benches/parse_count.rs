//! Instructions per parsed request head, for callgrind (a deterministic count where timing on a
//! shared VM is noise): `request::parse` on 16 back-to-back copies of one head, as a pipelining
//! connection hands them over, `N` times (default 100,000).
//!
//!     cargo build --release --example parse_count
//!     valgrind --tool=callgrind target/release/examples/parse_count 10000          # wrk's head
//!     CHROME=1 valgrind --tool=callgrind target/release/examples/parse_count 2000  # a browser's
//!
//! Divide the "refs" valgrind prints by 16 N. The browser head is `benches/hot_path.rs`'s.

use atomserve::http::request::{parse, Fields, Limits, Parsed};
use std::hint::black_box;

/// What `wrk` sends (one field).
const WRK: &[u8] = b"GET /index.html HTTP/1.1\r\nHost: 127.0.0.1:28001\r\n\r\n";
/// What Chrome sends for a script (eleven fields).
const CHROME: &[u8] = b"GET /assets/index-ThlbQ9On.js HTTP/1.1\r\nHost: localhost:8080\r\nConnection: keep-alive\r\n\
sec-ch-ua-platform: \"Linux\"\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36\r\n\
Accept: */*\r\nSec-Fetch-Site: same-origin\r\nSec-Fetch-Mode: no-cors\r\nSec-Fetch-Dest: script\r\nReferer: http://localhost:8080/\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\nAccept-Language: en-US,en;q=0.9\r\n\r\n";

fn main() {
    let limits = Limits::default();
    let head = if std::env::var_os("CHROME").is_some() { CHROME } else { WRK };
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

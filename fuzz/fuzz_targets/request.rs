//! `http::request::parse` on arbitrary bytes, as the transport's `process` calls it: with the default
//! limits on the whole input, and with small limits taken from its first four bytes on the rest
//! (so that every limit is reached by short inputs).

#![no_main]

use atomserve::http::request::{parse, Fields, Limits, Parsed};
use libfuzzer_sys::fuzz_target;

fn check(data: &[u8], limits: &Limits) {
    let mut fields = Fields::default();
    match parse(data, limits, &mut fields) {
        Parsed::Complete(req) => {
            let n = req.head_len;
            assert!(n <= data.len() && data[..n].ends_with(b"\n"), "head_len {n} of {}", data.len());
            assert!(
                n <= limits.max_header_bytes,
                "a {n}-byte head passed a {}-byte limit",
                limits.max_header_bytes
            );
            assert!(req.body_len <= limits.max_body);
            // What follows the head (a pipelined request, a body) does not change how it parses.
            match parse(&data[..n], limits, &mut Fields::default()) {
                Parsed::Complete(r) => {
                    assert_eq!(
                        (r.head_len, r.target, r.body_len, r.keep_alive),
                        (n, req.target, req.body_len, req.keep_alive)
                    )
                }
                other => panic!("the head alone parsed as {other:?}"),
            }
            // Any prefix of it is Partial: a head that arrives in pieces is not refused on the way.
            for k in [n - 1, usize::from(data[0]) * n / 256] {
                let mut fields = Fields::default();
                let r = parse(&data[..k], limits, &mut fields);
                assert!(matches!(r, Parsed::Partial), "prefix of {k}/{n} bytes: {r:?}");
            }
        }
        // What the connection buffers while waiting for the rest is bounded by the head limit.
        Parsed::Partial => assert!(data.len() <= limits.max_header_bytes),
        Parsed::Invalid(status) => {
            assert!(matches!(status.code(), 400 | 413 | 414 | 431 | 501 | 505), "{status:?}")
        }
    }
}

fuzz_target!(|data: &[u8]| {
    check(data, &Limits::default());
    if let [line, head, fields, body, rest @ ..] = data {
        let limits = Limits {
            max_request_line: usize::from(*line),
            max_header_bytes: usize::from(*head) * 2,
            max_headers: usize::from(*fields % 16),
            max_body: u64::from(*body),
        };
        check(rest, &limits);
    }
});

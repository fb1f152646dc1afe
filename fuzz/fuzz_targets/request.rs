//! `http::request::parse` on arbitrary bytes, as the transport's `process` calls it: with the default
//! limits on the whole input, and with small limits taken from its first four bytes on the rest
//! (so that every limit is reached by short inputs).

#![no_main]

use std::mem::MaybeUninit;

use atomserve::http::request::{parse, Limits, Parsed};
use libfuzzer_sys::fuzz_target;

/// `request::MAX_HEADERS`: the scratch array the transport hands the parser.
const MAX_HEADERS: usize = 256;

fn run<'b>(data: &'b [u8], limits: &Limits, headers: &mut [MaybeUninit<httparse::Header<'b>>]) -> Parsed<'b> {
    let n = limits.max_headers.min(MAX_HEADERS);
    parse(data, &mut headers[..n], limits)
}

fn check(data: &[u8], limits: &Limits) {
    let mut headers = [const { MaybeUninit::uninit() }; MAX_HEADERS];
    match run(data, limits, &mut headers) {
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
            let mut again = [const { MaybeUninit::uninit() }; MAX_HEADERS];
            match run(&data[..n], limits, &mut again) {
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
                let mut part = [const { MaybeUninit::uninit() }; MAX_HEADERS];
                let r = run(&data[..k], limits, &mut part);
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

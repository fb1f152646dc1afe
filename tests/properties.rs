//! Property tests (proptest) over the functions that see hostile input first: request parsing,
//! path normalisation, Range and Accept-Encoding parsing, HTTP dates, chunked request bodies. Random inputs must never
//! panic, and the results must keep their invariants. (The `cargo fuzz` targets of the HTTP
//! issue cover the same functions with coverage guidance, on nightly.)

#[path = "common/chunked_model.rs"]
mod chunked_model;

use atomserve::http::chunked::{self, Scan};
use atomserve::http::encoding::{AcceptEncoding, Coding};
use atomserve::http::request::{parse, Fields, Limits, Parsed};
use atomserve::http::response::Status;
use atomserve::http::{date, path, range};
use chunked_model::{agrees, encode};
use proptest::prelude::*;

/// Path-ish strings built from the pieces traversal attempts are made of.
fn tricky_path() -> impl Strategy<Value = String> {
    let piece = prop::sample::select(vec![
        "..",
        ".",
        "a",
        "b.js",
        "%2e%2e",
        "%2E.",
        "%2f",
        "%2F",
        "",
        "%252e%252e",
        "\\..",
        "%00",
        "%",
        "%zz",
        ".hidden",
    ]);
    prop::collection::vec(piece, 0..12).prop_map(|parts| format!("/{}", parts.join("/")))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn normalized_paths_never_climb_or_hold_dot_segments(target in tricky_path()) {
        let mut out = Vec::new();
        if path::normalize(target.as_bytes(), &mut out).is_ok() {
            prop_assert!(out.starts_with(b"/"));
            prop_assert!(!out.contains(&0));
            if out.len() > 1 {
                for seg in out[1..].split(|&c| c == b'/') {
                    prop_assert!(seg != b".." && seg != b"." && !seg.is_empty(), "{:?}", String::from_utf8_lossy(&out));
                }
            }
            // Normalising again changes nothing (when no '%' is left to decode).
            if !out.contains(&b'%') {
                let mut again = Vec::new();
                path::normalize(&out, &mut again).unwrap();
                prop_assert_eq!(again, out);
            }
        }
    }

    #[test]
    fn normalize_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let mut out = Vec::new();
        let _ = path::normalize(&bytes, &mut out);
    }

    #[test]
    fn ranges_stay_inside_the_file(header in "bytes=[0-9-,]{0,30}", len in 0u64..10_000) {
        if let range::Range::Part { start, end } = range::parse(header.as_bytes(), len) {
            prop_assert!(start <= end && end < len);
        }
    }

    #[test]
    fn numeric_ranges_are_interpreted_exactly(a in 0u64..20_000, b in 0u64..20_000, len in 1u64..10_000) {
        let r = range::parse(format!("bytes={a}-{b}").as_bytes(), len);
        let want = if a > b { range::Range::Full } else if a >= len { range::Range::Unsatisfiable }
            else { range::Range::Part { start: a, end: b.min(len - 1) } };
        prop_assert_eq!(r, want);
    }

    #[test]
    fn range_parse_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..100), len in any::<u64>()) {
        let _ = range::parse(&bytes, len);
    }

    #[test]
    fn accept_encoding_never_picks_what_was_not_offered(header in "[a-z*;=0-9., ]{0,60}") {
        let coding = AcceptEncoding::parse(Some(header.as_bytes())).choose(|_| true);
        if coding == Coding::Br {
            prop_assert!(header.contains("br") || header.contains('*'));
        }
        if coding == Coding::Gzip {
            prop_assert!(header.contains("gzip") || header.contains('*'));
        }
    }

    #[test]
    fn dates_round_trip(t in 0u64..253_402_300_799) {
        prop_assert_eq!(date::parse(&date::format(t)), Some(t));
    }

    #[test]
    fn request_parse_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..2000)) {
        if let Parsed::Complete(req) = parse(&bytes, &Limits::default(), &mut Fields::default()) {
            prop_assert!(req.head_len <= bytes.len());
        }
    }

    #[test]
    fn request_parse_of_near_valid_heads(
        method in "(GET|HEAD|POST|BREW)",
        target in "/[ -~]{0,40}",
        extra in prop::collection::vec("[A-Za-z-]{1,12}: [ -~]{0,30}", 0..8),
    ) {
        let head = format!("{method} {target} HTTP/1.1\r\nHost: x\r\n{}\r\n", extra.iter().map(|h| format!("{h}\r\n")).collect::<String>());
        match parse(head.as_bytes(), &Limits::default(), &mut Fields::default()) {
            Parsed::Complete(req) => prop_assert_eq!(req.head_len, head.len()),
            Parsed::Invalid(_) => {}
            Parsed::Partial => prop_assert!(false, "a complete head reported partial: {head:?}"),
        }
    }
}

fn chunk() -> impl Strategy<Value = (Vec<u8>, String)> {
    (
        prop::collection::vec(any::<u8>(), 0..40),
        prop::sample::select(vec!["", ";a", ";a=b", " ; q=\"x y\"", ";x;y=1"]),
    )
        .prop_map(|(d, e)| (d, e.to_string()))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn chunked_bodies_end_where_they_were_encoded(
        chunks in prop::collection::vec(chunk(), 0..6),
        trailers in prop::collection::vec(("[A-Za-z][A-Za-z0-9-]{0,8}", "[ -~]{0,12}"), 0..3),
        next in prop::collection::vec(any::<u8>(), 0..20),
    ) {
        let trailers: Vec<(String, String)> =
            trailers.into_iter().map(|(n, v)| (n, v.trim().to_string())).collect();
        let body = encode(&chunks, &trailers);
        let mut stream = body.clone();
        stream.extend_from_slice(&next);
        prop_assert_eq!(chunked::scan(&stream, 1 << 20), Scan::Complete(body.len()));
        for k in 0..body.len() {
            prop_assert_eq!(chunked::scan(&body[..k], 1 << 20), Scan::Partial, "prefix {}", k);
        }
        prop_assert_eq!(chunked::scan(&body, body.len() as u64 - 1), Scan::Invalid(Status::PayloadTooLarge));
    }

    #[test]
    fn chunked_scan_agrees_with_the_reference_model(
        pieces in prop::collection::vec(prop::sample::select(vec![
            "0", "1", "a", "F", "10", "ffffffffffffffff", "10000000000000000", ";", "=", " ", "\t",
            "x", ":", "\r\n", "\r", "\n", "abc", "T: v", "\r\n\r\n", "0\r\n\r\n",
        ]), 0..16),
        max in prop::sample::select(vec![0u64, 5, 16, 64, 1 << 20]),
    ) {
        let buf = pieces.concat();
        if let Err(e) = agrees(buf.as_bytes(), max) {
            prop_assert!(false, "{}", e);
        }
    }

    #[test]
    fn chunked_scan_of_arbitrary_bytes_agrees_too(bytes in prop::collection::vec(any::<u8>(), 0..200), max in 0u64..300) {
        if let Err(e) = agrees(&bytes, max) {
            prop_assert!(false, "{}", e);
        }
    }
}

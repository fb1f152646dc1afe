//! Property tests (proptest) over the functions that see hostile input first: request parsing,
//! path normalisation, Range and Accept-Encoding parsing, HTTP dates. Random inputs must never
//! panic, and the results must keep their invariants. (The `cargo fuzz` targets of the HTTP
//! issue cover the same functions with coverage guidance, on nightly.)

use std::mem::MaybeUninit;

use atomserve::http::encoding::{AcceptEncoding, Coding};
use atomserve::http::request::{parse, Limits, Parsed};
use atomserve::http::{date, path, range};
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
        let coding = AcceptEncoding::parse(Some(header.as_bytes())).choose(true, true);
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
        let mut headers = [const { MaybeUninit::uninit() }; 100];
        if let Parsed::Complete(req) = parse(&bytes, &mut headers, &Limits::default()) {
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
        let mut headers = [const { MaybeUninit::uninit() }; 100];
        match parse(head.as_bytes(), &mut headers, &Limits::default()) {
            Parsed::Complete(req) => prop_assert_eq!(req.head_len, head.len()),
            Parsed::Invalid(_) => {}
            Parsed::Partial => prop_assert!(false, "a complete head reported partial: {head:?}"),
        }
    }
}

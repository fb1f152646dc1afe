//! `http::range::parse` with the representation's length from the first eight input bytes and
//! the `Range` value from the rest.

#![no_main]

use atomserve::http::range::{parse, Range};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((len, header)) = data.split_first_chunk::<8>() else { return };
    let len = u64::from_le_bytes(*len);
    match parse(header, len) {
        Range::Full => {}
        // Only a single `bytes=` range is ever honoured (or refused with 416).
        Range::Unsatisfiable => assert!(single(header)),
        Range::Part { start, end } => {
            assert!(single(header));
            assert!(start <= end && end < len, "{start}-{end} of {len}");
            // The part re-requested as `bytes=start-end` is the same part.
            assert_eq!(parse(format!("bytes={start}-{end}").as_bytes(), len), Range::Part { start, end });
        }
    }
});

fn single(header: &[u8]) -> bool {
    header.trim_ascii().starts_with(b"bytes=") && !header.contains(&b',')
}

//! `http::conditional` with the five condition fields, the ETag and `Last-Modified` taken from
//! the input: the first eight bytes are the modification time, the rest is split on `\n`.

#![no_main]

use atomserve::http::conditional::{evaluate, range_applies, Conditions, Outcome};
use atomserve::http::date;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((modified, rest)) = data.split_first_chunk::<8>() else { return };
    let modified = u64::from_le_bytes(*modified);
    let mut fields = rest.split(|&c| c == b'\n');
    let mut field = || fields.next().filter(|f| f != b"-");
    let etag = field().unwrap_or(b"\"x\"");
    let c = Conditions {
        if_match: field(),
        if_none_match: field(),
        if_modified_since: field(),
        if_unmodified_since: field(),
        if_range: field(),
        ..Conditions::default()
    };
    let outcome = evaluate(&c, etag, modified);
    // 412 only from a failed If-Match or If-Unmodified-Since, 304 only from If-None-Match or
    // If-Modified-Since.
    if outcome == Outcome::PreconditionFailed {
        assert!(c.if_match.is_some() || c.if_unmodified_since.and_then(date::parse).is_some());
    }
    if outcome == Outcome::NotModified {
        assert!(c.if_none_match.is_some() || c.if_modified_since.and_then(date::parse).is_some());
    }
    // The representation's own validators always pass If-Match and always fail If-None-Match.
    let own = Conditions { if_match: Some(etag), if_none_match: Some(etag), ..c };
    if etag.starts_with(b"\"") && etag == etag.trim_ascii() && !etag.contains(&b',') {
        assert_eq!(evaluate(&own, etag, modified), Outcome::NotModified);
    }
    let _ = range_applies(&c, etag, modified);
    // If-Range with the strong ETag itself, or with the exact Last-Modified date, applies.
    if etag.starts_with(b"\"") && etag == etag.trim_ascii() {
        assert!(range_applies(&Conditions { if_range: Some(etag), ..c }, etag, modified));
    }
    if modified < 253_402_300_800 {
        let text = date::format(modified);
        assert!(range_applies(&Conditions { if_range: Some(&text), ..c }, etag, modified));
    }
});

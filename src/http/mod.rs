//! HTTP/1.1 (RFC 9110, RFC 9112) as a static server needs it: request heads scanned in one pass
//! (`httparse` is the tests' oracle), request-target normalisation, MIME types, the `Date` header, status lines,
//! conditional requests, byte ranges, and the chunked coding of request bodies to skip.

pub mod chunked;
pub mod conditional;
pub mod date;
pub mod encoding;
pub mod head;
pub mod mime;
pub mod path;
pub mod range;
pub mod request;
pub mod response;

/// Plain ASCII digits (no sign, no spaces) as a `u64`; `None` when empty, not digits, or too
/// large. Used for `Content-Length` and byte ranges, where anything looser invites smuggling or
/// overflow.
pub(crate) fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 20 {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &c| {
        if c.is_ascii_digit() {
            acc.checked_mul(10)?.checked_add(u64::from(c - b'0'))
        } else {
            None
        }
    })
}

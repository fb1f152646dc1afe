//! `Range: bytes=…` (RFC 9110 §14.2): one range is served as `206 Partial Content`.
//!
//! Several ranges are answered with the whole representation (`200`), which the RFC allows (a
//! server may ignore `Range`): it avoids `multipart/byteranges` and the amplification of
//! overlapping ranges (`bytes=0-,0-,0-…`). A malformed header is ignored the same way. A range
//! that starts at or past the end is unsatisfiable: `416` with `Content-Range: bytes */len`.
//! All arithmetic is checked: `bytes=0-18446744073709551615` is simply clamped to the length.

/// What to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Range {
    /// The whole representation (no range, several, or malformed).
    Full,
    /// Bytes `start..=end` (`end < len`).
    Part { start: u64, end: u64 },
    /// Nothing in the representation matches: 416.
    Unsatisfiable,
}

/// Interprets a `Range` header for a representation of `len` bytes.
pub fn parse(header: &[u8], len: u64) -> Range {
    let Some(spec) = header.trim_ascii().strip_prefix(b"bytes=") else { return Range::Full };
    if spec.contains(&b',') {
        return Range::Full; // several ranges: send the whole thing (documented above)
    }
    let Some(dash) = spec.iter().position(|&c| c == b'-') else { return Range::Full };
    let (first, last) = (spec[..dash].trim_ascii(), spec[dash + 1..].trim_ascii());
    match (super::parse_decimal(first), super::parse_decimal(last)) {
        // bytes=-N: the last N bytes.
        (None, Some(n)) if first.is_empty() => {
            if n == 0 || len == 0 {
                return Range::Unsatisfiable;
            }
            Range::Part { start: len.saturating_sub(n), end: len - 1 }
        }
        // bytes=A- : from A to the end.
        (Some(a), None) if last.is_empty() => {
            if a >= len {
                Range::Unsatisfiable
            } else {
                Range::Part { start: a, end: len - 1 }
            }
        }
        // bytes=A-B
        (Some(a), Some(b)) => {
            if a > b {
                Range::Full // invalid: ignored
            } else if a >= len {
                Range::Unsatisfiable
            } else {
                Range::Part { start: a, end: b.min(len - 1) }
            }
        }
        _ => Range::Full,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_ranges() {
        assert_eq!(parse(b"bytes=0-9", 100), Range::Part { start: 0, end: 9 });
        assert_eq!(parse(b"bytes=90-", 100), Range::Part { start: 90, end: 99 });
        assert_eq!(parse(b"bytes=-10", 100), Range::Part { start: 90, end: 99 });
        assert_eq!(parse(b"bytes=-1000", 100), Range::Part { start: 0, end: 99 });
        assert_eq!(parse(b"bytes=50-1000", 100), Range::Part { start: 50, end: 99 });
        assert_eq!(parse(b"bytes=0-18446744073709551615", 100), Range::Part { start: 0, end: 99 });
    }

    #[test]
    fn unsatisfiable_and_ignored() {
        assert_eq!(parse(b"bytes=100-", 100), Range::Unsatisfiable);
        assert_eq!(parse(b"bytes=100-200", 100), Range::Unsatisfiable);
        assert_eq!(parse(b"bytes=-0", 100), Range::Unsatisfiable);
        assert_eq!(parse(b"bytes=0-", 0), Range::Unsatisfiable);
        assert_eq!(parse(b"bytes=5-1", 100), Range::Full);
        assert_eq!(parse(b"bytes=0-1,5-6", 100), Range::Full);
        assert_eq!(parse(b"items=0-1", 100), Range::Full);
        assert_eq!(parse(b"bytes=abc", 100), Range::Full);
        assert_eq!(parse(b"bytes=99999999999999999999999-", 100), Range::Full);
        assert_eq!(parse(b"bytes=-", 100), Range::Full);
        assert_eq!(parse(b"bytes=+1-2", 100), Range::Full);
    }
}

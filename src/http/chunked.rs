//! The chunked transfer coding of a request body (RFC 9112 §7.1), recognised to be skipped.
//!
//! A static server has no use for request bodies, but a server MUST be able to parse the
//! chunked coding (RFC 9112 §7.1): a `POST` with `Transfer-Encoding: chunked` deserves its `405`,
//! and the request after it on the same connection starts where the body ends. [`scan`] finds
//! that end without copying anything; the transport keeps the bytes until it is known, then
//! answers and drops them.
//!
//! Strict where leniency lets two parsers disagree on where a message ends (the root of request
//! smuggling): every line ends in CRLF, never a bare LF; a size is hex digits only, at most 16
//! of them (no sign, no `0x`, no whitespace before it); a chunk's data is followed by CRLF
//! exactly; trailer fields are `name: value` lines without obs-fold. The whole body — sizes,
//! extensions, data and trailers — counts against `--max-body`.

use super::response::Status;

/// Where a chunked body ends, if it does within the bytes given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scan {
    /// The body is complete: its length in bytes, last CRLF included.
    Complete(usize),
    /// More bytes are needed.
    Partial,
    /// Not a valid chunked body (400), or larger than the limit (413).
    Invalid(Status),
}

/// The longest chunk-size line (size, extensions, CRLF) or trailer line accepted.
pub const MAX_LINE: usize = 4096;

/// Finds the end of the chunked body at the start of `buf`, allowing at most `max` bytes.
pub fn scan(buf: &[u8], max: u64) -> Scan {
    Scanner::default().resume(buf, max)
}

/// A scan that can stop where the bytes end and go on when more arrive: a body trickling in
/// is read once, not again from its start at every read (which a client sending one byte at a
/// time would turn into a quadratic amount of work).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Scanner {
    /// Where the next element starts, from the start of the body.
    at: usize,
    phase: Phase,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Phase {
    /// `chunk-size [ chunk-ext ] CRLF` (or the last chunk's `0`).
    #[default]
    Size,
    /// Chunk data ending at `end`, then CRLF.
    Data { end: usize },
    /// `trailer-section CRLF`.
    Trailers,
}

impl Scanner {
    /// How far the body has been scanned: where the next element (size line, data, trailer)
    /// starts, from the start of the body.
    pub fn scanned(&self) -> usize {
        self.at
    }

    /// Goes on scanning `buf` — the body from its start, the same bytes as at the last call plus
    /// any that arrived since — where the last call stopped.
    pub fn resume(&mut self, buf: &[u8], max: u64) -> Scan {
        loop {
            match self.phase {
                Phase::Size => {
                    let line = match line(buf, self.at) {
                        Ok(Some(end)) => end,
                        Ok(None) => return partial_within(buf.len(), max),
                        Err(s) => return Scan::Invalid(s),
                    };
                    let Some(size) = chunk_size(&buf[self.at..line]) else {
                        return Scan::Invalid(Status::BadRequest);
                    };
                    self.at = line + 2;
                    if size == 0 {
                        self.phase = Phase::Trailers;
                        continue;
                    }
                    let Some(end) = (self.at as u64).checked_add(size).filter(|&e| e <= max) else {
                        return Scan::Invalid(Status::PayloadTooLarge);
                    };
                    self.phase = Phase::Data { end: end as usize };
                }
                Phase::Data { end } => {
                    if buf.len() < end + 2 {
                        return if end as u64 + 2 > max {
                            Scan::Invalid(Status::PayloadTooLarge)
                        } else {
                            Scan::Partial
                        };
                    }
                    if &buf[end..end + 2] != b"\r\n" {
                        return Scan::Invalid(Status::BadRequest);
                    }
                    self.at = end + 2;
                    if self.at as u64 > max {
                        return Scan::Invalid(Status::PayloadTooLarge);
                    }
                    self.phase = Phase::Size;
                }
                Phase::Trailers => {
                    let line = match line(buf, self.at) {
                        Ok(Some(end)) => end,
                        Ok(None) => return partial_within(buf.len(), max),
                        Err(s) => return Scan::Invalid(s),
                    };
                    if line as u64 + 2 > max {
                        return Scan::Invalid(Status::PayloadTooLarge);
                    }
                    if line == self.at {
                        return Scan::Complete(line + 2);
                    }
                    if !trailer_field(&buf[self.at..line]) {
                        return Scan::Invalid(Status::BadRequest);
                    }
                    self.at = line + 2;
                }
            }
        }
    }
}

/// The index of the CR of the CRLF that ends the line starting at `from`; `None` if the line
/// is not complete yet; an error for a bare LF, a CR not followed by LF, or a line too long.
fn line(buf: &[u8], from: usize) -> Result<Option<usize>, Status> {
    let rest = &buf[from..];
    let window = &rest[..rest.len().min(MAX_LINE + 1)];
    match window.iter().position(|&c| c == b'\r' || c == b'\n') {
        Some(i) if window[i] == b'\n' => Err(Status::BadRequest),
        Some(i) => match rest.get(i + 1) {
            Some(b'\n') => Ok(Some(from + i)),
            Some(_) => Err(Status::BadRequest),
            None => Ok(None),
        },
        None if window.len() > MAX_LINE => Err(Status::BadRequest),
        None => Ok(None),
    }
}

/// `Partial`, unless what is buffered already passes the limit.
fn partial_within(have: usize, max: u64) -> Scan {
    if have as u64 > max {
        Scan::Invalid(Status::PayloadTooLarge)
    } else {
        Scan::Partial
    }
}

/// `1*HEXDIG [ chunk-ext ]`: the size, or `None` when the line is not one.
fn chunk_size(line: &[u8]) -> Option<u64> {
    let digits = line.iter().take_while(|c| c.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 16 {
        return None;
    }
    let size = u64::from_str_radix(std::str::from_utf8(&line[..digits]).ok()?, 16).ok()?;
    let ext = &line[digits..];
    // chunk-ext = *( BWS ";" BWS name [ BWS "=" BWS value ] ): extensions are ignored (RFC 9112
    // §7.1.1), but must start with ";" and hold no control characters.
    let ext_ok = ext.is_empty()
        || (ext.trim_ascii_start().first() == Some(&b';')
            && ext.iter().all(|&c| c == b'\t' || (0x20..0x7f).contains(&c)));
    ext_ok.then_some(size)
}

/// `field-name ":" OWS field-value OWS`, not an obs-fold continuation.
fn trailer_field(line: &[u8]) -> bool {
    let Some(colon) = line.iter().position(|&c| c == b':') else { return false };
    let name = &line[..colon];
    !name.is_empty()
        && name.iter().all(|&c| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c))
        && line[colon + 1..].iter().all(|&c| c == b'\t' || c >= 0x20 && c != 0x7f)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: u64 = 1 << 20;

    #[test]
    fn complete_bodies_end_after_the_last_crlf() {
        let body = b"4\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\n\r\nGET /next";
        assert_eq!(scan(body, MAX), Scan::Complete(body.len() - 9));
        assert_eq!(scan(b"0\r\n\r\n", MAX), Scan::Complete(5));
        let ext = b"3;name=value;q=\"x\"\r\nabc\r\n0 ; last\r\nExpires: never\r\nX-T: 1\r\n\r\n";
        assert_eq!(scan(ext, MAX), Scan::Complete(ext.len()));
        let padded = b"00000a\r\n0123456789\r\n0\r\n\r\n";
        assert_eq!(scan(padded, MAX), Scan::Complete(padded.len()), "leading zeros are hex digits");
    }

    #[test]
    fn every_prefix_of_a_valid_body_is_partial() {
        let body = b"4;a=b\r\nWiki\r\n0\r\nT: v\r\n\r\n";
        for n in 0..body.len() {
            assert_eq!(scan(&body[..n], MAX), Scan::Partial, "{:?}", String::from_utf8_lossy(&body[..n]));
        }
    }

    /// Fed a byte at a time, the resumable scan gives the answer the one-shot scan gives, and
    /// looks at each byte a bounded number of times (not the whole body at every byte).
    #[test]
    fn a_body_arriving_a_byte_at_a_time_is_scanned_once() {
        let body = b"4;a=b\r\nWiki\r\n10\r\n0123456789abcdef\r\n0\r\nT: v\r\n\r\nnext";
        let mut s = Scanner::default();
        for n in 0..body.len() - 4 {
            assert_eq!(s.resume(&body[..n], MAX), Scan::Partial, "at {n}");
        }
        assert_eq!(s.resume(&body[..body.len() - 4], MAX), Scan::Complete(body.len() - 4));
        assert_eq!(scan(body, MAX), Scan::Complete(body.len() - 4));
        // The data of a large chunk is skipped, not walked: resuming inside it is O(1).
        let mut big = b"100000\r\n".to_vec();
        big.resize(8 + 0x10_0000, b'x');
        let mut s = Scanner::default();
        assert_eq!(s.resume(&big[..100], 2 << 20), Scan::Partial);
        assert_eq!(s.phase, Phase::Data { end: 8 + 0x10_0000 });
    }

    #[test]
    fn smuggling_shapes_are_refused() {
        let bad: &[&[u8]] = &[
            b"4\nWiki\r\n0\r\n\r\n",              // bare LF after the size
            b"4\r\nWiki\n0\r\n\r\n",              // bare LF after the data
            b"4\r\nWikiX\r\n0\r\n\r\n",           // data longer than its size
            b" 4\r\nWiki\r\n0\r\n\r\n",           // whitespace before the size
            b"+4\r\nWiki\r\n0\r\n\r\n",           // a sign
            b"0x4\r\nWiki\r\n0\r\n\r\n",          // a prefix
            b"4 x\r\nWiki\r\n0\r\n\r\n",          // junk that is no extension
            b"4\r\nWiki\r\n0\r\n folded\r\n\r\n", // obs-fold in the trailers
            b"4\r\nWiki\r\n0\r\nno colon\r\n\r\n",
            b"4\rx\nWiki\r\n0\r\n\r\n", // CR not followed by LF
            b"\r\n",                    // no size at all
        ];
        for b in bad {
            assert_eq!(scan(b, MAX), Scan::Invalid(Status::BadRequest), "{:?}", String::from_utf8_lossy(b));
        }
    }

    #[test]
    fn sizes_that_overflow_or_pass_the_limit_are_413_or_400() {
        assert_eq!(scan(b"ffffffffffffffff\r\n", MAX), Scan::Invalid(Status::PayloadTooLarge));
        assert_eq!(scan(b"10000000000000000\r\n", MAX), Scan::Invalid(Status::BadRequest), "17 digits");
        assert_eq!(scan(b"101\r\n", 256), Scan::Invalid(Status::PayloadTooLarge));
        assert_eq!(scan(b"100\r\n", 1024), Scan::Partial);
        // Trailers count too.
        let mut t = b"0\r\n".to_vec();
        for _ in 0..100 {
            t.extend_from_slice(b"X-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        t.extend_from_slice(b"\r\n");
        assert_eq!(scan(&t, 1024), Scan::Invalid(Status::PayloadTooLarge));
        assert_eq!(scan(&t, MAX), Scan::Complete(t.len()));
        // An endless size line is refused once it passes MAX_LINE, not buffered forever.
        let long =
            vec![b'1'; 1].into_iter().chain(std::iter::repeat(b';').take(MAX_LINE + 1)).collect::<Vec<_>>();
        assert_eq!(scan(&long, MAX), Scan::Invalid(Status::BadRequest));
    }
}

//! A reference model of the chunked request-body scanner (`atomserve::http::chunked::scan`),
//! written another way — whole lines first, then each line checked against the grammar of
//! RFC 9112 §7.1 — for the property test (`tests/properties.rs`) and the fuzz target
//! (`fuzz/fuzz_targets/chunked.rs`) to compare against. It knows no limit but the line length:
//! [`agrees`] applies `--max-body` itself.

use atomserve::http::chunked::{scan, Scan};
use atomserve::http::response::Status;

/// What the model says of a buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Model {
    Complete(usize),
    Partial,
    Malformed,
}

const MAX_LINE: usize = 4096;

fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

/// The next line from `at`: `Ok(Some((content, next)))`, `Ok(None)` if unfinished.
fn next_line(buf: &[u8], at: usize) -> Result<Option<(&[u8], usize)>, ()> {
    let mut i = at;
    while i < buf.len() {
        if i - at > MAX_LINE {
            return Err(());
        }
        match buf[i] {
            b'\n' => return Err(()),
            b'\r' => {
                return match buf.get(i + 1) {
                    None => Ok(None),
                    Some(b'\n') => Ok(Some((&buf[at..i], i + 2))),
                    Some(_) => Err(()),
                }
            }
            _ => i += 1,
        }
    }
    if i - at > MAX_LINE {
        Err(())
    } else {
        Ok(None)
    }
}

fn size_line(line: &[u8]) -> Option<u64> {
    let split = line.iter().position(|c| !c.is_ascii_hexdigit()).unwrap_or(line.len());
    let (hex, ext) = line.split_at(split);
    if hex.is_empty() || hex.len() > 16 {
        return None;
    }
    let mut size = 0u64;
    for &c in hex {
        size = size * 16 + (c as char).to_digit(16)? as u64;
    }
    let ext_start = ext.iter().position(|&c| c != b' ' && c != b'\t');
    let ext_ok = match ext_start {
        None => ext.iter().all(|&c| c == b' ' || c == b'\t'),
        Some(i) => ext[i] == b';' && ext.iter().all(|&c| c == b'\t' || (b' '..=b'~').contains(&c)),
    };
    if !ext.is_empty() && !ext_ok {
        return None;
    }
    if ext.is_empty() || ext_start.is_some() {
        Some(size)
    } else {
        None // only blanks after the size: not a chunk-ext
    }
}

fn trailer_ok(line: &[u8]) -> bool {
    match line.iter().position(|&c| c == b':') {
        Some(0) | None => false,
        Some(i) => {
            line[..i].iter().all(|&c| is_tchar(c))
                && line[i + 1..].iter().all(|&c| c == b'\t' || (b' '..=b'~').contains(&c) || c >= 0x80)
        }
    }
}

/// The model's verdict on `buf`, no size limit.
pub fn model(buf: &[u8]) -> Model {
    let mut at = 0;
    loop {
        let (line, next) = match next_line(buf, at) {
            Err(()) => return Model::Malformed,
            Ok(None) => return Model::Partial,
            Ok(Some(l)) => l,
        };
        let Some(size) = size_line(line) else { return Model::Malformed };
        at = next;
        if size == 0 {
            break;
        }
        let Some(end) =
            at.checked_add(usize::try_from(size).unwrap_or(usize::MAX)).filter(|e| *e < usize::MAX - 2)
        else {
            return Model::Partial; // more data than any buffer holds: never complete here
        };
        if buf.len() < end + 2 {
            return Model::Partial;
        }
        if &buf[end..end + 2] != b"\r\n" {
            return Model::Malformed;
        }
        at = end + 2;
    }
    loop {
        let (line, next) = match next_line(buf, at) {
            Err(()) => return Model::Malformed,
            Ok(None) => return Model::Partial,
            Ok(Some(l)) => l,
        };
        if line.is_empty() {
            return Model::Complete(next);
        }
        if !trailer_ok(line) {
            return Model::Malformed;
        }
        at = next;
    }
}

/// Encodes `chunks` (data, extension) and `trailers` as a chunked body.
pub fn encode(chunks: &[(Vec<u8>, String)], trailers: &[(String, String)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (data, ext) in chunks.iter().filter(|(d, _)| !d.is_empty()) {
        out.extend_from_slice(format!("{:x}{ext}\r\n", data.len()).as_bytes());
        out.extend_from_slice(data);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n");
    for (name, value) in trailers {
        out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// The scanner against the model, with `max` as `--max-body`: where the model finds a body
/// within the limit, the scanner finds the same end; where the model finds it malformed, the
/// scanner refuses it (400, or 413 when a declared size passed the limit first); it says 413 only
/// for what does not fit; and Partial only when the model has not seen the end either.
pub fn agrees(buf: &[u8], max: u64) -> Result<(), String> {
    let (real, reference) = (scan(buf, max), model(buf));
    let ok = match (real, reference) {
        (Scan::Complete(n), Model::Complete(m)) => n == m && n as u64 <= max,
        (Scan::Invalid(Status::PayloadTooLarge), Model::Complete(m)) => m as u64 > max,
        (Scan::Complete(_), _) => false,
        (Scan::Invalid(Status::BadRequest), Model::Malformed) => true,
        (Scan::Invalid(Status::PayloadTooLarge), Model::Malformed | Model::Partial) => true,
        (Scan::Partial, Model::Partial) => buf.len() as u64 <= max,
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!("scan {real:?} vs model {reference:?} (max {max}) on {:?}", String::from_utf8_lossy(buf)))
    }
}

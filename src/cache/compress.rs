//! Compressed variants, built once at load time so that serving them costs nothing per request:
//! gzip (flate2, best compression) and brotli (quality 11, window 22) for compressible types.
//! A variant is kept only if it saves at least 10% (below that, the `Vary` and the extra cache
//! entries in front of us cost more than they save). Precompressed siblings that a build ships
//! (`app.js.br`, `app.js.gz`) are used instead of compressing again.

use std::io::Write;

use crate::http::mime;

/// Smallest file worth compressing: below this, headers dominate and savings are noise.
const MIN_SIZE: usize = 256;

/// The variants of one file.
#[derive(Default)]
pub struct Variants {
    pub gzip: Option<Vec<u8>>,
    pub br: Option<Vec<u8>>,
}

/// Whether a content type is worth compressing (text, JSON, SVG, JavaScript, WebAssembly).
pub fn compressible(content_type: &str) -> bool {
    mime::is_text(content_type) || content_type == "application/wasm"
}

/// Builds (or takes from precompressed siblings) the variants of `body`.
pub fn variants(
    content_type: &str,
    body: &[u8],
    br_sibling: Option<&[u8]>,
    gz_sibling: Option<&[u8]>,
) -> Variants {
    if !compressible(content_type) || body.len() < MIN_SIZE {
        return Variants::default();
    }
    let worth = |v: Vec<u8>| (v.len() as u64 * 10 <= body.len() as u64 * 9).then_some(v);
    Variants {
        gzip: gz_sibling.map(<[u8]>::to_vec).or_else(|| gzip(body)).and_then(worth),
        br: br_sibling.map(<[u8]>::to_vec).or_else(|| brotli(body)).and_then(worth),
    }
}

fn gzip(body: &[u8]) -> Option<Vec<u8>> {
    let mut enc =
        flate2::write::GzEncoder::new(Vec::with_capacity(body.len() / 3), flate2::Compression::best());
    enc.write_all(body).ok()?;
    enc.finish().ok()
}

fn brotli(body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(body.len() / 4);
    {
        let mut w = brotli::CompressorWriter::new(&mut out, 64 * 1024, 11, 22);
        w.write_all(body).ok()?;
        w.flush().ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn round_trips_and_thresholds() {
        let text = "console.log('hello, world');\n".repeat(200);
        let v = variants("text/javascript; charset=utf-8", text.as_bytes(), None, None);
        let (gz, br) = (v.gzip.unwrap(), v.br.unwrap());
        assert!(br.len() < text.len() / 5 && gz.len() < text.len() / 5);
        let mut back = String::new();
        flate2::read::GzDecoder::new(gz.as_slice()).read_to_string(&mut back).unwrap();
        assert_eq!(back, text);
        let mut back = String::new();
        brotli::Decompressor::new(br.as_slice(), 4096).read_to_string(&mut back).unwrap();
        assert_eq!(back, text);
        // Not compressible, too small, or not worth 10%:
        assert!(variants("image/png", text.as_bytes(), None, None).gzip.is_none());
        assert!(variants("text/plain; charset=utf-8", b"tiny", None, None).br.is_none());
        let mut x = 0x9e37_79b9_7f4a_7c15u64; // xorshift64: incompressible bytes
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect();
        assert!(variants("text/plain; charset=utf-8", &noise, None, None).gzip.is_none());
        // A shipped sibling is used as is.
        let v = variants("text/css; charset=utf-8", text.as_bytes(), Some(b"BR"), None);
        assert_eq!(v.br.as_deref(), Some(&b"BR"[..]));
    }
}

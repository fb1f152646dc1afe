//! Compression, done once per content (in the background, [`super::variants`]) so that serving a
//! variant costs nothing per request: gzip (flate2, best compression), zstd (level 19) and
//! brotli (quality 11, window 22) for compressible types. A variant is kept only if it saves at least 10% (below
//! that, the `Vary` and the extra cache entries in front of us cost more than they save).
//! Precompressed siblings that a build ships (`app.js.br`, `app.js.zst`, `app.js.gz`) are used instead of
//! compressing again (by the loader).

use std::io::Write;

use crate::http::mime;

/// Smallest file worth compressing: below this, headers dominate and savings are noise.
const MIN_SIZE: usize = 256;

/// Whether a body of this type and length is worth compressing at all.
pub fn worth_trying(content_type: &str, len: usize) -> bool {
    compressible(content_type) && len >= MIN_SIZE
}

/// Whether a variant of `variant` bytes saves enough of `body` bytes to be kept (10%).
pub fn worth(variant: usize, body: usize) -> bool {
    variant as u64 * 10 <= body as u64 * 9
}

/// Whether a content type is worth compressing (text, JSON, SVG, JavaScript, WebAssembly).
pub fn compressible(content_type: &str) -> bool {
    mime::is_text(content_type) || content_type == "application/wasm"
}

/// gzip at the best compression, or none when it saves less than 10%.
pub fn gzip_variant(body: &[u8]) -> Option<Vec<u8>> {
    gzip(body).filter(|v| worth(v.len(), body.len()))
}

/// zstd at level 19, or none when it saves less than 10%. Level 19 keeps the window at 8 MiB
/// or less, the most a browser decodes for `Content-Encoding: zstd` (RFC 9659).
pub fn zstd_variant(body: &[u8]) -> Option<Vec<u8>> {
    zstd::bulk::compress(body, 19).ok().filter(|v| worth(v.len(), body.len()))
}

/// brotli at quality 11, or none when it saves less than 10%.
pub fn brotli_variant(body: &[u8]) -> Option<Vec<u8>> {
    brotli(body).filter(|v| worth(v.len(), body.len()))
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
        assert!(worth_trying("text/javascript; charset=utf-8", text.len()));
        let (gz, br) = (gzip_variant(text.as_bytes()).unwrap(), brotli_variant(text.as_bytes()).unwrap());
        assert!(br.len() < text.len() / 5 && gz.len() < text.len() / 5);
        let mut back = String::new();
        flate2::read::GzDecoder::new(gz.as_slice()).read_to_string(&mut back).unwrap();
        assert_eq!(back, text);
        let mut back = String::new();
        brotli::Decompressor::new(br.as_slice(), 4096).read_to_string(&mut back).unwrap();
        assert_eq!(back, text);
        let zst = zstd_variant(text.as_bytes()).unwrap();
        assert!(zst.len() < text.len() / 5);
        assert_eq!(zstd::bulk::decompress(&zst, text.len()).unwrap(), text.as_bytes());
        // Not compressible, too small, or not worth 10%:
        assert!(!worth_trying("image/png", text.len()));
        assert!(!worth_trying("text/plain; charset=utf-8", 4));
        let mut x = 0x9e37_79b9_7f4a_7c15u64; // xorshift64: incompressible bytes
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect();
        assert!(
            gzip_variant(&noise).is_none()
                && brotli_variant(&noise).is_none()
                && zstd_variant(&noise).is_none()
        );
        assert!(worth(90, 100) && !worth(91, 100));
    }
}

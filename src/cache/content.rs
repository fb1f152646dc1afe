//! Content identity: what a reload compares to know that a file did not change.
//!
//! A build tool rewrites every file of `dist/` on each build, so inode and mtime say nothing; the
//! bytes do. [`ContentId`] is the length and the XXH3-128 hash of a body: computed once per file
//! per load at memory speed (tens of GB/s, far below the cost of reading the file), stable across
//! processes, versions and machines (XXH3 is a specified algorithm), and wide enough that two
//! different files of a document root meeting by accident is out of the question (2^-128). It is
//! not a cryptographic hash: whoever can write the root can serve anything anyway.
//!
//! The entity tag of a representation is rendered from it, so equal bytes give equal tags on every
//! restart and replica.

/// The identity of a body: its length and XXH3-128 hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ContentId {
    pub len: u64,
    pub hash: u128,
}

impl ContentId {
    /// The identity of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        ContentId { len: bytes.len() as u64, hash: xxhash_rust::xxh3::xxh3_128(bytes) }
    }

    /// The identity of everything `reader` yields, read through `buf` a piece at a time: a
    /// body hashed without being held (one sent from its own file).
    pub fn of_reader(reader: &mut impl std::io::Read, buf: &mut [u8]) -> std::io::Result<Self> {
        let mut hasher = xxhash_rust::xxh3::Xxh3::new();
        let mut len = 0u64;
        loop {
            match reader.read(buf) {
                Ok(0) => return Ok(ContentId { len, hash: hasher.digest128() }),
                Ok(n) => {
                    hasher.update(&buf[..n]);
                    len += n as u64;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// A strong entity tag, quoted: `"<len hex>-<64 bits of the hash, hex>"`, plus `-gzip`/`-br`
    /// for a compressed representation (whose id is that of its own bytes).
    pub fn etag(&self, coding: Option<&str>) -> Box<[u8]> {
        let tag = match coding {
            None => format!("\"{:x}-{:016x}\"", self.len, self.hash as u64),
            Some(token) => format!("\"{:x}-{:016x}-{token}\"", self.len, self.hash as u64),
        };
        tag.into_bytes().into_boxed_slice()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_id_and_tag_depend_on_the_bytes_alone() {
        // XXH3-128 of the empty input, from the reference implementation's test vectors.
        assert_eq!(ContentId::of(b"").hash, 0x99aa_06d3_0147_98d8_6001_c324_468d_497f);
        assert_eq!(ContentId::of(b"abc"), ContentId::of(&b"xabc"[1..]));
        assert_ne!(ContentId::of(b"abc"), ContentId::of(b"abd"));
        let id = ContentId::of(b"abc");
        let tag = String::from_utf8(id.etag(None).into()).unwrap();
        assert!(tag.starts_with("\"3-") && tag.ends_with('"') && tag.len() == 2 + 2 + 16, "{tag}");
        assert_eq!(&*id.etag(Some("br")), format!("{}-br\"", &tag[..tag.len() - 1]).as_bytes());
    }

    #[test]
    fn a_body_hashed_in_pieces_has_the_id_of_the_whole() {
        let body: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        for piece in [1, 7, 4096, 1 << 20] {
            let mut buf = vec![0; piece];
            assert_eq!(
                ContentId::of_reader(&mut &body[..], &mut buf).unwrap(),
                ContentId::of(&body),
                "{piece}"
            );
        }
        assert_eq!(ContentId::of_reader(&mut &b""[..], &mut [0; 8]).unwrap(), ContentId::of(b""));
    }
}

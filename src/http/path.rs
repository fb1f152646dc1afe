//! Request-target normalisation: from the bytes a client sent to the key of a cache entry.
//!
//! The result is only ever used to look a key up in the in-memory [`Snapshot`](crate::cache::Snapshot);
//! it never reaches the file system. Traversal is therefore impossible by construction — there is
//! no file system path to escape — and this function's job is only to map every spelling of a
//! resource to one key and to refuse targets that cannot name anything (RFC 9112 §3.2,
//! RFC 3986 §5.2.4 for dot segments).
//!
//! Steps: drop the query and fragment; accept absolute-form (`http://host/path`); percent-decode
//! (`%00` and malformed escapes are refused); split on `/`; drop empty and `.` segments; let `..`
//! remove the previous segment, refusing any `..` that would climb above the root.

/// Why a target cannot name a resource; the caller answers 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// Not origin-form or absolute-form (e.g. `foo`, or `*` outside OPTIONS).
    NotAPath,
    /// A `%` not followed by two hex digits.
    BadEscape,
    /// A decoded NUL byte: no file name can contain one, and C code downstream would truncate.
    Nul,
    /// A `..` that would climb above the document root.
    AboveRoot,
}

/// A normalised target, written into a caller-owned buffer so that the hot path allocates nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Normalized {
    /// The target named a directory (ended with `/`, or with `/.` or `/..`).
    pub dir: bool,
}

/// Normalises `target` into `out` (cleared first): `/a/b` form, no trailing slash except for `/`.
pub fn normalize(target: &[u8], out: &mut Vec<u8>) -> Result<Normalized, PathError> {
    out.clear();
    if let Some(path) = plain_path(target) {
        // Already in key form but for a trailing slash: one copy, no decoding.
        let dir = path.ends_with(b"/");
        out.extend_from_slice(if dir && path.len() > 1 { &path[..path.len() - 1] } else { path });
        return Ok(Normalized { dir });
    }
    let mut path = strip_query(target);
    path = strip_authority(path).ok_or(PathError::NotAPath)?;
    if path.first() != Some(&b'/') {
        return Err(PathError::NotAPath);
    }
    out.push(b'/');
    let mut dir = true;
    let mut segment_start = 1; // where the segment being decoded begins in `out`
    let mut i = 0;
    while i <= path.len() {
        // Decode one byte, treating the end of input as a final separator.
        let byte = if i == path.len() {
            b'/'
        } else if path[i] == b'%' {
            let hi = path.get(i + 1).and_then(|&c| hex(c)).ok_or(PathError::BadEscape)?;
            let lo = path.get(i + 2).and_then(|&c| hex(c)).ok_or(PathError::BadEscape)?;
            i += 2;
            hi << 4 | lo
        } else {
            path[i]
        };
        i += 1;
        if byte == 0 {
            return Err(PathError::Nul);
        }
        if byte != b'/' {
            out.push(byte);
            continue;
        }
        // End of a segment: out[segment_start..] holds it.
        match &out[segment_start..] {
            b"" | b"." => {
                out.truncate(segment_start);
                dir = true;
            }
            b".." => {
                out.truncate(segment_start);
                if segment_start == 1 {
                    return Err(PathError::AboveRoot);
                }
                // Drop the previous segment and its trailing slash.
                let prev = out[..segment_start - 1].iter().rposition(|&c| c == b'/').unwrap_or(0);
                out.truncate(prev + 1);
                segment_start = prev + 1;
                dir = true;
            }
            _ => {
                out.push(b'/');
                segment_start = out.len();
                dir = false;
            }
        }
    }
    // Every kept segment left a trailing slash; the key form has none (except the root itself).
    if out.len() > 1 {
        out.pop();
    }
    Ok(Normalized { dir })
}

/// The common case, decided in one pass: an origin-form path that normalising would only copy —
/// no escapes, no NUL, no empty segment (`//`) and no segment starting with a dot (`/.`, `/..`,
/// and, conservatively, `/.well-known`) before the query or fragment, if any. Returns that path
/// (the target up to `?` or `#`); `None` sends the target the full way.
fn plain_path(target: &[u8]) -> Option<&[u8]> {
    /// Per byte: bit 1, never in a plain path; bit 2, not right after a `/`; bit 4, ends the path.
    const CLASS: [u8; 256] = {
        let mut t = [0u8; 256];
        (t[b'%' as usize], t[0]) = (1, 1);
        (t[b'/' as usize], t[b'.' as usize]) = (2, 2);
        (t[b'?' as usize], t[b'#' as usize]) = (4, 4);
        t
    };
    let [b'/', rest @ ..] = target else {
        return None;
    };
    let mut forbidden = 3; // what the next byte may not be: right after the leading `/`
    for (i, &c) in rest.iter().enumerate() {
        let class = CLASS[c as usize];
        if class & forbidden != 0 {
            return None;
        }
        if class == 4 {
            return Some(&target[..1 + i]);
        }
        forbidden = if c == b'/' { 3 } else { 1 };
    }
    Some(target)
}

/// The part of a target before `?` or `#`.
pub fn strip_query(target: &[u8]) -> &[u8] {
    let end = target.iter().position(|&c| c == b'?' || c == b'#').unwrap_or(target.len());
    &target[..end]
}

/// The query string including its `?`, or empty.
pub fn query(target: &[u8]) -> &[u8] {
    let start = target.iter().position(|&c| c == b'?').unwrap_or(target.len());
    let end = target.iter().position(|&c| c == b'#').unwrap_or(target.len()).max(start);
    &target[start..end]
}

/// For absolute-form (`http://host:port/path`), the path part (`/` when empty); origin-form as is.
fn strip_authority(target: &[u8]) -> Option<&[u8]> {
    let lower_starts = |p: &[u8]| target.len() >= p.len() && target[..p.len()].eq_ignore_ascii_case(p);
    let rest = if lower_starts(b"http://") {
        &target[7..]
    } else if lower_starts(b"https://") {
        &target[8..]
    } else {
        return Some(target);
    };
    match rest.iter().position(|&c| c == b'/') {
        Some(slash) => Some(&rest[slash..]),
        None => Some(b"/"),
    }
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Percent-encodes a key for a `Location` header: unreserved characters, `/` and the sub-delims
/// that are safe in a path stay as they are; everything else becomes `%XX`.
pub fn encode_into(key: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &c in key {
        let keep = c.is_ascii_alphanumeric() || b"-._~/!$&'()*+,;=:@".contains(&c);
        if keep {
            out.push(c);
        } else {
            out.extend_from_slice(&[b'%', HEX[(c >> 4) as usize], HEX[(c & 15) as usize]]);
        }
    }
}

/// Some segment of a normalised key starts with a dot (`/.env`, `/.git/config`): a dotfile or
/// dot-directory, which the loader never serves and no client-side route names.
pub fn has_dot_segment(key: &[u8]) -> bool {
    key.windows(2).any(|w| w == b"/.")
}

/// The last segment of a normalised key has a file extension (`app.js`, not `about`).
pub fn has_extension(key: &[u8]) -> bool {
    let last = key.rsplit(|&c| c == b'/').next().unwrap_or(b"");
    last.iter().skip(1).any(|&c| c == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(t: &str) -> Result<(String, bool), PathError> {
        let mut out = Vec::new();
        normalize(t.as_bytes(), &mut out).map(|n| (String::from_utf8_lossy(&out).into_owned(), n.dir))
    }

    #[test]
    fn plain_paths() {
        assert_eq!(norm("/"), Ok(("/".into(), true)));
        assert_eq!(norm("/index.html"), Ok(("/index.html".into(), false)));
        assert_eq!(norm("/assets/app.js?v=3#x"), Ok(("/assets/app.js".into(), false)));
        assert_eq!(norm("/docs/"), Ok(("/docs".into(), true)));
        assert_eq!(norm("//a///b"), Ok(("/a/b".into(), false)));
    }

    #[test]
    fn dot_segments() {
        assert_eq!(norm("/a/./b"), Ok(("/a/b".into(), false)));
        assert_eq!(norm("/a/b/../c"), Ok(("/a/c".into(), false)));
        assert_eq!(norm("/a/b/.."), Ok(("/a".into(), true)));
        assert_eq!(norm("/a/.."), Ok(("/".into(), true)));
        assert_eq!(norm("/.."), Err(PathError::AboveRoot));
        assert_eq!(norm("/a/../../etc/passwd"), Err(PathError::AboveRoot));
        assert_eq!(norm("/..%2f..%2fetc/passwd"), Err(PathError::AboveRoot));
        assert_eq!(norm("/%2e%2e/%2E%2E/etc/passwd"), Err(PathError::AboveRoot));
        assert_eq!(norm("/a/.../b"), Ok(("/a/.../b".into(), false)));
    }

    #[test]
    fn escapes() {
        assert_eq!(norm("/a%20b.txt"), Ok(("/a b.txt".into(), false)));
        // Double encoding decodes once: `%252e` is the three characters `%2e`, a literal name.
        assert_eq!(norm("/%252e%252e/x"), Ok(("/%2e%2e/x".into(), false)));
        assert_eq!(norm("/a%00.html"), Err(PathError::Nul));
        assert_eq!(norm("/a%zz"), Err(PathError::BadEscape));
        assert_eq!(norm("/a%4"), Err(PathError::BadEscape));
        // A backslash is an ordinary byte in a URL path, not a separator.
        assert_eq!(norm("/..\\..\\etc\\passwd"), Ok(("/..\\..\\etc\\passwd".into(), false)));
    }

    #[test]
    fn forms() {
        assert_eq!(norm("http://example.com/a/b"), Ok(("/a/b".into(), false)));
        assert_eq!(norm("HTTP://example.com"), Ok(("/".into(), true)));
        assert_eq!(norm("*"), Err(PathError::NotAPath));
        assert_eq!(norm("index.html"), Err(PathError::NotAPath));
        assert_eq!(norm(""), Err(PathError::NotAPath));
    }

    #[test]
    fn query_and_extension() {
        assert_eq!(query(b"/a?x=1#f"), b"?x=1");
        assert_eq!(query(b"/a"), b"");
        assert!(has_extension(b"/assets/app.js"));
        assert!(!has_extension(b"/about"));
        assert!(!has_extension(b"/.hidden"));
        assert!(!has_extension(b"/v1.2/users"));
    }

    /// The one-pass shortcut gives exactly what the full algorithm gives, on every target of up
    /// to six characters over the alphabet that matters to it (queries and fragments included).
    #[test]
    fn the_plain_shortcut_agrees_with_the_full_algorithm() {
        fn full(target: &[u8], out: &mut Vec<u8>) -> Result<Normalized, PathError> {
            // The same function with the shortcut disabled: prefix a segment that forces the
            // slow path and is then removed by `..`.
            let mut forced = b"/x/..".to_vec();
            forced.extend_from_slice(target);
            normalize(&forced, out)
        }
        let alphabet: &[u8] = b"/a.%2?#";
        let (mut fast, mut slow) = (Vec::new(), Vec::new());
        let mut checked = 0;
        for len in 1..=6u32 {
            for n in 0..alphabet.len().pow(len) {
                let mut target = vec![b'/'];
                let mut k = n;
                for _ in 0..len {
                    target.push(alphabet[k % alphabet.len()]);
                    k /= alphabet.len();
                }
                if plain_path(&target).is_none() {
                    continue;
                }
                checked += 1;
                let got = normalize(&target, &mut fast);
                assert_eq!(got, full(&target, &mut slow), "{}", String::from_utf8_lossy(&target));
                assert_eq!(fast, slow, "{}", String::from_utf8_lossy(&target));
            }
        }
        assert!(checked > 1000, "{checked}");
        assert_eq!(plain_path(b"/assets/app-1a2b.js?v=2#x"), Some(&b"/assets/app-1a2b.js"[..]));
        assert!(plain_path(b"/").is_some() && plain_path(b"/docs/").is_some() && plain_path(b"/?").is_some());
        assert!(
            plain_path(b"/a//b").is_none() && plain_path(b"/.env").is_none() && plain_path(b"a").is_none()
        );
        assert!(plain_path(b"/a%20b").is_none() && plain_path(b"/a/..?x").is_none());
    }

    #[test]
    fn encoding_round_trips() {
        let mut out = Vec::new();
        encode_into(b"/a b/\xff?", &mut out);
        assert_eq!(out, b"/a%20b/%FF%3F");
    }
}

//! `http::path::normalize` against a reference model written the obvious way (decode everything,
//! split on `/`, resolve segments with a stack), and `encode_into` as its inverse: the
//! `Location` of a redirect normalises back to the key it was made from.

#![no_main]

use atomserve::http::path::{encode_into, normalize, strip_query};
use libfuzzer_sys::fuzz_target;

/// The key `normalize` should produce, and whether it names a directory; `None` when it should
/// refuse the target.
fn reference(target: &[u8]) -> Option<(Vec<u8>, bool)> {
    let mut path = strip_query(target);
    for scheme in [&b"http://"[..], b"https://"] {
        if path.len() >= scheme.len() && path[..scheme.len()].eq_ignore_ascii_case(scheme) {
            let rest = &path[scheme.len()..];
            path = rest.iter().position(|&c| c == b'/').map_or(b"/", |i| &rest[i..]);
            break;
        }
    }
    if path.first() != Some(&b'/') {
        return None;
    }
    let mut decoded = Vec::new();
    let mut i = 0;
    while i < path.len() {
        if path[i] == b'%' {
            let hex = std::str::from_utf8(path.get(i + 1..i + 3)?).ok()?;
            decoded.push(
                u8::from_str_radix(hex, 16).ok().filter(|_| hex.bytes().all(|c| c.is_ascii_hexdigit()))?,
            );
            i += 3;
        } else {
            decoded.push(path[i]);
            i += 1;
        }
    }
    if decoded.contains(&0) {
        return None;
    }
    let mut stack: Vec<&[u8]> = Vec::new();
    let mut dir = false;
    for seg in decoded.split(|&c| c == b'/') {
        dir = matches!(seg, b"" | b"." | b"..");
        match seg {
            b"" | b"." => {}
            b".." => {
                stack.pop()?;
            }
            s => stack.push(s),
        }
    }
    Some((["/".as_bytes(), &stack.join(&b'/')].concat(), dir))
}

fuzz_target!(|target: &[u8]| {
    let mut key = Vec::new();
    let got = normalize(target, &mut key).ok().map(|n| (key.clone(), n.dir));
    assert_eq!(got, reference(target), "{:?}", String::from_utf8_lossy(target));
    let Some((key, _)) = got else { return };
    assert!(key.starts_with(b"/") && !key.contains(&0));
    if key.len() > 1 {
        assert!(key[1..].split(|&c| c == b'/').all(|s| !matches!(s, b"" | b"." | b"..")));
    }
    // The encoded key is a safe header value, and it names the same key again.
    let mut location = Vec::new();
    encode_into(&key, &mut location);
    assert!(location.iter().all(|&c| c.is_ascii_graphic()));
    let mut back = Vec::new();
    normalize(&location, &mut back).expect("an encoded key normalises");
    assert_eq!(back, key);
});

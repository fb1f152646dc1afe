//! `http::encoding::AcceptEncoding` on arbitrary `Accept-Encoding` values, for the four ways a
//! snapshot entry can have variants.

#![no_main]

use atomserve::http::encoding::{AcceptEncoding, Coding};
use libfuzzer_sys::fuzz_target;

fn choose(header: &[u8], has_br: bool, has_gzip: bool) -> Coding {
    // Files with zstd variants are checked by the unit tests; here, br and gzip as before.
    AcceptEncoding::parse(Some(header)).choose(|c| match c {
        Coding::Br => has_br,
        Coding::Gzip => has_gzip,
        _ => false,
    })
}

fuzz_target!(|header: &[u8]| {
    for (br, gzip) in [(false, false), (false, true), (true, false), (true, true)] {
        let coding = choose(header, br, gzip);
        // Only a variant that exists is chosen.
        assert!(match coding {
            Coding::Identity => true,
            Coding::Gzip => gzip,
            Coding::Br => br,
            Coding::Zstd => false, // never offered here
        });
        // Only a coding the client named (or `*`) is chosen.
        let lower = header.to_ascii_lowercase();
        let named = |token: &[u8]| lower.windows(token.len()).any(|w| w == token) || lower.contains(&b'*');
        assert!(coding != Coding::Br || named(b"br"));
        assert!(coding != Coding::Gzip || named(b"gzip"));
        // A coding refused with q=0 (the last entry for a coding wins) is never chosen.
        let refuse = |entry: &[u8]| [header, entry].concat();
        assert_ne!(choose(&refuse(b", br;q=0"), br, gzip), Coding::Br);
        assert_ne!(choose(&refuse(b", gzip;q=0"), br, gzip), Coding::Gzip);
        assert_eq!(choose(&refuse(b", br;q=0, gzip;q=0"), br, gzip), Coding::Identity);
    }
    // Taking a variant away never changes a choice that did not pick it.
    let both = choose(header, true, true);
    if both != Coding::Gzip {
        assert_eq!(choose(header, true, false), both);
    }
    if both != Coding::Br {
        assert_eq!(choose(header, false, true), both);
    }
});

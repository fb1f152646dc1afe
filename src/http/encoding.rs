//! `Accept-Encoding` negotiation (RFC 9110 §12.5.3) between the representations a snapshot
//! holds: identity always, gzip and brotli when they were built at load time.
//!
//! Each listed coding gets its q-value (`br;q=0.8`); `*` sets it for codings not listed;
//! `q=0` refuses. Identity, when not listed, is acceptable with the lowest non-zero q, so any
//! coding the client lists is preferred to it. Identity is acceptable unless refused by `identity;q=0` or by `*;q=0` without
//! an `identity` entry. The best available coding wins, ties going to the smaller: br, then
//! gzip, then identity. No `Accept-Encoding` at all gets identity (the RFC would allow any
//! coding, but a client that does not ask is usually one that cannot decode, like a bare
//! `curl`). If everything available is refused — including identity — atomserve still sends
//! identity rather than a 406 (the RFC's "SHOULD send a response without any content coding").

/// A content coding atomserve can serve.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Coding {
    Identity,
    Gzip,
    Zstd,
    Br,
}

impl Coding {
    /// The `Content-Encoding` token (none for identity).
    pub fn token(self) -> Option<&'static str> {
        match self {
            Coding::Identity => None,
            Coding::Gzip => Some("gzip"),
            Coding::Zstd => Some("zstd"),
            Coding::Br => Some("br"),
        }
    }

    /// The compressed codings, in the server's order of preference at equal q, last best:
    /// gzip < zstd < br (docs/http.md, "Compression", says why).
    pub const COMPRESSED: [Coding; 3] = [Coding::Gzip, Coding::Zstd, Coding::Br];
}

/// q-values (in thousandths) the client gave each coding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AcceptEncoding {
    br: u16,
    zstd: u16,
    gzip: u16,
    identity: u16,
}

impl AcceptEncoding {
    /// Parses an `Accept-Encoding` value; `None` (no header) accepts identity only.
    pub fn parse(header: Option<&[u8]>) -> AcceptEncoding {
        let Some(header) = header else { return AcceptEncoding { br: 0, zstd: 0, gzip: 0, identity: 1000 } };
        let (mut br, mut zstd, mut gzip, mut identity, mut star) = (None, None, None, None, None);
        for item in header.split(|&c| c == b',') {
            let mut parts = item.split(|&c| c == b';');
            let token = parts.next().unwrap_or(b"").trim_ascii();
            let mut q = 1000;
            for param in parts {
                let param = param.trim_ascii();
                if param.len() > 2 && param[..2].eq_ignore_ascii_case(b"q=") {
                    q = qvalue(&param[2..]).unwrap_or(0);
                }
            }
            let slot = if token.eq_ignore_ascii_case(b"br") {
                &mut br
            } else if token.eq_ignore_ascii_case(b"zstd") {
                &mut zstd
            } else if token.eq_ignore_ascii_case(b"gzip") || token.eq_ignore_ascii_case(b"x-gzip") {
                &mut gzip
            } else if token.eq_ignore_ascii_case(b"identity") {
                &mut identity
            } else if token == b"*" {
                &mut star
            } else {
                continue;
            };
            *slot = Some(q);
        }
        AcceptEncoding {
            br: br.or(star).unwrap_or(0),
            zstd: zstd.or(star).unwrap_or(0),
            gzip: gzip.or(star).unwrap_or(0),
            // Not listed: acceptable, but after anything the client did list (q = 0.001).
            identity: identity.or(star).unwrap_or(1),
        }
    }

    /// Whether the client accepts `coding` at all (q > 0).
    pub fn accepts(self, coding: Coding) -> bool {
        self.q(coding) > 0
    }

    /// The q-value the client gave `coding`, in thousandths.
    fn q(self, coding: Coding) -> u16 {
        match coding {
            Coding::Identity => self.identity,
            Coding::Gzip => self.gzip,
            Coding::Zstd => self.zstd,
            Coding::Br => self.br,
        }
    }

    /// The coding to send, given which variants exist.
    pub fn choose(self, has: impl Fn(Coding) -> bool) -> Coding {
        let mut best = (self.identity, Coding::Identity);
        for coding in Coding::COMPRESSED {
            let q = self.q(coding);
            // `>=`: at equal q the later, preferred coding wins.
            if q > 0 && q >= best.0 && has(coding) {
                best = (q, coding);
            }
        }
        best.1
    }
}

/// `0`, `0.5`, `1`, `1.000`… → thousandths; anything else is invalid.
fn qvalue(s: &[u8]) -> Option<u16> {
    let s = s.trim_ascii();
    let (int, frac) = match s.iter().position(|&c| c == b'.') {
        Some(dot) => (&s[..dot], &s[dot + 1..]),
        None => (s, &b""[..]),
    };
    if frac.len() > 3 || !frac.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut thousandths = 0u16;
    for i in 0..3 {
        thousandths = thousandths * 10 + frac.get(i).map_or(0, |d| u16::from(d - b'0'));
    }
    match int {
        b"0" => Some(thousandths),
        b"1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pick(h: Option<&[u8]>) -> Coding {
        AcceptEncoding::parse(h).choose(|_| true)
    }

    /// Which codings a file has: br, zstd, gzip.
    fn has(br: bool, zstd: bool, gzip: bool) -> impl Fn(Coding) -> bool {
        move |c| match c {
            Coding::Br => br,
            Coding::Zstd => zstd,
            Coding::Gzip => gzip,
            Coding::Identity => true,
        }
    }

    #[test]
    fn zstd_ranks_between_br_and_gzip_at_equal_q_and_q_decides_otherwise() {
        let modern = AcceptEncoding::parse(Some(b"gzip, deflate, br, zstd"));
        assert_eq!(modern.choose(has(true, true, true)), Coding::Br);
        assert_eq!(modern.choose(has(false, true, true)), Coding::Zstd);
        assert_eq!(modern.choose(has(false, false, true)), Coding::Gzip);
        assert_eq!(pick(Some(b"zstd, gzip")), Coding::Zstd);
        assert_eq!(pick(Some(b"br;q=0.8, zstd")), Coding::Zstd);
        assert_eq!(pick(Some(b"zstd;q=0, *")), Coding::Br);
        assert_eq!(pick(Some(b"ZSTD")), Coding::Zstd);
    }

    #[test]
    fn browsers_get_brotli() {
        assert_eq!(pick(Some(b"gzip, deflate, br")), Coding::Br);
        assert_eq!(pick(Some(b"gzip, deflate")), Coding::Gzip);
        assert_eq!(
            AcceptEncoding::parse(Some(b"gzip, deflate, br")).choose(has(false, false, true)),
            Coding::Gzip
        );
        assert_eq!(AcceptEncoding::parse(Some(b"br")).choose(has(false, false, false)), Coding::Identity);
    }

    #[test]
    fn q_values() {
        assert_eq!(pick(Some(b"br;q=0.5, gzip;q=0.8")), Coding::Gzip);
        assert_eq!(pick(Some(b"br;q=0, gzip")), Coding::Gzip);
        assert_eq!(pick(Some(b"gzip;q=0, br;q=0")), Coding::Identity);
        assert_eq!(pick(Some(b"identity;q=1, br;q=0.5")), Coding::Identity);
        assert_eq!(pick(Some(b"*")), Coding::Br);
        assert_eq!(pick(Some(b"*;q=0.5, identity")), Coding::Identity);
        assert_eq!(pick(Some(b"br;q=1.0")), Coding::Br);
        assert_eq!(pick(Some(b"br;q=2")), Coding::Identity); // invalid q: refused
        assert_eq!(pick(Some(b"BR;Q=0.9")), Coding::Br);
        assert_eq!(pick(Some(b"x-gzip")), Coding::Gzip);
    }

    #[test]
    fn accepts_is_q_above_zero() {
        let a = AcceptEncoding::parse(Some(b"gzip;q=0, br, identity;q=0"));
        assert!(a.accepts(Coding::Br) && !a.accepts(Coding::Gzip) && !a.accepts(Coding::Identity));
        assert!(!a.accepts(Coding::Zstd), "not listed, no *");
        let none = AcceptEncoding::parse(None);
        assert!(none.accepts(Coding::Identity) && !none.accepts(Coding::Br));
        assert!(AcceptEncoding::parse(Some(b"br")).accepts(Coding::Identity), "identity unless refused");
    }

    #[test]
    fn no_header_or_empty() {
        assert_eq!(pick(None), Coding::Identity);
        assert_eq!(pick(Some(b"")), Coding::Identity);
        // Identity refused and nothing else acceptable: identity anyway (documented).
        assert_eq!(pick(Some(b"identity;q=0")), Coding::Identity);
        assert_eq!(pick(Some(b"*;q=0")), Coding::Identity);
        assert_eq!(AcceptEncoding::parse(Some(b"identity;q=0, gzip")).choose(|_| true), Coding::Gzip);
    }
}

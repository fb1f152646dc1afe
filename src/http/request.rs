//! Request parsing: `http::head` checks the RFC 9112 grammar; this module keeps the fields atomserve
//! reads and adds the limits, the framing rules a static server needs, and the mapping from every
//! failure to a status code.
//!
//! Incomplete input is a state ([`Parsed::Partial`]), not an error: the caller reads more and
//! calls again. Each call parses from the start of the buffer; a request head is at most a few KiB
//! and usually arrives in one segment, so re-scanning costs less than keeping parser state.

use super::conditional::Conditions;
use super::head::{self, Fault, Scan};
use super::response::Status;

/// The most header fields any request may carry, whatever `--max-headers` says.
pub const MAX_HEADERS: usize = 256;

/// Limits on a request head, from the command line.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// The request line (`GET /path HTTP/1.1`): longer → 414.
    pub max_request_line: usize,
    /// The whole head, request line and fields: larger → 431.
    pub max_header_bytes: usize,
    /// Number of header fields: more → 431.
    pub max_headers: usize,
    /// A request body (read and discarded): larger → 413.
    pub max_body: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_line: 8 * 1024,
            max_header_bytes: 16 * 1024,
            max_headers: 100,
            max_body: 1024 * 1024,
        }
    }
}

/// Methods atomserve tells apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Options,
    /// A method RFC 9110 defines that a static server does not allow (POST, PUT, …): 405.
    NotAllowed,
    /// Any other token: 501.
    Unknown,
}

impl Method {
    /// The method a token names, and the token as text (a token is ASCII, so it always is).
    fn parse(token: &[u8]) -> (Method, &str) {
        match token {
            b"GET" => (Method::Get, "GET"),
            b"HEAD" => (Method::Head, "HEAD"),
            b"OPTIONS" => (Method::Options, "OPTIONS"),
            _ => {
                let text = std::str::from_utf8(token).unwrap_or("");
                let method = match text {
                    "POST" | "PUT" | "DELETE" | "PATCH" | "TRACE" | "CONNECT" => Method::NotAllowed,
                    _ => Method::Unknown,
                };
                (method, text)
            }
        }
    }
}

/// A parsed request head, borrowing from the read buffer and from the [`Fields`] slot the caller
/// lent [`parse`], which it reaches through `Deref` (`req.accept_encoding`).
///
/// Two parts, so that answering a request moves a few words rather than the ~400 bytes of every
/// field atomserve reads: the slot is filled in place as the head is scanned, and `Request` keeps
/// a reference to it (callgrind: 58 instructions a keep-alive request fewer than returning one
/// struct, which was copied twice).
#[derive(Debug)]
pub struct Request<'b> {
    pub method: Method,
    /// The method as sent (for access logs and spans: `POST` is `NotAllowed` above).
    pub method_token: &'b str,
    /// The request-target as sent (origin-form `/a?b`, absolute-form, or `*`).
    pub target: &'b [u8],
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    /// Whether the connection stays open after the response (RFC 9112 §9.3).
    pub keep_alive: bool,
    /// Length of the head in bytes; the body (if any) follows.
    pub head_len: usize,
    /// `Content-Length` of the body to discard (0 when absent or chunked).
    pub body_len: u64,
    /// The body is in the chunked coding (`Transfer-Encoding: …, chunked`): its end is found by
    /// `http::chunked::scan`.
    pub chunked: bool,
    /// The fields below, in the caller's slot.
    pub fields: &'b Fields<'b>,
}

impl<'b> std::ops::Deref for Request<'b> {
    type Target = Fields<'b>;
    fn deref(&self) -> &Fields<'b> {
        self.fields
    }
}

/// The fields of a request head that some responses read, filled by [`parse`] into a slot its
/// caller provides (one per request: `Fields::default()`).
#[derive(Debug, Default)]
pub struct Fields<'b> {
    /// `Expect: 100-continue`: the client may hold the body back until it hears from us.
    pub expect_continue: bool,
    /// `If-Match`, `If-None-Match`, `If-Modified-Since`, `If-Unmodified-Since`, `If-Range`.
    pub conditions: Conditions<'b>,
    /// `Range`.
    pub range: Option<&'b [u8]>,
    /// `Accept-Encoding`.
    pub accept_encoding: Option<&'b [u8]>,
    /// `Accept` (the admin `/metrics` negotiates OpenMetrics with it).
    pub accept: Option<&'b [u8]>,
    /// Fields only the access records read (logs, spans): `Host`, `User-Agent`, `Referer`, and
    /// the W3C trace context, `traceparent` and `tracestate`.
    pub host: Option<&'b [u8]>,
    pub user_agent: Option<&'b [u8]>,
    pub referer: Option<&'b [u8]>,
    pub traceparent: Option<&'b [u8]>,
    pub tracestate: Option<&'b [u8]>,
}

/// The outcome of parsing the start of a buffer.
#[derive(Debug)]
pub enum Parsed<'b> {
    /// A complete head.
    Complete(Request<'b>),
    /// Not enough bytes yet; read more.
    Partial,
    /// The client sent something that cannot be served; answer `status` and close, because the
    /// framing of anything after it is in doubt.
    Invalid(Status),
}

/// Parses one request head from the start of `buf`: `head::scan` checks the syntax and hands
/// over each field; this keeps the ones atomserve reads, in `fields` (a fresh
/// `Fields::default()`, which the returned `Request` borrows) or for the framing, and applies
/// the limits and framing rules.
pub fn parse<'b>(buf: &'b [u8], limits: &Limits, fields: &'b mut Fields<'b>) -> Parsed<'b> {
    // Clients may send empty lines between requests (RFC 9112 §2.2): skip them first. They
    // count against the head limit, or a stream of CRLFs would grow the buffer without end.
    let skip = buf.iter().position(|&c| c != b'\r' && c != b'\n').unwrap_or(buf.len());
    if skip > 0 {
        if skip > limits.max_request_line {
            return Parsed::Invalid(Status::BadRequest);
        }
        return match parse(&buf[skip..], limits, fields) {
            Parsed::Complete(req) if skip + req.head_len > limits.max_header_bytes => {
                Parsed::Invalid(Status::HeaderFieldsTooLarge)
            }
            Parsed::Complete(mut req) => {
                req.head_len += skip;
                Parsed::Complete(req)
            }
            Parsed::Partial if buf.len() > limits.max_header_bytes => {
                Parsed::Invalid(Status::HeaderFieldsTooLarge)
            }
            other => other,
        };
    }
    // A buffer no longer than the limit cannot hold a longer line: skip the scan (usually).
    let line_end = || buf.iter().position(|&c| c == b'\n');
    if buf.len() > limits.max_request_line && line_end().unwrap_or(buf.len()) > limits.max_request_line {
        return Parsed::Invalid(Status::UriTooLong);
    }
    let mut framing = Framing::default();
    let max_fields = limits.max_headers.min(MAX_HEADERS);
    let line = match head::scan(buf, max_fields, |name, value| framing.add(fields, name, value)) {
        Scan::Complete(line) => line,
        Scan::Partial => {
            if buf.len() > limits.max_header_bytes {
                return Parsed::Invalid(Status::HeaderFieldsTooLarge);
            }
            return Parsed::Partial;
        }
        Scan::Invalid(Fault::TooManyFields) => return Parsed::Invalid(Status::HeaderFieldsTooLarge),
        Scan::Invalid(Fault::Version) => return Parsed::Invalid(version_error(buf, line_end())),
        Scan::Invalid(Fault::Malformed) => return Parsed::Invalid(Status::BadRequest),
    };
    let head_len = line.head_len;
    if head_len > limits.max_header_bytes {
        return Parsed::Invalid(Status::HeaderFieldsTooLarge);
    }
    let (method, method_token) = Method::parse(line.method);
    let minor_version = line.minor_version;
    if let Some(status) = framing.refused {
        return Parsed::Invalid(status);
    }
    // HTTP/1.1 requires exactly one Host (RFC 9112 §3.2); HTTP/1.0 may omit it but not repeat it.
    if framing.hosts > 1 || (minor_version == 1 && framing.hosts == 0) {
        return Parsed::Invalid(Status::BadRequest);
    }
    let codings = framing.codings;
    let chunked = codings.seen;
    if chunked {
        // RFC 9112 §6.1 and §6.3: with both fields, or from an HTTP/1.0 client, or unless
        // chunked is the final coding (and applied once), the framing cannot be trusted: 400,
        // and the connection closes. The body's codings themselves do not matter: it is skipped.
        if framing.body_len.is_some() || minor_version == 0 || !codings.chunked_last || codings.chunked > 1 {
            return Parsed::Invalid(Status::BadRequest);
        }
    }
    let body_len = framing.body_len.unwrap_or(0);
    if body_len > limits.max_body {
        return Parsed::Invalid(Status::PayloadTooLarge);
    }
    let keep_alive =
        if minor_version == 1 { !framing.close } else { framing.keep_alive_token && !framing.close };
    Parsed::Complete(Request {
        method,
        method_token,
        target: line.target,
        minor_version,
        keep_alive,
        head_len,
        body_len,
        chunked,
        fields,
    })
}

/// What the fields of one head say about its framing and connection, gathered as `head::scan`
/// hands them over; the rest goes to the caller's [`Fields`].
#[derive(Default)]
struct Framing {
    close: bool,
    keep_alive_token: bool,
    hosts: u32,
    body_len: Option<u64>,
    codings: Codings,
    /// The first field that makes the request unanswerable, in field order; decided once the head
    /// is whole (a head refused by its syntax later is a 400 either way).
    refused: Option<Status>,
}

impl Framing {
    /// One field line, into `self` or `fields`. Names are matched by length first: most fields a
    /// browser sends are dismissed by one comparison.
    // Inlined into the scan's field loop: out of line, each of a browser's eleven fields paid a
    // call and the scan's spills around it (57 instructions a Chrome head, `parse_count`).
    #[inline(always)]
    fn add<'b>(&mut self, fields: &mut Fields<'b>, name: &'b [u8], value: &'b [u8]) {
        let is = |known: &[u8]| is_field(name, known);
        match name.len() {
            4 if is(b"host") => {
                self.hosts += 1;
                fields.host = Some(value);
            }
            5 if is(b"range") => fields.range = Some(value),
            6 if is(b"accept") => fields.accept = Some(value),
            6 if is(b"expect") => {
                fields.expect_continue |= value.eq_ignore_ascii_case(b"100-continue");
            }
            7 if is(b"referer") => fields.referer = Some(value),
            8 if is(b"if-match") => match fields.conditions.if_match {
                Some(_) => fields.conditions.if_match_more.push(value),
                None => fields.conditions.if_match = Some(value),
            },
            8 if is(b"if-range") => fields.conditions.if_range = Some(value),
            10 if is(b"connection") => {
                for token in value.split(|&c| c == b',') {
                    let token = token.trim_ascii();
                    self.close |= token.eq_ignore_ascii_case(b"close");
                    self.keep_alive_token |= token.eq_ignore_ascii_case(b"keep-alive");
                }
            }
            10 if is(b"user-agent") => fields.user_agent = Some(value),
            10 if is(b"tracestate") => fields.tracestate = Some(value),
            11 if is(b"traceparent") => fields.traceparent = Some(value),
            13 if is(b"if-none-match") => match fields.conditions.if_none_match {
                Some(_) => fields.conditions.if_none_match_more.push(value),
                None => fields.conditions.if_none_match = Some(value),
            },
            14 if is(b"content-length") => {
                // One Content-Length of plain digits; duplicates or anything else make the
                // framing ambiguous (RFC 9112 §6.3), which is how request smuggling starts.
                match (self.body_len, super::parse_decimal(value)) {
                    (None, Some(n)) => self.body_len = Some(n),
                    _ => self.refuse(Status::BadRequest),
                }
            }
            15 if is(b"accept-encoding") => fields.accept_encoding = Some(value),
            17 if is(b"if-modified-since") => fields.conditions.if_modified_since = Some(value),
            17 if is(b"transfer-encoding") => {
                if let Err(status) = self.codings.add(value) {
                    self.refuse(status);
                }
            }
            19 if is(b"if-unmodified-since") => fields.conditions.if_unmodified_since = Some(value),
            _ => {}
        }
    }

    fn refuse(&mut self, status: Status) {
        self.refused.get_or_insert(status);
    }
}

/// Whether `name` (a token of `known`'s length) is `known` (lowercase letters and `-`, at least 4
/// bytes), ignoring ASCII case, compared four or eight bytes at a time: setting bit 0x20
/// lowercases a letter and keeps `-`, and turns no other `tchar` into either (only CR would
/// become `-`, and CR is not in a token). Overlapping loads cover lengths that are not a multiple
/// of the word.
#[inline(always)]
fn is_field(name: &[u8], known: &[u8]) -> bool {
    debug_assert!(name.len() == known.len() && known.len() >= 4);
    debug_assert!(known.iter().all(|&b| b.is_ascii_lowercase() || b == b'-'));
    let n = name.len();
    let word =
        |s: &[u8], at: usize| s.get(at..).and_then(|r| r.first_chunk::<8>()).map(|w| u64::from_le_bytes(*w));
    let half =
        |s: &[u8], at: usize| s.get(at..).and_then(|r| r.first_chunk::<4>()).map(|w| u32::from_le_bytes(*w));
    if n < 8 {
        let lower = |x: Option<u32>| x.map(|x| x | 0x2020_2020);
        return lower(half(name, 0)) == half(known, 0) && lower(half(name, n - 4)) == half(known, n - 4);
    }
    let lower = |x: Option<u64>| x.map(|x| x | 0x2020_2020_2020_2020);
    let mut at = 0;
    while at + 8 < n {
        if lower(word(name, at)) != word(known, at) {
            return false;
        }
        at += 8;
    }
    lower(word(name, n - 8)) == word(known, n - 8)
}

/// The transfer codings of a request, across all its `Transfer-Encoding` fields (one list).
#[derive(Default)]
struct Codings {
    /// A `Transfer-Encoding` field was present.
    seen: bool,
    /// How many times `chunked` was listed.
    chunked: usize,
    /// The last coding listed so far is `chunked`.
    chunked_last: bool,
}

impl Codings {
    /// Adds one field's list. A coding atomserve does not know is `501` (RFC 9112 §6.1): it
    /// cannot tell where such a body ends.
    fn add(&mut self, value: &[u8]) -> Result<(), Status> {
        self.seen = true;
        for coding in value.split(|&c| c == b',') {
            // A coding may carry parameters (`gzip;q=…` is not valid here, but `;` starts them).
            let name = coding.split(|&c| c == b';').next().unwrap_or(b"").trim_ascii();
            if name.is_empty() {
                continue; // empty list elements are allowed (RFC 9110 §5.6.1)
            }
            let known = [&b"chunked"[..], b"gzip", b"x-gzip", b"deflate", b"compress", b"x-compress"];
            if !known.iter().any(|k| name.eq_ignore_ascii_case(k)) {
                return Err(Status::NotImplemented);
            }
            let is_chunked = name.eq_ignore_ascii_case(b"chunked");
            self.chunked += usize::from(is_chunked);
            self.chunked_last = is_chunked;
        }
        Ok(())
    }
}

/// `head::scan` only knows HTTP/1.0 and 1.1. A well-formed other version (`HTTP/2.0`, `HTTP/0.9`)
/// gets 505; garbage in the version slot is a plain 400.
fn version_error(buf: &[u8], line_end: Option<usize>) -> Status {
    let line = &buf[..line_end.unwrap_or(buf.len())];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    // method SP target SP version: anything else (`GET /a b HTTP/1.1`) is malformed, not a version.
    if line.iter().filter(|&&c| c == b' ').count() != 2 {
        return Status::BadRequest;
    }
    let version = line.rsplit(|&c| c == b' ').next().unwrap_or(b"");
    match version {
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() && line_end.is_some() =>
        {
            Status::VersionNotSupported
        }
        _ => Status::BadRequest,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(input: &[u8]) -> Parsed<'_> {
        // A slot per call, leaked: a test's few hundred bytes.
        parse(input, &Limits::default(), Box::leak(Box::default()))
    }

    fn status(input: &[u8]) -> Option<Status> {
        match run(input) {
            Parsed::Invalid(s) => Some(s),
            _ => None,
        }
    }

    #[test]
    fn simple_get() {
        let Parsed::Complete(req) = run(b"GET /a?b HTTP/1.1\r\nHost: x\r\n\r\nGET") else { panic!() };
        assert_eq!(req.method, Method::Get);
        assert_eq!(req.target, b"/a?b");
        assert!(req.keep_alive);
        assert_eq!(req.head_len, 30);
    }

    #[test]
    fn keep_alive_rules() {
        let ka = |input: &'static [u8]| match run(input) {
            Parsed::Complete(r) => r.keep_alive,
            other => panic!("{other:?}"),
        };
        assert!(!ka(b"GET / HTTP/1.0\r\n\r\n"));
        assert!(ka(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"));
        assert!(!ka(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
        assert!(!ka(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, CLOSE\r\n\r\n"));
    }

    #[test]
    fn partial_and_limits() {
        assert!(matches!(run(b"GET / HTTP/1.1\r\nHost: x\r\n"), Parsed::Partial));
        assert!(matches!(run(b"\r\n\r\nGET / HT"), Parsed::Partial));
        let long_line = [b"GET /".as_slice(), &[b'a'; 9000]].concat();
        assert_eq!(status(&long_line), Some(Status::UriTooLong));
        let mut big = b"GET / HTTP/1.1\r\nHost: x\r\n".to_vec();
        for _ in 0..200 {
            big.extend_from_slice(b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        assert_eq!(status(&big), Some(Status::HeaderFieldsTooLarge));
        let mut many = b"GET / HTTP/1.1\r\nHost: x\r\n".to_vec();
        for i in 0..101 {
            many.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(status(&many), Some(Status::HeaderFieldsTooLarge));
    }

    #[test]
    fn bad_requests() {
        assert_eq!(status(b"GET / HTTP/1.1\r\n\r\n"), Some(Status::BadRequest)); // no Host
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), Some(Status::BadRequest));
        assert_eq!(status(b"GET / HTTP/2.0\r\nHost: a\r\n\r\n"), Some(Status::VersionNotSupported));
        assert_eq!(status(b"GET / HTTP/1.x\r\nHost: a\r\n\r\n"), Some(Status::BadRequest));
        assert_eq!(status(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"), Some(Status::BadRequest));
        let te = |fields: &str| status(format!("POST / HTTP/1.1\r\nHost: a\r\n{fields}\r\n").as_bytes());
        assert_eq!(te("Transfer-Encoding: chunked\r\n"), None, "chunked is parsed, not refused");
        assert_eq!(te("Transfer-Encoding: gzip, chunked\r\n"), None);
        assert_eq!(te("Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n"), None, "one list");
        assert_eq!(te("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n"), Some(Status::BadRequest));
        assert_eq!(te("Transfer-Encoding: chunked, gzip\r\n"), Some(Status::BadRequest), "chunked not last");
        assert_eq!(te("Transfer-Encoding: chunked, chunked\r\n"), Some(Status::BadRequest));
        assert_eq!(te("Transfer-Encoding: gzip\r\n"), Some(Status::BadRequest), "no chunked: no end");
        assert_eq!(te("Transfer-Encoding: br, chunked\r\n"), Some(Status::NotImplemented));
        assert_eq!(te("Transfer-Encoding: identity\r\n"), Some(Status::NotImplemented));
        assert_eq!(
            status(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Some(Status::BadRequest),
            "HTTP/1.0 has no chunked coding"
        );
        assert_eq!(
            status(b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n"),
            Some(Status::BadRequest)
        );
        assert_eq!(
            status(b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n"),
            Some(Status::BadRequest)
        );
        assert_eq!(
            status(b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n"),
            Some(Status::BadRequest)
        );
        assert_eq!(
            status(b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 2000000\r\n\r\n"),
            Some(Status::PayloadTooLarge)
        );
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost : a\r\n\r\n"), Some(Status::BadRequest));
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n"), Some(Status::BadRequest));
    }

    #[test]
    fn empty_lines_count_against_the_limits() {
        // Regression: leading CRLFs were skipped before the size checks, so a stream of them
        // grew the connection buffer without bound.
        assert!(matches!(run(b"\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n"), Parsed::Complete(_)));
        assert_eq!(status(&b"\r\n".repeat(5000)), Some(Status::BadRequest));
        let mut padded = b"\r\n".repeat(100);
        padded.extend_from_slice(b"GET / HTTP/1.1\r\nHost: x\r\nX: ");
        padded.extend_from_slice(&[b'a'; 16 * 1024]);
        assert_eq!(status(&padded), Some(Status::HeaderFieldsTooLarge));
    }

    #[test]
    fn empty_lines_count_against_a_complete_head() {
        // Regression (found by `cargo fuzz run request`): the leading CRLFs counted against the
        // head limit only while the head was incomplete, so a head that arrived whole could pass
        // the limit by up to --max-request-line bytes, and whether it got a 431 depended on how
        // the client's bytes were split into segments.
        let mut head = b"GET / HTTP/1.1\r\nHost: x\r\nX: ".to_vec();
        head.extend_from_slice(&[b'a'; 16 * 1024 - 32]);
        head.extend_from_slice(b"\r\n\r\n");
        assert_eq!(head.len(), Limits::default().max_header_bytes);
        assert!(matches!(run(&head), Parsed::Complete(_)));
        let padded = [b"\r\n".repeat(100), head].concat();
        assert_eq!(status(&padded), Some(Status::HeaderFieldsTooLarge));
    }

    #[test]
    fn field_names_match_whatever_their_case_and_nothing_else() {
        let known = [
            &b"host"[..],
            b"range",
            b"accept",
            b"expect",
            b"referer",
            b"if-match",
            b"if-range",
            b"connection",
            b"user-agent",
            b"tracestate",
            b"traceparent",
            b"if-none-match",
            b"content-length",
            b"accept-encoding",
            b"if-modified-since",
            b"transfer-encoding",
            b"if-unmodified-since",
        ];
        let tchars: Vec<u8> =
            (0u8..=255).filter(|&b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)).collect();
        for k in known {
            let upper = k.to_ascii_uppercase();
            assert!(is_field(k, k) && is_field(&upper, k));
            // Every single-byte change to another tchar, at every position, is a different name
            // unless it only changes case.
            for at in 0..k.len() {
                for &b in &tchars {
                    let mut other = k.to_vec();
                    other[at] = b;
                    assert_eq!(
                        is_field(&other, k),
                        other.eq_ignore_ascii_case(k),
                        "{}",
                        String::from_utf8_lossy(&other)
                    );
                }
            }
        }
    }

    #[test]
    fn methods() {
        let m = |input: &'static [u8]| match run(input) {
            Parsed::Complete(r) => r.method,
            other => panic!("{other:?}"),
        };
        assert_eq!(m(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n"), Method::Head);
        assert_eq!(m(b"POST / HTTP/1.1\r\nHost: x\r\n\r\n"), Method::NotAllowed);
        assert_eq!(m(b"BREW / HTTP/1.1\r\nHost: x\r\n\r\n"), Method::Unknown);
        assert_eq!(m(b"get / HTTP/1.1\r\nHost: x\r\n\r\n"), Method::Unknown); // methods are case-sensitive
    }
}

//! The request head parser against its oracle: `http::request::parse` (on `http::head::scan`)
//! must answer every input exactly as the parser it replaced (issue #16) — httparse for the
//! syntax plus the old field loop, kept below as `reference::parse` — field for field, at the
//! default limits and at small ones taken from the input's first bytes.

#![no_main]

use atomserve::http::request::{parse, Fields, Limits, Parsed};
use libfuzzer_sys::fuzz_target;

mod reference {
    //! The parser of commit 0d890ab (httparse + a loop over its field array), unchanged but for
    //! the paths of what it uses and for where its result goes (since the parse that lends one, a
    //! `Request` borrows the `Fields` slot its caller lends).
    use std::mem::MaybeUninit;

    use atomserve::http::conditional::Conditions;
    use atomserve::http::request::{Fields, Limits, Method, Parsed, Request};
    use atomserve::http::response::Status;

    fn method_of(token: &str) -> Method {
        match token {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "OPTIONS" => Method::Options,
            "POST" | "PUT" | "DELETE" | "PATCH" | "TRACE" | "CONNECT" => Method::NotAllowed,
            _ => Method::Unknown,
        }
    }

    fn parse_decimal(digits: &[u8]) -> Option<u64> {
        if digits.is_empty() || digits.len() > 20 {
            return None;
        }
        digits.iter().try_fold(0u64, |acc, &c| {
            if c.is_ascii_digit() {
                acc.checked_mul(10)?.checked_add(u64::from(c - b'0'))
            } else {
                None
            }
        })
    }

    pub fn parse<'b>(
        buf: &'b [u8],
        headers: &mut [MaybeUninit<httparse::Header<'b>>],
        limits: &Limits,
        slot: &'b mut Fields<'b>,
    ) -> Parsed<'b> {
        // Clients may send empty lines between requests (RFC 9112 §2.2): skip them first. They
        // count against the head limit, or a stream of CRLFs would grow the buffer without end.
        let skip = buf.iter().position(|&c| c != b'\r' && c != b'\n').unwrap_or(buf.len());
        if skip > 0 {
            if skip > limits.max_request_line {
                return Parsed::Invalid(Status::BadRequest);
            }
            return match parse(&buf[skip..], headers, limits, slot) {
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
        let mut req = httparse::Request::new(&mut []);
        let head_len = match req.parse_with_uninit_headers(buf, headers) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => {
                if buf.len() > limits.max_header_bytes {
                    return Parsed::Invalid(Status::HeaderFieldsTooLarge);
                }
                return Parsed::Partial;
            }
            Err(httparse::Error::TooManyHeaders) => return Parsed::Invalid(Status::HeaderFieldsTooLarge),
            Err(httparse::Error::Version) => return Parsed::Invalid(version_error(buf, line_end())),
            Err(_) => return Parsed::Invalid(Status::BadRequest),
        };
        if head_len > limits.max_header_bytes {
            return Parsed::Invalid(Status::HeaderFieldsTooLarge);
        }
        let (Some(method), Some(target), Some(minor_version)) = (req.method, req.path, req.version) else {
            return Parsed::Invalid(Status::BadRequest);
        };

        let mut close = false;
        let mut keep_alive_token = false;
        let mut hosts = 0;
        let mut body_len: Option<u64> = None;
        let mut codings = Codings::default();
        let mut expect_continue = false;
        let mut conditions = Conditions::default();
        let mut range = None;
        let mut accept_encoding = None;
        let (mut host, mut user_agent, mut referer, mut traceparent, mut tracestate) =
            (None, None, None, None, None);
        let mut accept = None;
        for h in req.headers.iter() {
            let name = h.name.as_bytes();
            if name.len() > 3 && name[..3].eq_ignore_ascii_case(b"if-") {
                let slot = match &name[3..] {
                    n if n.eq_ignore_ascii_case(b"none-match") => match conditions.if_none_match {
                        Some(_) => {
                            conditions.if_none_match_more.push(h.value);
                            continue;
                        }
                        None => &mut conditions.if_none_match,
                    },
                    n if n.eq_ignore_ascii_case(b"modified-since") => &mut conditions.if_modified_since,
                    n if n.eq_ignore_ascii_case(b"match") => match conditions.if_match {
                        Some(_) => {
                            conditions.if_match_more.push(h.value);
                            continue;
                        }
                        None => &mut conditions.if_match,
                    },
                    n if n.eq_ignore_ascii_case(b"unmodified-since") => &mut conditions.if_unmodified_since,
                    n if n.eq_ignore_ascii_case(b"range") => &mut conditions.if_range,
                    _ => continue,
                };
                *slot = Some(h.value);
            } else if name.eq_ignore_ascii_case(b"range") {
                range = Some(h.value);
            } else if name.eq_ignore_ascii_case(b"accept-encoding") {
                accept_encoding = Some(h.value);
            } else if name.eq_ignore_ascii_case(b"connection") {
                for token in h.value.split(|&c| c == b',') {
                    let token = token.trim_ascii();
                    close |= token.eq_ignore_ascii_case(b"close");
                    keep_alive_token |= token.eq_ignore_ascii_case(b"keep-alive");
                }
            } else if name.eq_ignore_ascii_case(b"host") {
                hosts += 1;
                host = Some(h.value);
            } else if name.eq_ignore_ascii_case(b"accept") {
                accept = Some(h.value);
            } else if name.eq_ignore_ascii_case(b"user-agent") {
                user_agent = Some(h.value);
            } else if name.eq_ignore_ascii_case(b"referer") {
                referer = Some(h.value);
            } else if name.eq_ignore_ascii_case(b"traceparent") {
                traceparent = Some(h.value);
            } else if name.eq_ignore_ascii_case(b"tracestate") {
                tracestate = Some(h.value);
            } else if name.eq_ignore_ascii_case(b"content-length") {
                // One Content-Length of plain digits; duplicates or anything else make the framing
                // ambiguous (RFC 9112 §6.3), which is how request smuggling starts.
                if body_len.is_some() {
                    return Parsed::Invalid(Status::BadRequest);
                }
                match parse_decimal(h.value) {
                    Some(n) => body_len = Some(n),
                    None => return Parsed::Invalid(Status::BadRequest),
                }
            } else if name.eq_ignore_ascii_case(b"expect") {
                expect_continue |= h.value.trim_ascii().eq_ignore_ascii_case(b"100-continue");
            } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
                if let Err(status) = codings.add(h.value) {
                    return Parsed::Invalid(status);
                }
            }
        }
        // HTTP/1.1 requires exactly one Host (RFC 9112 §3.2); HTTP/1.0 may omit it but not repeat it.
        if hosts > 1 || (minor_version == 1 && hosts == 0) {
            return Parsed::Invalid(Status::BadRequest);
        }
        let chunked = codings.seen;
        if chunked {
            // RFC 9112 §6.1 and §6.3: with both fields, or from an HTTP/1.0 client, or unless
            // chunked is the final coding (and applied once), the framing cannot be trusted: 400,
            // and the connection closes. The body's codings themselves do not matter: it is skipped.
            if body_len.is_some() || minor_version == 0 || !codings.chunked_last || codings.chunked > 1 {
                return Parsed::Invalid(Status::BadRequest);
            }
        }
        let body_len = body_len.unwrap_or(0);
        if body_len > limits.max_body {
            return Parsed::Invalid(Status::PayloadTooLarge);
        }
        let keep_alive = if minor_version == 1 { !close } else { keep_alive_token && !close };
        Parsed::Complete(Request {
            method: method_of(method),
            method_token: method,
            target: target.as_bytes(),
            minor_version,
            keep_alive,
            head_len,
            body_len,
            chunked,
            fields: {
                *slot = Fields {
                    expect_continue,
                    conditions,
                    range,
                    accept_encoding,
                    accept,
                    host,
                    user_agent,
                    referer,
                    traceparent,
                    tracestate,
                };
                slot
            },
        })
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

    /// httparse only knows HTTP/1.0 and 1.1. A well-formed other version (`HTTP/2.0`, `HTTP/0.9`)
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
}

fn check(data: &[u8], limits: &Limits) {
    let (mut ours_fields, mut their_fields) = (Fields::default(), Fields::default());
    let ours = parse(data, limits, &mut ours_fields);
    let mut headers = vec![std::mem::MaybeUninit::uninit(); limits.max_headers.min(256)];
    let theirs = reference::parse(data, &mut headers, limits, &mut their_fields);
    assert_eq!(format!("{ours:?}"), format!("{theirs:?}"), "{:?}", String::from_utf8_lossy(data));
    if let Parsed::Complete(req) = ours {
        assert!(req.head_len <= data.len());
    }
}

fuzz_target!(|data: &[u8]| {
    check(data, &Limits::default());
    if let [line, head, fields, body, rest @ ..] = data {
        let limits = Limits {
            max_request_line: usize::from(*line),
            max_header_bytes: usize::from(*head) * 2,
            max_headers: usize::from(*fields % 16),
            max_body: u64::from(*body),
        };
        check(rest, &limits);
    }
});

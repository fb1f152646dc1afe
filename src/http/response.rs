//! Status codes and the header blocks atomserve writes.
//!
//! A response is assembled from up to three pieces, sent together with one `sendmsg(2)` (or
//! rendered whole by `serve/rendered.rs` and sent as one buffer):
//! 1. the *head*: status line and the fields that never change for a resource (`Server`,
//!    `Content-Type`, `Content-Length`, …), rendered once when the snapshot is built;
//! 2. the *tail*: `Date`, `Connection` when needed, and the blank line — a few dozen bytes
//!    written per response into the connection's small buffer;
//! 3. the *body*, straight from the snapshot's memory (absent for HEAD).
//!
//! Error responses are small and rare, so they are rendered whole into the tail buffer.

use std::io::Write;

/// The status codes atomserve sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Ok,
    NoContent,
    PartialContent,
    MovedPermanently,
    Found,
    SeeOther,
    NotModified,
    TemporaryRedirect,
    PermanentRedirect,
    BadRequest,
    NotFound,
    MethodNotAllowed,
    RequestTimeout,
    PreconditionFailed,
    PayloadTooLarge,
    UriTooLong,
    RangeNotSatisfiable,
    HeaderFieldsTooLarge,
    InternalError,
    NotImplemented,
    ServiceUnavailable,
    VersionNotSupported,
}

impl Status {
    /// The redirect status for a code of `_redirects` (301, 302, 303, 307, 308).
    pub fn redirect(code: u16) -> Status {
        match code {
            302 => Status::Found,
            303 => Status::SeeOther,
            307 => Status::TemporaryRedirect,
            308 => Status::PermanentRedirect,
            _ => Status::MovedPermanently,
        }
    }

    pub fn code(self) -> u16 {
        match self {
            Status::Ok => 200,
            Status::NoContent => 204,
            Status::PartialContent => 206,
            Status::MovedPermanently => 301,
            Status::Found => 302,
            Status::SeeOther => 303,
            Status::NotModified => 304,
            Status::TemporaryRedirect => 307,
            Status::PermanentRedirect => 308,
            Status::BadRequest => 400,
            Status::NotFound => 404,
            Status::MethodNotAllowed => 405,
            Status::RequestTimeout => 408,
            Status::PreconditionFailed => 412,
            Status::PayloadTooLarge => 413,
            Status::UriTooLong => 414,
            Status::RangeNotSatisfiable => 416,
            Status::HeaderFieldsTooLarge => 431,
            Status::InternalError => 500,
            Status::NotImplemented => 501,
            Status::ServiceUnavailable => 503,
            Status::VersionNotSupported => 505,
        }
    }

    pub fn reason(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::NoContent => "No Content",
            Status::PartialContent => "Partial Content",
            Status::MovedPermanently => "Moved Permanently",
            Status::Found => "Found",
            Status::SeeOther => "See Other",
            Status::NotModified => "Not Modified",
            Status::TemporaryRedirect => "Temporary Redirect",
            Status::PermanentRedirect => "Permanent Redirect",
            Status::BadRequest => "Bad Request",
            Status::NotFound => "Not Found",
            Status::MethodNotAllowed => "Method Not Allowed",
            Status::RequestTimeout => "Request Timeout",
            Status::PreconditionFailed => "Precondition Failed",
            Status::PayloadTooLarge => "Content Too Large",
            Status::UriTooLong => "URI Too Long",
            Status::RangeNotSatisfiable => "Range Not Satisfiable",
            Status::HeaderFieldsTooLarge => "Request Header Fields Too Large",
            Status::InternalError => "Internal Server Error",
            Status::NotImplemented => "Not Implemented",
            Status::ServiceUnavailable => "Service Unavailable",
            Status::VersionNotSupported => "HTTP Version Not Supported",
        }
    }
}

/// The methods a resource allows, for `Allow` on 405 and OPTIONS.
pub const ALLOW: &str = "GET, HEAD, OPTIONS";

/// The `Server` field every response carries.
pub const SERVER: &str = "atomserve";

/// Which `Connection` field (if any) the tail carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Persistence {
    /// HTTP/1.1 keep-alive is the default: no field needed.
    KeepAlive11,
    /// HTTP/1.0 keep-alive must be confirmed: `Connection: keep-alive`.
    KeepAlive10,
    /// `Connection: close`: this is the last response.
    Close,
}

/// What every response to one request shares, whatever it says: the `Date` of this second,
/// whether the connection stays open, and whether the request was `HEAD` (no body, even for an
/// error: the client would read one as the start of the next response, RFC 9110 §9.3.2).
#[derive(Clone, Copy, Debug)]
pub struct Frame<'a> {
    pub date: &'a [u8; super::date::LEN],
    pub persistence: Persistence,
    pub head_only: bool,
}

/// Appends the per-response tail: `Date`, `Connection` if needed, and the blank line.
pub fn write_tail(out: &mut Vec<u8>, frame: Frame<'_>) {
    out.extend_from_slice(b"Date: ");
    out.extend_from_slice(frame.date);
    out.extend_from_slice(match frame.persistence {
        Persistence::KeepAlive11 => b"\r\n\r\n".as_slice(),
        Persistence::KeepAlive10 => b"\r\nConnection: keep-alive\r\n\r\n",
        Persistence::Close => b"\r\nConnection: close\r\n\r\n",
    });
}

/// The fields that describe a cached file in every response about it.
pub struct FileMeta<'a> {
    pub content_type: &'a str,
    /// `Content-Encoding` of this representation (none for identity).
    pub encoding: Option<&'a str>,
    /// Add `Vary: Accept-Encoding` (the file has compressed variants).
    pub vary: bool,
    pub len: u64,
    pub etag: &'a [u8],
    pub last_modified: &'a [u8; super::date::LEN],
    pub cache_control: &'a str,
    /// Custom field lines (`Name: value\r\n`…) from `_headers` and `--header`.
    pub headers: &'a [u8],
}

/// Renders the fixed head of a `200 OK` for a cached file (everything but the tail).
pub fn render_file_head(m: &FileMeta<'_>) -> Vec<u8> {
    let mut head = Vec::with_capacity(256);
    let _ = write!(
        head,
        "HTTP/1.1 200 OK\r\nServer: {SERVER}\r\nContent-Type: {}\r\nContent-Length: {}\r\n",
        m.content_type, m.len
    );
    write_encoding(&mut head, m);
    write_validators(&mut head, m);
    head.extend_from_slice(b"Accept-Ranges: bytes\r\n");
    head.extend_from_slice(m.headers);
    head
}

/// Renders the fixed head of a `304 Not Modified`: the validators and caching fields a cache
/// needs to refresh its copy (RFC 9110 §15.4.5), no body fields.
pub fn render_not_modified_head(m: &FileMeta<'_>) -> Vec<u8> {
    let mut head = Vec::with_capacity(192);
    let _ = write!(head, "HTTP/1.1 304 Not Modified\r\nServer: {SERVER}\r\n");
    write_validators(&mut head, m);
    head.extend_from_slice(m.headers);
    head
}

/// Appends the head of a `206 Partial Content` for bytes `start..=end` of a file.
pub fn write_partial_head(out: &mut Vec<u8>, m: &FileMeta<'_>, start: u64, end: u64) {
    let _ = write!(
        out,
        "HTTP/1.1 206 Partial Content\r\nServer: {SERVER}\r\nContent-Type: {}\r\nContent-Length: {}\r\n\
         Content-Range: bytes {start}-{end}/{}\r\n",
        m.content_type,
        end - start + 1,
        m.len
    );
    write_encoding(out, m);
    write_validators(out, m);
    out.extend_from_slice(b"Accept-Ranges: bytes\r\n");
    out.extend_from_slice(m.headers);
}

/// Appends a `416 Range Not Satisfiable` (with `Content-Range: bytes */len`) and its tail.
pub fn write_unsatisfiable(out: &mut Vec<u8>, m: &FileMeta<'_>, frame: Frame<'_>) {
    let _ = write!(
        out,
        "HTTP/1.1 416 Range Not Satisfiable\r\nServer: {SERVER}\r\nContent-Length: 0\r\nContent-Range: bytes */{}\r\n",
        m.len
    );
    // Validators, but not the file's Cache-Control: an error must not be cached as `immutable`.
    out.extend_from_slice(b"ETag: ");
    out.extend_from_slice(m.etag);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(m.headers);
    write_tail(out, frame);
}

fn write_encoding(out: &mut Vec<u8>, m: &FileMeta<'_>) {
    if let Some(encoding) = m.encoding {
        let _ = write!(out, "Content-Encoding: {encoding}\r\n");
    }
}

fn write_validators(out: &mut Vec<u8>, m: &FileMeta<'_>) {
    out.extend_from_slice(b"ETag: ");
    out.extend_from_slice(m.etag);
    out.extend_from_slice(b"\r\nLast-Modified: ");
    out.extend_from_slice(m.last_modified);
    let _ = write!(out, "\r\nCache-Control: {}\r\n", m.cache_control);
    if m.vary {
        out.extend_from_slice(b"Vary: Accept-Encoding\r\n");
    }
}

/// Extra fields for a generated response.
#[derive(Clone, Copy, Debug, Default)]
pub struct Extra<'a> {
    /// `Allow` (405, OPTIONS).
    pub allow: bool,
    /// `Location` (301): an already-encoded URL path.
    pub location: Option<&'a [u8]>,
    /// `Retry-After` in seconds (503).
    pub retry_after: Option<u32>,
    /// `Cache-Control: no-store` (health checks and metrics must never be cached).
    pub no_store: bool,
    /// `Cache-Control` with this value (the 301 to a directory: without an explicit lifetime,
    /// browsers keep a permanent redirect for good).
    pub cache_control: Option<&'a str>,
    /// `Content-Type` of a `write_text` body (default `text/plain; charset=utf-8`).
    pub content_type: Option<&'a str>,
    /// `Access-Control-Allow-Origin: *` (the dashboard reads `/stats` from another origin).
    pub cors: bool,
    /// Custom field lines (`Name: value\r\n`…) from `_headers` and `--header`.
    pub headers: &'a [u8],
}

/// Appends a whole generated response (head, tail and, unless `head_only`, a short text body
/// naming the status) — errors, redirects and `204`s. Returns the body bytes written.
pub fn write_generated(out: &mut Vec<u8>, status: Status, extra: Extra<'_>, frame: Frame<'_>) -> usize {
    let mut reason = [0u8; 48];
    let text = status.reason().as_bytes();
    reason[..text.len()].copy_from_slice(text);
    reason[text.len()] = b'\n';
    let body = if status == Status::NoContent { &[][..] } else { &reason[..text.len() + 1] };
    write_text(out, status, extra, body, frame)
}

/// Appends a whole response with a small body (omitted for HEAD and 204), `text/plain` unless
/// `extra.content_type` says otherwise. Returns the body bytes written.
pub fn write_text(
    out: &mut Vec<u8>,
    status: Status,
    extra: Extra<'_>,
    body: &[u8],
    frame: Frame<'_>,
) -> usize {
    let _ = write!(out, "HTTP/1.1 {} {}\r\nServer: {SERVER}\r\n", status.code(), status.reason());
    if status != Status::NoContent {
        let content_type = extra.content_type.unwrap_or("text/plain; charset=utf-8");
        let _ = write!(out, "Content-Type: {content_type}\r\nContent-Length: {}\r\n", body.len());
    }
    if extra.cors {
        out.extend_from_slice(b"Access-Control-Allow-Origin: *\r\n");
    }
    if extra.allow {
        let _ = write!(out, "Allow: {ALLOW}\r\n");
    }
    if let Some(location) = extra.location {
        out.extend_from_slice(b"Location: ");
        out.extend_from_slice(location);
        out.extend_from_slice(b"\r\n");
    }
    if let Some(secs) = extra.retry_after {
        let _ = write!(out, "Retry-After: {secs}\r\n");
    }
    if extra.no_store {
        out.extend_from_slice(b"Cache-Control: no-store\r\n");
    } else if let Some(value) = extra.cache_control {
        out.extend_from_slice(b"Cache-Control: ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(extra.headers);
    write_tail(out, frame);
    if !frame.head_only && status != Status::NoContent {
        out.extend_from_slice(body);
        return body.len();
    }
    0
}

/// Appends the head of a page served with another status than its own (`404.html`, a
/// `_redirects` 404): its type and length, the custom fields, and the tail. Not cacheable by
/// validators: the page is the answer for a path that has none of its own.
pub fn write_page_head(
    out: &mut Vec<u8>,
    status: Status,
    content_type: &str,
    len: u64,
    headers: &[u8],
    frame: Frame<'_>,
) {
    let _ = write!(
        out,
        "HTTP/1.1 {} {}\r\nServer: {SERVER}\r\nContent-Type: {content_type}\r\nContent-Length: {len}\r\n",
        status.code(),
        status.reason()
    );
    out.extend_from_slice(headers);
    write_tail(out, frame);
}

/// The fixed answer the acceptor sends when the hand-off queue is full: no Date (RFC 9110
/// §6.6.1 lets a 5xx omit it), so it can be a constant written with one `send(2)`.
pub const QUEUE_FULL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nServer: atomserve\r\nRetry-After: 1\r\n\
Content-Type: text/plain; charset=utf-8\r\nContent-Length: 20\r\nConnection: close\r\n\r\nServer is too busy.\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_full_length_is_right() {
        let text = std::str::from_utf8(QUEUE_FULL).unwrap();
        let (_, body) = text.split_once("\r\n\r\n").unwrap();
        assert_eq!(body.len(), 20);
    }

    #[test]
    fn generated_has_consistent_length() {
        let mut out = Vec::new();
        let date = crate::http::date::format(0);
        let frame = Frame { date: &date, persistence: Persistence::Close, head_only: false };
        write_generated(&mut out, Status::NotFound, Extra::default(), frame);
        let text = String::from_utf8(out).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 404 Not Found\r\n"));
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
        assert!(head.ends_with("Connection: close"));
    }
}

//! HTTP/1.1 (RFC 9110, RFC 9112) as a static server needs it: request parsing on top of
//! `httparse`, request-target normalisation, MIME types, the `Date` header, status lines,
//! conditional requests and byte ranges.

pub mod conditional;
pub mod date;
pub mod encoding;
pub mod mime;
pub mod path;
pub mod range;
pub mod request;
pub mod response;

//! What the admin listener's endpoints answer. The admin listener (default `127.0.0.1:9464`) is
//! served by the same workers as the public one, on its own address so that health checks and
//! scrapes never mix with user traffic and are not counted in the HTTP metrics.
//!
//! - `GET /healthz`: `200 ok` while serving, `503 draining` once shutdown began, so that a load
//!   balancer stops sending new clients before the process goes away.
//! - `GET /metrics`: the Prometheus text exposition (`src/observe/scrape/prometheus.rs`).
//! - `GET /stats`: the same figures as JSON for the dashboard, readable cross-origin.
//!
//! This module decides the answer; `crate::serve::respond` frames and queues it.

use crate::http::response::Status;
use crate::observe::scrape::{json, prometheus, Sources};

/// One admin endpoint's answer.
#[derive(Debug, PartialEq, Eq)]
pub struct Answer {
    pub status: Status,
    /// `None`: `text/plain`. Every admin answer is `Cache-Control: no-store`.
    pub content_type: Option<&'static str>,
    /// `Access-Control-Allow-Origin: *` (the dashboard reads `/stats` from its dev server).
    pub cors: bool,
    pub body: Body,
}

/// An answer's body: a constant, or a document rendered for this scrape.
#[derive(Debug, PartialEq, Eq)]
pub enum Body {
    Static(&'static [u8]),
    Rendered(String),
}

impl Body {
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Body::Static(bytes) => bytes,
            Body::Rendered(text) => text.as_bytes(),
        }
    }
}

/// The answer for the normalised `path`; `None` for a path that is no endpoint (404).
/// `accept` is the request's `Accept` field (Prometheus negotiates its text format with it).
pub fn answer(path: &[u8], accept: Option<&[u8]>, draining: bool, sources: &Sources) -> Option<Answer> {
    let text = |status, body| Answer { status, content_type: None, cors: false, body: Body::Static(body) };
    Some(match path {
        b"/healthz" if draining => text(Status::ServiceUnavailable, b"draining\n"),
        b"/healthz" => text(Status::Ok, b"ok\n"),
        b"/metrics" => {
            let format = prometheus::Format::negotiate(accept);
            Answer {
                status: Status::Ok,
                content_type: Some(format.content_type()),
                cors: false,
                body: Body::Rendered(prometheus::render(sources, format)),
            }
        }
        b"/stats" => Answer {
            status: Status::Ok,
            content_type: Some("application/json"),
            cors: true,
            body: Body::Rendered(json::render(sources)),
        },
        _ => return None,
    })
}

//! The admin listener's endpoints, served by the same workers as the public listener but on a
//! separate address (default `127.0.0.1:9464`), so that health checks and scrapes never mix with
//! user traffic and are not counted in the HTTP metrics.
//!
//! - `GET /healthz`: `200 ok` while serving, `503 draining` once shutdown began, so that a load
//!   balancer stops sending new clients before the process goes away.
//! - `GET /metrics`: the Prometheus text exposition (`src/metrics/prometheus.rs`).
//! - `GET /stats`: the same figures as JSON for the dashboard, readable cross-origin.

use crate::conn::Ctx;
use crate::http::response::{self, Extra, Persistence, Status};
use crate::metrics::{json, prometheus};
use crate::out_queue::OutQueue;

/// Queues the admin response for the normalised path in `ctx.key`.
pub fn respond(
    ctx: &Ctx<'_>,
    out: &mut OutQueue,
    accept: Option<&[u8]>,
    persistence: Persistence,
    head_only: bool,
) {
    let date = ctx.date.text();
    let no_store = Extra { no_store: true, ..Extra::default() };
    let text = |out: &mut OutQueue, status: Status, extra: Extra<'_>, body: &[u8]| {
        out.push_own(|buf| {
            response::write_text(buf, status, extra, body, date, persistence, head_only);
        })
    };
    match ctx.key.as_slice() {
        b"/healthz" if ctx.draining => text(out, Status::ServiceUnavailable, no_store, b"draining\n"),
        b"/healthz" => text(out, Status::Ok, no_store, b"ok\n"),
        b"/metrics" => {
            let format = prometheus::Format::negotiate(accept);
            let body = prometheus::render(ctx.sources, format);
            let extra = Extra { content_type: Some(format.content_type()), ..no_store };
            text(out, Status::Ok, extra, body.as_bytes());
        }
        b"/stats" => {
            let body = json::render(ctx.sources);
            let extra = Extra { content_type: Some("application/json"), cors: true, ..no_store };
            text(out, Status::Ok, extra, body.as_bytes());
        }
        _ => out.push_own(|buf| {
            response::write_generated(buf, Status::NotFound, Extra::default(), date, persistence, head_only);
        }),
    }
}

//! The admin listener's endpoints, served by the same workers as the public listener but on a
//! separate address (default `127.0.0.1:9464`) so that health checks and scrapes never mix with
//! user traffic.
//!
//! - `GET /healthz`: `200 ok` while serving, `503 draining` once shutdown began, so that a load
//!   balancer stops sending new clients before the process goes away.

use crate::http::date;
use crate::http::response::{self, Extra, Persistence, Status};
use crate::out_queue::OutQueue;

/// Queues the admin response for the normalised path `key`.
pub fn respond(
    key: &[u8],
    draining: bool,
    out: &mut OutQueue,
    date: &[u8; date::LEN],
    persistence: Persistence,
    head_only: bool,
) {
    let extra = Extra { no_store: true, ..Extra::default() };
    out.push_own(|buf| match key {
        b"/healthz" if draining => response::write_text(
            buf,
            Status::ServiceUnavailable,
            extra,
            b"draining\n",
            date,
            persistence,
            head_only,
        ),
        b"/healthz" => response::write_text(buf, Status::Ok, extra, b"ok\n", date, persistence, head_only),
        _ => response::write_generated(buf, Status::NotFound, Extra::default(), date, persistence, head_only),
    });
}

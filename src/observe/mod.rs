//! Observing: how what the server counts is read and sent, at scrape or export time — on the
//! request path only the access records, and only when a sink wants them. The
//! counters themselves are [`crate::stats`], one layer below: serving, loading and exporting all
//! write them, so they depend on nothing but the atomics.
//!
//! - [`access`]: access records (text log, OTLP logs), built only when a sink wants them;
//! - [`scrape`]: the counters rendered at scrape time (Prometheus text, JSON for the dashboard,
//!   process metrics);
//! - [`admin`]: what the admin listener's endpoints answer (`/healthz`, `/metrics`, `/stats`);
//! - [`telemetry`]: OTLP export of the same counters and of the access records.
//!
//! Nothing here depends on `crate::serve`: the serving code writes counters and calls the admin
//! endpoints; the scrape reads the hand-off queue's depth through [`scrape::QueueDepth`].

pub mod access;
pub mod admin;
pub mod scrape;
pub mod telemetry;

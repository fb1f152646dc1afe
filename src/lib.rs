//! # atomserve
//!
//! A static-file HTTP/1.1 server built on raw Linux syscalls and lock-free atomics, for serving a
//! single-page app's build (Vite's `dist/`) from memory.
//!
//! The shape, from the socket inwards:
//! - the [`serve::acceptor`] thread waits in `poll(2)` on the listening sockets and a signal
//!   eventfd, accepts with `accept4(2)`, and pushes each connection into the
//!   [`serve::handoff`] — a bounded lock-free queue plus an idle-worker set that wakes exactly
//!   one sleeping worker per connection without ever losing a wake-up;
//! - each [`serve::worker`] is a thread pinned to one CPU, owning its connections and
//!   multiplexing them with its own `epoll(7)` instance; a [`serve::transport::Conn`] moves one
//!   connection's bytes, and [`serve::respond`] decides what each request gets;
//! - requests are parsed by [`http::request`] and answered from an immutable
//!   [`cache::Snapshot`] of the document root: no request touches the file system;
//! - [`stats`] are per-worker atomic counters, read only by [`observe`] at scrape or export
//!   time (Prometheus `/metrics`, `/stats`, OTLP);
//! - start-up and shutdown are [`server`], [`config`] and [`systemd`];
//! - [`sys`] is the only module that calls `libc`; [`sync`] is the only one that names the
//!   atomics, so that the loom models in `loom-tests/` can run the real protocols.
//!
//! See `docs/architecture.md` for the map, the boundaries and the invariants.

// The docs are a course that reads the private items too (`make lint` builds them with
// `--document-private-items`), so a public item's doc may point at a private one.
#![allow(rustdoc::private_intra_doc_links)]

pub mod log;

pub mod cache;
pub mod serve;
pub mod stats;
pub mod sync;

#[cfg(not(atomserve_loom))]
pub mod config;
#[cfg(not(atomserve_loom))]
pub mod endpoint;
#[cfg(not(atomserve_loom))]
pub mod healthcheck;
#[cfg(not(atomserve_loom))]
pub mod http;
#[cfg(not(atomserve_loom))]
pub mod observe;
#[cfg(not(atomserve_loom))]
pub mod server;
#[cfg(not(atomserve_loom))]
pub mod site;
#[cfg(not(atomserve_loom))]
pub mod sys;
#[cfg(not(atomserve_loom))]
pub mod systemd;

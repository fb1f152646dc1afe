//! # atomserve
//!
//! A static-file HTTP/1.1 server built on raw Linux syscalls and lock-free atomics, for serving a
//! single-page app's build (Vite's `dist/`) from memory.
//!
//! The shape, from the socket inwards:
//! - the [`acceptor`] thread waits in `poll(2)` on the listening sockets and a signal eventfd,
//!   accepts with `accept4(2)`, and pushes each connection into the [`handoff`] — a bounded
//!   lock-free queue plus an idle-worker set that wakes exactly one sleeping worker per
//!   connection without ever losing a wake-up;
//! - each [`worker`] is a thread pinned to one CPU, owning its connections and multiplexing them
//!   with its own `epoll(7)` instance; a [`conn::Conn`] is one connection's state machine;
//! - requests are parsed by [`http::request`] and answered from an immutable
//!   [`cache::Snapshot`] of the document root, loaded at start-up: no request touches the file
//!   system;
//! - [`sys`] is the only module that calls `libc`; [`sync`] is the only one that names the
//!   atomics, so that the loom models in `loom-tests/` can run the real protocols.
//!
//! See `docs/architecture.md` for the map and the invariants.

pub mod log;

pub mod cache;
pub mod handoff;
pub mod stats;
pub mod sync;

#[cfg(not(atomserve_loom))]
pub mod acceptor;
#[cfg(not(atomserve_loom))]
pub mod access;
#[cfg(not(atomserve_loom))]
pub mod admin;
#[cfg(not(atomserve_loom))]
pub mod config;
#[cfg(not(atomserve_loom))]
pub mod conn;
#[cfg(not(atomserve_loom))]
pub mod endpoint;
#[cfg(not(atomserve_loom))]
pub mod healthcheck;
#[cfg(not(atomserve_loom))]
pub mod http;
#[cfg(not(atomserve_loom))]
pub mod metrics;
#[cfg(not(atomserve_loom))]
pub mod out_queue;
#[cfg(not(atomserve_loom))]
pub mod server;
#[cfg(not(atomserve_loom))]
pub mod sys;
#[cfg(not(atomserve_loom))]
pub mod systemd;
#[cfg(not(atomserve_loom))]
pub mod telemetry;
#[cfg(not(atomserve_loom))]
pub mod worker;

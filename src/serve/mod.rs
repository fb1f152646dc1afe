//! Serving: from an accepted socket to the bytes of a response.
//!
//! [`acceptor`] → [`handoff`] (bounded queue + idle-worker wake-up) → [`worker`] (one per CPU,
//! owning its connections in a [`slab`]) → [`transport`] (the epoll connection: read, flush,
//! linger, timers) → [`respond`] (request + snapshot → queued output + [`respond::Outcome`], no
//! I/O; [`rendered`] answers hot small files whole before it) → [`out_queue`] (pending output,
//! sent with `sendto(2)`/`sendmsg(2)`/`sendfile(2)`).
//!
//! The boundary that matters: `respond` decides *what* to answer and knows nothing of sockets;
//! `transport` decides *how* bytes move and knows HTTP only as far as framing (where one request
//! ends). A second transport reuses `respond`, `out_queue` and the worker's hand-off and
//! reclamation protocol unchanged.

pub mod handoff;

#[cfg(not(atomserve_loom))]
pub mod acceptor;
#[cfg(not(atomserve_loom))]
pub mod inbuf;
#[cfg(not(atomserve_loom))]
pub mod link;
#[cfg(not(atomserve_loom))]
pub mod out_queue;
#[cfg(not(atomserve_loom))]
pub mod rendered;
#[cfg(not(atomserve_loom))]
pub mod respond;
#[cfg(not(atomserve_loom))]
pub mod ring_conn;
#[cfg(not(atomserve_loom))]
pub mod ring_worker;
#[cfg(not(atomserve_loom))]
pub mod slab;
#[cfg(not(atomserve_loom))]
pub mod transport;
#[cfg(not(atomserve_loom))]
pub mod worker;

#[cfg(not(atomserve_loom))]
pub use fd_handoff::FdHandoff;

#[cfg(not(atomserve_loom))]
mod fd_handoff {
    use super::handoff::{Handoff, Wake};
    use crate::endpoint::Endpoint;
    use crate::observe::scrape::QueueDepth;
    use crate::sys::eventfd::EventFd;

    /// The hand-off as the server uses it: accepted sockets in, each worker woken through its
    /// eventfd.
    pub type FdHandoff = Handoff<Endpoint, EventFd>;

    impl Wake for EventFd {
        /// Rings the worker's eventfd: its `epoll_wait` returns, now or at its next call.
        fn wake(&self) {
            self.ring();
        }
    }

    impl QueueDepth for FdHandoff {
        fn queued(&self) -> usize {
            Handoff::queued(self)
        }
    }
}

//! The acceptor: one thread that waits in `poll(2)` on the listening sockets and the signal
//! wake-up fd, accepts connections with `accept4(2)` and hands them to the workers.
//!
//! Backpressure and failure handling:
//! - the hand-off queue is bounded; when it is full the new connection gets a fixed
//!   `503 Service Unavailable` with `Retry-After: 1` and is closed — never silently dropped, and
//!   the acceptor never blocks; the same answer goes to connections over `--max-connections`;
//! - out of file descriptors (`EMFILE`/`ENFILE`) or kernel memory: the listeners are left out of
//!   the poll set for a short pause instead of spinning on a listener that stays readable, and
//!   polling resumes by itself (pending connections wait in the kernel's backlog meanwhile);
//! - `ECONNABORTED` (the client gave up before we accepted) and `EINTR` are simply retried.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use crate::endpoint::{Endpoint, Role};
use crate::http::response;
use crate::serve::FdHandoff;
use crate::stats::Stats;
use crate::sync::Arc;
use crate::sys::eventfd::EventFd;
use crate::sys::poll::{self, PollFd};
use crate::sys::signal::{self, Signal};
use crate::sys::{socket, ECONNABORTED, EINTR, EMFILE, ENFILE, ENOBUFS, ENOMEM};

/// How long to stop accepting after running out of descriptors or memory.
const BACKOFF: Duration = Duration::from_millis(100);
/// Connections accepted from one listener per wake-up, so that signals are not starved.
const ACCEPT_BATCH: usize = 256;
/// Most batches taken from one listener when closing it (4× the default backlog).
const DRAIN_BATCHES: usize = 64;

/// The acceptor thread's state.
pub struct Acceptor {
    pub listeners: Vec<Endpoint>,
    pub signals: &'static EventFd,
    pub handoff: Arc<FdHandoff>,
    /// All counters; the acceptor writes `stats.acceptor` only.
    pub stats: Arc<Stats>,
    /// Most public connections open at once (0: no limit); beyond it new ones get 503.
    pub max_connections: u64,
    /// Where the next idle-worker search starts (rotated for fairness).
    hint: usize,
    paused_until: Option<Instant>,
}

impl Acceptor {
    pub fn new(
        listeners: Vec<Endpoint>,
        signals: &'static EventFd,
        handoff: Arc<FdHandoff>,
        stats: Arc<Stats>,
    ) -> Self {
        Acceptor { listeners, signals, handoff, stats, max_connections: 0, hint: 0, paused_until: None }
    }

    /// Accepts until a terminating signal; `on_reload` runs on SIGHUP.
    pub fn run(&mut self, mut on_reload: impl FnMut()) -> io::Result<()> {
        loop {
            let paused = self.paused_until.is_some_and(|t| Instant::now() < t);
            if !paused {
                self.paused_until = None;
            }
            let mut fds: Vec<PollFd> = self
                .listeners
                .iter()
                .map(|l| if paused { PollFd::ignored() } else { PollFd::readable(l.fd.as_fd()) })
                .collect();
            fds.push(PollFd::readable(self.signals.as_fd()));
            let timeout = self.paused_until.map(|t| t.saturating_duration_since(Instant::now()));
            poll::poll(&mut fds, timeout)?;

            if fds.last().is_some_and(PollFd::is_ready) {
                self.signals.drain();
            }
            // Check signals on every wake-up: a poll interrupted by EINTR reports nothing ready.
            for sig in signal::take_pending() {
                match sig {
                    Signal::Terminate => return Ok(()),
                    Signal::Reload => on_reload(),
                }
            }
            // The listeners come first in `fds`, in order (the wake-up fd after them).
            for (i, fd) in fds.iter().enumerate().take(self.listeners.len()) {
                if fd.is_ready() {
                    self.accept_from(i);
                }
            }
        }
    }

    /// Whether the public connections open now reach `max_connections` (0: no limit).
    fn at_connection_limit(&self) -> bool {
        if self.max_connections == 0 {
            return false;
        }
        self.stats.open_connections() >= self.max_connections
    }

    /// Stops accepting without dropping a connection the kernel already took: accepts whatever
    /// each listener has queued (and hands it to the workers, who serve it during the drain), then
    /// closes the listeners. Closing a listener resets the connections still in its queue — also
    /// with `SO_REUSEPORT`, where they do not move to the other process's socket. Bounded, so
    /// that a flood of new connections cannot hold the shutdown.
    pub fn close_listeners(&mut self) {
        for i in 0..self.listeners.len() {
            for _ in 0..DRAIN_BATCHES {
                if !self.accept_from(i) {
                    break;
                }
            }
        }
        self.listeners.clear();
    }

    /// Accepts up to a batch from listener `index`; `true` if the batch filled (more may wait).
    fn accept_from(&mut self, index: usize) -> bool {
        let role = self.listeners[index].role;
        for _ in 0..ACCEPT_BATCH {
            let fd = match socket::accept(self.listeners[index].fd.as_fd()) {
                Ok(fd) => fd,
                Err(e) => match e.raw_os_error() {
                    Some(ECONNABORTED | EINTR) => continue, // client gave up, or a signal: next one
                    Some(EMFILE | ENFILE | ENOBUFS | ENOMEM) => {
                        // Out of fds or memory: stop polling the listeners for a moment rather
                        // than spin on a socket that stays readable; connections wait in the backlog.
                        let backoffs = self.stats.acceptor.backoffs.get();
                        if backoffs == 0 || backoffs.is_power_of_two() {
                            crate::log!("accept: {e}; pausing accepts for {BACKOFF:?}");
                        }
                        self.stats.acceptor.backoffs.incr();
                        self.paused_until = Some(Instant::now() + BACKOFF);
                        return false;
                    }
                    _ => return false, // EAGAIN: the backlog is empty
                },
            };
            if role == Role::Public && self.at_connection_limit() {
                // Over --max-connections: refuse plainly rather than run out of descriptors.
                self.stats.acceptor.over_limit.incr();
                refuse(&fd);
                continue;
            }
            self.hint = self.hint.wrapping_add(1);
            let public = role == Role::Public;
            if public {
                // Before the push: once pushed, a worker may close it and count that at once.
                self.stats.acceptor.accepted.incr();
            }
            if let Err(refused) = self.handoff.push(Endpoint { fd, role }, self.hint) {
                // Every worker is behind: say so plainly instead of letting the client hang.
                self.stats.acceptor.queue_full.incr();
                if public {
                    self.stats.acceptor.public_refused.incr_release();
                }
                refuse(&refused.fd);
            }
        }
        true
    }
}

/// Answers a refused connection with the fixed 503 (`Retry-After: 1`) and half-closes it; the
/// fd is closed when the caller drops it. Best effort: a failed send changes nothing.
fn refuse(fd: &OwnedFd) {
    // Read what the client already sent (TCP_DEFER_ACCEPT makes that likely): closing with unread
    // input makes the kernel send a reset, which can destroy the 503.
    // Bounded: a client streaming faster than we read must not hold the acceptor.
    let mut sink = [0u8; 4096];
    for _ in 0..16 {
        if !matches!(socket::recv(fd.as_fd(), &mut sink), Ok(n) if n > 0) {
            break;
        }
    }
    let _ = socket::send(fd.as_fd(), response::QUEUE_FULL);
    let _ = socket::shutdown_write(fd.as_fd());
}

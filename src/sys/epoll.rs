//! `epoll(7)`: each worker's readiness multiplexer over the connections it owns.
//!
//! Connections are registered once, edge-triggered, for both input and output
//! (`EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET`). Edge-triggered means the kernel reports a
//! *change* to readable or writable, so the worker must read until `EAGAIN` (or remember that it
//! stopped early) — in exchange no `epoll_ctl` is ever needed to switch interest between reading
//! and writing, which saves a syscall per response.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::Duration;

/// An epoll instance.
pub struct Epoll {
    fd: OwnedFd,
}

/// A readiness report: the token given at registration and what happened.
#[derive(Clone, Copy)]
#[repr(transparent)]
pub struct Event(libc::epoll_event);

impl Event {
    /// The token passed to [`Epoll::add`].
    pub fn token(&self) -> u64 {
        self.0.u64
    }
    /// Input is available (or the peer closed: a read will return 0).
    pub fn is_readable(&self) -> bool {
        self.0.events & (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) as u32 != 0
    }
    /// The peer closed its side (or the socket failed): reading must go on until it returns 0
    /// or an error, even after a short read.
    pub fn is_hangup(&self) -> bool {
        self.0.events & (libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) as u32 != 0
    }
    /// The socket's send buffer has room again.
    pub fn is_writable(&self) -> bool {
        self.0.events & (libc::EPOLLOUT | libc::EPOLLHUP | libc::EPOLLERR) as u32 != 0
    }
}

/// A buffer the kernel fills with events.
pub struct Events {
    buf: Vec<libc::epoll_event>,
    len: usize,
}

impl Events {
    pub fn with_capacity(cap: usize) -> Self {
        Events { buf: vec![libc::epoll_event { events: 0, u64: 0 }; cap.max(1)], len: 0 }
    }
    pub fn iter(&self) -> impl Iterator<Item = Event> + '_ {
        self.buf[..self.len].iter().map(|e| Event(*e))
    }
}

/// Interest in readability only (for the worker's eventfd), level-triggered.
pub const READ: u32 = libc::EPOLLIN as u32;
/// Edge-triggered interest in both directions and in the peer's half-close: for connections.
pub const CONNECTION: u32 = (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32;

impl Epoll {
    /// `epoll_create1(EPOLL_CLOEXEC)`.
    pub fn new() -> io::Result<Self> {
        // SAFETY: no pointers; epoll_create1 returns a fresh fd or -1.
        let raw = unsafe { syscall!(epoll_create1(libc::EPOLL_CLOEXEC))? };
        // SAFETY: epoll_create1(2) succeeded, so `raw` is a valid fd that nothing else owns.
        Ok(Epoll { fd: unsafe { OwnedFd::from_raw_fd(raw) } })
    }

    /// `epoll_ctl(EPOLL_CTL_ADD)`: watch `fd` with `interest`, reporting `token`.
    pub fn add(&self, fd: BorrowedFd<'_>, interest: u32, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event { events: interest, u64: token };
        // SAFETY: both fds are open (borrowed for the call) and `ev` is a valid epoll_event.
        unsafe { syscall!(epoll_ctl(self.fd.as_raw_fd(), libc::EPOLL_CTL_ADD, fd.as_raw_fd(), &mut ev))? };
        Ok(())
    }

    /// `epoll_wait`: fills `events`, waiting at most `timeout` (`None`: until something happens).
    /// A signal interrupting the wait (`EINTR`) is reported as zero events.
    pub fn wait(&self, events: &mut Events, timeout: Option<Duration>) -> io::Result<usize> {
        let ms = match timeout {
            None => -1,
            // Round up so that a 0.4 ms timer does not turn into a busy 0 ms poll.
            Some(d) => d.as_micros().div_ceil(1000).min(i32::MAX as u128) as libc::c_int,
        };
        // SAFETY: the buffer is valid and writable for `buf.len()` events during the call.
        let res = unsafe {
            syscall!(epoll_wait(
                self.fd.as_raw_fd(),
                events.buf.as_mut_ptr(),
                events.buf.len() as libc::c_int,
                ms
            ))
        };
        events.len = match res {
            Ok(n) => n as usize,
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => 0, // a signal: the loop looks again
            Err(e) => return Err(e),
        };
        Ok(events.len)
    }
}

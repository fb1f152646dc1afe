//! `eventfd(2)`: a kernel counter that is readable while non-zero — a wake-up bell that fits in
//! an epoll set or a poll array.
//!
//! Each worker owns one and sleeps in `epoll_wait` with it registered; the acceptor rings it to
//! hand over a connection. The signal handler rings the acceptor's. Writes add to the counter and
//! a read returns and clears it, so any number of rings before the sleeper looks collapse into one
//! wake-up and none is lost.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// A non-blocking eventfd.
pub struct EventFd {
    fd: OwnedFd,
}

impl EventFd {
    /// `eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)`.
    pub fn new() -> io::Result<Self> {
        // SAFETY: no pointers; eventfd returns a fresh fd or -1.
        let raw = unsafe { syscall!(eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC))? };
        // SAFETY: eventfd(2) succeeded, so `raw` is a valid fd owned by nobody else.
        Ok(EventFd { fd: unsafe { OwnedFd::from_raw_fd(raw) } })
    }

    /// Adds one to the counter, making the fd readable. Never blocks: the only failure mode of a
    /// non-blocking eventfd write is a counter at `u64::MAX - 1`, which is already "readable".
    pub fn ring(&self) {
        ring_raw(self.fd.as_raw_fd());
    }

    /// Reads and clears the counter; returns whether it was non-zero.
    pub fn drain(&self) -> bool {
        let mut buf = 0u64;
        // SAFETY: reads exactly 8 bytes into a valid u64, as eventfd(2) requires.
        let res = unsafe { syscall!(read(self.fd.as_raw_fd(), (&mut buf as *mut u64).cast(), 8)) };
        res.is_ok() // EAGAIN: the counter was already zero
    }

    /// The raw fd, for the signal handler which can only use async-signal-safe calls.
    pub fn as_raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for EventFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// `write(fd, 1u64)`: async-signal-safe, so the signal handler may call it.
pub(crate) fn ring_raw(fd: RawFd) {
    let one = 1u64;
    // SAFETY: writes 8 bytes from a valid u64; write(2) is async-signal-safe. The result is
    // ignored on purpose: EAGAIN means the counter is saturated, which still reads as "rung".
    let _ = unsafe { syscall!(write(fd, (&one as *const u64).cast(), 8)) };
}

//! `poll(2)`: the acceptor's wait on its few listening sockets and the signal wake-up fd.
//!
//! poll is the right tool for a handful of fds that change rarely: one syscall, no kernel object
//! to set up. The workers, which own thousands of connections, use epoll instead.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::Duration;

/// One fd to watch for readability, and whether it turned out readable.
#[repr(transparent)]
pub struct PollFd(libc::pollfd);

impl PollFd {
    /// Watches `fd` for `POLLIN` (a pending connection, or a counter to read).
    pub fn readable(fd: BorrowedFd<'_>) -> Self {
        PollFd(libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 })
    }

    /// A slot that poll skips (a negative fd is ignored by the kernel): a paused listener.
    pub fn ignored() -> Self {
        PollFd(libc::pollfd { fd: -1, events: 0, revents: 0 })
    }

    /// Whether the last [`poll`] reported the fd readable (or in error, which reading will reveal).
    pub fn is_ready(&self) -> bool {
        self.0.revents & (libc::POLLIN | libc::POLLERR | libc::POLLHUP) != 0
    }
}

/// Waits until one of `fds` is readable or `timeout` passes (`None`: forever).
/// Returns how many are ready; `EINTR` (a signal arrived) reports 0 so the caller re-checks.
pub fn poll(fds: &mut [PollFd], timeout: Option<Duration>) -> io::Result<usize> {
    let ms = timeout.map_or(-1, |d| d.as_millis().min(i32::MAX as u128) as libc::c_int);
    // SAFETY: PollFd is repr-compatible with pollfd (a newtype over it) and the slice is valid
    // and writable for `fds.len()` entries during the call.
    let res =
        unsafe { syscall!(poll(fds.as_mut_ptr().cast::<libc::pollfd>(), fds.len() as libc::nfds_t, ms)) };
    match res {
        Ok(n) => Ok(n as usize),
        Err(e) if e.raw_os_error() == Some(libc::EINTR) => Ok(0), // a signal: caller looks again
        Err(e) => Err(e),
    }
}

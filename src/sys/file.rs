//! Plain `write(2)` to a descriptor that is not a socket (the access log on standard output).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// Writes all of `buf`, retrying after `EINTR` and short writes (a pipe takes at most what fits
/// in its buffer at a time). Blocks while a blocking descriptor is full: only the access-log
/// writer thread calls it, never a worker.
pub fn write_all(fd: BorrowedFd<'_>, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        // SAFETY: `buf` is valid for `buf.len()` bytes; the fd is borrowed, so it stays open.
        match unsafe { syscall!(write(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len())) } {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => buf = &buf[n as usize..],
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue, // a signal arrived first
            Err(e) => return Err(e), // EAGAIN on a non-blocking stdout, EPIPE, EBADF: give up
        }
    }
    Ok(())
}

/// Standard output, borrowed for the life of the process.
pub fn stdout() -> BorrowedFd<'static> {
    // SAFETY: fd 1 is open for the whole life of the process (the runtime reopens it on
    // /dev/null if it started closed); it is never closed by atomserve.
    unsafe { BorrowedFd::borrow_raw(libc::STDOUT_FILENO) }
}

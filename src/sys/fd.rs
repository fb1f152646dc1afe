//! Descriptors this process did not open itself: taking over one inherited from the parent
//! (`fcntl(2)`), as systemd's socket activation passes them.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// Takes ownership of descriptor `raw`, inherited from the process that started atomserve, and
/// makes it close-on-exec and non-blocking — what atomserve's own sockets are from birth. A
/// descriptor that is not open fails with `EBADF` before anything owns it.
///
/// # Safety
/// Nothing else in this process may own or use `raw`: call this at start-up, before the process
/// opens any descriptor of its own, for descriptors the parent says it passed (`LISTEN_FDS`).
pub unsafe fn adopt_inherited(raw: RawFd) -> io::Result<OwnedFd> {
    debug_assert!(raw > 2, "stdin, stdout and stderr are never passed sockets");
    // SAFETY: no pointers; F_GETFD on a descriptor that is not open fails with EBADF.
    let fd_flags = unsafe { syscall!(fcntl(raw, libc::F_GETFD))? };
    // SAFETY: `raw` is open (F_GETFD succeeded) and, by this function's contract, owned by no one
    // else; from here on dropping `fd` closes it, on every error path below too.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: no pointers; `raw` is open and ours.
    unsafe { syscall!(fcntl(raw, libc::F_SETFD, fd_flags | libc::FD_CLOEXEC))? };
    // SAFETY: as above.
    let status = unsafe { syscall!(fcntl(raw, libc::F_GETFL))? };
    // SAFETY: as above. O_NONBLOCK is a file status flag, shared with systemd's copy of the
    // socket: harmless, systemd itself polls its sockets before it accepts on them.
    unsafe { syscall!(fcntl(raw, libc::F_SETFL, status | libc::O_NONBLOCK))? };
    Ok(fd)
}

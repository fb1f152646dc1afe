//! `inotify(7)`: file-change notifications, for `--watch`.
//!
//! An inotify instance is an fd that becomes readable when something changes in a watched
//! directory; reading it returns a batch of `struct inotify_event` records. atomserve does not
//! need to know *what* changed — any change means "reload soon" — so the records are drained and
//! only counted. Watches are per directory and not recursive: the watcher adds one for every
//! directory under the root.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Changes that can alter what a reload would load.
pub const CHANGES: u32 = libc::IN_CLOSE_WRITE
    | libc::IN_CREATE
    | libc::IN_DELETE
    | libc::IN_MOVED_FROM
    | libc::IN_MOVED_TO
    | libc::IN_ATTRIB
    | libc::IN_DELETE_SELF
    | libc::IN_MOVE_SELF;

/// A non-blocking inotify instance.
pub struct Inotify {
    fd: OwnedFd,
}

impl Inotify {
    /// `inotify_init1(IN_NONBLOCK | IN_CLOEXEC)`.
    pub fn new() -> io::Result<Self> {
        // SAFETY: no pointers; returns a fresh fd or -1.
        let raw = unsafe { syscall!(inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC))? };
        // SAFETY: inotify_init1(2) succeeded; the fd is ours alone.
        Ok(Inotify { fd: unsafe { OwnedFd::from_raw_fd(raw) } })
    }

    /// `inotify_add_watch(path, mask)`. Watching a directory twice just updates its mask.
    pub fn watch(&self, path: &Path, mask: u32) -> io::Result<()> {
        let c = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))?;
        // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
        unsafe { syscall!(inotify_add_watch(self.fd.as_raw_fd(), c.as_ptr(), mask))? };
        Ok(())
    }

    /// Reads and discards every pending event; returns how many bytes of events there were
    /// (0 when none were pending).
    pub fn drain(&self) -> io::Result<usize> {
        // Aligned for struct inotify_event, and large enough for at least one with a NAME_MAX name.
        let mut buf = [0u64; 1024];
        let mut total = 0;
        loop {
            // SAFETY: `buf` is valid and writable for its whole size.
            let res = unsafe {
                syscall!(read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), std::mem::size_of_val(&buf)))
            };
            match res {
                Ok(0) => return Ok(total),
                Ok(n) => total += n as usize,
                Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => return Ok(total),
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

impl AsFd for Inotify {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

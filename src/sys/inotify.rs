//! `inotify(7)`: file-change notifications, for `--watch`.
//!
//! An inotify instance is an fd that becomes readable when something changes in a watched
//! directory; reading it returns a batch of `struct inotify_event` records. atomserve does not
//! need to know *what* changed — any change means "reload soon" (a reload reads and hashes the
//! whole tree, so it finds what changed itself) — so the records are drained and only counted,
//! except for `IN_Q_OVERFLOW`, which says events were lost. Watches are per directory and not recursive: the watcher adds one for every
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

    /// Reads and discards every pending event.
    pub fn drain(&self) -> io::Result<Drained> {
        // Aligned for struct inotify_event, and large enough for at least one with a NAME_MAX name.
        let mut buf = [0u64; 1024];
        let mut drained = Drained::default();
        loop {
            // SAFETY: `buf` is valid and writable for its whole size.
            let res = unsafe {
                syscall!(read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), std::mem::size_of_val(&buf)))
            };
            match res {
                Ok(0) => return Ok(drained),
                Ok(n) => {
                    drained.bytes += n as usize;
                    // SAFETY: the kernel wrote `n` bytes of whole records into `buf`, which is
                    // 8-byte aligned; u64s may be viewed as bytes.
                    let bytes = unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), n as usize) };
                    drained.overflow |= any_overflow(bytes);
                }
                Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => return Ok(drained),
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

/// What one [`Inotify::drain`] read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Drained {
    /// Bytes of event records (0 when none were pending).
    pub bytes: usize,
    /// The kernel's queue overflowed (`IN_Q_OVERFLOW`): events were lost, so anything may have
    /// changed.
    pub overflow: bool,
}

/// Whether a run of `struct inotify_event` records (each `wd`, `mask`, `cookie`, `len`, then
/// `len` bytes of name) holds an `IN_Q_OVERFLOW`.
fn any_overflow(mut records: &[u8]) -> bool {
    const HEAD: usize = std::mem::size_of::<libc::inotify_event>();
    while records.len() >= HEAD {
        let field =
            |at: usize| u32::from_ne_bytes([records[at], records[at + 1], records[at + 2], records[at + 3]]);
        let (mask, len) = (field(4), field(12) as usize);
        if mask & libc::IN_Q_OVERFLOW != 0 {
            return true;
        }
        records = records.get(HEAD + len..).unwrap_or(&[]);
    }
    false
}

impl AsFd for Inotify {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(mask: u32, name: &[u8]) -> Vec<u8> {
        let len = name.len().div_ceil(16) * 16;
        let mut r = Vec::new();
        for field in [1u32, mask, 0, len as u32] {
            r.extend_from_slice(&field.to_ne_bytes());
        }
        r.extend_from_slice(name);
        r.resize(16 + len, 0);
        r
    }

    #[test]
    fn an_overflow_record_is_found_among_others() {
        let mut records = record(libc::IN_CREATE, b"app.js");
        assert!(!any_overflow(&records));
        records.extend(record(libc::IN_Q_OVERFLOW, b""));
        records.extend(record(libc::IN_DELETE, b"a-much-longer-file-name.txt"));
        assert!(any_overflow(&records));
        assert!(!any_overflow(&records[..10]), "a torn record is not read past");
    }

    /// A real instance: a file created in a watched directory is one record, no overflow.
    #[test]
    fn a_change_in_a_watched_directory_is_drained() {
        let dir = std::env::temp_dir().join(format!("atomserve-inotify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ino = Inotify::new().unwrap();
        ino.watch(&dir, CHANGES).unwrap();
        std::fs::write(dir.join("a"), b"x").unwrap();
        let drained = ino.drain().unwrap();
        let again = ino.drain().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(drained.bytes > 0 && !drained.overflow, "{drained:?}");
        assert_eq!(again, Drained::default());
    }
}

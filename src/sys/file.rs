//! Files: `write(2)` for the access log on standard output; `openat2(2)`, `fstat(2)` and
//! `sendfile(2)` for files too large to hold in memory, served from a descriptor opened at load;
//! `memfd_create(2)` for large cached bodies, sent from memory without a copy.

use std::ffi::CString;
use std::io;
use std::mem;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

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

/// Opens a directory to resolve paths beneath (`O_PATH`: no read permission is used).
pub fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    let c = CString::new(path.as_os_str().as_bytes()).map_err(|_| io::ErrorKind::InvalidInput)?;
    // SAFETY: `c` is a valid NUL-terminated path; the flags ask for a plain descriptor.
    let fd = unsafe { syscall!(open(c.as_ptr(), libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC))? };
    // SAFETY: open(2) succeeded; the fd is ours alone.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `openat2(2)` for reading `relative` under `dir`, with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`:
/// the kernel refuses any resolution that would leave `dir` (`..`, an absolute path) or pass a
/// symbolic link, whatever happened to the tree since it was walked. `EXDEV`/`ELOOP` say which.
pub fn open_beneath(dir: BorrowedFd<'_>, relative: &Path) -> io::Result<OwnedFd> {
    let c = CString::new(relative.as_os_str().as_bytes()).map_err(|_| io::ErrorKind::InvalidInput)?;
    // SAFETY: open_how is plain integers; all-zero is a valid value (libc marks it
    // non-exhaustive, so it cannot be built with a struct expression).
    let mut how: libc::open_how = unsafe { mem::zeroed() };
    how.flags = (libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NOCTTY) as u64;
    how.resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS;
    // SAFETY: `c` is NUL-terminated, `how` is a valid open_how and its size is passed with it.
    let fd = unsafe {
        syscall!(syscall(
            libc::SYS_openat2,
            dir.as_raw_fd(),
            c.as_ptr(),
            &how as *const libc::open_how,
            mem::size_of::<libc::open_how>()
        ))?
    };
    // SAFETY: openat2(2) succeeded; the fd (an int, returned as a long) is ours alone.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Size and modification time (Unix seconds) of an open file, from `fstat(2)`.
pub fn size_and_mtime(fd: BorrowedFd<'_>) -> io::Result<(u64, u64)> {
    let mut st = mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `st` is valid for writing a `struct stat`.
    unsafe { syscall!(fstat(fd.as_raw_fd(), st.as_mut_ptr()))? };
    // SAFETY: fstat(2) succeeded and filled it.
    let st = unsafe { st.assume_init() };
    Ok((st.st_size.max(0) as u64, st.st_mtime.max(0) as u64))
}

/// `sendfile(2)`: copies up to `count` bytes of `file` from `*offset` to the socket inside the
/// kernel (no copy through user space) and advances `*offset`. `Ok(0)` means the file ended
/// early (it shrank since it was opened); `EAGAIN` means the socket is full.
pub fn sendfile(
    socket: BorrowedFd<'_>,
    file: BorrowedFd<'_>,
    offset: &mut u64,
    count: usize,
) -> io::Result<usize> {
    let mut off = *offset as libc::off_t;
    // SAFETY: both fds are open for the call; `off` is a valid, writable offset.
    let n = unsafe { syscall!(sendfile(socket.as_raw_fd(), file.as_raw_fd(), &mut off, count))? };
    *offset = off as u64;
    Ok(n as usize)
}

/// A sealed memory file holding `bytes`: `memfd_create(2)`, `write(2)`, then `fcntl(F_ADD_SEALS)`
/// so that nothing can change, grow or shrink it again. sendfile(2) from it sends page
/// references instead of copying the bytes through a send buffer from user space.
pub fn sealed_memfd(bytes: &[u8]) -> io::Result<OwnedFd> {
    // SAFETY: the name is a valid NUL-terminated string; the flags are valid.
    let raw = unsafe {
        syscall!(memfd_create(c"atomserve-body".as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING))?
    };
    // SAFETY: memfd_create(2) succeeded; the fd is ours alone.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    write_all(fd.as_fd(), bytes)?;
    let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE | libc::F_SEAL_SEAL;
    // SAFETY: F_ADD_SEALS takes an int of seal flags on a memfd created with sealing allowed.
    unsafe { syscall!(fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals))? };
    Ok(fd)
}

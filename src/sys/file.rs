//! Files: `write(2)` for the access log on standard output; `openat2(2)`, `fstat(2)` and
//! `sendfile(2)` for files too large to hold in memory, served from a descriptor opened at load;
//! `memfd_create(2)`, `ftruncate(2)`, `mmap(2)`, `madvise(2)` and `munmap(2)` for large cached
//! bodies, sent from memory without a copy.

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

/// A sealed memory file holding `parts`, back to back: `memfd_create(2)`, the bytes put in (below), then
/// `fcntl(F_ADD_SEALS)` so that nothing can change, grow or shrink it again. sendfile(2) from it
/// sends page references instead of copying the bytes through a send buffer from user space.
///
/// The bytes go in through a shared `mmap(2)` marked `madvise(MADV_HUGEPAGE)`, so that the
/// memory behind a large body can be 2 MiB transparent huge pages: sendfile then hands the
/// socket a few large page fragments instead of one per 4 KiB, which cut the server's CPU for a
/// 5 MiB response by about a quarter (`docs/benchmarks.md`). Whether shmem, which backs a memfd,
/// gets huge pages is the host's choice in `/sys/kernel/mm/transparent_hugepage/shmem_enabled`:
/// `advise` honours this request, `within_size` and `always` give them anyway, `never` (the
/// usual default) gives 4 KiB pages whatever is asked. `MADV_POPULATE_WRITE` (Linux 5.14)
/// allocates the memory before the copy, so a shortage is an error here, not a `SIGBUS` in the
/// copy; where it is missing, the bytes go in with `write(2)` as before (4 KiB pages unless the
/// host's setting is `within_size` or `always`).
pub fn sealed_memfd(parts: &[&[u8]]) -> io::Result<OwnedFd> {
    // SAFETY: the name is a valid NUL-terminated string; the flags are valid.
    let raw = unsafe {
        syscall!(memfd_create(c"atomserve-body".as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING))?
    };
    // SAFETY: memfd_create(2) succeeded; the fd is ours alone.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let len: usize = parts.iter().map(|p| p.len()).sum();
    if len > 0 && !fill_through_mapping(fd.as_fd(), parts, len)? {
        for part in parts {
            write_all(fd.as_fd(), part)?;
        }
    }
    let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE | libc::F_SEAL_SEAL;
    // SAFETY: F_ADD_SEALS takes an int of seal flags on a memfd created with sealing allowed.
    unsafe { syscall!(fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals))? };
    Ok(fd)
}

/// Sizes the empty memfd `fd` to `len`, the parts' total, and copies them in through a
/// huge-page-advised shared mapping (see [`sealed_memfd`]). `Ok(false)`: the kernel cannot
/// populate a mapping ahead (before 5.14), the file is empty again and the caller writes instead.
///
/// The file is sized up to a whole number of huge pages, so that its last stretch can be a huge
/// page too (only whole 2 MiB stretches of a mapping can). The padding is never written: with
/// 4 KiB pages it holds no memory; with huge pages it is at most 2 MiB per snapshot.
fn fill_through_mapping(fd: BorrowedFd<'_>, parts: &[&[u8]], len: usize) -> io::Result<bool> {
    const HUGE_PAGE: usize = 2 << 20;
    let padded = len.div_ceil(HUGE_PAGE) * HUGE_PAGE;
    let size = libc::off_t::try_from(padded).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: a valid fd and a non-negative length.
    unsafe { syscall!(ftruncate(fd.as_raw_fd(), size))? };
    // SAFETY: a new shared, writable mapping of the whole file, which is `padded` bytes long now.
    let map = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            padded,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd.as_raw_fd(),
            0,
        )
    };
    if map == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `map` is the mapping of `padded` bytes made above. Advice only: EINVAL from a
    // kernel without transparent huge pages changes nothing.
    let _ = unsafe { syscall!(madvise(map, padded, libc::MADV_HUGEPAGE)) };
    // SAFETY: as above (`len <= padded`); this allocates the memory the bytes need, and fails if
    // there is none.
    let populated = unsafe { syscall!(madvise(map, len, libc::MADV_POPULATE_WRITE)) };
    if populated.is_ok() {
        let mut at = 0;
        for part in parts {
            // SAFETY: the mapping is writable for `len` bytes, all of them allocated just now;
            // the parts add up to `len`, so `at + part.len() <= len`; a fresh mapping cannot
            // overlap a part.
            unsafe { std::ptr::copy_nonoverlapping(part.as_ptr(), map.cast::<u8>().add(at), part.len()) };
            at += part.len();
        }
    }
    // SAFETY: unmaps exactly the mapping made above; nothing refers to it any more. Sealing
    // against writes needs every writable mapping gone.
    unsafe { syscall!(munmap(map, padded))? };
    match populated {
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            // SAFETY: as above; back to an empty file for write(2).
            unsafe { syscall!(ftruncate(fd.as_raw_fd(), 0))? };
            Ok(false)
        }
        Err(e) => Err(e), // ENOMEM and the like: no memory for this body
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads `len` bytes from offset 0 with pread(2) (tests only).
    fn contents(fd: BorrowedFd<'_>, len: usize) -> Vec<u8> {
        let mut out = vec![0u8; len];
        // SAFETY: `out` is valid for `len` bytes; the fd is borrowed.
        let n = unsafe { libc::pread(fd.as_raw_fd(), out.as_mut_ptr().cast(), out.len(), 0) };
        out.truncate(usize::try_from(n).unwrap());
        out
    }

    /// The parts go in exactly, back to back (also across a 2 MiB boundary, where a huge page
    /// would end), the memfd is sealed for good, and writing to it fails.
    #[test]
    fn a_sealed_memfd_holds_exactly_the_bytes_and_refuses_writes() {
        for len in [1usize, 4096, 65_536 + 7, (2 << 20) + 4099] {
            let bytes: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let (a, b) = bytes.split_at(len / 3);
            let fd = sealed_memfd(&[a, &[], b]).unwrap();
            assert!(contents(fd.as_fd(), len) == bytes, "{len} bytes");
            // Padded to whole huge pages (never written, so holding no memory with small pages),
            // unless the kernel predates MADV_POPULATE_WRITE and the bytes went in with write(2).
            let (size, _) = size_and_mtime(fd.as_fd()).unwrap();
            assert!(size == len as u64 || (size > len as u64 && size % (2 << 20) == 0), "{size}");
            // SAFETY: F_GET_SEALS takes no argument.
            let seals = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) };
            let want = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE | libc::F_SEAL_SEAL;
            assert_eq!(seals & want, want);
            assert_eq!(write_all(fd.as_fd(), b"x").unwrap_err().raw_os_error(), Some(libc::EPERM));
        }
        let empty = sealed_memfd(&[]).unwrap();
        assert_eq!(size_and_mtime(empty.as_fd()).unwrap().0, 0);
    }
}

//! Files: `write(2)` for the access log on standard output; `openat2(2)`, `fstat(2)` and
//! `sendfile(2)` for files too large to hold in memory, served from a descriptor opened at load;
//! `memfd_create(2)`, `ftruncate(2)`, `mmap(2)`, `madvise(2)`, `munmap(2)`, `pwrite(2)`, `pread(2)`
//! and `fallocate(2)` for large cached bodies, sent from memory without a copy and given back a
//! stretch at a time.

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
///
/// Where `openat2` does not exist (`ENOSYS`: Linux before 5.6, or valgrind, which does not know
/// it), [`open_beneath_by_steps`] gives the same guarantees one component at a time.
pub fn open_beneath(dir: BorrowedFd<'_>, relative: &Path) -> io::Result<OwnedFd> {
    match open_beneath_at_once(dir, relative) {
        Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => open_beneath_by_steps(dir, relative),
        other => other,
    }
}

fn open_beneath_at_once(dir: BorrowedFd<'_>, relative: &Path) -> io::Result<OwnedFd> {
    let c = CString::new(relative.as_os_str().as_bytes()).map_err(|_| io::ErrorKind::InvalidInput)?;
    // SAFETY: open_how is plain integers; all-zero is a valid value (libc marks it
    // non-exhaustive, so it cannot be built with a struct expression).
    let mut how: libc::open_how = unsafe { mem::zeroed() };
    // O_NONBLOCK: a FIFO swapped in for a file since the walk must not block the open (the
    // caller checks the type with `stat` and refuses anything but a regular file).
    how.flags = (libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NOCTTY | libc::O_NONBLOCK) as u64;
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

/// `openat(2)` one component at a time: each directory with `O_DIRECTORY | O_NOFOLLOW` (a
/// symbolic link or anything else that is not a directory fails with `ENOTDIR`), the file with
/// `O_NOFOLLOW` (a link fails with `ELOOP`),
/// and `..`, `.` or an absolute path refused with `EXDEV` before any call — what
/// `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS` means, built from calls every kernel has.
pub fn open_beneath_by_steps(dir: BorrowedFd<'_>, relative: &Path) -> io::Result<OwnedFd> {
    use std::path::Component;
    let mut names = Vec::new();
    for component in relative.components() {
        match component {
            Component::Normal(name) => names.push(name),
            _ => return Err(io::Error::from_raw_os_error(libc::EXDEV)),
        }
    }
    let Some((last, dirs)) = names.split_last() else {
        return Err(io::Error::from_raw_os_error(libc::EXDEV));
    };
    let open_at = |at: BorrowedFd<'_>, name: &std::ffi::OsStr, flags: libc::c_int| -> io::Result<OwnedFd> {
        let c = CString::new(name.as_bytes()).map_err(|_| io::ErrorKind::InvalidInput)?;
        // SAFETY: `c` is NUL-terminated and `at` is an open directory descriptor.
        let fd = unsafe {
            syscall!(openat(at.as_raw_fd(), c.as_ptr(), flags | libc::O_NOFOLLOW | libc::O_CLOEXEC))?
        };
        // SAFETY: openat(2) succeeded; the fd is ours alone.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    };
    let mut held: Option<OwnedFd> = None;
    for name in dirs {
        let at = held.as_ref().map_or(dir, |fd| fd.as_fd());
        held = Some(open_at(at, name, libc::O_RDONLY | libc::O_DIRECTORY)?);
    }
    let at = held.as_ref().map_or(dir, |fd| fd.as_fd());
    open_at(at, last, libc::O_RDONLY | libc::O_NOCTTY | libc::O_NONBLOCK)
}

/// What `fstat(2)` says of an open file that the loader needs.
#[derive(Clone, Copy, Debug)]
pub struct Stat {
    pub len: u64,
    /// Modification time, Unix seconds.
    pub mtime: u64,
    /// A regular file (not a FIFO, device, socket or directory swapped in since the walk).
    pub regular: bool,
}

/// Size, modification time and type of an open file, from `fstat(2)`.
pub fn stat(fd: BorrowedFd<'_>) -> io::Result<Stat> {
    let mut st = mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `st` is valid for writing a `struct stat`.
    unsafe { syscall!(fstat(fd.as_raw_fd(), st.as_mut_ptr()))? };
    // SAFETY: fstat(2) succeeded and filled it.
    let st = unsafe { st.assume_init() };
    Ok(Stat {
        len: st.st_size.max(0) as u64,
        mtime: st.st_mtime.max(0) as u64,
        regular: st.st_mode & libc::S_IFMT == libc::S_IFREG,
    })
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

/// Where stretches of a body pack start: page-aligned, so that giving one stretch's pages back
/// ([`punch_hole`]) never touches a neighbour's bytes (the kernel zeroes the partial pages at the
/// edges of a hole).
pub const PAGE: u64 = 4096;

/// A memory file holding `parts`, each starting at a multiple of [`PAGE`]: `memfd_create(2)`,
/// the bytes put in (below), then `fcntl(F_ADD_SEALS)` so that it can never grow or shrink again.
/// Returns the file and each part's offset. sendfile(2) from it sends page references instead of
/// copying the bytes through a send buffer from user space.
///
/// It is sealed against resizing, not against writes: `F_SEAL_WRITE` would also forbid
/// `fallocate(PUNCH_HOLE)`, which gives a dead stretch's memory back while the live ones stay.
/// Nothing writes to it after this returns (the mapping is gone and no descriptor is handed out).
///
/// The bytes go in through a shared `mmap(2)` marked `madvise(MADV_HUGEPAGE)`, so that the
/// memory behind a large body can be 2 MiB transparent huge pages: sendfile then hands the
/// socket a few large page fragments instead of one per 4 KiB, which cut the server's CPU for a
/// 5 MiB response by about a quarter (`docs/benchmarks.md`). Whether shmem, which backs a memfd,
/// gets huge pages is the host's choice in `/sys/kernel/mm/transparent_hugepage/shmem_enabled`:
/// `advise` honours this request, `within_size` and `always` give them anyway, `never` (the
/// usual default) gives 4 KiB pages whatever is asked. `MADV_POPULATE_WRITE` (Linux 5.14)
/// allocates the memory before the copy, so a shortage is an error here, not a `SIGBUS` in the
/// copy; where it is missing, the bytes go in with `pwrite(2)` (4 KiB pages unless the host's
/// setting is `within_size` or `always`).
pub fn memfd_pack(parts: &[&[u8]]) -> io::Result<(OwnedFd, Vec<u64>)> {
    // SAFETY: the name is a valid NUL-terminated string; the flags are valid.
    let raw = unsafe {
        syscall!(memfd_create(c"atomserve-body".as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING))?
    };
    // SAFETY: memfd_create(2) succeeded; the fd is ours alone.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut offsets = Vec::with_capacity(parts.len());
    let mut len = 0u64;
    for part in parts {
        offsets.push(len);
        len = (len + part.len() as u64).div_ceil(PAGE) * PAGE;
    }
    let len = usize::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    if len > 0 && !fill_through_mapping(fd.as_fd(), parts, &offsets, len)? {
        for (part, &at) in parts.iter().zip(&offsets) {
            pwrite_all(fd.as_fd(), part, at)?;
        }
    }
    let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
    // SAFETY: F_ADD_SEALS takes an int of seal flags on a memfd created with sealing allowed.
    unsafe { syscall!(fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals))? };
    Ok((fd, offsets))
}

/// Writes all of `buf` at `offset` with pwrite(2) (the fallback of [`memfd_pack`]).
fn pwrite_all(fd: BorrowedFd<'_>, mut buf: &[u8], mut offset: u64) -> io::Result<()> {
    while !buf.is_empty() {
        // SAFETY: `buf` is valid for `buf.len()` bytes; the fd is borrowed, so it stays open.
        match unsafe {
            syscall!(pwrite(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len(), offset as libc::off_t))
        } {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => (buf, offset) = (&buf[n as usize..], offset + n as u64),
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue, // a signal arrived first
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// `fallocate(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE)`: frees the memory behind
/// `[offset, offset + len)` of a memfd (reads of it give zeros from then on) while the file keeps
/// its size and every other stretch. Pages already handed to a socket by sendfile stay alive until
/// the socket lets go of them: the kernel counts references per page.
pub fn punch_hole(fd: BorrowedFd<'_>, offset: u64, len: u64) -> io::Result<()> {
    let mode = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
    // SAFETY: plain integers on a borrowed, open fd.
    unsafe { syscall!(fallocate(fd.as_raw_fd(), mode, offset as libc::off_t, len as libc::off_t))? };
    Ok(())
}

/// Reads exactly `buf.len()` bytes at `offset` with pread(2).
pub fn pread_exact(fd: BorrowedFd<'_>, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
    while !buf.is_empty() {
        // SAFETY: `buf` is valid and writable for `buf.len()` bytes; the fd is borrowed.
        match unsafe {
            syscall!(pread(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), offset as libc::off_t))
        } {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => {
                buf = &mut buf[n as usize..];
                offset += n as u64;
            }
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Sizes the empty memfd `fd` to `len`, and copies `parts` in at `offsets` through a
/// huge-page-advised shared mapping (see [`memfd_pack`]). `Ok(false)`: the kernel cannot populate
/// a mapping ahead (before 5.14), the file is empty again and the caller writes instead.
///
/// The file is sized up to a whole number of huge pages, so that its last stretch can be a huge
/// page too (only whole 2 MiB stretches of a mapping can). The padding is never written: with
/// 4 KiB pages it holds no memory; with huge pages it is at most 2 MiB per pack.
fn fill_through_mapping(
    fd: BorrowedFd<'_>,
    parts: &[&[u8]],
    offsets: &[u64],
    len: usize,
) -> io::Result<bool> {
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
        for (part, &at) in parts.iter().zip(offsets) {
            debug_assert!(at as usize + part.len() <= len);
            // SAFETY: the mapping is writable for `len` bytes, all of them allocated just now;
            // each part fits below `len` at its offset (`memfd_pack` laid them out); a fresh
            // mapping cannot overlap a part.
            unsafe {
                std::ptr::copy_nonoverlapping(part.as_ptr(), map.cast::<u8>().add(at as usize), part.len())
            };
        }
    }
    // SAFETY: unmaps exactly the mapping made above; nothing refers to it any more.
    unsafe { syscall!(munmap(map, padded))? };
    match populated {
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            // SAFETY: as above; back to an empty file for pwrite(2).
            unsafe { syscall!(ftruncate(fd.as_raw_fd(), 0))? };
            Ok(false)
        }
        Err(e) => Err(e), // ENOMEM and the like: no memory for this body
    }
}

#[cfg(test)]
mod tests {

    /// Both ways of opening beneath a directory refuse the same escapes: a symbolic link (to a
    /// file or a directory) and `..`. The step-by-step way is what valgrind and old kernels get.
    #[test]
    fn opening_beneath_refuses_links_and_dot_dot_with_or_without_openat2() {
        let root = std::env::temp_dir().join(format!("atomserve-beneath-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::write(root.join("a/b/f.txt"), "x").unwrap();
        std::os::unix::fs::symlink(root.join("a/b/f.txt"), root.join("link.txt")).unwrap();
        std::os::unix::fs::symlink(root.join("a"), root.join("dirlink")).unwrap();
        let dir = open_dir(&root).unwrap();
        for open in [open_beneath, open_beneath_by_steps] {
            let mut s = [0u8; 1];
            let fd = open(dir.as_fd(), Path::new("a/b/f.txt")).unwrap();
            pread_exact(fd.as_fd(), &mut s, 0).unwrap();
            assert_eq!(&s, b"x");
            let errno = |p: &str| open(dir.as_fd(), Path::new(p)).unwrap_err().raw_os_error();
            assert_eq!(errno("link.txt"), Some(libc::ELOOP));
            // openat2 says ELOOP; O_DIRECTORY | O_NOFOLLOW on a link says ENOTDIR. Both refuse.
            assert!(matches!(errno("dirlink/b/f.txt"), Some(libc::ELOOP | libc::ENOTDIR)));
            assert_eq!(errno("../etc/passwd"), Some(libc::EXDEV));
            assert_eq!(errno("a/../../x"), Some(libc::EXDEV));
        }
        std::fs::remove_dir_all(&root).unwrap();
    }
    use super::*;

    /// Bytes of memory the file holds (st_blocks), tests only.
    fn allocated(fd: BorrowedFd<'_>) -> u64 {
        let mut st = mem::MaybeUninit::<libc::stat>::uninit();
        // SAFETY: `st` is valid for writing a `struct stat`.
        unsafe { syscall!(fstat(fd.as_raw_fd(), st.as_mut_ptr())).unwrap() };
        // SAFETY: fstat(2) succeeded and filled it.
        unsafe { st.assume_init() }.st_blocks as u64 * 512
    }

    fn read(fd: BorrowedFd<'_>, at: u64, len: usize) -> Vec<u8> {
        let mut out = vec![0u8; len];
        pread_exact(fd, &mut out, at).unwrap();
        out
    }

    /// Each part goes in exactly at its page-aligned offset (also across a 2 MiB boundary, where a
    /// huge page would end), the memfd can never change size, and punching one part's pages out
    /// frees its memory and leaves its neighbours' bytes as they were.
    #[test]
    fn a_memfd_pack_holds_each_part_on_its_own_pages_and_gives_them_back_one_by_one() {
        for len in [1usize, 4096, 65_536 + 7, (2 << 20) + 4099] {
            let bytes: Vec<u8> = (0..len).map(|i| (i % 251) as u8 + 1).collect();
            let (a, b) = bytes.split_at(len / 3);
            let (fd, offsets) = memfd_pack(&[a, &[], b, a]).unwrap();
            assert!(offsets.iter().all(|o| o % PAGE == 0), "{offsets:?}");
            assert!(read(fd.as_fd(), offsets[0], a.len()) == a && read(fd.as_fd(), offsets[2], b.len()) == b);
            assert!(read(fd.as_fd(), offsets[3], a.len()) == a, "{len} bytes");
            // Padded to whole huge pages (never written, so holding no memory with small pages),
            // unless the kernel predates MADV_POPULATE_WRITE and the bytes went in with pwrite(2).
            let size = stat(fd.as_fd()).unwrap().len;
            assert!(size % PAGE == 0 && size >= offsets[3] + a.len() as u64, "{size}");
            // SAFETY: F_GET_SEALS takes no argument.
            let seals = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) };
            let want = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
            assert_eq!(seals & want, want);
            // SAFETY: a valid fd and length.
            let grown = unsafe { syscall!(ftruncate(fd.as_raw_fd(), size as libc::off_t + 4096)) };
            assert_eq!(grown.unwrap_err().raw_os_error(), Some(libc::EPERM));

            let before = allocated(fd.as_fd());
            let b_pages = (b.len() as u64).div_ceil(PAGE) * PAGE;
            punch_hole(fd.as_fd(), offsets[2], b_pages).unwrap();
            if len >= 65_536 {
                assert!(allocated(fd.as_fd()) < before, "punching freed nothing ({before} bytes)");
            }
            assert!(read(fd.as_fd(), offsets[2], b.len()).iter().all(|&x| x == 0));
            assert!(read(fd.as_fd(), offsets[0], a.len()) == a && read(fd.as_fd(), offsets[3], a.len()) == a);
        }
        let (empty, offsets) = memfd_pack(&[]).unwrap();
        assert!(offsets.is_empty());
        assert_eq!(stat(empty.as_fd()).unwrap().len, 0);
    }
}

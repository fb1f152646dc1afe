//! Resource limits: raising the soft `RLIMIT_NOFILE` to the hard limit at start-up, as nginx's
//! `worker_rlimit_nofile` does, so that the fd budget is what the administrator allowed.

use std::io;

/// Raises the soft open-file limit to the hard limit and returns the new soft limit.
pub fn raise_nofile_limit() -> io::Result<u64> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `lim` is a valid, writable rlimit.
    unsafe { syscall!(getrlimit(libc::RLIMIT_NOFILE, &mut lim))? };
    if lim.rlim_cur < lim.rlim_max {
        let want = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
        // SAFETY: `want` is a valid rlimit that only raises the soft limit up to the hard one.
        if unsafe { syscall!(setrlimit(libc::RLIMIT_NOFILE, &want)) }.is_ok() {
            lim.rlim_cur = lim.rlim_max;
        }
    }
    Ok(lim.rlim_cur as u64)
}

//! The heap's memory: giving freed pages back to the kernel (glibc's `malloc_trim(3)`), and
//! keeping transparent huge pages out of it (`prctl(PR_SET_THP_DISABLE)`).
//!
//! A load reads every file into a fresh buffer and drops it once the body is packed or shared:
//! megabytes allocated and freed on the reload thread. glibc keeps freed memory in that thread's
//! arena for reuse (and, after a large block was freed, raises its mmap threshold so that the next
//! ones come from the arena too), so without a trim RSS drifts up by a few buffers' worth over the
//! first reloads. `malloc_trim(0)` after a reload returns every free page of every arena
//! (`madvise(MADV_DONTNEED)` inside), so memory after a reload is what the snapshots hold.
//!
//! A host whose transparent huge pages are `always` (`/sys/kernel/mm/transparent_hugepage/enabled`)
//! undoes that: `khugepaged` may, at any time, replace a 2 MiB-aligned stretch of an arena that
//! holds a few live pages with one 2 MiB page, and RSS jumps by up to 2 MiB that nothing
//! allocated (its default `max_ptes_none` of 511 lets one present page of 512 be enough). glibc
//! aligns every thread's arena to 64 MiB, so each arena offers such a stretch. The server's heap is
//! small and scattered; the one memory that gains from huge pages is a memfd pack's, which asks
//! for them with `MADV_HUGEPAGE` (`sys::file::memfd_pack`). [`huge_pages_only_where_advised`]
//! makes the host's mode `madvise` for this process alone.

use std::io;

/// Returns free heap pages to the kernel (a no-op outside glibc).
pub fn release_free_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only walks the allocator's own free lists; no pointers are passed.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// `PR_THP_DISABLE_EXCEPT_ADVISED` (Linux 6.18), not yet in the `libc` crate: the second argument
/// of `PR_SET_THP_DISABLE` that keeps huge pages for mappings marked `MADV_HUGEPAGE`.
const PR_THP_DISABLE_EXCEPT_ADVISED: libc::c_ulong = 1 << 1;

/// `prctl(PR_SET_THP_DISABLE, 1, PR_THP_DISABLE_EXCEPT_ADVISED)`: from now on, and for every
/// mapping already made, this process gets transparent huge pages only where it asked with
/// `madvise(MADV_HUGEPAGE)`, neither at a page fault nor from `khugepaged`, whatever the host's
/// mode (see the module doc). Inherited across `fork(2)` and `execve(2)`. `EINVAL` before Linux
/// 6.18: the host's mode stands (disabling huge pages outright would take them from the memfd
/// packs too, which send large bodies with a quarter less CPU in them).
pub fn huge_pages_only_where_advised() -> io::Result<()> {
    // SAFETY: PR_SET_THP_DISABLE takes plain integers; it changes only this process's policy.
    unsafe {
        syscall!(prctl(
            libc::PR_SET_THP_DISABLE,
            1 as libc::c_ulong,
            PR_THP_DISABLE_EXCEPT_ADVISED,
            0 as libc::c_ulong,
            0 as libc::c_ulong
        ))?
    };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The policy holds: `PR_GET_THP_DISABLE` reads back both bits (disabled, except advised).
    /// (It changes the policy of the unit-test process only, which nothing here depends on.)
    #[test]
    fn huge_pages_stay_only_where_advised() {
        match huge_pages_only_where_advised() {
            // SAFETY: PR_GET_THP_DISABLE takes no pointers.
            Ok(()) => assert_eq!(unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) }, 3),
            // A kernel before 6.18 knows only the outright switch.
            Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EINVAL)),
        }
    }
}

//! Giving freed heap memory back to the kernel: glibc's `malloc_trim(3)`.
//!
//! A load reads every file into a fresh buffer and drops it once the body is packed or shared:
//! megabytes allocated and freed on the reload thread. glibc keeps freed memory in that thread's
//! arena for reuse (and, after a large block was freed, raises its mmap threshold so that the next
//! ones come from the arena too), so without a trim RSS drifts up by a few buffers' worth over the
//! first reloads. `malloc_trim(0)` after a reload returns every free page of every arena
//! (`madvise(MADV_DONTNEED)` inside), so memory after a reload is what the snapshots hold.

/// Returns free heap pages to the kernel (a no-op outside glibc).
pub fn release_free_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only walks the allocator's own free lists; no pointers are passed.
    unsafe {
        libc::malloc_trim(0);
    }
}

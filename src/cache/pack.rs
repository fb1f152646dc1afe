//! Large bodies in memory files, sent with sendfile(2), and given back a body at a time.
//!
//! Every cached body of at least [`ZERO_COPY_MIN`] bytes (identity or compressed) lives in a
//! memfd: sent with sendfile(2), it leaves as page references instead of being copied into the
//! socket buffer (for a 190 KiB bundle that is most of the cost of a response). The bodies one
//! build step makes (the identity bodies a load read, a batch of compressed variants) share one
//! memfd, back to back on page boundaries: one descriptor however many large files the site has,
//! and bodies smaller than a huge page can sit in huge pages too (see `sys::file::memfd_pack`).
//!
//! Each body's stretch is one [`DiskFile`], shared through an `Arc` by every snapshot that
//! serves those bytes (a reload keeps an unchanged body where it is) and by every response still
//! sending from it. When the last of them lets go, `DiskFile`'s drop punches the stretch's pages
//! out of the memfd, and when the memfd's last stretch goes, the descriptor closes. So memory
//! holds exactly the distinct bodies that some snapshot or response still uses, however many
//! reloads replaced which files: no compaction, no garbage.
//!
//! Except on a host whose shmem gets no transparent huge pages (`shmem_enabled` `never`, the
//! Debian default): there a memfd's pages are 4 KiB ones, while a regular file's page cache gets
//! large folios, and sendfile(2) of the same bytes costs less from the source file. So identity
//! bodies of [`PAGE_CACHE_MIN`] and more are then sent from the file they were read from
//! (`Backing::Source`, `--large-bodies`): measured in docs/benchmarks.md ("Large bodies").

use std::fs;
use std::io;
use std::sync::Arc;

use super::snapshot::{Backing, DiskFile};
use crate::sys::file;

/// Bodies at least this large go to a memfd and out with sendfile(2); smaller ones go out with
/// the response head in one sendmsg(2), where a copy costs less than the extra call.
pub const ZERO_COPY_MIN: usize = 64 * 1024;

/// Identity bodies from this size up are sent from their source file's page cache where shmem
/// has no huge pages. Measured (`ab.sh`, shmem `never`, 12 runs from 512 KiB to 5 MiB): medians
/// 1.06× the req/s at 0.80× the CPU per request (single runs 0.91–1.36× and 0.59–1.10×); at
/// 190 KiB no consistent gain (0.99× and 1.10× in two runs). Nothing between was measured.
pub const PAGE_CACHE_MIN: u64 = 512 * 1024;

/// Puts `bodies` in one new memfd and returns the stretch of each, in order.
pub fn pack(bodies: &[&[u8]]) -> io::Result<Vec<Arc<DiskFile>>> {
    if bodies.is_empty() {
        return Ok(Vec::new());
    }
    let (fd, offsets) = file::memfd_pack(bodies)?;
    let total: u64 = bodies.iter().map(|b| b.len() as u64).sum();
    if total >= 2 << 20 {
        warn_about_small_pages(total);
    }
    let fd = Arc::new(fd);
    Ok(bodies
        .iter()
        .zip(offsets)
        .map(|(b, offset)| {
            Arc::new(DiskFile { fd: fd.clone(), offset, len: b.len() as u64, backing: Backing::Memfd })
        })
        .collect())
}

/// Where the host decides whether shmem (a memfd's memory) may use transparent huge pages.
const SHMEM_HUGE_PAGES: &str = "/sys/kernel/mm/transparent_hugepage/shmem_enabled";

/// The host's choice for shmem huge pages (`never`, `advise`, …); `None` for a kernel without
/// transparent huge pages.
pub fn shmem_huge_pages() -> Option<String> {
    let list = fs::read_to_string(SHMEM_HUGE_PAGES).ok()?;
    selected_mode(&list).map(String::from)
}

/// Whether a memfd gets only 4 KiB pages under `mode` (what [`shmem_huge_pages`] read):
/// `never` and `deny` refuse huge pages; every other mode lets `sys::file::memfd_pack`'s
/// `MADV_HUGEPAGE` (or the mode itself) give them.
pub fn small_pages(mode: Option<&str>) -> bool {
    matches!(mode, None | Some("never" | "deny"))
}

fn warn_about_small_pages(total: u64) {
    let mode = shmem_huge_pages();
    if let Some(mode) = mode.as_deref().filter(|m| small_pages(Some(m))) {
        crate::log!(
            "{total} bytes of large bodies are in 4 KiB pages: shmem huge pages are \"{mode}\" on this \
             host; \"advise\" in {SHMEM_HUGE_PAGES} would cut the CPU of sending them (docs/deploy.md)"
        );
    }
}

/// The bracketed word of a sysfs choice list: `always [advise] never` → `advise`.
fn selected_mode(list: &str) -> Option<&str> {
    let start = list.find('[')? + 1;
    let end = start + list[start..].find(']')?;
    Some(&list[start..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_selected_sysfs_mode_is_the_bracketed_word() {
        assert_eq!(selected_mode("always within_size advise [never] deny force\n"), Some("never"));
        assert_eq!(selected_mode("[always] madvise never"), Some("always"));
        assert_eq!(selected_mode("always madvise never"), None);
    }

    #[test]
    fn only_never_deny_and_no_huge_pages_at_all_mean_small_pages() {
        for mode in [None, Some("never"), Some("deny")] {
            assert!(small_pages(mode), "{mode:?}");
        }
        for mode in ["always", "within_size", "advise", "force"] {
            assert!(!small_pages(Some(mode)), "{mode}");
        }
    }
}

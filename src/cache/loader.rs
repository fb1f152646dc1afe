//! Builds a [`Snapshot`] from the document root.
//!
//! The walk is the only place where request-visible content touches the file system, and it
//! decides once, at load time, what is servable:
//! - regular files, keyed by their path below the root (`/assets/app.js`);
//! - dotfiles and dot-directories are skipped (`.git`, `.env`, `.htpasswd` are never served);
//! - a symbolic link is followed only when its fully resolved target stays inside the root, so a
//!   link to `/etc/passwd` is skipped; directory cycles through links are cut;
//! - sockets, FIFOs and devices are skipped.
//!
//! Files larger than `--max-cached-file`, and the largest files once `--cache-budget` is spent
//! (the smallest are kept in memory first: they are the many), are not read: each is opened with
//! `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)` beneath the root and kept open, to be sent
//! with sendfile(2).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::fs;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::compress;
use super::snapshot::{DiskFile, Entry, Repr, Snapshot};
use crate::http::encoding::Coding;
use crate::http::response::{self, FileMeta};
use crate::http::{date, mime};
use crate::sync::thread;
use crate::sys::file;
use std::time::UNIX_EPOCH;

/// What to load and how.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    pub root: PathBuf,
    pub spa_fallback: bool,
    /// The most file bytes held in memory; files beyond it are served from disk.
    pub budget: u64,
    /// Files larger than this are served from disk, never held in memory.
    pub max_cached_file: u64,
    /// `Cache-Control` for files that are neither HTML nor fingerprinted assets.
    pub cache_control: String,
    /// Build gzip and brotli variants of compressible files.
    pub compress: bool,
}

/// A load that failed, with the path it failed on.
#[derive(Debug)]
pub struct LoadError {
    pub path: PathBuf,
    pub error: io::Error,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.error)
    }
}

impl std::error::Error for LoadError {}

/// Walks `opts.root` and loads every servable file into a new snapshot.
pub fn load(opts: &LoadOptions) -> Result<Snapshot, LoadError> {
    let root = fs::canonicalize(&opts.root).map_err(at(&opts.root))?;
    if !fs::metadata(&root).map_err(at(&root))?.is_dir() {
        return Err(LoadError {
            path: root,
            error: io::Error::new(io::ErrorKind::InvalidInput, "not a directory"),
        });
    }
    let mut walk = Walk { root: root.clone(), candidates: Vec::new(), visited: HashSet::new() };
    walk.visited.insert(root.clone());
    walk.dir(&root, &mut b"".to_vec())?;
    let found = read_or_open(&root, walk.candidates, opts)?;
    let mut entries = build_entries(&found, &opts.cache_control, opts.compress);
    let packed = pack_large_bodies(&found, &mut entries);
    let mut snapshot = Snapshot::new(opts.spa_fallback, &opts.cache_control);
    for (found, entry) in found.into_iter().zip(entries) {
        snapshot.insert(found.key, entry);
    }
    if packed {
        snapshot.add_descriptor();
    }
    Ok(snapshot)
}

/// Bodies at least this large are kept in a sealed memfd and sent with sendfile(2); smaller ones
/// go out with the response head in one sendmsg(2), where a copy costs less than the extra call.
const ZERO_COPY_MIN: usize = 64 * 1024;

/// Moves every cached body of at least [`ZERO_COPY_MIN`] bytes (identity or compressed) into one
/// sealed memfd, back to back, and points each representation at its stretch of it. Sent with
/// sendfile(2), a body leaves as page references instead of being copied into the socket buffer
/// (for a 190 KiB bundle that is most of the cost of a response). One memfd for all of them,
/// rather than one per body, holds one descriptor however many large files the site has, and
/// lets bodies smaller than a huge page sit in huge pages too (see `sys::file::sealed_memfd`).
///
/// A large identity body was left out of its representation by [`entry`] (it is copied from
/// `found` straight into the memfd, never into a second heap buffer); if the memfd cannot be
/// made, it is copied there now and every body goes out with sendmsg. Returns whether the memfd
/// was made.
fn pack_large_bodies(found: &[Found], entries: &mut [Entry]) -> bool {
    // (entry, representation: 0 identity, 1 gzip, 2 br) of every large body, in memfd order.
    let mut large: Vec<(usize, usize)> = Vec::new();
    let mut parts: Vec<&[u8]> = Vec::new();
    for (i, (f, e)) in found.iter().zip(entries.iter()).enumerate() {
        for (which, repr) in [Some(&e.identity), e.gzip.as_ref(), e.br.as_ref()].into_iter().enumerate() {
            let Some(repr) = repr else { continue };
            let body = if which == 0 { &f.body[..] } else { &repr.body[..] };
            if repr.file.is_none() && body.len() >= ZERO_COPY_MIN {
                large.push((i, which));
                parts.push(body);
            }
        }
    }
    if large.is_empty() {
        return false;
    }
    let lens: Vec<u64> = parts.iter().map(|p| p.len() as u64).collect();
    let made = file::sealed_memfd(&parts);
    drop(parts);
    let fd = match made {
        Ok(fd) => Arc::new(fd),
        Err(e) => {
            crate::log!("no memfd for {} large bodies, kept on the heap: {e}", large.len());
            for &(i, which) in &large {
                if which == 0 {
                    entries[i].identity.body = Arc::from(&found[i].body[..]);
                }
            }
            return false;
        }
    };
    let total: u64 = lens.iter().sum();
    if total >= 2 << 20 {
        if let Some(mode @ ("never" | "deny")) = shmem_huge_pages().as_deref() {
            crate::log!(
                "{total} bytes of large bodies are in 4 KiB pages: shmem huge pages are \"{mode}\" on this \
                 host; \"advise\" in {SHMEM_HUGE_PAGES} would cut the CPU of sending them (docs/deploy.md)"
            );
        }
    }
    let mut offset = 0;
    for (&(i, which), &len) in large.iter().zip(&lens) {
        let e = &mut entries[i];
        let repr = match which {
            0 => Some(&mut e.identity),
            1 => e.gzip.as_mut(),
            _ => e.br.as_mut(),
        };
        if let Some(repr) = repr {
            repr.file = Some(Arc::new(DiskFile { fd: fd.clone(), offset, len, memory: true }));
            repr.body = Arc::from(&[][..]);
        }
        offset += len;
    }
    true
}

/// Where the host decides whether shmem (a memfd's memory) may use transparent huge pages.
const SHMEM_HUGE_PAGES: &str = "/sys/kernel/mm/transparent_hugepage/shmem_enabled";

/// The host's shmem huge-page mode (`never`, `advise`, `within_size`, …), if it can be read.
fn shmem_huge_pages() -> Option<String> {
    selected_mode(&fs::read_to_string(SHMEM_HUGE_PAGES).ok()?).map(str::to_owned)
}

/// The bracketed word of a sysfs choice list: `always [advise] never` → `advise`.
fn selected_mode(list: &str) -> Option<&str> {
    let start = list.find('[')? + 1;
    let end = start + list[start..].find(']')?;
    Some(&list[start..end])
}

/// A servable file the walk found, not read yet.
struct Candidate {
    key: Vec<u8>,
    path: PathBuf,
    len: u64,
    modified: u64,
}

/// A file read into memory, or opened to be sent from disk; not yet turned into an entry.
struct Found {
    key: Vec<u8>,
    body: Vec<u8>,
    modified: u64,
    disk: Option<Arc<DiskFile>>,
}

/// Decides which files stay in memory — none over `max_cached_file`, and the smallest first
/// until the budget is spent — then reads those and opens the rest beneath the root.
fn read_or_open(
    root: &Path,
    candidates: Vec<Candidate>,
    opts: &LoadOptions,
) -> Result<Vec<Found>, LoadError> {
    let mut by_size: Vec<usize> = (0..candidates.len()).collect();
    by_size.sort_by_key(|&i| candidates[i].len);
    let mut in_memory = vec![false; candidates.len()];
    let mut used = 0u64;
    for i in by_size {
        let len = candidates[i].len;
        if len <= opts.max_cached_file && used + len <= opts.budget {
            in_memory[i] = true;
            used += len;
        }
    }
    let on_disk = in_memory.iter().filter(|&&m| !m).count();
    let root_fd = if on_disk > 0 { Some(file::open_dir(root).map_err(at(root))?) } else { None };
    let mut found = Vec::with_capacity(candidates.len());
    for (c, memory) in candidates.into_iter().zip(in_memory) {
        match (&root_fd, memory) {
            (Some(dir), false) => {
                let disk = open_beneath(root, dir.as_fd(), &c.path).map_err(at(&c.path))?;
                let (len, modified) = file::size_and_mtime(disk.as_fd()).map_err(at(&c.path))?;
                found.push(Found {
                    key: c.key,
                    body: Vec::new(),
                    modified,
                    disk: Some(Arc::new(DiskFile { fd: Arc::new(disk), offset: 0, len, memory: false })),
                });
            }
            _ => {
                let body = fs::read(&c.path).map_err(at(&c.path))?;
                found.push(Found { key: c.key, body, modified: c.modified, disk: None });
            }
        }
    }
    if on_disk > 0 {
        crate::log!(
            "{on_disk} files over --max-cached-file ({} bytes) or the --cache-budget ({} bytes) are sent from disk",
            opts.max_cached_file,
            opts.budget
        );
    }
    Ok(found)
}

/// Opens `path` (below `root`, possibly through links the walk approved) by its canonical path
/// relative to the root, with openat2: the kernel refuses to leave the root or follow a link,
/// so a tree changed since the walk cannot smuggle an outside file in.
fn open_beneath(root: &Path, dir: BorrowedFd<'_>, path: &Path) -> io::Result<OwnedFd> {
    let canonical = fs::canonicalize(path)?;
    let relative = canonical.strip_prefix(root).map_err(|_| {
        io::Error::new(io::ErrorKind::PermissionDenied, "the file now resolves outside the root")
    })?;
    file::open_beneath(dir, relative)
}

/// Turns found files into entries — hashing, rendering heads and compressing — spread over the
/// available cores (brotli at quality 11 dominates the load time of a JS bundle).
fn build_entries(found: &[Found], cache_control: &str, compress_on: bool) -> Vec<Entry> {
    // Precompressed siblings shipped by the build: `app.js.br` next to `app.js`.
    let index: HashMap<&[u8], usize> = found.iter().enumerate().map(|(i, f)| (f.key.as_slice(), i)).collect();
    let sibling = |f: &Found, ext: &[u8]| {
        let key = [f.key.as_slice(), ext].concat();
        index.get(key.as_slice()).map(|&i| found[i].body.as_slice())
    };
    let threads = thread::available_parallelism().map_or(1, |n| n.get()).min(found.len().max(1));
    let mut slots: Vec<Option<Entry>> = (0..found.len()).map(|_| None).collect();
    let chunk = found.len().div_ceil(threads).max(1);
    thread::scope(|scope| {
        for (files, out) in found.chunks(chunk).zip(slots.chunks_mut(chunk)) {
            let sibling = &sibling;
            scope.spawn(move || {
                for (f, slot) in files.iter().zip(out.iter_mut()) {
                    let content_type = mime::for_path(&f.key);
                    let variants = if compress_on && f.disk.is_none() {
                        compress::variants(content_type, &f.body, sibling(f, b".br"), sibling(f, b".gz"))
                    } else {
                        compress::Variants::default()
                    };
                    *slot = Some(entry(f, content_type, cache_control_for(&f.key, cache_control), variants));
                }
            });
        }
    });
    slots.into_iter().map(|e| e.expect("every file built")).collect()
}

/// Renders every representation of one file.
fn entry(
    f: &Found,
    content_type: &'static str,
    cache_control: String,
    variants: compress::Variants,
) -> Entry {
    let last_modified = date::format(f.modified);
    let vary = variants.br.is_some() || variants.gzip.is_some();
    let etag = match &f.disk {
        Some(disk) => format!("\"{:x}-m{:x}\"", disk.len, f.modified).into_bytes(),
        None => format!("\"{:x}-{:016x}\"", f.body.len(), fnv1a(&f.body)).into_bytes(),
    };
    // `body` is what the representation keeps on the heap (nothing for a file on disk or a body
    // bound for the memfd), `len` what Content-Length says.
    let repr = |body: &[u8], len: u64, coding: Coding| {
        // Each coding is a different representation, so it needs its own entity tag.
        // …computed from its own bytes, so a changed shipped `.br` or another compressor
        // version can never give different bytes the same strong tag.
        let etag = match coding.token() {
            None => etag.clone(),
            Some(token) => format!("\"{:x}-{:016x}-{token}\"", body.len(), fnv1a(body)).into_bytes(),
        };
        let m = FileMeta {
            content_type,
            encoding: coding.token(),
            vary,
            len,
            etag: &etag,
            last_modified: &last_modified,
            cache_control: &cache_control,
        };
        let head = response::render_file_head(&m).into();
        let not_modified = response::render_not_modified_head(&m).into();
        let etag = etag.into_boxed_slice();
        Repr { head, not_modified, body: body.into(), etag, file: None }
    };
    // A large identity body goes from `f.body` straight into the snapshot's memfd
    // (`pack_large_bodies`); copying it into the heap first would only raise the load's peak.
    let large = f.body.len() >= ZERO_COPY_MIN;
    let identity_len = f.disk.as_ref().map_or(f.body.len() as u64, |d| d.len);
    let mut identity = repr(if large { &[] } else { &f.body }, identity_len, Coding::Identity);
    if let Some(disk) = &f.disk {
        identity.file = Some(disk.clone());
    }
    Entry {
        br: variants.br.as_deref().map(|b| repr(b, b.len() as u64, Coding::Br)),
        gzip: variants.gzip.as_deref().map(|b| repr(b, b.len() as u64, Coding::Gzip)),
        identity,
        content_type,
        modified: f.modified,
        cache_control: cache_control.into(),
    }
}

struct Walk {
    root: PathBuf,
    candidates: Vec<Candidate>,
    /// Canonical directories already walked, to cut cycles made with symbolic links.
    visited: HashSet<PathBuf>,
}

impl Walk {
    fn dir(&mut self, dir: &Path, key: &mut Vec<u8>) -> Result<(), LoadError> {
        let mut names: Vec<_> =
            fs::read_dir(dir).map_err(at(dir))?.collect::<Result<_, _>>().map_err(at(dir))?;
        names.sort_by_key(|e| e.file_name());
        for dirent in names {
            let name = dirent.file_name();
            if name.as_bytes().starts_with(b".") {
                continue; // dotfiles are never served
            }
            let path = dirent.path();
            let mut meta = fs::symlink_metadata(&path).map_err(at(&path))?;
            if meta.file_type().is_symlink() {
                let target = match fs::canonicalize(&path) {
                    Ok(t) if t.starts_with(&self.root) => t,
                    Ok(_) => {
                        crate::log!("skipping {}: symbolic link leads outside the root", path.display());
                        continue;
                    }
                    Err(e) => {
                        crate::log!("skipping {}: {e}", path.display());
                        continue;
                    }
                };
                meta = fs::metadata(&target).map_err(at(&target))?;
                if meta.is_dir() && !self.visited.insert(target) {
                    continue; // a cycle, or a second route to a directory already loaded
                }
            }
            let len = key.len();
            key.push(b'/');
            key.extend_from_slice(name.as_bytes());
            if meta.is_dir() {
                self.dir(&path, key)?;
            } else if meta.is_file() {
                let modified = meta.modified().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok());
                self.candidates.push(Candidate {
                    key: key.clone(),
                    path,
                    len: meta.len(),
                    modified: modified.map_or(0, |d| d.as_secs()),
                });
            }
            key.truncate(len);
        }
        Ok(())
    }
}

/// Wraps an I/O error with the path it happened on.
fn at(path: &Path) -> impl FnOnce(io::Error) -> LoadError + '_ {
    move |error| LoadError { path: path.to_path_buf(), error }
}

/// FNV-1a, 64 bits: a simple, stable hash for entity tags (the same bytes give the same tag on
/// every build and every machine, unlike std's `DefaultHasher`, whose algorithm may change).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// `Cache-Control` that fits a Vite build by default:
/// - HTML (`index.html` and friends) must be revalidated on every load — it names the current
///   bundles: `no-cache` (cached, but always checked with `If-None-Match`, cheap with ETags);
/// - fingerprinted assets (`/assets/name-HASH.ext`, HASH ≥ 8 of `[A-Za-z0-9_-]`, as Vite names
///   them) never change under that name: `public, max-age=31536000, immutable`;
/// - anything else (`favicon.svg`, `robots.txt`): `default` (`--cache-control`).
pub fn cache_control_for(key: &[u8], default: &str) -> String {
    let name = key.rsplit(|&c| c == b'/').next().unwrap_or(key);
    if mime::for_path(key).starts_with("text/html") {
        return "no-cache".into();
    }
    if key.starts_with(b"/assets/") && is_fingerprinted(name) {
        return "public, max-age=31536000, immutable".into();
    }
    default.into()
}

fn is_fingerprinted(name: &[u8]) -> bool {
    let stem = match name.iter().position(|&c| c == b'.') {
        Some(dot) => &name[..dot],
        None => return false,
    };
    let Some(dash) = stem.iter().rposition(|&c| c == b'-') else { return false };
    let hash = &stem[dash + 1..];
    // Bundlers' hashes are 8+ characters of base64url or hex; a plain word (`datepicker`) is not:
    // require a digit or an upper-case letter as well.
    dash > 0
        && (8..=64).contains(&hash.len())
        && hash.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
        && hash.iter().any(|&c| c.is_ascii_digit() || c.is_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads `len` bytes at `offset` of a descriptor with pread(2).
    fn read_at(file: &DiskFile) -> Vec<u8> {
        let mut out = vec![0u8; file.len as usize];
        let f = fs::File::from(file.fd.try_clone().unwrap());
        std::os::unix::fs::FileExt::read_exact_at(&f, &mut out, file.offset).unwrap();
        out
    }

    /// Every large body, identity and compressed, lands in one memfd at its own offset with its
    /// exact bytes; small bodies stay on the heap; the snapshot counts one descriptor.
    #[test]
    fn large_bodies_share_one_memfd() {
        let root = std::env::temp_dir().join(format!("atomserve-pack-{}", std::process::id()));
        fs::create_dir_all(&root).unwrap();
        // Incompressible (no variants) and compressible (a large gzip variant too) bodies.
        let noise: Vec<u8> = (0..200_000u64).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        // 4 bits of entropy a byte: compresses about 2×, so its variants are large bodies too.
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let text: Vec<u8> = (0..300_000)
            .map(|_| {
                (x ^= x << 13, x ^= x >> 7, x ^= x << 17);
                b"abcdefghijklmnop"[(x >> 60) as usize]
            })
            .collect();
        fs::write(root.join("a.bin"), &noise).unwrap();
        fs::write(root.join("b.txt"), &text[..]).unwrap();
        fs::write(root.join("small.txt"), b"hello").unwrap();
        let opts = LoadOptions {
            root: root.clone(),
            spa_fallback: false,
            budget: 1 << 30,
            max_cached_file: 1 << 30,
            cache_control: "no-cache".into(),
            compress: true,
        };
        let snapshot = load(&opts).unwrap();
        fs::remove_dir_all(&root).unwrap();
        let a = snapshot.get(b"/a.bin").unwrap().identity.file.as_ref().unwrap();
        let b = snapshot.get(b"/b.txt").unwrap().identity.file.as_ref().unwrap();
        assert!(Arc::ptr_eq(&a.fd, &b.fd) && a.memory && b.memory);
        assert_ne!(a.offset, b.offset);
        assert!(read_at(a) == noise && read_at(b) == text);
        let gzip = snapshot.get(b"/b.txt").unwrap().gzip.as_ref().expect("a gzip variant");
        let gz = gzip.file.as_ref().expect("a large variant in the memfd");
        assert!(Arc::ptr_eq(&gz.fd, &a.fd) && gz.len >= ZERO_COPY_MIN as u64);
        let mut plain = Vec::new();
        io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&read_at(gz)[..]), &mut plain).unwrap();
        assert!(plain == text);
        assert!(snapshot.get(b"/a.bin").unwrap().identity.body.is_empty());
        let small = &snapshot.get(b"/small.txt").unwrap().identity;
        assert!(small.file.is_none() && &small.body[..] == b"hello");
        assert_eq!(snapshot.descriptors(), 1);
        let entry = snapshot.get(b"/b.txt").unwrap();
        let variants = entry.gzip.as_ref().map_or(0, Repr::len) + entry.br.as_ref().map_or(0, Repr::len);
        assert_eq!(snapshot.bytes(), (noise.len() + text.len() + 5) as u64 + variants);
    }

    #[test]
    fn the_selected_sysfs_mode_is_the_bracketed_word() {
        assert_eq!(selected_mode("always within_size advise [never] deny force\n"), Some("never"));
        assert_eq!(selected_mode("[always] madvise never"), Some("always"));
        assert_eq!(selected_mode("always madvise never"), None);
    }

    #[test]
    fn cache_control_fits_vite() {
        let d = "public, max-age=3600";
        assert_eq!(cache_control_for(b"/index.html", d), "no-cache");
        assert_eq!(cache_control_for(b"/docs/index.html", d), "no-cache");
        assert_eq!(cache_control_for(b"/assets/index-ThlbQ9On.js", d), "public, max-age=31536000, immutable");
        assert_eq!(cache_control_for(b"/assets/hero-CLDdwZDr.png", d), "public, max-age=31536000, immutable");
        assert_eq!(cache_control_for(b"/assets/style-Zz9.css", d), d); // too short to be a hash
        assert_eq!(cache_control_for(b"/favicon-ABCDEFGH.svg", d), d); // not under /assets/
        assert_eq!(cache_control_for(b"/assets/logo.svg", d), d);
        assert_eq!(cache_control_for(b"/assets/jquery-ui-datepicker.js", d), d); // a word, not a hash
        assert_eq!(
            cache_control_for(b"/assets/vendor-3f2a9c1e.js", d),
            "public, max-age=31536000, immutable"
        );
    }

    #[test]
    fn etag_hash_is_stable() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}

//! Builds a [`Snapshot`] from the document root.
//!
//! The walk is the only place where request-visible content touches the file system, and it
//! decides once, at load time, what is servable:
//! - regular files, keyed by their path below the root (`/assets/app.js`);
//! - dotfiles and dot-directories are skipped (`.git`, `.env`, `.htpasswd` are never served);
//! - a symbolic link is followed only when its fully resolved target stays inside the root, so a
//!   link to `/etc/passwd` is skipped; directory cycles through links are cut;
//! - sockets, FIFOs and devices are skipped.

use std::collections::HashSet;
use std::fmt;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::snapshot::{Entry, Snapshot};
use crate::http::response::{self, FileMeta};
use crate::http::{date, mime};
use std::time::UNIX_EPOCH;

/// What to load and how.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    pub root: PathBuf,
    pub spa_fallback: bool,
    /// The most body bytes a snapshot may hold; a larger root fails to load.
    pub budget: u64,
    /// `Cache-Control` for files that are neither HTML nor fingerprinted assets.
    pub cache_control: String,
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
    let mut walk = Walk {
        root: root.clone(),
        budget: opts.budget,
        cache_control: opts.cache_control.clone(),
        snapshot: Snapshot::new(opts.spa_fallback),
        visited: HashSet::new(),
    };
    walk.visited.insert(root.clone());
    walk.dir(&root, &mut b"".to_vec())?;
    Ok(walk.snapshot)
}

struct Walk {
    root: PathBuf,
    budget: u64,
    cache_control: String,
    snapshot: Snapshot,
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
                        eprintln!(
                            "atomserve: skipping {}: symbolic link leads outside the root",
                            path.display()
                        );
                        continue;
                    }
                    Err(e) => {
                        eprintln!("atomserve: skipping {}: {e}", path.display());
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
                if self.snapshot.bytes() + meta.len() > self.budget {
                    let why = format!("the root holds more than --cache-budget ({} bytes)", self.budget);
                    return Err(LoadError { path, error: io::Error::new(io::ErrorKind::OutOfMemory, why) });
                }
                let body = fs::read(&path).map_err(at(&path))?;
                let content_type = mime::for_path(key);
                let modified = meta.modified().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok());
                let modified = modified.map_or(0, |d| d.as_secs());
                let etag = format!("\"{:x}-{:016x}\"", body.len(), fnv1a(&body)).into_bytes();
                let cache_control = cache_control_for(key, &self.cache_control);
                let m = FileMeta {
                    content_type,
                    len: body.len() as u64,
                    etag: &etag,
                    last_modified: &date::format(modified),
                    cache_control: &cache_control,
                };
                let entry = Entry {
                    head: response::render_file_head(&m).into(),
                    not_modified: response::render_not_modified_head(&m).into(),
                    body: body.into(),
                    content_type,
                    etag: etag.into_boxed_slice(),
                    modified,
                    cache_control: cache_control.into(),
                };
                self.snapshot.insert(key.clone(), entry);
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
    dash > 0 && hash.len() >= 8 && hash.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }

    #[test]
    fn etag_hash_is_stable() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}

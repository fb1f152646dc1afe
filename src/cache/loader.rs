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
use crate::http::{mime, response};

/// What to load and how.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    pub root: PathBuf,
    pub spa_fallback: bool,
    /// The most body bytes a snapshot may hold; a larger root fails to load.
    pub budget: u64,
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
                let head = response::render_file_head(content_type, body.len()).into();
                self.snapshot.insert(key.clone(), Entry { head, body: body.into(), content_type });
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

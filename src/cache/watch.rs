//! `--watch`: reload when anything under the root changes, debounced, and never miss a change.
//!
//! A build tool rewrites many files in a burst (Vite empties `dist/` and writes a dozen files);
//! reloading on the first event would load a half-written tree. The watcher waits until the tree
//! has been quiet for [`QUIET`] (100 ms) before asking the reload thread for one reload, and then
//! adds watches for any directories the burst created. Everything runs on its own thread, blocked
//! in `poll(2)` on the inotify fd; workers are never involved.
//!
//! What keeps a change from being lost:
//! - the watches are in place **before** the first walk starts ([`Watcher::new`] runs before the
//!   initial load), so a file replaced while the server starts produces an event;
//! - a request that arrives during a load waits in the reload channel and causes one more load
//!   after it (see [`super::reload`]);
//! - new directories are watched before the reload that reads them is requested, so a file written
//!   into one after it was watched has an event, and one written before it is read by that reload;
//! - an `IN_Q_OVERFLOW` (the kernel dropped events) leads to a reload and a fresh watch of every
//!   directory; so does the root itself being moved or deleted (`mv dist dist.old && mv dist.new
//!   dist`): the watches are added again by path, which now names the new directory.

use std::fs;
use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::reload::{ReloadHandle, Trigger};
use crate::sync::thread;
use crate::sys::inotify::{self, Inotify};
use crate::sys::poll::{self, PollFd};

/// How long the tree must stay quiet before a reload.
pub const QUIET: Duration = Duration::from_millis(100);

/// Watches on every directory under a root, not yet read by a thread.
pub struct Watcher {
    ino: Inotify,
    root: PathBuf,
}

impl Watcher {
    /// Watches `root` and every directory under it (dot-directories excepted). Call it before
    /// the first load, so that nothing changed during that load goes unseen.
    pub fn new(root: PathBuf) -> io::Result<Watcher> {
        let ino = Inotify::new()?;
        watch_tree(&ino, &root)?;
        Ok(Watcher { ino, root })
    }

    /// Starts the watching thread, which asks `reload` for a reload after each quiet burst.
    pub fn spawn(self, reload: ReloadHandle) -> io::Result<()> {
        thread::Builder::new().name("atomserve-watch".into()).spawn(move || self.run(&reload))?;
        Ok(())
    }

    fn run(&self, reload: &ReloadHandle) {
        let root = &self.root;
        loop {
            // Sleep until something changes… (a signal delivered to this thread wakes poll with
            // nothing to read: that is not a change, so sleep again rather than reload).
            let mut overflow = match self.wait(None) {
                Ok(Some(d)) => d.overflow,
                Ok(None) => continue,
                Err(e) => {
                    crate::log!("--watch: stopped watching {}: {e} (SIGHUP still reloads)", root.display());
                    return;
                }
            };
            // …then until nothing has changed for QUIET.
            while let Ok(Some(d)) = self.wait(Some(QUIET)) {
                overflow |= d.overflow;
            }
            if overflow {
                crate::log!("--watch: the kernel's event queue overflowed; reloading everything");
            }
            if let Err(e) = watch_tree(&self.ino, root) {
                crate::log!("--watch: cannot watch {}: {e}", root.display());
            }
            reload.request(Trigger::Watch);
        }
    }

    /// Waits for events (draining them); `Ok(None)` when `timeout` passed with none.
    fn wait(&self, timeout: Option<Duration>) -> io::Result<Option<inotify::Drained>> {
        let mut fds = [PollFd::readable(self.ino.as_fd())];
        if poll::poll(&mut fds, timeout)? == 0 {
            return Ok(None);
        }
        let drained = self.ino.drain()?;
        Ok((drained.bytes > 0).then_some(drained))
    }
}

/// Adds a watch for `dir` and every directory below it (following the loader's rules: no dot
/// directories). Adding a watch again by path is cheap, and makes a directory that replaced the
/// root (or one of its subdirectories) watched.
fn watch_tree(ino: &Inotify, dir: &Path) -> io::Result<()> {
    ino.watch(dir, inotify::CHANGES)?;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if name.as_encoded_bytes().starts_with(b".") {
            continue;
        }
        if entry.file_type()?.is_dir() {
            watch_tree(ino, &entry.path())?;
        }
    }
    Ok(())
}

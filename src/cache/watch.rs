//! `--watch`: reload when anything under the root changes, debounced.
//!
//! A build tool rewrites many files in a burst (Vite empties `dist/` and writes a dozen files);
//! reloading on the first event would load a half-written tree. The watcher waits until the tree
//! has been quiet for [`QUIET`] (100 ms) before asking the reload thread for one reload, and then
//! adds watches for any directories the burst created. Everything runs on its own thread, blocked
//! in `poll(2)` on the inotify fd; workers are never involved.

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

/// Starts watching `root` (every directory under it, dot-directories excepted).
pub fn spawn(root: PathBuf, reload: ReloadHandle) -> io::Result<()> {
    let ino = Inotify::new()?;
    watch_tree(&ino, &root)?;
    thread::Builder::new().name("atomserve-watch".into()).spawn(move || run(&ino, &root, &reload))?;
    Ok(())
}

fn run(ino: &Inotify, root: &Path, reload: &ReloadHandle) {
    loop {
        // Sleep until something changes… (a signal delivered to this thread wakes poll with
        // nothing to read: that is not a change, so sleep again rather than reload).
        match wait(ino, None) {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => {
                crate::log!("--watch: stopped watching {}: {e} (SIGHUP still reloads)", root.display());
                return;
            }
        }
        // …then until nothing has changed for QUIET.
        while matches!(wait(ino, Some(QUIET)), Ok(true)) {}
        if let Err(e) = watch_tree(ino, root) {
            crate::log!("--watch: cannot watch {}: {e}", root.display());
        }
        reload.request(Trigger::Watch);
    }
}

/// Waits for events (draining them); `Ok(false)` when `timeout` passed with none.
fn wait(ino: &Inotify, timeout: Option<Duration>) -> io::Result<bool> {
    let mut fds = [PollFd::readable(ino.as_fd())];
    if poll::poll(&mut fds, timeout)? == 0 {
        return Ok(false);
    }
    Ok(ino.drain()? > 0)
}

/// Adds a watch for `dir` and every directory below it (following the loader's rules: no dot
/// directories).
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

//! The in-memory file cache: an immutable [`Snapshot`] of the document root, built in two phases
//! — identity bodies by the [`loader`], then compressed [`variants`] in the background, by the
//! [`reload`] thread — published behind an atomic pointer in a [`SnapshotCell`] and looked up by
//! normalised URL path. Requests never touch the file system.

pub mod swap;

#[cfg(not(atomserve_loom))]
pub mod compress;
#[cfg(not(atomserve_loom))]
pub mod content;
#[cfg(not(atomserve_loom))]
pub mod loader;
#[cfg(not(atomserve_loom))]
pub mod pack;
#[cfg(not(atomserve_loom))]
pub mod reload;
#[cfg(not(atomserve_loom))]
pub mod snapshot;
#[cfg(not(atomserve_loom))]
pub mod variants;
#[cfg(not(atomserve_loom))]
pub mod watch;

#[cfg(not(atomserve_loom))]
pub use loader::{load, load_identity, LoadError, LoadOptions, LoadReport, Reuse, SiteFiles};
#[cfg(not(atomserve_loom))]
pub use snapshot::{Backing, Body, Composition, DiskFile, Entry, Lookup, Repr, Snapshot};
pub use swap::{Guard, Reader, SnapshotCell};

//! The in-memory file cache: an immutable [`Snapshot`] of the document root, built by the
//! [`loader`], published behind an atomic pointer in a [`SnapshotCell`] and looked up by
//! normalised URL path. Requests never touch the file system.

pub mod swap;

#[cfg(not(atomserve_loom))]
pub mod compress;
#[cfg(not(atomserve_loom))]
pub mod loader;
#[cfg(not(atomserve_loom))]
pub mod reload;
#[cfg(not(atomserve_loom))]
pub mod snapshot;
#[cfg(not(atomserve_loom))]
pub mod watch;

#[cfg(not(atomserve_loom))]
pub use loader::{load, LoadError, LoadOptions};
#[cfg(not(atomserve_loom))]
pub use snapshot::{Composition, DiskFile, Entry, Lookup, Repr, Snapshot};
pub use swap::{Guard, Reader, SnapshotCell};

//! The in-memory file cache: an immutable [`Snapshot`] of the document root, built by the
//! [`loader`] and looked up by normalised URL path. Requests never touch the file system.

pub mod loader;
pub mod snapshot;

pub use loader::{load, LoadError, LoadOptions};
pub use snapshot::{Entry, Lookup, Snapshot};

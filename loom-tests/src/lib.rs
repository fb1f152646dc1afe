//! loom models live in `tests/`, one file per protocol; this crate has no code of its own.

//! loom models of atomserve's atomic protocols, run against the real code in `src/` compiled
//! with `--cfg atomserve_loom` (see `src/sync.rs`). The models live in `tests/`, one file per
//! protocol and one model per invariant; run them with `make loom`.

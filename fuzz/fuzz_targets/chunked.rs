//! `http::chunked::scan` on arbitrary bytes against the reference model shared with
//! tests/properties.rs: the first byte picks `--max-body`, the rest is the body. Where the model
//! finds a body within the limit the scanner finds the same end; where the model finds it
//! malformed the scanner refuses it; 413 only for what does not fit.

#![no_main]

#[path = "../../tests/common/chunked_model.rs"]
mod chunked_model;

use atomserve::http::chunked::{scan, Scan};
use atomserve::http::response::Status;
use chunked_model::{model, Model};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&first, buf)) = data.split_first() else { return };
    let max = if first == 255 { 1 << 20 } else { u64::from(first) * 4 };
    let (real, reference) = (scan(buf, max), model(buf));
    let ok = match (real, reference) {
        (Scan::Complete(n), Model::Complete(m)) => n == m && n as u64 <= max,
        (Scan::Invalid(Status::PayloadTooLarge), Model::Complete(m)) => m as u64 > max,
        (Scan::Complete(_), _) => false,
        (Scan::Invalid(Status::BadRequest), Model::Malformed) => true,
        (Scan::Invalid(Status::PayloadTooLarge), Model::Malformed | Model::Partial) => true,
        (Scan::Partial, Model::Partial) => buf.len() as u64 <= max,
        _ => false,
    };
    assert!(ok, "scan {real:?} vs model {reference:?} (max {max})");
});

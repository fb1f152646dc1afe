//! `http::chunked::scan` on arbitrary bytes against the reference model shared with
//! tests/properties.rs: the first byte picks `--max-body`, the rest is the body. Where the model
//! finds a body within the limit the scanner finds the same end; where the model finds it
//! malformed the scanner refuses it; 413 only for what does not fit.

#![no_main]

#[path = "../../tests/common/chunked_model.rs"]
#[allow(dead_code)] // `encode` is the property test's
mod chunked_model;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&first, buf)) = data.split_first() else { return };
    let max = if first == 255 { 1 << 20 } else { u64::from(first) * 4 };
    if let Err(e) = chunked_model::agrees(buf, max) {
        panic!("{e}");
    }
});

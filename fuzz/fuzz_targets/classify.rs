//! The classifier reads pasted text and whole files, line by line.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = cordon::intake::classify::classify(&text);
    let _ = cordon::intake::classify::classify_lines(&text);
});

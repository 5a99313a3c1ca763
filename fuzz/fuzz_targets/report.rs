//! Scanner reports of every format, detected automatically, as
//! `cordon respond --report FILE` reads them.
#![no_main]

use cordon::intake::report::{parse, Format, ParseOptions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = parse(data, Format::Auto, &ParseOptions::default());
});

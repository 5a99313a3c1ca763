//! roster.toml and allowed_signers, the two text files of the authority
//! policy that people edit by hand.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = cordon::policy::roster::parse(text, "roster.toml");
        let _ = cordon::policy::signers::parse(text, "allowed_signers");
    }
});

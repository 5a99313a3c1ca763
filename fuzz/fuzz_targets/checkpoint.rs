//! Signed checkpoints come from outside (`log verify --checkpoint FILE`), as
//! do verifier keys (`--key`).
#![no_main]

use std::sync::OnceLock;

use cordon::audit::checkpoint::{open, Checkpoint, Verifier};
use libfuzzer_sys::fuzz_target;

fn verifier() -> &'static Verifier {
    static V: OnceLock<Verifier> = OnceLock::new();
    V.get_or_init(|| {
        Verifier::parse("PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW")
            .expect("reference key")
    })
}

fuzz_target!(|data: &[u8]| {
    // Nothing signed by the reference key has this log's origin, so no input
    // may open.
    assert!(open(data, verifier(), "fuzz").is_err());
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(v) = Verifier::parse(text) {
            assert_eq!(Verifier::parse(&v.encode()).expect("round trip"), v);
        }
        if let Ok(cp) = Checkpoint::parse(text, "fuzz") {
            assert_eq!(
                Checkpoint::parse(&cp.body(), "fuzz").expect("round trip"),
                cp
            );
        }
    }
});

//! Plans are read from the state directory and from `--plan FILE`: any bytes
//! must give a plan or an error, never a panic; a plan that parses must
//! re-encode to bytes that parse to the same plan.
#![no_main]

use cordon::plan::Plan;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(plan) = Plan::from_bytes(data, None) {
        let again = plan
            .to_canonical_bytes()
            .expect("a parsed plan must encode");
        let back = Plan::from_bytes(&again, None).expect("an encoded plan must parse");
        assert_eq!(
            back.to_canonical_bytes().expect("re-encode"),
            again,
            "canonical encoding is not stable"
        );
    }
});

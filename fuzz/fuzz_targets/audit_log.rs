//! Audit log lines: `log verify` streams whatever is in the file. Any bytes
//! must give a verdict, and the checkpoint scan must agree with it.
#![no_main]

use cordon::audit::checkpoint::scan_reader;
use cordon::audit::{verify_reader, VerifyStatus};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let report = verify_reader(data).expect("reading from memory cannot fail");
    let scan = scan_reader(data, Some(1)).expect("reading from memory cannot fail");
    assert_eq!(scan.report, report);
    if matches!(report.status, VerifyStatus::Intact) {
        assert_eq!(scan.size, report.records);
    }
});

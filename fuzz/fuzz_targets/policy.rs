//! The whole policy directory as `cordon` loads it (Cedar policy, schema,
//! roster, allowed_signers): the fuzzed bytes replace the Cedar policy and,
//! split at the first NUL, the roster, next to the shipped files.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

fn dir() -> &'static (tempfile::TempDir, PathBuf) {
    static DIR: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    DIR.get_or_init(|| {
        let shipped = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../policies");
        let d = tempfile::tempdir().expect("tempdir");
        for f in cordon::policy::FILES {
            std::fs::copy(shipped.join(f), d.path().join(f)).expect("copy shipped policy");
        }
        let p = d.path().to_path_buf();
        (d, p)
    })
}

fuzz_target!(|data: &[u8]| {
    let (_, d) = dir();
    let (cedar, roster) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], Some(&data[i + 1..])),
        None => (data, None),
    };
    std::fs::write(d.join("authority.cedar"), cedar).expect("write");
    let shipped_roster = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../policies/roster.toml");
    match roster {
        Some(r) => std::fs::write(d.join("roster.toml"), r).expect("write"),
        None => {
            std::fs::copy(&shipped_roster, d.join("roster.toml")).expect("copy");
        }
    }
    let _ = cordon::policy::load(d);
});

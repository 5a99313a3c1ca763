//! Kill the process (SIGKILL) at each of five points of each step of a
//! five-step plan, then resume: exactly one outcome per step, each target
//! changed at most once, and the audit log verifies.

use std::os::unix::process::ExitStatusExt;

use crate::support::Env;

const POINTS: [&str; 5] = [
    "before-intent",
    "after-intent",
    "after-call",
    "before-outcome",
    "after-outcome",
];
const ITEMS: [&str; 5] = ["i1", "i2", "i3", "i4", "i5"];

fn crash_and_resume(point: &str, step: &str) {
    let env = Env::new();
    let id = env.plan_test(&ITEMS, &[]);
    let o = env
        .cmd()
        .args(["apply", &id, "--concurrency", "1"])
        .env("CORDON_CRASHPOINT", format!("{point}:{step}"))
        .output()
        .unwrap();
    assert_eq!(
        o.status.signal(),
        Some(9),
        "{point}:{step}: the process was not killed (CORDON_CRASHPOINT needs a build with --features cordon/crashpoints, as scripts/test makes): {}",
        String::from_utf8_lossy(&o.stderr)
    );
    env.ok(&["apply", &id]);
    let recs = env.records();
    for (i, item) in ITEMS.iter().enumerate() {
        let sid = format!("s{}", i + 1);
        let outcomes = recs
            .iter()
            .filter(|r| r["kind"] == "outcome" && r["step"] == sid.as_str())
            .count();
        assert_eq!(
            outcomes, 1,
            "{point}:{step}: step {sid} has {outcomes} outcomes"
        );
        let changes = env.items()[item]["changes"].as_u64().unwrap_or(0);
        assert_eq!(
            changes, 1,
            "{point}:{step}: item {item} changed {changes} times"
        );
    }
    let v = env.run(&["log", "verify"]);
    assert!(
        v.status.success(),
        "{point}:{step}: {}",
        String::from_utf8_lossy(&v.stdout)
    );
}

#[test]
fn sigkill_at_every_point_of_every_step_then_resume() {
    for step in ["s1", "s2", "s3", "s4", "s5"] {
        for point in POINTS {
            crash_and_resume(point, step);
        }
    }
}

//! Issue 16 item 6: `cordon verify PLAN` checks again, later, what a plan
//! contained, polling within a stated deadline, records each result, and says
//! "not yet dead" while a credential still works. IAM's propagation delay is
//! played by peers/faultproxy/proxy.py's `lag` mode (the key's UpdateAccessKey
//! is acknowledged at once and reaches moto only 12 s later), since moto
//! itself is immediately consistent.

use std::time::Instant;

use crate::fire::Proxy;
use crate::peers::{aws_cmd, key_statuses, no_canary, peer, seed_aws};
use crate::support::env_with_signer;

fn json(o: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|_| {
        panic!(
            "{}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    })
}

fn key_step(v: &serde_json::Value) -> &serde_json::Value {
    v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["action"] == "aws:disable-access-key")
        .unwrap()
}

#[test]
fn issue_16_verify_rechecks_a_key_that_was_not_yet_dead_and_records_it() {
    let (env, signer) = env_with_signer();
    let user = format!("reverify-{}", std::process::id());
    let (key_id, secret, _) = seed_aws(&user);
    let lag = Proxy::start(
        &peer("CORDON_TEST_AWS_ENDPOINT"),
        &[
            "--mode",
            "lag",
            "--lag-ms",
            "12000",
            "--match",
            "Action=UpdateAccessKey",
            "--fail-first",
            "1",
        ],
    );
    let applied = Instant::now();
    let o = aws_cmd(&env)
        .env("CORDON_AWS_ENDPOINT_URL", &lag.url)
        .env("CORDON_AWS_VERIFY_DEADLINE_SECS", "1")
        .env("LEAKED", &secret)
        .args([
            "--json",
            "revoke",
            "aws-key",
            &key_id,
            "--secret-env",
            "LEAKED",
            "--as",
            "amara",
            "--key",
        ])
        .arg(&signer)
        .output()
        .unwrap();
    let v = json(&o);
    let plan = v["plan"].as_str().unwrap().to_owned();
    let step = key_step(&v);
    assert_eq!(step["outcome"]["status"], "done", "{v:#}");
    assert_eq!(step["verification"]["status"], "not-verified", "{v:#}");
    assert!(
        step["verification"]["detail"]
            .as_str()
            .unwrap()
            .contains("not yet dead"),
        "{v:#}"
    );

    // Checked again at once, with a deadline shorter than the lag: still not dead, said so.
    let early = aws_cmd(&env)
        .env("LEAKED", &secret)
        .args([
            "--json",
            "verify",
            &plan,
            "--secret-env",
            "LEAKED",
            "--deadline",
            "2",
        ])
        .output()
        .unwrap();
    assert!(
        applied.elapsed().as_secs() < 11,
        "the machine is too slow for this test's lag: the early check came after the change"
    );
    let e = json(&early);
    assert_eq!(early.status.code(), Some(4), "{e:#}");
    let k = key_step(&e);
    assert_eq!(k["before"]["status"], "not-verified", "{e:#}");
    assert_eq!(k["verification"]["status"], "not-verified", "{e:#}");
    assert!(
        k["verification"]["detail"]
            .as_str()
            .unwrap()
            .contains("not yet dead"),
        "{e:#}"
    );
    assert!(key_statuses(&user).contains(&format!("('{key_id}', 'Active')")));

    // Checked again with a deadline past the lag: polled until refused, then dead.
    let later = aws_cmd(&env)
        .env("LEAKED", &secret)
        .args([
            "--json",
            "verify",
            &plan,
            "--secret-env",
            "LEAKED",
            "--deadline",
            "60",
        ])
        .output()
        .unwrap();
    let l = json(&later);
    assert_eq!(later.status.code(), Some(0), "{l:#}");
    let k = key_step(&l);
    assert_eq!(k["verification"]["status"], "dead", "{l:#}");
    assert!(
        k["verification"]["detail"]
            .as_str()
            .unwrap()
            .contains("probes over"),
        "dead only after polling through the lag: {l:#}"
    );
    assert!(key_statuses(&user).contains(&format!("('{key_id}', 'Inactive')")));

    // Both re-checks are in the audit log, after the apply's own verify record.
    let recs = env.records();
    let verifies: Vec<&serde_json::Value> = recs
        .iter()
        .filter(|r| r["kind"] == "verify" && r["action"] == "aws:disable-access-key")
        .collect();
    assert_eq!(verifies.len(), 3, "{verifies:#?}");
    assert_eq!(verifies[1]["verification"]["status"], "not-verified");
    assert!(verifies[1]["message"]
        .as_str()
        .unwrap()
        .contains("re-checked by `cordon verify`"));
    assert_eq!(verifies[2]["verification"]["status"], "dead");
    // `status` and the incident replay see the latest verification.
    no_canary(
        &env,
        &secret,
        &[
            &o.stdout,
            &o.stderr,
            &early.stdout,
            &later.stdout,
            &later.stderr,
        ],
    );
    assert!(env.run(&["log", "verify"]).status.success());
}

#[test]
fn issue_16_verify_of_a_plan_nothing_was_contained_by_says_so_and_changes_nothing() {
    let (env, _signer) = env_with_signer();
    let id = env.plan_test(&["never-applied"], &[]);
    let o = env.run(&["--json", "verify", &id, "--deadline", "1"]);
    let v = json(&o);
    assert_eq!(o.status.code(), Some(1), "{v:#}");
    assert!(v["steps"][0]["skipped"]
        .as_str()
        .unwrap()
        .contains("never run"));
    assert!(!env
        .records()
        .iter()
        .any(|r| r["kind"] == "verify" || r["kind"] == "intent"));
    // A deadline out of range is a usage error, before anything.
    let bad = env.run(&["verify", &id, "--deadline", "0"]);
    assert_eq!(bad.status.code(), Some(2));
    // Applied, it verifies dead and records it.
    env.ok(&["apply", &id, "--as", "amara"]);
    let o = env.run(&["--json", "verify", &id, "--as", "amara"]);
    let v = json(&o);
    assert_eq!(o.status.code(), Some(0), "{v:#}");
    assert_eq!(v["steps"][0]["verification"]["status"], "dead");
    assert_eq!(v["steps"][0]["checks"], 1);
    assert_eq!(
        env.records()
            .iter()
            .filter(|r| r["kind"] == "verify")
            .count(),
        2
    );
}

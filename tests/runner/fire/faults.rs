//! Faults injected by peers/faultproxy/proxy.py between cordon and the peers,
//! aimed (`--match`) at the one call that changes state: IAM `UpdateAccessKey`
//! through moto, `POST /credentials/revoke` through Prism. The proxy's
//! `matched` counter is how many change requests cordon sent, and
//! `matched_forwarded` how many reached the peer.
//!
//! (The plain `Throttling` 400 on the first three AWS calls is covered by
//! `peers::throttling_between_cordon_and_moto_is_retried_to_completion`.)
//!
//! Timeouts: the AWS connector's per-call limit is configurable
//! (`CORDON_AWS_TIMEOUT_SECS`, at least 1 s), so the timeout case is tested
//! with a 1 s limit and an answer held back 3 s after the change was made.
//! The GitHub connector's limit (`GithubConfig::request_timeout`, 30 s) has
//! no environment override, so a GitHub timeout is not tested here: it would
//! cost 30 s+ of CI per case; the code path (a transport error after sending)
//! is the same one the reset and drop cases drive.

use std::time::{Duration, Instant};

use super::{plant_token, revoke_requests, seed_keys, statuses, token_live, Proxy};
use crate::peers::{aws_cmd, peer};
use crate::support::{env_with_signer, Env};

fn json_of(o: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}):\n{}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    })
}

/// One leaked AWS key, planned (dry run, signed by amara) directly against moto.
fn aws_plan(name: &str) -> (Env, String, String, String) {
    let (env, key) = env_with_signer();
    let (user, key_id, _secret) = seed_keys(&format!("{name}-{}", std::process::id()), 1)
        .pop()
        .unwrap();
    let o = aws_cmd(&env)
        .args([
            "--json",
            "revoke",
            "aws-key",
            &key_id,
            "--dry-run",
            "--as",
            "amara",
            "--key",
        ])
        .arg(&key)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let plan = json_of(&o)["id"].as_str().unwrap().to_owned();
    (env, plan, user, key_id)
}

/// Apply an AWS plan through a fault proxy; returns the first step's report,
/// the proxy's stats and the wall time.
fn aws_apply_through(
    name: &str,
    proxy_args: &[&str],
    extra_env: &[(&str, &str)],
) -> (
    serde_json::Value,
    serde_json::Value,
    Duration,
    String,
    String,
) {
    let (env, plan, user, key_id) = aws_plan(name);
    let proxy = Proxy::start(&peer("CORDON_TEST_AWS_ENDPOINT"), proxy_args);
    let t = Instant::now();
    let mut c = aws_cmd(&env);
    c.args(["--json", "apply", &plan])
        .env("CORDON_AWS_ENDPOINT_URL", &proxy.url);
    for (k, v) in extra_env {
        c.env(k, v);
    }
    let o = c.output().unwrap();
    let took = t.elapsed();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{name}:\n{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let step = json_of(&o)["steps"][0].clone();
    let st = statuses(&[&user]);
    assert_eq!(
        st.get(&key_id).map(String::as_str),
        Some("Inactive"),
        "{name}: {st:?}"
    );
    assert!(env.run(&["log", "verify"]).status.success());
    (step, proxy.stats(), took, user, key_id)
}

const UPDATE: &str = "Action=UpdateAccessKey";

#[test]
fn fire_fault_aws_429_with_retry_after_is_retried_to_completion() {
    let (step, stats, took, ..) = aws_apply_through(
        "fault-429",
        &[
            "--mode",
            "throttle-429",
            "--match",
            UPDATE,
            "--fail-first",
            "2",
            "--retry-after",
            "1",
        ],
        &[],
    );
    assert_eq!(step["outcome"]["status"], "done", "{step:#}");
    assert_eq!(step["attempts"], 3, "{step:#}");
    assert_eq!(stats["matched"], 3, "{stats}");
    assert_eq!(
        stats["matched_forwarded"], 1,
        "exactly one change reached moto: {stats}"
    );
    // Retry-After: 1 was honoured before each of the two retries.
    assert!(took >= Duration::from_secs(2), "{took:?}");
}

#[test]
fn fire_fault_aws_503_on_reads_and_the_change_is_retried_to_completion() {
    // The first four requests of the run (reads) fail with 503 ...
    let (step, stats, ..) = aws_apply_through(
        "fault-503-reads",
        &["--mode", "503", "--fail-first", "4"],
        &[],
    );
    assert_eq!(step["outcome"]["status"], "done", "{step:#}");
    assert_eq!(stats["faults"], 4, "{stats}");
    // ... and the change itself twice.
    let (step, stats, ..) = aws_apply_through(
        "fault-503-change",
        &["--mode", "503", "--match", UPDATE, "--fail-first", "2"],
        &[],
    );
    assert_eq!(step["outcome"]["status"], "done", "{step:#}");
    assert_eq!(step["attempts"], 3, "{step:#}");
    assert_eq!(stats["matched_forwarded"], 1, "{stats}");
}

#[test]
fn fire_fault_aws_connection_reset_on_the_change_is_re_read_and_retried() {
    let (step, stats, ..) = aws_apply_through(
        "fault-reset",
        &["--mode", "reset", "--match", UPDATE, "--fail-first", "1"],
        &[],
    );
    assert_eq!(step["outcome"]["status"], "done", "{step:#}");
    // The reset request never reached moto; the retry did, once.
    assert_eq!(stats["matched"], 2, "{stats}");
    assert_eq!(stats["matched_forwarded"], 1, "{stats}");
}

#[test]
fn fire_fault_aws_response_dropped_after_the_change_is_confirmed_by_a_re_read() {
    let (step, stats, ..) = aws_apply_through(
        "fault-drop",
        &[
            "--mode",
            "drop-after-forward",
            "--match",
            UPDATE,
            "--fail-first",
            "1",
        ],
        &[],
    );
    assert_eq!(step["outcome"]["status"], "done", "{step:#}");
    let detail = step["outcome"]["detail"].as_str().unwrap_or("");
    assert!(detail.contains("re-reading"), "{step:#}");
    // The ambiguous answer was followed by a read, not by a second change.
    assert_eq!(stats["matched"], 1, "{stats}");
    assert_eq!(stats["matched_forwarded"], 1, "{stats}");
    assert_eq!(step["attempts"], 1, "{step:#}");
}

#[test]
fn fire_fault_aws_timeout_after_the_change_is_confirmed_by_a_re_read() {
    let (step, stats, took, ..) = aws_apply_through(
        "fault-timeout",
        &[
            "--mode",
            "slow",
            "--slow-ms",
            "3000",
            "--match",
            UPDATE,
            "--fail-first",
            "1",
        ],
        &[("CORDON_AWS_TIMEOUT_SECS", "1")],
    );
    assert_eq!(step["outcome"]["status"], "done", "{step:#}");
    assert!(
        step["outcome"]["detail"]
            .as_str()
            .unwrap_or("")
            .contains("re-reading"),
        "{step:#}"
    );
    assert_eq!(stats["matched"], 1, "{stats}");
    assert_eq!(stats["matched_forwarded"], 1, "{stats}");
    // Timed out at the 1 s limit, not after the 3 s the answer was held back.
    assert!(took < Duration::from_secs(30), "{took:?}");
}

/// A leaked GitHub token revoked through a fault proxy in front of Prism.
fn github_through(
    name: &str,
    proxy_args: &[&str],
) -> (serde_json::Value, serde_json::Value, String) {
    let (env, key) = env_with_signer();
    let tag = format!("{name}-{}", std::process::id());
    let tok = plant_token("ghp_", &tag, &tag);
    let o = env
        .cmd()
        .args([
            "--json",
            "revoke",
            "github-token",
            "--env",
            "LEAKED",
            "--dry-run",
            "--as",
            "amara",
            "--key",
        ])
        .arg(&key)
        .env("LEAKED", &tok)
        .env("CORDON_GITHUB_API_URL", peer("CORDON_TEST_GITHUB_URL"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let plan = json_of(&o)["id"].as_str().unwrap().to_owned();
    let proxy = Proxy::start(&peer("CORDON_TEST_GITHUB_URL"), proxy_args);
    let o = env
        .cmd()
        .args(["--json", "apply", &plan, "--secret-env", "LEAKED"])
        .env("LEAKED", &tok)
        .env("CORDON_GITHUB_API_URL", &proxy.url)
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{name}:\n{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let step = json_of(&o)["steps"][0].clone();
    assert!(!token_live(&tok), "{name}: the token still works");
    assert_eq!(step["verification"]["status"], "dead", "{step:#}");
    assert!(env.run(&["log", "verify"]).status.success());
    (step, proxy.stats(), tag)
}

const REVOKE: &str = "POST /credentials/revoke";

#[test]
fn fire_fault_github_429_and_503_on_the_revocation_are_retried() {
    for mode in ["throttle-429", "503"] {
        let (step, stats, tag) = github_through(
            &format!("fault-gh-{mode}"),
            &[
                "--mode",
                mode,
                "--match",
                REVOKE,
                "--fail-first",
                "2",
                "--retry-after",
                "1",
            ],
        );
        assert_eq!(step["outcome"]["status"], "done", "{mode}: {step:#}");
        assert_eq!(stats["matched"], 3, "{mode}: {stats}");
        assert_eq!(stats["matched_forwarded"], 1, "{mode}: {stats}");
        assert_eq!(
            revoke_requests(&tag),
            1,
            "{mode}: the registry saw one revocation"
        );
    }
}

#[test]
fn fire_fault_github_reset_and_dropped_answer_on_the_revocation() {
    // Reset before forwarding: nothing happened; the batch is sent again.
    let (step, stats, tag) = github_through(
        "fault-gh-reset",
        &["--mode", "reset", "--match", REVOKE, "--fail-first", "1"],
    );
    assert_eq!(step["outcome"]["status"], "done", "{step:#}");
    assert_eq!(stats["matched"], 2, "{stats}");
    assert_eq!(revoke_requests(&tag), 1, "{stats}");
    // The revocation was applied and its answer lost: the retry probes the
    // token first (GET /user answers 401) and sends no second revocation.
    let (step, stats, tag) = github_through(
        "fault-gh-drop",
        &[
            "--mode",
            "drop-after-forward",
            "--match",
            REVOKE,
            "--fail-first",
            "1",
        ],
    );
    assert_eq!(step["outcome"]["status"], "already-contained", "{step:#}");
    assert_eq!(stats["matched"], 1, "{stats}");
    assert_eq!(stats["matched_forwarded"], 1, "{stats}");
    assert_eq!(revoke_requests(&tag), 1);
}

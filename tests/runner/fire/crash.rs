//! SIGKILL at each of the five crash points of each step of an eight-step plan
//! against the real peers (3 AWS access keys to disable through moto, each with
//! the cut-off of the sessions it minted, 2 GitHub tokens to revoke through Prism
//! and the token registry), then resume with
//! `cordon apply`: exactly one outcome per step, at most one state change per
//! step seen by the peers, `log verify` passes. Plus kills at seeded random
//! moments from outside the process.
//!
//! What the peers are asked: every `UpdateAccessKey` passes a fault proxy in
//! `none` mode that counts them (`--match Action=UpdateAccessKey`), and the
//! registry counts `POST /credentials/revoke` requests per tag (one tag per
//! token). The GitHub steps run as one batch (`execute_batch`): the crash
//! points fire per step around the single batched call, so `after-call:s7`
//! means the batch request was answered and s7's outcome not yet written.

use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command as Std, Stdio};
use std::time::{Duration, Instant};

use super::{plant_token, revoke_requests, seed, seed_keys, statuses, token_live, Proxy, Rng};
use crate::peers::{aws_env, peer};
use crate::support::{env_with_signer, Env};

// Issue 16: each key's plan ends the sessions it minted too (`aws:revoke-user-sessions`),
// so the plan grew from five steps to eight.
const STEPS: [&str; 8] = ["s1", "s2", "s3", "s4", "s5", "s6", "s7", "s8"];

struct Run {
    env: Env,
    key: std::path::PathBuf,
    proxy: Proxy,
    users: Vec<(String, String, String)>,
    tokens: Vec<(String, String)>,
    report: String,
    plan: String,
}

/// A cordon command (std, so that it can be killed from outside) pointed at
/// moto through the counting proxy and at Prism.
fn cordon(run: &Run) -> Std {
    let mut c = Std::new(assert_cmd::cargo::cargo_bin("cordon"));
    for (k, _) in std::env::vars() {
        if k.starts_with("CORDON_") || k == "RUST_LOG" || k == "CI" {
            c.env_remove(k);
        }
    }
    c.env("CORDON_HOME", &run.env.home)
        .env("NO_COLOR", "1")
        .env("CORDON_DEMO", "1")
        .envs(aws_env(&run.proxy.url))
        .env("CORDON_GITHUB_API_URL", peer("CORDON_TEST_GITHUB_URL"));
    c
}

/// Start `c` (its stdout and stderr as the caller set them) and hand it `stdin`.
fn spawn_with_stdin(c: &mut Std, stdin: &str) -> std::process::Child {
    let mut child = c.stdin(Stdio::piped()).spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child
}

fn run_with_stdin(mut c: Std, stdin: &str) -> std::process::Output {
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    spawn_with_stdin(&mut c, stdin).wait_with_output().unwrap()
}

/// Seed the peers and plan the eight steps with `respond --dry-run`.
fn prepare(name: &str) -> Run {
    let (env, key) = env_with_signer();
    let id = format!("{name}-{}", std::process::id());
    let users = seed_keys(&id, 3);
    let tokens: Vec<(String, String)> = ["a", "b"]
        .iter()
        .map(|t| {
            let tag = format!("{id}-{t}");
            let tok = plant_token("ghp_", &tag, &tag);
            (tag, tok)
        })
        .collect();
    let mut report = String::new();
    for (_, k, s) in &users {
        report.push_str(&format!(
            "AWS_ACCESS_KEY_ID={k}\nAWS_SECRET_ACCESS_KEY={s}\n\n"
        ));
    }
    for (_, t) in &tokens {
        report.push_str(&format!("GITHUB_TOKEN={t}\n\n"));
    }
    let proxy = Proxy::start(
        &peer("CORDON_TEST_AWS_ENDPOINT"),
        &["--mode", "none", "--match", "Action=UpdateAccessKey"],
    );
    let mut run = Run {
        env,
        key,
        proxy,
        users,
        tokens,
        report,
        plan: String::new(),
    };
    let mut c = cordon(&run);
    c.args([
        "--json",
        "respond",
        "--report",
        "-",
        "--dry-run",
        "--as",
        "amara",
        "--key",
    ])
    .arg(&run.key);
    let o = run_with_stdin(c, &run.report.clone());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "{name}: respond --dry-run ({e}): {}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    });
    run.plan = v["plan"]
        .as_str()
        .unwrap_or_else(|| panic!("{v:#}"))
        .to_owned();
    let steps: serde_json::Value =
        serde_json::from_str(&run.env.ok(&["--json", "plan", "show", &run.plan])).unwrap();
    let actions: Vec<&str> = steps["plan"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["action"].as_str().unwrap())
        .collect();
    if name.ends_with("-s1") || name.ends_with("-0") {
        eprintln!("{name}: steps {actions:?}");
    }
    assert_eq!(
        actions.len(),
        STEPS.len(),
        "{name}: an eight-step plan was expected: {steps:#}"
    );
    run
}

fn apply(run: &Run, crash: Option<&str>) -> Std {
    let mut c = cordon(run);
    c.args([
        "--json",
        "apply",
        &run.plan,
        "--concurrency",
        "1",
        "--secrets-stdin",
    ]);
    if let Some(p) = crash {
        c.env("CORDON_CRASHPOINT", p);
    }
    c
}

/// After the crash: resume, then check every promise.
fn resume_and_check(run: &Run, what: &str) {
    let o = run_with_stdin(apply(run, None), &run.report);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{what}: resume failed:\n{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let recs = run.env.records();
    for sid in STEPS {
        let outcomes: Vec<_> = recs
            .iter()
            .filter(|r| {
                r["kind"] == "outcome" && r["plan"] == run.plan.as_str() && r["step"] == sid
            })
            .collect();
        assert_eq!(outcomes.len(), 1, "{what}: step {sid}: {outcomes:#?}");
        let status = outcomes[0]["outcome"]["status"].as_str().unwrap_or("");
        assert!(
            status == "done" || status == "already-contained",
            "{what}: step {sid}: {outcomes:#?}"
        );
    }
    // AWS: every key disabled, by exactly one UpdateAccessKey each (three in all, all forwarded).
    let users: Vec<&str> = run.users.iter().map(|u| u.0.as_str()).collect();
    let st = statuses(&users);
    for (_, k, _) in &run.users {
        assert_eq!(
            st.get(k).map(String::as_str),
            Some("Inactive"),
            "{what}: {st:?}"
        );
    }
    let stats = run.proxy.stats();
    assert_eq!(
        stats["matched"], 3,
        "{what}: UpdateAccessKey requests: {stats}"
    );
    assert_eq!(stats["matched_forwarded"], 3, "{what}: {stats}");
    // GitHub: each token revoked by exactly one revocation request, and dead.
    for (tag, tok) in &run.tokens {
        assert_eq!(
            revoke_requests(tag),
            1,
            "{what}: revocation requests for {tag}"
        );
        assert!(!token_live(tok), "{what}: token of {tag} still works");
    }
    let v = run.env.run(&["log", "verify"]);
    assert!(
        v.status.success(),
        "{what}: log verify: {}",
        String::from_utf8_lossy(&v.stdout)
    );
}

fn crash_at(point: &str) {
    for step in STEPS {
        let t = Instant::now();
        let run = prepare(&format!("crash-{point}-{step}"));
        let o = run_with_stdin(apply(&run, Some(&format!("{point}:{step}"))), &run.report);
        assert_eq!(
            o.status.signal(),
            Some(9),
            "{point}:{step}: the process was not killed (CORDON_CRASHPOINT needs a build with --features cordon/crashpoints, as scripts/test makes):\n{}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        resume_and_check(&run, &format!("{point}:{step}"));
        eprintln!("crash {point}:{step}: {:?}", t.elapsed());
    }
}

#[test]
fn fire_crash_before_intent_of_every_step() {
    crash_at("before-intent");
}
#[test]
fn fire_crash_after_intent_of_every_step() {
    crash_at("after-intent");
}
#[test]
fn fire_crash_after_call_of_every_step() {
    crash_at("after-call");
}
#[test]
fn fire_crash_before_outcome_of_every_step() {
    crash_at("before-outcome");
}
#[test]
fn fire_crash_after_outcome_of_every_step() {
    crash_at("after-outcome");
}

/// SIGKILL from outside at a seeded random moment of the apply (which may
/// also land before the first step or after the last), then resume.
#[test]
fn fire_crash_at_random_moments() {
    let mut rng = Rng(seed("fire_crash_at_random_moments"));
    let runs: u64 = std::env::var("CORDON_FIRE_RANDOM_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    for i in 0..runs {
        let run = prepare(&format!("crash-random-{i}"));
        let delay = Duration::from_millis(50 + rng.below(4000));
        let mut c = apply(&run, None);
        c.stdout(Stdio::null()).stderr(Stdio::null());
        let mut child = spawn_with_stdin(&mut c, &run.report);
        std::thread::sleep(delay);
        let _ = child.kill(); // SIGKILL
        let st = child.wait().unwrap();
        eprintln!(
            "random kill {i}: after {delay:?}: {}",
            if st.signal() == Some(9) {
                "killed"
            } else {
                "had already finished"
            }
        );
        resume_and_check(&run, &format!("random kill {i} after {delay:?}"));
    }
}

/// SIGKILL while the one batched `POST /credentials/revoke` is in flight: a
/// fault proxy in front of Prism forwards it (GitHub revokes both tokens) and
/// holds the answer back, and the process dies waiting for it, the most
/// ambiguous moment of the batch path. The resume must read the tokens back
/// (dead), record them as already contained and send no second revocation.
#[test]
fn fire_crash_while_the_batched_revocation_is_in_flight() {
    let run = prepare("crash-in-flight");
    let gh = Proxy::start(
        &peer("CORDON_TEST_GITHUB_URL"),
        &[
            "--mode",
            "slow",
            "--slow-ms",
            "120000",
            "--match",
            "POST /credentials/revoke",
            "--fail-first",
            "1",
        ],
    );
    let mut c = apply(&run, None);
    c.env("CORDON_GITHUB_API_URL", &gh.url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = spawn_with_stdin(&mut c, &run.report);
    let t = Instant::now();
    loop {
        let stats = gh.stats();
        if stats["matched_forwarded"] == 1 {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "the revocation never reached the peer: {stats}"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "apply ended before its revocation was sent: {stats}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Forwarded and applied upstream; the answer is still held by the proxy.
    for (tag, tok) in &run.tokens {
        assert_eq!(revoke_requests(tag), 1, "{tag}");
        assert!(
            !token_live(tok),
            "{tag}: the forwarded revocation did not land"
        );
    }
    child.kill().unwrap(); // SIGKILL
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.signal(), Some(9), "apply was not killed");
    let recs = run.env.records();
    let github_outcomes = recs
        .iter()
        .filter(|r| {
            r["kind"] == "outcome"
                && r["plan"] == run.plan.as_str()
                && (r["step"] == "s7" || r["step"] == "s8")
        })
        .count();
    assert_eq!(
        github_outcomes, 0,
        "the batch was answered before the kill: the test did not hit the window"
    );
    resume_and_check(&run, "killed with the batched revocation in flight");
    // The GitHub steps come after the three keys' two steps each (issue 16: they were s4, s5).
    for sid in ["s7", "s8"] {
        let outcome = run
            .env
            .records()
            .into_iter()
            .find(|r| r["kind"] == "outcome" && r["plan"] == run.plan.as_str() && r["step"] == sid)
            .unwrap();
        assert_eq!(
            outcome["outcome"]["status"], "already-contained",
            "{sid}: the resume must find the token dead, not revoke it again: {outcome:#}"
        );
    }
    assert_eq!(gh.stats()["matched"], 1, "one revocation through the proxy");
}

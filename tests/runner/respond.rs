//! `cordon respond` and `cordon pending`: a scanner report in, contained and
//! verified credentials out, against moto and Prism; and bad reports that
//! must lead to nothing at all.

use std::process::Command as Std;

use crate::peers::{aws_cmd, aws_env, key_statuses, no_canary, peer, seed_aws};
use crate::support::{env_with_signer, Env};

const CI_SECRET: &str = "cordon-example-ci-secret-replace-me";

fn plant_github_token(seed: &str) -> String {
    let tok = cordon::intake::classify::make_classic_token("ghp_", seed);
    let reg = peer("CORDON_TEST_GITHUB_REGISTRY_URL");
    let st = Std::new("curl")
        .args(["-fsS", "-o", "/dev/null", "-X", "POST", &format!("{reg}/tokens"), "-H", "content-type: application/json", "-d"])
        .arg(format!("{{\"tag\":\"respond\",\"login\":\"octo-bot\",\"scopes\":[\"repo\"],\"token\":\"{tok}\"}}"))
        .status()
        .unwrap();
    assert!(st.success());
    tok
}

/// A leaked file with an AWS key pair, a GitHub token and a look-alike token
/// whose checksum is wrong; returned with the report path.
fn leaked_report(env: &Env, key_id: &str, secret: &str, tok: &str) -> std::path::PathBuf {
    let bad = format!("{}0", &tok[..tok.len() - 1]);
    let bad = if bad == tok {
        format!("{}1", &tok[..tok.len() - 1])
    } else {
        bad
    };
    let p = env.dir.path().join("leaked.env");
    std::fs::write(
        &p,
        format!("AWS_ACCESS_KEY_ID={key_id}\nAWS_SECRET_ACCESS_KEY={secret}\nGITHUB_TOKEN={tok}\nOLD_TOKEN={bad}\n"),
    )
    .unwrap();
    p
}

fn run_json(c: &mut assert_cmd::Command) -> (i32, serde_json::Value, Vec<u8>, Vec<u8>) {
    let o = c.output().unwrap();
    let v = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}):\n{}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    });
    (o.status.code().unwrap_or(-1), v, o.stdout, o.stderr)
}

#[test]
fn respond_as_ci_contains_every_credential_in_the_report_and_proves_it_dead() {
    let env = Env::new();
    let user = format!("respond-ci-{}", std::process::id());
    let (key_id, secret, spare) = seed_aws(&user);
    let tok = plant_github_token(&user);
    let report = leaked_report(&env, &key_id, &secret, &tok);
    let (code, v, out, err) = run_json(
        aws_cmd(&env)
            .args(["--json", "respond", "--report"])
            .arg(&report)
            .env("CI", "true")
            .env("CORDON_CI_SECRET", CI_SECRET)
            .env("CORDON_GITHUB_API_URL", peer("CORDON_TEST_GITHUB_URL")),
    );
    assert_eq!(code, 0, "{v:#}\n{}", String::from_utf8_lossy(&err));
    assert_eq!(v["requester"], "ci");
    assert_eq!(v["requester_verified"], true);
    let f = v["findings"].as_array().unwrap();
    assert_eq!(f.len(), 3, "{v:#}");
    assert_eq!(f[0]["credential_id"], key_id.as_str());
    assert_eq!(f[0]["status"], "contained");
    assert_eq!(f[1]["status"], "contained");
    assert_eq!(f[2]["status"], "not-containable");
    assert!(f[2]["detail"].as_str().unwrap().contains("checksum"));
    // Time to dead: both credentials verified refused, each with its time;
    // the not-containable finding has none.
    let t = &v["time_to_dead"];
    assert!(t["credentials"].as_u64().unwrap() >= 2, "{t}");
    assert_eq!(t["dead"], t["credentials"], "{t}");
    let last = t["last_ms"].as_u64().unwrap();
    assert!(t["first_ms"].as_u64().unwrap() <= last, "{t}");
    for row in &f[..2] {
        let ms = row["dead_after_ms"].as_u64().unwrap();
        assert!(ms <= last, "{row}");
    }
    assert!(f[2].get("dead_after_ms").is_none());
    // The key is Inactive, the spare untouched; the token is dead at GitHub.
    let st = key_statuses(&user);
    assert!(st.contains(&format!("('{key_id}', 'Inactive')")), "{st}");
    assert!(st.contains(&format!("('{spare}', 'Active')")), "{st}");
    // The finding record came first, with provenance and no secret.
    let recs = env.records();
    let first = recs.iter().position(|r| r["kind"] == "finding").unwrap();
    let plan = recs.iter().position(|r| r["kind"] == "plan").unwrap();
    assert!(first < plan);
    assert_eq!(recs[first]["data"]["findings"].as_array().unwrap().len(), 3);
    no_canary(&env, &secret, &[&out, &err]);
    no_canary(&env, &tok[4..], &[&out, &err]);
    assert!(env.ok(&["log", "verify"]).contains("intact"));
}

#[test]
fn respond_leaves_what_needs_approval_pending_and_apply_continues_it() {
    let (env, key) = env_with_signer();
    let user = format!("respond-wait-{}", std::process::id());
    let (key_id, secret, _) = seed_aws(&user);
    let report = env.dir.path().join("r.txt");
    std::fs::write(&report, format!("{key_id} {secret}\n")).unwrap();
    let (code, v, _, err) = run_json(
        aws_cmd(&env)
            .args([
                "--json",
                "respond",
                "--quarantine-user",
                "--as",
                "amara",
                "--key",
            ])
            .arg(&key)
            .arg("--report")
            .arg(&report),
    );
    assert_eq!(code, 5, "{v:#}\n{}", String::from_utf8_lossy(&err));
    assert_eq!(v["findings"][0]["status"], "awaiting-approval");
    let plan = v["plan"].as_str().unwrap().to_owned();
    // The key itself was disabled at once: only the quarantine waits.
    assert!(key_statuses(&user).contains(&format!("('{key_id}', 'Inactive')")));
    let p: serde_json::Value = serde_json::from_str(&env.ok(&["--json", "pending"])).unwrap();
    let pending = p["pending"].as_array().unwrap();
    assert_eq!(pending.len(), 1, "{p:#}");
    assert_eq!(pending[0]["plan"], plan.as_str());
    assert_eq!(pending[0]["steps"][0]["action"], "aws:quarantine-user");
    assert_eq!(pending[0]["steps"][0]["ready"], false);
    assert!(pending[0]["steps"][0]["needs"][0]
        .as_str()
        .unwrap()
        .contains("approval"));
    // A second person from security approves: pending says it is ready.
    env.cmd()
        .args(["approve", &plan, "--key"])
        .arg(key.with_file_name("bruno"))
        .assert()
        .success();
    let p: serde_json::Value = serde_json::from_str(&env.ok(&["--json", "pending"])).unwrap();
    assert_eq!(p["pending"][0]["steps"][0]["ready"], true, "{p:#}");
    let (code, v, _, err) = run_json(aws_cmd(&env).args(["--json", "apply", &plan]));
    assert_eq!(code, 0, "{v:#}\n{}", String::from_utf8_lossy(&err));
    let steps = v["steps"].as_array().unwrap();
    assert!(steps[0]["from_earlier_run"].as_bool().unwrap(), "{v:#}");
    assert_eq!(steps[1]["outcome"]["status"], "done");
    assert!(key_statuses(&user).contains("cordon-quarantine-deny-all"));
    let p: serde_json::Value = serde_json::from_str(&env.ok(&["--json", "pending"])).unwrap();
    assert_eq!(p["pending"].as_array().unwrap().len(), 0);
}

#[test]
fn a_malformed_report_is_refused_and_nothing_is_recorded_or_done() {
    let env = Env::new();
    let before = env.records().len();
    for (body, want) in [
        (&b"{\"x\": 1}"[..], "pass --format"),
        (&b"\xff\xfe not text"[..], "not UTF-8"),
    ] {
        let o = env
            .cmd()
            .args(["respond", "--report", "-"])
            .write_stdin(body)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2));
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(e.contains(want), "{e}");
        assert!(o.stdout.is_empty());
    }
    let missing = env.run(&["respond", "--report", "/nonexistent/report.json"]);
    assert_eq!(missing.status.code(), Some(2));
    assert_eq!(
        env.records().len(),
        before,
        "no record for a refused report"
    );
    assert!(env.ok(&["plan", "list"]).lines().count() <= 1);
}

#[test]
fn a_report_without_a_containable_credential_exits_6_and_says_why() {
    let env = Env::new();
    let bad = {
        let t = cordon::intake::classify::make_classic_token("ghp_", "nope");
        format!(
            "{}{}",
            &t[..t.len() - 1],
            if t.ends_with('A') { 'B' } else { 'A' }
        )
    };
    let o = env
        .cmd()
        .args(["--json", "respond", "--report", "-", "--as", "ci"])
        .write_stdin(format!("{bad}\n"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(6));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["plan"], serde_json::Value::Null);
    assert_eq!(v["findings"][0]["status"], "not-containable");
    assert!(!String::from_utf8_lossy(&o.stdout).contains(&bad[4..]));
    // The finding was recorded (cordon learned of it), with no plan.
    let recs = env.records();
    assert_eq!(recs.iter().filter(|r| r["kind"] == "finding").count(), 1);
    assert_eq!(recs.iter().filter(|r| r["kind"] == "plan").count(), 0);
}

/// The body of action.yml, run as CI would run it: a gitleaks report of a
/// leaked key pair and token in, containment and step outputs out.
#[test]
fn the_github_action_script_contains_a_gitleaks_report_as_ci() {
    let env = Env::new();
    let user = format!("action-{}", std::process::id());
    let (key_id, secret, _) = seed_aws(&user);
    let tok = plant_github_token(&user);
    let finding = |line: u32, rule: &str, value: &str| {
        serde_json::json!({"Description": rule, "StartLine": line, "EndLine": line, "StartColumn": 10, "EndColumn": 60,
            "Match": value, "Secret": value, "File": "deploy/app.env", "SymlinkFile": "", "Commit": "6f1c0ffee6f1c0ffee6f1c0ffee6f1c0ffee6f1c",
            "Entropy": 4.5, "Author": "dev", "Email": "dev@example.com", "Date": "2026-11-22T03:00:00Z", "Message": "deploy",
            "Tags": [], "RuleID": rule, "Fingerprint": format!("6f1c:deploy/app.env:{rule}:{line}")})
    };
    let report = env.dir.path().join("gitleaks.json");
    std::fs::write(
        &report,
        serde_json::json!([
            finding(1, "aws-access-token", &key_id),
            finding(2, "generic-api-key", &secret),
            finding(3, "github-pat", &tok),
        ])
        .to_string(),
    )
    .unwrap();
    let outputs = env.dir.path().join("github-output");
    let o = Std::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/ci-respond"))
        .env("CORDON_BIN", assert_cmd::cargo::cargo_bin("cordon"))
        .env("CORDON_DEMO", "1")
        .env("CORDON_HOME", env.dir.path().join("ci-home"))
        .env("CORDON_REPORT", &report)
        .env("CORDON_CI_SECRET", CI_SECRET)
        .env("GITHUB_OUTPUT", &outputs)
        .envs(aws_env(&peer("CORDON_TEST_AWS_ENDPOINT")))
        .env("CORDON_GITHUB_API_URL", peer("CORDON_TEST_GITHUB_URL"))
        .env_remove("CORDON_INCIDENT")
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert!(o.status.success(), "{stdout}\n{stderr}");
    let outs = std::fs::read_to_string(&outputs).unwrap();
    assert!(outs.contains("exit-code=0\n"), "{outs}\n{stdout}");
    assert!(outs.contains("plan="), "{outs}");
    // gitleaks' two unlinked AWS findings were paired: the leaked secret proved the key dead.
    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(env.dir.path().join("ci-home/respond-summary.json")).unwrap(),
    )
    .unwrap();
    let f = summary["findings"].as_array().unwrap();
    assert!(f.iter().all(|x| x["status"] == "contained"), "{summary:#}");
    assert!(f
        .iter()
        .any(|x| x["provenance"]["commit"] == "6f1c0ffee6f1c0ffee6f1c0ffee6f1c0ffee6f1c"));
    assert!(key_statuses(&user).contains(&format!("('{key_id}', 'Inactive')")));
    assert!(!stdout.contains(&secret) && !stderr.contains(&secret) && !stdout.contains(&tok[4..]));
    // A report that is not there fails the job with a clear error.
    let o = Std::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/ci-respond"))
        .env("CORDON_BIN", assert_cmd::cargo::cargo_bin("cordon"))
        .env("CORDON_DEMO", "1")
        .env("CORDON_HOME", env.dir.path().join("ci-home"))
        .env("CORDON_REPORT", env.dir.path().join("missing.json"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stdout).contains("does not exist"));
}

/// Issue 21: `respond` shows a progress bar on a terminal only. With stderr
/// a pipe (a CI log, a script), nothing of the bar is written: no carriage
/// returns, no escape sequences, none of its words.
#[test]
fn no_progress_bar_reaches_stderr_when_it_is_not_a_terminal() {
    let env = Env::new();
    let report = env.dir.path().join("many.json");
    let findings: Vec<serde_json::Value> = (0..3000)
        .map(|i| {
            serde_json::json!({"RuleID": "slack-bot-token",
                "Secret": format!("xoxb-bar-{i:06}-not-a-credential-cordon-handles"),
                "File": format!("src/f{}.env", i % 13), "StartLine": i % 50 + 1,
                "Commit": "", "Link": ""})
        })
        .collect();
    std::fs::write(&report, serde_json::to_vec(&findings).unwrap()).unwrap();
    let o = env
        .cmd()
        .args(["respond", "--report"])
        .arg(&report)
        .args(["--as", "alice"])
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert_eq!(o.status.code(), Some(6), "{stdout}\n{stderr}");
    assert!(stdout.contains("(gitleaks, 3000 findings)"), "{stdout}");
    for bar in [
        "\r",
        "\u{1b}",
        "reading the report",
        "findings recorded",
        "containment steps",
    ] {
        assert!(!stderr.contains(bar), "{bar:?} on stderr:\n{stderr}");
    }
}

//! Bounded automation against the real peers: the stop conditions of `ci`
//! (the shipped roster: 20 credentials per 60 min), the signed halt switch
//! (mid-run, and with the agent queuing while halted), and `cordon mcp`
//! driven by the official MCP Python SDK.

use std::process::{Command as Std, Stdio};
use std::time::{Duration, Instant};

use crate::agent::Agent;
use crate::fire::{seed_keys, statuses};
use crate::peers::{aws_cmd, aws_env, no_canary, peer};
use crate::support::{env_with_signer, Env};

const CI_SECRET: &str = "cordon-example-ci-secret-replace-me";
const ASSISTANT_SECRET: &str = "cordon-example-assistant-secret-replace-me";

/// A plain-text report of every key pair (id and secret on adjacent lines).
fn keys_report(env: &Env, name: &str, keys: &[(String, String, String)]) -> std::path::PathBuf {
    let mut text = String::new();
    for (_, id, secret) in keys {
        text.push_str(&format!(
            "AWS_ACCESS_KEY_ID={id}\nAWS_SECRET_ACCESS_KEY={secret}\n\n"
        ));
    }
    let p = env.dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn inactive(keys: &[(String, String, String)]) -> usize {
    let users: Vec<&str> = keys.iter().map(|(u, _, _)| u.as_str()).collect();
    let st = statuses(&users);
    keys.iter()
        .filter(|(_, id, _)| st.get(id).map(String::as_str) == Some("Inactive"))
        .count()
}

#[test]
fn respond_as_ci_with_500_production_keys_acts_on_20_and_leaves_the_rest_pending_with_the_limit_named(
) {
    let env = Env::new();
    let keys = seed_keys(&format!("bound500-{}", std::process::id()), 500);
    let report = keys_report(&env, "leak-500.env", &keys);
    let o = aws_cmd(&env)
        .args(["--json", "respond", "--report"])
        .arg(&report)
        .env("CI", "true")
        .env("CORDON_CI_SECRET", CI_SECRET)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stderr)));
    assert_eq!(
        o.status.code(),
        Some(10),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(v["requester"], "ci");
    assert_eq!(v["requester_verified"], true);
    let f = v["findings"].as_array().unwrap();
    assert_eq!(f.len(), 500);
    let contained = f.iter().filter(|r| r["status"] == "contained").count();
    let stopped: Vec<_> = f.iter().filter(|r| r["status"] == "stopped").collect();
    assert_eq!(contained, 20, "{v:#}");
    assert_eq!(stopped.len(), 480);
    for r in &stopped {
        let d = r["detail"].as_str().unwrap();
        assert!(
            d.contains("stopped by limit `max_credentials_per_window` of `ci`: at most 20 credentials per 60 min"),
            "{d}"
        );
    }
    // Exactly 20 keys are disabled at the provider; the other 480 untouched.
    assert_eq!(inactive(&keys), 20);
    // The audit log says why each waits; `pending` lists them with the limit.
    let recs = env.records();
    let stops = recs
        .iter()
        .filter(|r| r["kind"] == "decision" && r["decision"]["stopped"].is_string())
        .count();
    // Two steps a key (disable it, end the sessions it minted), both stopped.
    assert_eq!(stops, 2 * 480);
    let p = env
        .cmd()
        .args(["--json", "pending"])
        .env("CORDON_CI_SECRET", CI_SECRET)
        .output()
        .unwrap();
    let pv: serde_json::Value = serde_json::from_slice(&p.stdout).unwrap();
    let steps = pv["pending"][0]["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2 * 480, "{pv:#}");
    assert!(steps.iter().all(|s| s["needs"][0]
        .as_str()
        .unwrap()
        .contains("stopped by limit `max_credentials_per_window`")));
    no_canary(&env, &keys[0].2, &[&o.stdout, &o.stderr]);
}

/// Spawn `respond` as ci, slowly (one step at a time, few operations per
/// second), so that a halt can land while it runs.
fn slow_respond(
    env: &Env,
    report: &std::path::Path,
    policy: &std::path::Path,
) -> std::process::Child {
    let bin = assert_cmd::cargo::cargo_bin("cordon");
    let mut c = Std::new(bin);
    for (k, _) in std::env::vars() {
        if k.starts_with("CORDON_") || k == "CI" || k == "GITHUB_TOKEN" {
            c.env_remove(k);
        }
    }
    c.envs(aws_env(&peer("CORDON_TEST_AWS_ENDPOINT")))
        .env("CORDON_HOME", &env.home)
        .env("CORDON_DEMO", "1")
        .env("CORDON_CI_SECRET", CI_SECRET)
        .env("CI", "true")
        .args(["--json", "--policy"])
        .arg(policy)
        .args(["respond", "--concurrency", "1", "--rate", "3", "--report"])
        .arg(report)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn a_halt_set_mid_run_stops_the_rest_and_resume_lets_ci_finish() {
    let (env, amara) = env_with_signer();
    let keys = seed_keys(&format!("boundhalt-{}", std::process::id()), 30);
    let report = keys_report(&env, "leak-30.env", &keys);
    // The installed policy with the signers, and a ci limit above 30: only
    // the halt stops this run.
    let policy = env.home.join("policy");
    let roster = std::fs::read_to_string(policy.join("roster.toml")).unwrap();
    std::fs::write(
        policy.join("roster.toml"),
        roster.replacen(
            "[limits.ci]\nmax_credentials_per_window = 20",
            "[limits.ci]\nmax_credentials_per_window = 100",
            1,
        ),
    )
    .unwrap();
    let child = slow_respond(&env, &report, &policy);
    let t = Instant::now();
    let outcomes = |action: &str| {
        env.records()
            .iter()
            .filter(|r| r["kind"] == "outcome" && r["action"] == action)
            .count()
    };
    loop {
        // Keys first (issue 19): every key is disabled before the first
        // session cut-off starts; halt once two are.
        if outcomes("aws:disable-access-key") >= 2 {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(120), "no outcome yet");
        std::thread::sleep(Duration::from_millis(100));
    }
    let h = env
        .cmd()
        .args(["halt", "--reason", "scanner feed looks poisoned", "--key"])
        .arg(&amara)
        .output()
        .unwrap();
    assert!(h.status.success(), "{}", String::from_utf8_lossy(&h.stderr));
    let o = child.wait_with_output().unwrap();
    assert_eq!(
        o.status.code(),
        Some(10),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let f = v["findings"].as_array().unwrap();
    let contained = f.iter().filter(|r| r["status"] == "contained").count();
    let halted: Vec<_> = f.iter().filter(|r| r["status"] == "stopped").collect();
    assert_eq!(contained + halted.len(), 30, "{v:#}");
    for r in &halted {
        let d = r["detail"].as_str().unwrap();
        assert!(d.contains("halted by `amara`"), "{d}");
        assert!(d.contains("scanner feed looks poisoned"), "{d}");
    }
    // A key is two steps (disable it, end the sessions it minted), and the
    // keys go first: the halt landed while keys were being disabled, so it
    // leaves the keys disabled so far (each recorded), their findings
    // stopped with the session cut-offs waiting for a person, and the rest
    // untouched. No cut-off ran, so no finding is whole.
    let disabled = inactive(&keys);
    assert!((2..30).contains(&disabled), "{disabled}");
    assert_eq!(outcomes("aws:disable-access-key"), disabled);
    assert_eq!(outcomes("aws:revoke-user-sessions"), 0);
    assert_eq!(contained, 0, "{v:#}");
    // The halt is a signed, recorded event by a proven person.
    let recs = env.records();
    let hr: Vec<_> = recs.iter().filter(|r| r["kind"] == "halt").collect();
    assert_eq!(hr.len(), 1);
    assert_eq!(hr[0]["actor"]["name"], "amara");
    assert_eq!(hr[0]["actor"]["verified"], true);
    assert!(hr[0]["data"]["signature"]
        .as_str()
        .unwrap()
        .contains("BEGIN SSH SIGNATURE"));
    // While halted, ci acts on nothing even when asked again.
    let plan = v["plan"].as_str().unwrap().to_owned();
    let again = aws_cmd(&env)
        .args(["--json", "--policy"])
        .arg(&policy)
        .args(["apply", &plan, "--as", "ci", "--secrets-stdin"])
        .env("CORDON_CI_SECRET", CI_SECRET)
        .write_stdin(std::fs::read(&report).unwrap())
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(10));
    assert_eq!(inactive(&keys), disabled);
    // A person resumes; the same plan, applied again by ci, finishes once.
    let r = env
        .cmd()
        .args(["resume", "--reason", "feed checked", "--key"])
        .arg(&amara)
        .output()
        .unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let fin = aws_cmd(&env)
        .args(["--json", "--policy"])
        .arg(&policy)
        .args(["apply", &plan, "--as", "ci", "--secrets-stdin"])
        .env("CORDON_CI_SECRET", CI_SECRET)
        .write_stdin(std::fs::read(&report).unwrap())
        .output()
        .unwrap();
    assert_eq!(
        fin.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&fin.stdout)
    );
    assert_eq!(inactive(&keys), 30);
    // Each key disabled once, and the sessions it minted ended once.
    let recs = env.records();
    for action in ["aws:disable-access-key", "aws:revoke-user-sessions"] {
        let outcomes = recs
            .iter()
            .filter(|r| r["kind"] == "outcome" && r["action"] == action)
            .count();
        assert_eq!(outcomes, 30, "each key acted on once: {action}");
    }
}

#[test]
fn halt_and_resume_need_a_person_s_signature() {
    let (env, _amara) = env_with_signer();
    let stranger = env.dir.path().join("stranger");
    let st = Std::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&stranger)
        .status()
        .unwrap();
    assert!(st.success());
    let o = env
        .cmd()
        .args(["halt", "--reason", "x", "--key"])
        .arg(&stranger)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not in allowed_signers"));
    assert!(!env.home.join("halt.json").exists());
    let o = env
        .cmd()
        .args(["resume", "--key"])
        .arg(&stranger)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not halted"));
    assert!(env.records().iter().all(|r| r["kind"] != "halt"));
}

#[test]
fn the_agent_while_halted_queues_deliveries_and_acts_on_none_then_resume_processes_each_once() {
    let (env, amara) = env_with_signer();
    let keys = seed_keys(&format!("boundagent-{}", std::process::id()), 2);
    let h = env
        .cmd()
        .args(["halt", "--reason", "drill", "--key"])
        .arg(&amara)
        .output()
        .unwrap();
    assert!(h.status.success(), "{}", String::from_utf8_lossy(&h.stderr));
    let agent = Agent::start(&env, &aws_env(&peer("CORDON_TEST_AWS_ENDPOINT")));
    for (i, (user, key_id, _)) in keys.iter().enumerate() {
        let gd = serde_json::json!({
            "version": "0", "id": format!("gd-halt-{}-{i}", std::process::id()), "detail-type": "GuardDuty Finding", "source": "aws.guardduty",
            "account": peer("CORDON_TEST_AWS_ACCOUNT_ID"),
            "detail": {"id": format!("f-{i}"), "type": "UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration.OutsideAWS", "severity": 8.0,
                       "accountId": peer("CORDON_TEST_AWS_ACCOUNT_ID"),
                       "resource": {"resourceType": "AccessKey", "accessKeyDetails": {"accessKeyId": key_id, "userName": user, "userType": "IAMUser"}}}
        })
        .to_string();
        let (c, b) = agent.post(
            "/aws",
            &[("Authorization", "Bearer eventbridge-token-for-tests")],
            gd.as_bytes(),
        );
        assert_eq!(c, 202, "{b}");
    }
    // Accepted and queued; nothing acted on while halted.
    std::thread::sleep(Duration::from_secs(3));
    let (c, b) = crate::agent::http(&agent.addr, "GET", "/healthz", &[], b"");
    assert_eq!(c, 200);
    let hz: serde_json::Value = serde_json::from_str(&b).unwrap();
    assert_eq!(hz["halted"], true, "{hz}");
    assert_eq!(hz["queued"], 2, "{hz}");
    let inbox = std::fs::read_dir(env.home.join("agent/inbox"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".json")
        })
        .count();
    assert_eq!(inbox, 2);
    let recs = env.records();
    assert!(
        recs.iter()
            .all(|r| r["kind"] != "plan" && r["kind"] != "decision"),
        "{recs:#?}"
    );
    assert_eq!(inactive(&keys), 0);
    // Resume: each queued delivery is processed once.
    let r = env
        .cmd()
        .args(["resume", "--key"])
        .arg(&amara)
        .output()
        .unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let t = Instant::now();
    while inactive(&keys) < 2 {
        assert!(
            t.elapsed() < Duration::from_secs(90),
            "not processed after resume"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let (code, out, err) = agent.stop();
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("2 events processed, 0 failed, 0 left"),
        "{out}"
    );
    let recs = env.records();
    assert_eq!(recs.iter().filter(|r| r["kind"] == "plan").count(), 2);
    // Each key: disabled, and the sessions it minted ended, once.
    for action in ["aws:disable-access-key", "aws:revoke-user-sessions"] {
        assert_eq!(
            recs.iter()
                .filter(|r| r["kind"] == "outcome" && r["action"] == action)
                .count(),
            2,
            "{action}"
        );
    }
}

#[test]
fn cordon_mcp_driven_by_the_official_python_sdk_proposes_never_approves_and_never_leaks() {
    let env = Env::new();
    let python = peer("CORDON_TEST_MCP_PYTHON");
    let keys = seed_keys(&format!("boundmcp-{}", std::process::id()), 1);
    let (_, key_id, secret) = keys[0].clone();
    let token = cordon::intake::classify::make_classic_token(
        "ghp_",
        &format!("mcp-{}", std::process::id()),
    );
    let report = env.dir.path().join("leak.env");
    std::fs::write(
        &report,
        format!("AWS_ACCESS_KEY_ID={key_id}\nAWS_SECRET_ACCESS_KEY={secret}\n"),
    )
    .unwrap();
    let bin = assert_cmd::cargo::cargo_bin("cordon");
    let mut c = Std::new(python);
    for (k, _) in std::env::vars() {
        if k.starts_with("CORDON_") || k == "CI" || k == "GITHUB_TOKEN" {
            c.env_remove(k);
        }
    }
    let o = c
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/mcp_drive.py"))
        .arg(&bin)
        .arg(&env.home)
        .arg(&report)
        .envs(aws_env(&peer("CORDON_TEST_AWS_ENDPOINT")))
        .env("CORDON_ASSISTANT_SECRET", ASSISTANT_SECRET)
        .env("CORDON_DEMO", "1")
        .env(
            "LEAK_ENV",
            format!("AWS_ACCESS_KEY_ID={key_id}\nAWS_SECRET_ACCESS_KEY={secret}\n"),
        )
        .env("LEAK_TOKEN", &token)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{stderr}");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    // The tools, and no approve among them; each says what the limits are.
    let names: Vec<&str> = v["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "classify",
            "policy_explain",
            "status",
            "pending",
            "plan",
            "apply",
            "report"
        ]
    );
    for t in v["tools"].as_array().unwrap() {
        let d = t["description"].as_str().unwrap();
        assert!(
            d.contains("never on a production or unlabelled identity"),
            "{d}"
        );
        assert!(d.contains("at most 5 credentials per 60 min"), "{d}");
        assert!(d.contains("there is no approve tool"), "{d}");
    }
    let calls = v["calls"].as_array().unwrap();
    let call = |i: usize| &calls[i];
    // classify: the key by id, the secret only as paired.
    assert_eq!(call(0)["is_error"], false, "{:#}", call(0));
    assert!(call(0)["text"].as_str().unwrap().contains(&key_id));
    // plan: proposed as assistant, nothing done.
    assert_eq!(call(1)["is_error"], false, "{:#}", call(1));
    let plan = v["plan"].as_str().unwrap();
    assert_eq!(call(1)["structured"]["requester"], "assistant");
    assert_eq!(call(1)["structured"]["findings"][0]["status"], "planned");
    // approve: no such tool.
    assert_eq!(call(2)["is_error"], true, "{:#}", call(2));
    assert!(call(2)["text"]
        .as_str()
        .unwrap()
        .contains("no tool `approve`"));
    // apply on a production (unlabelled) key: denied by the assistant's forbid, recorded.
    for i in [3, 4] {
        let a = &call(i)["structured"];
        assert_eq!(call(i)["is_error"], false, "{:#}", call(i));
        assert_eq!(a["requester_verified"], true, "{a:#}");
        assert_ne!(a["exit"], 0, "{a:#}");
        for s in a["steps"].as_array().unwrap() {
            assert_eq!(s["allowed"], false);
            assert!(
                s["policies"]
                    .as_array()
                    .unwrap()
                    .contains(&serde_json::json!("assistant-never-acts-on-production")),
                "{s:#}"
            );
        }
    }
    assert_eq!(
        inactive(&keys),
        0,
        "the assistant acted on a production key"
    );
    let recs = env.records();
    let denials: Vec<_> = recs
        .iter()
        .filter(|r| r["kind"] == "decision" && r["plan"] == plan)
        .collect();
    assert!(!denials.is_empty());
    assert!(denials.iter().all(|d| d["decision"]["effect"] == "deny"
        && d["actor"]["name"] == "assistant"
        && d["actor"]["verified"] == true));
    // pending lists the proposal for people; explain answers.
    assert_eq!(call(5)["is_error"], false, "{:#}", call(5));
    assert!(call(5)["text"].as_str().unwrap().contains(plan));
    assert_eq!(call(6)["is_error"], false, "{:#}", call(6));
    assert!(call(6)["text"]
        .as_str()
        .unwrap()
        .contains("assistant-never-acts-on-production"));
    // A secret in an argument: refused, and recorded without the arguments.
    assert_eq!(call(7)["is_error"], true, "{:#}", call(7));
    assert!(call(7)["text"]
        .as_str()
        .unwrap()
        .contains("holds a credential"));
    // Every call is a record, in order.
    let tools: Vec<&str> = recs
        .iter()
        .filter(|r| r["kind"] == "tool-call")
        .map(|r| r["data"]["tool"].as_str().unwrap())
        .collect();
    assert_eq!(
        tools,
        [
            "classify",
            "plan",
            "approve",
            "apply",
            "apply",
            "pending",
            "policy_explain",
            "classify"
        ]
    );
    // No secret in any tool result (the transcript's `args` hold the token
    // the test itself sent), the server's stderr, or the state.
    let mut seen = serde_json::to_string(&v["tools"]).unwrap();
    seen.push_str(&serde_json::to_string(&v["server"]).unwrap());
    for c in calls {
        seen.push_str(&serde_json::to_string(&c["text"]).unwrap());
        seen.push_str(&serde_json::to_string(&c["structured"]).unwrap());
        seen.push_str(&serde_json::to_string(&c["exception"]).unwrap());
    }
    assert!(!seen.contains(&secret), "the AWS secret reached the client");
    assert!(!seen.contains(&token), "the token reached the client");
    no_canary(&env, &secret, &[stderr.as_bytes()]);
    no_canary(&env, &token, &[stderr.as_bytes()]);
}

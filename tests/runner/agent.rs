//! `cordon agent` over real HTTP: signature, replay, size and shape checks
//! before anything is kept; accepted GitHub alerts and GuardDuty findings
//! contained through moto and Prism with principal `agent`; graceful stop.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command as Std, Stdio};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::peers::{aws_env, key_statuses, no_canary, peer, seed_aws};
use crate::support::Env;

pub(crate) const HOOK_SECRET: &str = "webhook-secret-for-tests";
const EB_TOKEN: &str = "eventbridge-token-for-tests";
const AGENT_SECRET: &str = "cordon-example-agent-secret-replace-me";

pub(crate) struct Agent {
    child: Child,
    pub(crate) addr: String,
}

impl Agent {
    pub(crate) fn start(env: &Env, extra: &[(&str, String)]) -> Agent {
        let bin = assert_cmd::cargo::cargo_bin("cordon");
        let mut c = Std::new(bin);
        for (k, _) in std::env::vars() {
            if k.starts_with("CORDON_") || k == "CI" || k == "GITHUB_TOKEN" {
                c.env_remove(k);
            }
        }
        c.args(["agent", "--listen", "127.0.0.1:0", "--max-body", "65536"])
            .env("CORDON_HOME", &env.home)
            .env("CORDON_DEMO", "1")
            .env("CORDON_WEBHOOK_SECRET", HOOK_SECRET)
            .env("CORDON_EVENTBRIDGE_TOKEN", EB_TOKEN)
            .env("CORDON_AGENT_SECRET", AGENT_SECRET)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in extra {
            c.env(k, v);
        }
        let mut child = c.spawn().unwrap();
        let mut first = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut first)
            .unwrap();
        let addr = first
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
            .to_owned();
        Agent { child, addr }
    }

    pub(crate) fn post(&self, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, String) {
        http(&self.addr, "POST", path, headers, body)
    }

    /// SIGTERM, then wait; returns (exit code, stdout rest, stderr).
    pub(crate) fn stop(mut self) -> (Option<i32>, String, String) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let st = self.child.wait().unwrap();
        let mut out = String::new();
        let mut err = String::new();
        self.child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        (st.code(), out, err)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

pub(crate) fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    // A server may answer (413) before reading the whole body.
    let _ = s.write_all(body);
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    let text = String::from_utf8_lossy(&resp).into_owned();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (code, body)
}

pub(crate) fn sign(body: &[u8]) -> String {
    let mut m = Hmac::<Sha256>::new_from_slice(HOOK_SECRET.as_bytes()).unwrap();
    m.update(body);
    format!("sha256={}", hex::encode(m.finalize().into_bytes()))
}

pub(crate) fn alert_payload(owner: &str, repo: &str, number: u64) -> Vec<u8> {
    serde_json::json!({
        "action": "created",
        "alert": {"number": number, "secret_type": "github_personal_access_token",
                  "html_url": format!("https://github.com/{owner}/{repo}/security/secret-scanning/{number}")},
        "repository": {"full_name": format!("{owner}/{repo}"), "name": repo, "owner": {"login": owner}},
    })
    .to_string()
    .into_bytes()
}

pub(crate) fn wait_for(
    env: &Env,
    what: &str,
    f: impl Fn(&[serde_json::Value]) -> bool,
) -> Vec<serde_json::Value> {
    let t = Instant::now();
    loop {
        let recs = env.records();
        if f(&recs) {
            return recs;
        }
        assert!(
            t.elapsed() < Duration::from_secs(90),
            "timed out waiting for {what}: {recs:#?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn agent_refuses_unsigned_forged_oversized_malformed_and_replayed_deliveries() {
    let env = Env::new();
    let agent = Agent::start(&env, &[]);
    let (code, body) = http(&agent.addr, "GET", "/healthz", &[], b"");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"ok\""));
    let before = env.records().len();
    let payload = alert_payload("o", "r", 1);
    let ev = ("X-GitHub-Event", "secret_scanning_alert");
    // Unsigned, wrongly signed, signed over other bytes, not hex.
    let (c, _) = agent.post("/github", &[ev, ("X-GitHub-Delivery", "d-1")], &payload);
    assert_eq!(c, 401);
    let forged = sign(b"something else");
    let (c, _) = agent.post(
        "/github",
        &[
            ev,
            ("X-GitHub-Delivery", "d-1"),
            ("X-Hub-Signature-256", &forged),
        ],
        &payload,
    );
    assert_eq!(c, 401);
    let (c, _) = agent.post(
        "/github",
        &[
            ev,
            ("X-GitHub-Delivery", "d-1"),
            ("X-Hub-Signature-256", "sha256=zz"),
        ],
        &payload,
    );
    assert_eq!(c, 401);
    // Oversized: refused before the signature is even computed.
    let big = vec![b' '; 70_000];
    let (c, _) = agent.post(
        "/github",
        &[
            ev,
            ("X-GitHub-Delivery", "d-2"),
            ("X-Hub-Signature-256", &sign(&big)),
        ],
        &big,
    );
    assert_eq!(c, 413);
    // Signed but malformed: 400 naming the field.
    let bad = br#"{"action":"created","alert":{},"repository":{"full_name":"o/r"}}"#;
    let (c, b) = agent.post(
        "/github",
        &[
            ev,
            ("X-GitHub-Delivery", "d-3"),
            ("X-Hub-Signature-256", &sign(bad)),
        ],
        bad,
    );
    assert_eq!(c, 400);
    assert!(b.contains("alert.number"), "{b}");
    // EventBridge without / with a wrong token.
    let (c, _) = agent.post("/aws", &[], b"{}");
    assert_eq!(c, 401);
    let (c, _) = agent.post("/aws", &[("Authorization", "Bearer nope")], b"{}");
    assert_eq!(c, 401);
    // Nothing refused reached the audit log or the inbox.
    assert_eq!(env.records().len(), before);
    let inbox = std::fs::read_dir(env.home.join("agent/inbox"))
        .unwrap()
        .count();
    assert_eq!(inbox, 0);
    // A ping is understood and needs nothing.
    let ping = br#"{"zen":"keep it logically awesome"}"#;
    let (c, b) = agent.post(
        "/github",
        &[
            ("X-GitHub-Event", "ping"),
            ("X-GitHub-Delivery", "p-1"),
            ("X-Hub-Signature-256", &sign(ping)),
        ],
        ping,
    );
    assert_eq!(c, 200, "{b}");
    // Accepted once; the same delivery id again is a replay, signed or not.
    let hdrs = [
        ev,
        ("X-GitHub-Delivery", "d-9"),
        ("X-Hub-Signature-256", &sign(&payload)),
    ];
    let (c, b) = agent.post("/github", &hdrs, &payload);
    assert_eq!(c, 202, "{b}");
    let (c, b) = agent.post("/github", &hdrs, &payload);
    assert_eq!(c, 409, "{b}");
    // The accepted one is processed (its alert cannot be fetched here: no
    // GitHub credential) and recorded as a not-containable finding.
    wait_for(&env, "the finding record", |r| {
        r.iter().any(|x| x["kind"] == "finding")
    });
    let (code, out, err) = agent.stop();
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("1 events processed"), "{out}\n{err}");
    assert!(!err.contains(HOOK_SECRET) && !out.contains(HOOK_SECRET));
    let (c2, _) = (
        Agent::start(&env, &[]).post("/github", &hdrs, &payload).0,
        (),
    );
    assert_eq!(c2, 409, "replays are refused across restarts");
}

#[test]
fn agent_contains_a_github_alert_and_a_guardduty_key_finding_end_to_end() {
    let env = Env::new();
    let reg = peer("CORDON_TEST_GITHUB_REGISTRY_URL");
    let tag = format!("agent-{}", std::process::id());
    let cordon_tok = cordon::intake::classify::make_classic_token("ghp_", &format!("{tag}-cordon"));
    let leaked = cordon::intake::classify::make_classic_token("ghp_", &format!("{tag}-leaked"));
    for (login, tok) in [("cordon-bot", &cordon_tok), ("octo-bot", &leaked)] {
        let st = Std::new("curl")
            .args([
                "-fsS",
                "-o",
                "/dev/null",
                "-X",
                "POST",
                &format!("{reg}/tokens"),
                "-H",
                "content-type: application/json",
                "-d",
            ])
            .arg(
                serde_json::json!({"tag": tag, "login": login, "scopes": ["repo"], "token": tok})
                    .to_string(),
            )
            .status()
            .unwrap();
        assert!(st.success());
    }
    let out = Std::new("curl")
        .args(["-fsS", "-X", "POST", &format!("{reg}/secret-scanning-alerts"), "-H", "content-type: application/json", "-d"])
        .arg(serde_json::json!({"tag": tag, "owner": tag, "repo": "app", "secret": leaked, "secret_type": "github_personal_access_token",
            "locations": [{"path": "ci/deploy.yml", "start_line": 12, "commit_sha": "6f1c0ffee6f1c0ffee6f1c0ffee6f1c0ffee6f1c"}]}).to_string())
        .output()
        .unwrap();
    assert!(out.status.success());
    let number = serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["number"]
        .as_u64()
        .unwrap();
    let user = format!("agent-gd-{}", std::process::id());
    let (key_id, _secret, spare) = seed_aws(&user);

    let mut extra = aws_env(&peer("CORDON_TEST_AWS_ENDPOINT"));
    extra.push(("GITHUB_TOKEN", cordon_tok.clone()));
    extra.push(("CORDON_GITHUB_API_URL", peer("CORDON_TEST_GITHUB_URL")));
    let agent = Agent::start(&env, &extra);
    let payload = alert_payload(&tag, "app", number);
    let (c, b) = agent.post(
        "/github",
        &[
            ("X-GitHub-Event", "secret_scanning_alert"),
            ("X-GitHub-Delivery", "e2e-1"),
            ("X-Hub-Signature-256", &sign(&payload)),
        ],
        &payload,
    );
    assert_eq!(c, 202, "{b}");
    let gd = serde_json::json!({
        "version": "0", "id": format!("gd-{}", std::process::id()), "detail-type": "GuardDuty Finding", "source": "aws.guardduty",
        "account": peer("CORDON_TEST_AWS_ACCOUNT_ID"),
        "detail": {"id": "f-1", "type": "UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration.OutsideAWS", "severity": 8.0,
                   "accountId": peer("CORDON_TEST_AWS_ACCOUNT_ID"),
                   "resource": {"resourceType": "AccessKey", "accessKeyDetails": {"accessKeyId": key_id, "userName": user, "userType": "IAMUser"}}}
    })
    .to_string();
    let (c, b) = agent.post(
        "/aws",
        &[("Authorization", &format!("Bearer {EB_TOKEN}"))],
        gd.as_bytes(),
    );
    assert_eq!(c, 202, "{b}");
    let recs = wait_for(&env, "two verifications", |r| {
        r.iter().filter(|x| x["kind"] == "verify").count() >= 2
    });
    let verifies: Vec<_> = recs.iter().filter(|x| x["kind"] == "verify").collect();
    assert!(
        verifies
            .iter()
            .all(|v| v["verification"]["status"] == "dead"),
        "{verifies:#?}"
    );
    // Both plans were asked for by `agent`, proven by its secret, with source agent.
    let plans: Vec<_> = recs.iter().filter(|x| x["kind"] == "plan").collect();
    assert_eq!(plans.len(), 2);
    assert!(plans.iter().all(|p| p["actor"]["name"] == "agent"));
    let decisions: Vec<_> = recs
        .iter()
        .filter(|x| x["kind"] == "decision" && x["action"] != "github:probe-token")
        .collect();
    assert!(
        decisions
            .iter()
            .all(|d| d["decision"]["effect"] == "allow" && d["actor"]["verified"] == true),
        "{decisions:#?}"
    );
    let st = key_statuses(&user);
    assert!(st.contains(&format!("('{key_id}', 'Inactive')")), "{st}");
    assert!(st.contains(&format!("('{spare}', 'Active')")), "{st}");
    // The alert's provenance made it into the finding record.
    assert!(recs.iter().any(|r| r["kind"] == "finding"
        && r["data"]["findings"][0]["provenance"]["file"] == "ci/deploy.yml"));
    let (code, out, err) = agent.stop();
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("2 events processed, 0 failed, 0 left"),
        "{out}"
    );
    // Each event's summary in done/ says how long after its receipt its
    // credential was verified refused.
    let done: Vec<serde_json::Value> = std::fs::read_dir(env.home.join("agent/done"))
        .unwrap()
        .map(|e| serde_json::from_slice(&std::fs::read(e.unwrap().path()).unwrap()).unwrap())
        .collect();
    assert_eq!(done.len(), 2);
    for d in &done {
        let t = &d["result"]["time_to_dead"];
        assert!(t["dead"].as_u64().unwrap() >= 1, "{d:#}");
        assert_eq!(t["dead"], t["credentials"], "{d:#}");
        assert!(t["last_ms"].as_u64().is_some(), "{d:#}");
    }
    no_canary(&env, &leaked[4..], &[out.as_bytes(), err.as_bytes()]);
    no_canary(&env, &cordon_tok[4..], &[out.as_bytes(), err.as_bytes()]);
}

//! The front door (issue 14): no default credentials, cordon's least-privilege
//! IAM policy proven against moto, every secret-scanning webhook answered, the
//! manual.

use std::process::Command as Std;

use crate::agent::{sign, wait_for, Agent};
use crate::peers::{aws_env, key_statuses, peer, seed_aws};
use crate::support::{env_with_signer, Env};

const EXAMPLE_CI_SECRET: &str = "cordon-example-ci-secret-replace-me";

/// boto3 (the moto venv's) with the given credentials; returns (ok, stdout+stderr).
fn boto3(key: &str, secret: &str, code: &str, args: &[&str]) -> (bool, String) {
    let py = concat!(env!("CARGO_MANIFEST_DIR"), "/.peers/moto-venv/bin/python");
    let o = Std::new(py)
        .args(["-c", code])
        .args(args)
        .env("E", peer("CORDON_TEST_AWS_ENDPOINT"))
        .env("A", key)
        .env("S", secret)
        .output()
        .unwrap();
    (
        o.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

const IAM: &str = "import boto3,os,sys\nc=boto3.client('iam',endpoint_url=os.environ['E'],aws_access_key_id=os.environ['A'],aws_secret_access_key=os.environ['S'],region_name='us-east-1')\n";

#[test]
fn issue_14_cordon_runs_as_exactly_the_shipped_responder_policy_and_moto_denies_the_rest() {
    let (rk, rs) = (
        peer("CORDON_TEST_AWS_RESPONDER_KEY_ID"),
        peer("CORDON_TEST_AWS_RESPONDER_SECRET"),
    );
    // The credentials every runner test gives cordon are the responder's.
    assert!(aws_env("x")
        .iter()
        .any(|(k, v)| *k == "AWS_ACCESS_KEY_ID" && *v == rk));
    let user = format!("least-{}", std::process::id());
    let (key_id, _, _) = seed_aws(&user);
    // Inside the policy: evidence reads work.
    let (ok, out) = boto3(
        &rk,
        &rs,
        &format!("{IAM}print(len(c.list_access_keys(UserName=sys.argv[1])['AccessKeyMetadata']))"),
        &[&user],
    );
    assert!(ok, "{out}");
    assert_eq!(out.trim(), "2");
    // Outside it: creating users, keys or login profiles is denied by moto.
    for call in [
        "c.create_user(UserName=sys.argv[1]+'-x')",
        "c.create_access_key(UserName=sys.argv[1])",
        "c.delete_access_key(UserName=sys.argv[1], AccessKeyId=sys.argv[2])",
    ] {
        let (ok, out) = boto3(&rk, &rs, &format!("{IAM}{call}"), &[&user, &key_id]);
        assert!(!ok, "{call} was allowed");
        assert!(out.contains("AccessDenied"), "{call}: {out}");
    }
}

#[test]
fn issue_14_a_permission_missing_from_cordons_credentials_is_named() {
    let (env, signer) = env_with_signer();
    let admin = (
        peer("CORDON_TEST_AWS_ACCESS_KEY_ID"),
        peer("CORDON_TEST_AWS_SECRET_ACCESS_KEY"),
    );
    // A responder whose policy is the shipped one without iam:UpdateAccessKey.
    let narrow = format!("narrow-{}", std::process::id());
    let shipped = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/policies/cordon-responder-iam.json"
    ))
    .unwrap();
    let mut doc: serde_json::Value = serde_json::from_str(&shipped).unwrap();
    for st in doc["Statement"].as_array_mut().unwrap() {
        if let Some(a) = st["Action"].as_array_mut() {
            a.retain(|x| x != "iam:UpdateAccessKey");
        }
    }
    let (ok, out) = boto3(
        &admin.0,
        &admin.1,
        &format!("{IAM}c.create_user(UserName=sys.argv[1]); c.put_user_policy(UserName=sys.argv[1], PolicyName='p', PolicyDocument=sys.argv[2]); k=c.create_access_key(UserName=sys.argv[1])['AccessKey']; print(k['AccessKeyId'], k['SecretAccessKey'])"),
        &[&narrow, &doc.to_string()],
    );
    assert!(ok, "{out}");
    let mut w = out.split_whitespace();
    let (nk, ns) = (w.next().unwrap().to_owned(), w.next().unwrap().to_owned());

    let user = format!("leaky-{}", std::process::id());
    let (key_id, _, _) = seed_aws(&user);
    let o = env
        .cmd()
        .envs(aws_env(&peer("CORDON_TEST_AWS_ENDPOINT")))
        .env("AWS_ACCESS_KEY_ID", &nk)
        .env("AWS_SECRET_ACCESS_KEY", &ns)
        .args(["revoke", "aws-key", &key_id, "--as", "amara", "--key"])
        .arg(&signer)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert_ne!(o.status.code(), Some(0), "{text}");
    assert!(
        text.contains("iam:UpdateAccessKey") && text.contains("cordon-responder-iam.json"),
        "the missing permission is not named: {text}"
    );
    // Nothing was changed: the key is still active.
    assert!(key_statuses(&user).contains(&format!("('{key_id}', 'Active')")));
}

#[test]
fn issue_14_published_example_secrets_are_refused_without_the_demo_switch() {
    // Env::new ran `init` with CORDON_DEMO=1: the shipped example secrets.
    let env = Env::new();
    let roster = env.home.join("policy/roster.toml");
    let text = std::fs::read_to_string(&roster).unwrap();
    let ci_line = text
        .lines()
        .position(|l| l.trim() == "[automation.ci]")
        .unwrap()
        + 1;
    let real = |args: &[&str]| {
        env.cmd()
            .env_remove("CORDON_DEMO")
            .args(args)
            .output()
            .unwrap()
    };

    let o = real(&["policy", "check"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(9), "{out}");
    assert!(
        out.contains(&format!(
            "roster.toml:{ci_line}: automation `ci` uses the published example secret"
        )),
        "{out}"
    );
    assert!(out.contains("cordon init --rotate-secrets"), "{out}");

    // Acting as `ci` with the published secret does nothing.
    let plan = env.plan_test(&["victim"], &[]);
    let o = env
        .cmd()
        .env_remove("CORDON_DEMO")
        .env("CORDON_CI_SECRET", EXAMPLE_CI_SECRET)
        .args(["--json", "apply", &plan, "--as", "ci"])
        .output()
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!o.status.success(), "{all}");
    assert!(all.contains("published example secret"), "{all}");
    assert_eq!(
        env.items(),
        serde_json::json!({}),
        "something was contained"
    );

    // With the switch, the same apply goes through (the demo path).
    let o = env
        .cmd()
        .env("CORDON_CI_SECRET", EXAMPLE_CI_SECRET)
        .args(["--json", "policy", "check"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0));

    // `init --rotate-secrets` gives fresh ones; the printed secret proves `ci`
    // and the published one no longer does.
    let o = real(&["--json", "init", "--rotate-secrets"]);
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let secrets = v["secrets"].as_array().unwrap();
    // ci, agent and (since bounded automation) assistant.
    assert_eq!(secrets.len(), 3);
    let ci = secrets.iter().find(|s| s["principal"] == "ci").unwrap();
    assert_eq!(ci["env"], "CORDON_CI_SECRET");
    let fresh = ci["secret"].as_str().unwrap().to_owned();
    let rotated = std::fs::read_to_string(&roster).unwrap();
    assert!(!rotated.contains(&fresh), "a raw secret in roster.toml");
    assert!(!env.records().iter().any(|r| r.to_string().contains(&fresh)));
    assert_eq!(real(&["policy", "check"]).status.code(), Some(0));
    let who = |secret: &str| {
        let o = env
            .cmd()
            .env_remove("CORDON_DEMO")
            .env("CORDON_CI_SECRET", secret)
            .args([
                "--json",
                "incident",
                "open",
                "--title",
                "t",
                "--severity",
                "high",
                "--as",
                "ci",
            ])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()["actor"]["verified"].clone()
    };
    assert_eq!(who(&fresh), true);
    assert_eq!(who(EXAMPLE_CI_SECRET), false);

    // The demo switch left on with a real roster: said plainly.
    let o = env.run(&["plan", "test", "x"]);
    let plan = String::from_utf8_lossy(&o.stdout);
    let id = plan.split_whitespace().nth(1).unwrap();
    let o = env.run(&["apply", id]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("CORDON_DEMO is set, but the roster"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn issue_14_a_fresh_init_never_writes_the_example_hashes() {
    let dir = tempfile::tempdir().unwrap();
    let o = Std::new(assert_cmd::cargo::cargo_bin("cordon"))
        .env_remove("CORDON_DEMO")
        .env("CORDON_HOME", dir.path().join("h"))
        .args(["init"])
        .output()
        .unwrap();
    assert!(o.status.success());
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("CORDON_CI_SECRET=cordon_") && out.contains("CORDON_AGENT_SECRET=cordon_"),
        "{out}"
    );
    let roster = std::fs::read_to_string(dir.path().join("h/policy/roster.toml")).unwrap();
    for h in cordon::policy::EXAMPLE_SECRETS {
        assert!(!roster.contains(h));
    }
    let o = Std::new(assert_cmd::cargo::cargo_bin("cordon"))
        .env_remove("CORDON_DEMO")
        .env("CORDON_HOME", dir.path().join("h"))
        .args(["policy", "check"])
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
}

#[test]
fn issue_14_every_secret_scanning_event_gets_a_2xx_and_ignored_ones_are_recorded() {
    let env = Env::new();
    let reg = peer("CORDON_TEST_GITHUB_REGISTRY_URL");
    let tag = format!("events-{}", std::process::id());
    let cordon_tok = cordon::intake::classify::make_classic_token("ghp_", &format!("{tag}-cordon"));
    let leaked = cordon::intake::classify::make_classic_token("ghp_", &format!("{tag}-leaked"));
    let post = |path: &str, body: serde_json::Value| -> serde_json::Value {
        let o = Std::new("curl")
            .args([
                "-fsS",
                "-X",
                "POST",
                &format!("{reg}{path}"),
                "-H",
                "content-type: application/json",
                "-d",
            ])
            .arg(body.to_string())
            .output()
            .unwrap();
        assert!(o.status.success());
        serde_json::from_slice(&o.stdout).unwrap_or(serde_json::Value::Null)
    };
    for (login, tok) in [("cordon-bot", &cordon_tok), ("octo-bot", &leaked)] {
        post(
            "/tokens",
            serde_json::json!({"tag": tag, "login": login, "scopes": ["repo"], "token": tok}),
        );
    }
    let number = post(
        "/secret-scanning-alerts",
        serde_json::json!({"tag": tag, "owner": tag, "repo": "app", "secret": leaked, "secret_type": "github_personal_access_token",
            "locations": [{"path": "ci/deploy.yml", "start_line": 12, "commit_sha": "6f1c0ffee6f1c0ffee6f1c0ffee6f1c0ffee6f1c"}]}),
    )["number"]
        .as_u64()
        .unwrap();
    let mut extra = aws_env(&peer("CORDON_TEST_AWS_ENDPOINT"));
    extra.push(("GITHUB_TOKEN", cordon_tok.clone()));
    extra.push(("CORDON_GITHUB_API_URL", peer("CORDON_TEST_GITHUB_URL")));
    let agent = Agent::start(&env, &extra);
    let send = |event: &str, delivery: &str, body: serde_json::Value| -> u16 {
        let b = body.to_string().into_bytes();
        let (c, text) = agent.post(
            "/github",
            &[
                ("X-GitHub-Event", event),
                ("X-GitHub-Delivery", delivery),
                ("X-Hub-Signature-256", &sign(&b)),
            ],
            &b,
        );
        assert!((200..300).contains(&c), "{event} {delivery}: {c} {text}");
        c
    };
    let repo = serde_json::json!({"full_name": format!("{tag}/app")});
    let alert = |action: &str, state: &str, validity: &str| {
        serde_json::json!({"action": action, "alert": {"number": number, "state": state, "validity": validity,
            "secret_type": "github_personal_access_token"}, "repository": repo})
    };
    // A known secret found in a new place: re-checked, and contained if alive.
    assert_eq!(
        send(
            "secret_scanning_alert_location",
            "loc-1",
            serde_json::json!({"action": "created",
            "alert": {"number": number, "state": "open"}, "location": {"type": "commit",
            "details": {"path": "b.env", "start_line": 3}}, "repository": repo})
        ),
        202
    );
    let recs = wait_for(&env, "the location's verification", |r| {
        r.iter().any(|x| x["kind"] == "verify")
    });
    let v = recs.iter().find(|x| x["kind"] == "verify").unwrap();
    assert_eq!(v["verification"]["status"], "dead", "{v:#}");
    // Everything else is answered 200 and recorded as ignored with its reason.
    let ignored = [
        (
            "ping",
            "p-1",
            serde_json::json!({"zen": "Keep it logically awesome.", "hook_id": 1}),
        ),
        (
            "secret_scanning_alert",
            "a-resolved",
            alert("resolved", "resolved", "active"),
        ),
        (
            "secret_scanning_alert",
            "a-assigned",
            alert("assigned", "open", "unknown"),
        ),
        (
            "secret_scanning_alert",
            "a-unassigned",
            alert("unassigned", "open", "unknown"),
        ),
        (
            "secret_scanning_alert",
            "a-validated",
            alert("validated", "open", "inactive"),
        ),
        (
            "secret_scanning_scan",
            "s-1",
            serde_json::json!({"action": "completed", "type": "backfill",
            "source": "git", "started_at": "2026-12-01T00:00:00Z", "completed_at": "2026-12-01T00:01:00Z", "repository": repo}),
        ),
    ];
    for (event, delivery, body) in &ignored {
        assert_eq!(
            send(event, delivery, body.clone()),
            200,
            "{event} {delivery}"
        );
    }
    let recs = env.records();
    let notes: Vec<_> = recs
        .iter()
        .filter(|r| r["kind"] == "note" && r["data"]["webhook"] == "github")
        .collect();
    for (_, delivery, _) in &ignored {
        assert!(
            notes.iter().any(|n| n["data"]["delivery"] == *delivery),
            "no record of {delivery}: {notes:#?}"
        );
    }
    let resolved = notes
        .iter()
        .find(|n| n["data"]["delivery"] == "a-resolved")
        .unwrap();
    assert!(resolved["message"]
        .as_str()
        .unwrap()
        .contains("never revokes"));
    // Only the location delivery led to a plan; the resolution revoked nothing.
    assert_eq!(recs.iter().filter(|r| r["kind"] == "plan").count(), 1);
    let (code, _, err) = agent.stop();
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn issue_14_the_manual_is_generated_from_the_command_definitions() {
    let env = Env::new();
    let page = env.ok(&["man"]);
    assert!(page.contains(".TH cordon 1"), "{page}");
    assert!(page.contains("respond"));
    let dir = env.dir.path().join("man");
    let o = env.run(&["man", "--out-dir", dir.to_str().unwrap()]);
    assert!(o.status.success());
    for p in [
        "cordon.1",
        "cordon-respond.1",
        "cordon-revoke-aws-key.1",
        "cordon-init.1",
    ] {
        assert!(dir.join(p).is_file(), "{p} missing");
    }
    let init = std::fs::read_to_string(dir.join("cordon-init.1")).unwrap();
    assert!(init.contains("rotate\\-secrets"), "{init}");
}
